#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  checked(req, "open", [&] {
    bool keep = false;
    auto of = view(req).open(node(req, ino), fi->flags, caller(req), keep);
    if (!of) {
      fuse_reply_err(req, of.error());
      return;
    }
    fi->keep_cache = keep ? 1 : 0;
    // FLUSH only takes a write session's after-state (locks are kernel-local):
    // a handle that cannot write, and has no session, needs no round trip
    // at close().
    fi->noflush = !(*of)->writable && !(*of)->session ? 1 : 0;
    fi->fh = reinterpret_cast<uint64_t>(of->get());
    view(req).track(of->get());
    if (fuse_reply_open(req, fi) == 0) {
      (void)of->release();  // now owned by the kernel's handle; reclaimed in release
    } else {
      view(req).release(std::move(*of));
    }
  });
}

}  // namespace scopefs::fs::ops
