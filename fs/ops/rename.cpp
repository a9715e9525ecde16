#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
            const char* newname, unsigned int flags) {
  checked(req, "rename", [&] {
    auto r = view(req).rename(node(req, parent), name, node(req, newparent), newname, flags,
                              caller(req));
    fuse_reply_err(req, r.error());
  });
}

}  // namespace scopefs::fs::ops
