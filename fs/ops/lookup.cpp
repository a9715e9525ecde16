#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  checked(req, "lookup", [&] {
    auto e = view(req).lookup(node(req, parent), name);
    if (!e && e.error() == ENOENT && ctx(req).negative_timeout > 0) {
      // A negative entry the kernel may cache (hidden names stay hidden).
      fuse_entry_param p{};
      p.ino = 0;
      p.entry_timeout = ctx(req).negative_timeout;
      fuse_reply_entry(req, &p);
      return;
    }
    reply_entry(req, e);
  });
}

}  // namespace scopefs::fs::ops
