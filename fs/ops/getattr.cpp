#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  checked(req, "getattr", [&] {
    auto st = view(req).getattr(node(req, ino), file(fi));
    if (!st) {
      fuse_reply_err(req, st.error());
      return;
    }
    fuse_reply_attr(req, &*st, ctx(req).attr_timeout);
  });
}

}  // namespace scopefs::fs::ops
