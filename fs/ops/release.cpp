#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  (void)ino;
  checked(req, "release", [&] {
    std::unique_ptr<OpenFile> of(file(fi));
    handle_freeing(of.get());
    view(req).release(std::move(of));
    fuse_reply_err(req, 0);
  });
}

}  // namespace scopefs::fs::ops
