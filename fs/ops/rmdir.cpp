#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  checked(req, "rmdir", [&] {
    auto r = view(req).rmdir(node(req, parent), name, caller(req));
    fuse_reply_err(req, r.error());
  });
}

}  // namespace scopefs::fs::ops
