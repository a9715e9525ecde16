#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void statfs(fuse_req_t req, fuse_ino_t ino) {
  checked(req, "statfs", [&] {
    auto st = view(req).statfs(node(req, ino));
    if (!st) {
      fuse_reply_err(req, st.error());
      return;
    }
    fuse_reply_statfs(req, &*st);
  });
}

}  // namespace scopefs::fs::ops
