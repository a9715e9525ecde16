#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  checked(req, "unlink", [&] {
    auto r = view(req).unlink(node(req, parent), name, caller(req));
    fuse_reply_err(req, r.error());
  });
}

}  // namespace scopefs::fs::ops
