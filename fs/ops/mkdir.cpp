#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  checked(req, "mkdir",
          [&] { reply_entry(req, view(req).mkdir(node(req, parent), name, mode, caller(req))); });
}

}  // namespace scopefs::fs::ops
