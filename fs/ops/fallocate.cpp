#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
               fuse_file_info* fi) {
  (void)ino;
  checked(req, "fallocate", [&] {
    auto r = view(req).fallocate(*file(fi), mode, offset, length, caller(req));
    fuse_reply_err(req, r.error());
  });
}

}  // namespace scopefs::fs::ops
