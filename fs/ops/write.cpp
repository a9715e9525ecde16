#include "fs/ops/ops.hpp"

#include <vector>

namespace scopefs::fs::ops {

// Data arrives in memory (no splice read) so the core can hash it.
void write_buf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* bufv, off_t off, fuse_file_info* fi) {
  (void)ino;
  checked(req, "write", [&] {
    OpenFile* of = file(fi);
    size_t total = fuse_buf_size(bufv);
    const char* data = nullptr;
    std::vector<char> copy;
    if (bufv->count == 1 && !(bufv->buf[0].flags & FUSE_BUF_IS_FD)) {
      data = static_cast<const char*>(bufv->buf[0].mem);
    } else {
      copy.resize(total);
      fuse_bufvec dst{};
      dst.count = 1;
      dst.buf[0].size = total;
      dst.buf[0].mem = copy.data();
      ssize_t n = fuse_buf_copy(&dst, bufv, static_cast<fuse_buf_copy_flags>(0));
      if (n < 0) {
        fuse_reply_err(req, static_cast<int>(-n));
        return;
      }
      total = static_cast<size_t>(n);
      data = copy.data();
    }
    auto r = view(req).write(*of, data, total, off, caller(req));
    if (!r) {
      fuse_reply_err(req, r.error());
      return;
    }
    fuse_reply_write(req, *r);
  });
}

}  // namespace scopefs::fs::ops
