#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  checked_noreply("forget", [&] { view(req).forget(node(req, ino), nlookup); });
  fuse_reply_none(req);
}

void forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  checked_noreply("forget_multi", [&] {
    for (size_t i = 0; i < count; ++i)
      view(req).forget(node(req, forgets[i].ino), forgets[i].nlookup);
  });
  fuse_reply_none(req);
}

}  // namespace scopefs::fs::ops
