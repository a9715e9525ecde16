// getxattr/listxattr/setxattr/removexattr. A zero size asks for the length.
#include "fs/ops/ops.hpp"

#include <vector>

namespace scopefs::fs::ops {

void getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  checked(req, "getxattr", [&] {
    std::vector<char> buf(size);
    auto n = view(req).getxattr(node(req, ino), name, size ? buf.data() : nullptr, size);
    if (!n) fuse_reply_err(req, n.error());
    else if (size == 0) fuse_reply_xattr(req, *n);
    else fuse_reply_buf(req, buf.data(), *n);
  });
}

void listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  checked(req, "listxattr", [&] {
    std::vector<char> buf(size);
    auto n = view(req).listxattr(node(req, ino), size ? buf.data() : nullptr, size);
    if (!n) fuse_reply_err(req, n.error());
    else if (size == 0) fuse_reply_xattr(req, *n);
    else fuse_reply_buf(req, buf.data(), *n);
  });
}

void setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
              int flags) {
  checked(req, "setxattr", [&] {
    auto r = view(req).setxattr(node(req, ino), name, value, size, flags, caller(req));
    fuse_reply_err(req, r.error());
  });
}

void removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  checked(req, "removexattr", [&] {
    auto r = view(req).removexattr(node(req, ino), name, caller(req));
    fuse_reply_err(req, r.error());
  });
}

}  // namespace scopefs::fs::ops
