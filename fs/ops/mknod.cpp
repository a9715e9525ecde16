#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  checked(req, "mknod", [&] {
    reply_entry(req, view(req).mknod(node(req, parent), name, mode, rdev, caller(req)));
  });
}

}  // namespace scopefs::fs::ops
