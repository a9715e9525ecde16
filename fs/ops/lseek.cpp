#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
  (void)ino;
  checked(req, "lseek", [&] {
    auto r = view(req).lseek(*file(fi), off, whence);
    if (!r) fuse_reply_err(req, r.error());
    else fuse_reply_lseek(req, *r);
  });
}

}  // namespace scopefs::fs::ops
