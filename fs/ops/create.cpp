#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  checked(req, "create", [&] {
    auto r = view(req).create(node(req, parent), name, mode, fi->flags, caller(req));
    if (!r) {
      fuse_reply_err(req, r.error());
      return;
    }
    auto& [entry, of] = *r;
    fuse_entry_param p = entry_param(req, entry);
    fi->fh = reinterpret_cast<uint64_t>(of.get());
    view(req).track(of.get());
    if (fuse_reply_create(req, &p, fi) == 0) {
      (void)of.release();
    } else {
      view(req).release(std::move(of));
      view(req).forget(entry.node, 1);
    }
  });
}

}  // namespace scopefs::fs::ops
