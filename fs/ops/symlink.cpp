#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  checked(req, "symlink",
          [&] { reply_entry(req, view(req).symlink(link, node(req, parent), name, caller(req))); });
}

}  // namespace scopefs::fs::ops
