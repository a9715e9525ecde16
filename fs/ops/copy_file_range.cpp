#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in,
                     fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out, size_t len,
                     int flags) {
  (void)ino_in;
  (void)ino_out;
  checked(req, "copy_file_range", [&] {
    auto r = view(req).copy_file_range(*file(fi_in), off_in, *file(fi_out), off_out, len,
                                       static_cast<unsigned>(flags), caller(req));
    if (!r) fuse_reply_err(req, r.error());
    else fuse_reply_write(req, *r);
  });
}

}  // namespace scopefs::fs::ops
