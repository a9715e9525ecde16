#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  (void)ino;
  checked(req, "fsync", [&] {
    auto r = view(req).fsync(*file(fi), datasync != 0);
    fuse_reply_err(req, r.error());
  });
}

}  // namespace scopefs::fs::ops
