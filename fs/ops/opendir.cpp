#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  checked(req, "opendir", [&] {
    auto dh = view(req).opendir(node(req, ino));
    if (!dh) {
      fuse_reply_err(req, dh.error());
      return;
    }
    fi->fh = reinterpret_cast<uint64_t>(dh->get());
    fi->cache_readdir = 0;
    if (fuse_reply_open(req, fi) == 0) (void)dh->release();
  });
}

void releasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  (void)ino;
  checked(req, "releasedir", [&] {
    std::unique_ptr<DirHandle> dh(dir(fi));
    fuse_reply_err(req, 0);
  });
}

void fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  (void)ino;
  checked(req, "fsyncdir", [&] {
    auto r = view(req).fsyncdir(*dir(fi), datasync != 0);
    fuse_reply_err(req, r.error());
  });
}

}  // namespace scopefs::fs::ops
