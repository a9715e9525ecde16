#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  checked(req, "link", [&] {
    reply_entry(req, view(req).link(node(req, ino), node(req, newparent), newname, caller(req)));
  });
}

}  // namespace scopefs::fs::ops
