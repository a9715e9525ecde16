#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  checked(req, "setattr", [&] {
    using R = SetattrRequest;
    R r;
    if (to_set & FUSE_SET_ATTR_MODE) r.to_set |= R::kMode;
    if (to_set & FUSE_SET_ATTR_UID) r.to_set |= R::kUid;
    if (to_set & FUSE_SET_ATTR_GID) r.to_set |= R::kGid;
    if (to_set & FUSE_SET_ATTR_SIZE) r.to_set |= R::kSize;
    if (to_set & FUSE_SET_ATTR_ATIME) r.to_set |= R::kAtime;
    if (to_set & FUSE_SET_ATTR_MTIME) r.to_set |= R::kMtime;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) r.to_set |= R::kAtimeNow;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) r.to_set |= R::kMtimeNow;
    r.mode = attr->st_mode;
    r.uid = attr->st_uid;
    r.gid = attr->st_gid;
    r.size = attr->st_size;
    r.atime = attr->st_atim;
    r.mtime = attr->st_mtim;
    // Nothing but the change time: the kernel sends this for e.g.
    // chown(f, -1, -1), which updates ctime on a native filesystem.
    if (r.to_set == 0) r.to_set = R::kCtime;
    auto st = view(req).setattr(node(req, ino), r, file(fi), caller(req));
    if (!st) {
      fuse_reply_err(req, st.error());
      return;
    }
    fuse_reply_attr(req, &*st, ctx(req).attr_timeout);
  });
}

}  // namespace scopefs::fs::ops
