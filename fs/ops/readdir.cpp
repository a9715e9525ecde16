// readdir and readdirplus: fill one reply buffer from the core's entries.
// For readdirplus every entry the core emits with a node counts one lookup;
// an entry that does not fit is undone with forget (STYLE rule 14).
#include "fs/ops/ops.hpp"

#include <vector>

namespace scopefs::fs::ops {
namespace {

void do_readdir(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi, bool plus) {
  View& v = view(req);
  DirHandle* dh = dir(fi);
  std::vector<char> buf(size);
  size_t used = 0;
  auto r = v.readdir(*dh, off, plus, [&](const DirItem& it) {
    std::string name(it.name);
    size_t n;
    if (plus) {
      fuse_entry_param p{};
      if (it.node) {
        p = entry_param(req, Entry{it.node, it.attr});
      } else {
        p.attr = it.attr;  // "." and "..": no lookup
      }
      n = fuse_add_direntry_plus(req, buf.data() + used, size - used, name.c_str(), &p,
                                 it.next_off);
    } else {
      n = fuse_add_direntry(req, buf.data() + used, size - used, name.c_str(), &it.attr,
                            it.next_off);
    }
    if (n > size - used) {
      if (plus && it.node && !it.node->pinned) v.forget(it.node, 1);
      return false;
    }
    used += n;
    return true;
  });
  if (!r && used == 0) {
    fuse_reply_err(req, r.error());
    return;
  }
  fuse_reply_buf(req, buf.data(), used);
}

}  // namespace

void readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  (void)ino;
  checked(req, "readdir", [&] { do_readdir(req, size, off, fi, false); });
}

void readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  (void)ino;
  checked(req, "readdirplus", [&] { do_readdir(req, size, off, fi, true); });
}

}  // namespace scopefs::fs::ops
