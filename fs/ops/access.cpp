#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

// Only called without default_permissions; kept for completeness.
void access(fuse_req_t req, fuse_ino_t ino, int mask) {
  checked(req, "access", [&] {
    auto r = view(req).access(node(req, ino), mask);
    fuse_reply_err(req, r.error());
  });
}

}  // namespace scopefs::fs::ops
