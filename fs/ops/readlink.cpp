#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void readlink(fuse_req_t req, fuse_ino_t ino) {
  checked(req, "readlink", [&] {
    auto t = view(req).readlink(node(req, ino));
    if (!t) {
      fuse_reply_err(req, t.error());
      return;
    }
    fuse_reply_readlink(req, t->c_str());
  });
}

}  // namespace scopefs::fs::ops
