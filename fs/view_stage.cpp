// Held changes in the view: the agent sees the real tree plus the overlay
// (fs/stage.hpp); staged mutations change only the overlay. See
// docs/approvals.md for the semantics of each operation.
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "fs/view.hpp"

namespace scopefs::fs {
namespace {

std::string encode_handle(const sys::FileHandle& h) {
  std::string v;
  for (int i = 3; i >= 0; --i)
    v.push_back(static_cast<char>((static_cast<uint32_t>(h.type) >> (8 * i)) & 0xff));
  v += h.bytes;
  return v;
}

bool decode_handle(const std::string& v, int mount_id, sys::FileHandle& h) {
  if (v.size() < 5) return false;
  uint32_t t = 0;
  for (size_t i = 0; i < 4; ++i) t = (t << 8) | static_cast<unsigned char>(v[i]);
  h.type = static_cast<int>(t);
  h.mount_id = mount_id;
  h.bytes = v.substr(4);
  return true;
}

uint32_t dt_of(mode_t type) { return (type & S_IFMT) >> 12; }

int64_t now_ns() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// The later of `t` and `ns` (ns < 0: none).
void at_least(struct timespec& t, int64_t ns) {
  if (ns < 0) return;
  int64_t cur = static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
  if (ns <= cur) return;
  t.tv_sec = static_cast<time_t>(ns / 1000000000);
  t.tv_nsec = static_cast<long>(ns % 1000000000);
}

}  // namespace

bool View::same_object(const Inode* node, const StageObj& o) {
  // An inode number the real tree reused for a new file is not the object
  // the overlay knows: compare file handles when both are known.
  if (o.handle.empty() || !node->has_handle || node->key().dev == kUpperDev) return true;
  return encode_handle(node->handle) == o.handle;
}

ObjId View::obj_id(const Inode* node) const {
  if (node->key().dev == kUpperDev) return ObjId{0, node->key().ino};
  return ObjId{static_cast<uint32_t>(node->bind() + 1), node->key().ino};
}

bool View::is_held(Access level, OpKind op, Inode* dir, std::string_view name, Inode* node) {
  if (!stage_) return false;
  if (level == Access::Stage) return true;
  if (level == Access::Write) {
    if (cfg_.approval.holds(op_name(op))) return true;
    if (cfg_.approval.max_deletes && (op == OpKind::Unlink || op == OpKind::Rmdir) &&
        deletes_.load(std::memory_order_relaxed) >= *cfg_.approval.max_deletes)
      return true;
  }
  // Anything the overlay already changed stays in the overlay.
  if (dir && dir->key().dev == kUpperDev) return true;
  if (node && (node->key().dev == kUpperDev || node->upper.load())) return true;
  if (!stage_->active()) return false;
  std::lock_guard lk(stage_->mu());
  if (node && stage_->obj(obj_id(node))) return true;
  if (!dir) return false;
  if (const StageObj* o = stage_->obj(obj_id(dir)); o && o->opaque) return true;
  if (name.empty()) return false;
  if (stage_->entry(obj_id(dir), name)) return true;
  // The named object's own held state (a copy-up, a link count).
  if (auto pfd = path_fd(dir)) {
    std::string n(name);
    auto st = sys::stat_at((*pfd)->get(), n.c_str(), AT_SYMLINK_NOFOLLOW);
    const Bind& b = binds_[static_cast<size_t>(dir->bind())];
    if (st && st->st_dev == b.dev &&
        stage_->obj(ObjId{static_cast<uint32_t>(dir->bind() + 1), st->st_ino}))
      return true;
  }
  return false;
}

// Caller holds stage_->mu().
bool View::lower_visible(Inode* dir) {
  if (dir->key().dev == kUpperDev) return false;
  const StageObj* o = stage_->obj(obj_id(dir));
  return !(o && o->opaque);
}

// Caller holds stage_->mu().
bool View::lower_has(Inode* dir, std::string_view name) {
  if (!lower_visible(dir)) return false;
  auto pfd = path_fd(dir);
  if (!pfd) return false;
  std::string n(name);
  return sys::stat_at((*pfd)->get(), n.c_str(), AT_SYMLINK_NOFOLLOW).ok();
}

void View::stage_fix(Inode* node, struct stat& st) {
  if (node->key().dev == kUpperDev) st.st_ino = report_ino(kUpperDev, node->key().ino);
  else st.st_ino = report_ino(node->key().dev, node->key().ino);
  if (!stage_->active()) return;
  std::lock_guard lk(stage_->mu());
  ObjId id = obj_id(node);
  if (const StageObj* o = stage_->obj(id))
    if (o->nlink >= 0 && same_object(node, *o)) st.st_nlink = static_cast<nlink_t>(o->nlink);
  if (const StageTimes* t = stage_->times(id)) {
    at_least(st.st_mtim, t->mtime_ns);
    at_least(st.st_ctim, t->ctime_ns);
  }
}

Result<sys::UniqueFd> View::open_upper(uint64_t upper, int flags) {
  return sys::open_at(stage_->obj_dirfd(), StageLayer::upper_name(upper).c_str(),
                      flags | O_NOFOLLOW | O_CLOEXEC);
}

Result<Entry> View::stage_lookup(Inode* parent, std::string_view name, const StageEntry& e,
                                 Access level) {
  uint64_t gen = policy_gen_.load(std::memory_order_acquire);
  Inode* node = nullptr;
  if (e.target.upper()) {
    InodeKey key{kUpperDev, e.target.ino};
    auto st = sys::stat_at(stage_->obj_dirfd(), StageLayer::upper_name(e.target.ino).c_str(),
                           AT_SYMLINK_NOFOLLOW);
    if (!st) return Errno{st.error() == ENOENT ? EIO : st.error()};
    auto fresh = std::make_unique<Inode>(key, st->st_mode & S_IFMT, parent->bind(), next_serial_++);
    fresh->upper.store(e.target.ino);
    node = table_.acquire(key, std::move(fresh), parent, name);
  } else {
    size_t b = e.target.bind1 - 1;
    if (b >= binds_.size()) return Errno{EIO};
    InodeKey key{binds_[b].dev, e.target.ino};
    node = table_.acquire(key, nullptr, parent, name);
    if (!node) {
      // A lower object moved by a held rename: reopen it by its handle.
      std::string hv;
      {
        std::lock_guard lk(stage_->mu());
        if (const StageObj* o = stage_->obj(e.target)) hv = o->handle;
      }
      sys::FileHandle h;
      int mfd = mount_fd_for(binds_[b].mount_id);
      if (!decode_handle(hv, binds_[b].mount_id, h) || mfd < 0) return Errno{ESTALE};
      auto fd = sys::open_by_handle(mfd, h, O_PATH);
      if (!fd) return Errno{fd.error() == ESTALE ? ENOENT : fd.error()};
      auto st = sys::stat_fd(fd->get());
      if (!st) return Errno{st.error()};
      if (st->st_ino != e.target.ino) return Errno{ESTALE};
      auto fresh =
          std::make_unique<Inode>(key, st->st_mode & S_IFMT, static_cast<int>(b), next_serial_++);
      fresh->handle = h;
      fresh->has_handle = true;
      uint64_t serial = fresh->serial();
      node = table_.acquire(key, std::move(fresh), parent, name);
      if (node->serial() == serial)
        fds_.put(serial, std::make_shared<const sys::UniqueFd>(std::move(fd).value()));
    }
    uint64_t up = 0;
    {
      std::lock_guard lk(stage_->mu());
      if (const StageObj* o = stage_->obj(e.target)) up = o->upper;
    }
    if (up != node->upper.load()) {
      node->upper.store(up);
      fds_.erase(node->serial());
    }
  }
  node->access.store(level, std::memory_order_relaxed);
  node->access_gen.store(gen, std::memory_order_release);
  auto st = getattr(node, nullptr);
  if (!st) {
    forget(node, 1);
    return Errno{st.error()};
  }
  return Entry{node, *st};
}

// Caller holds stage_->mu().
Result<void> View::copy_up(Inode* node, StageLog& log) {
  if (node->key().dev == kUpperDev) return {};
  ObjId id = obj_id(node);
  const StageObj* cur = stage_->obj(id);
  if (cur && cur->upper) {
    node->upper.store(cur->upper);
    return {};
  }
  const Bind& b = binds_[static_cast<size_t>(node->bind())];
  if (node->key().dev != b.dev) return Errno{EXDEV};  // another filesystem inside the bind
  auto src = path_fd(node);
  if (!src) return Errno{src.error()};
  auto st = sys::stat_fd((*src)->get());
  if (!st) return Errno{st.error()};
  uint64_t n = stage_->new_upper();
  std::string un = StageLayer::upper_name(n);
  int od = stage_->obj_dirfd();
  struct timespec times[2] = {st->st_atim, st->st_mtim};
  Result<void> r;
  if (S_ISREG(st->st_mode)) {
    sys::ProcPath pp((*src)->get());
    auto in = sys::open_at(AT_FDCWD, pp.c_str(), O_RDONLY | O_NOATIME);
    if (!in) return Errno{in.error()};
    auto out = sys::open_at(od, un.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (!out) return Errno{out.error()};
    r = copy_content(in->get(), out->get());
    if (r) r = copy_xattrs(in->get(), out->get());
    if (r) r = sys::chown_fd(out->get(), st->st_uid, st->st_gid);
    if (r) r = sys::chmod_fd(out->get(), st->st_mode & 07777);
    if (r) r = sys::utimens_fd(out->get(), times);
  } else if (S_ISDIR(st->st_mode)) {
    // A directory's upper copy carries its attributes only; its names stay
    // the lower directory's plus the overlay's entries.
    r = sys::mkdir_at(od, un.c_str(), 0700);
    if (r) {
      auto d = sys::open_at(od, un.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      auto in = sys::open_at((*src)->get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (!d) r = Errno{d.error()};
      if (r && in) r = copy_xattrs(in->get(), d->get());
      if (r) r = sys::chown_fd(d->get(), st->st_uid, st->st_gid);
      if (r) r = sys::chmod_fd(d->get(), st->st_mode & 07777);
      if (r) r = sys::utimens_fd(d->get(), times);
    }
  } else if (S_ISLNK(st->st_mode)) {
    auto t = sys::readlink_at((*src)->get(), "");
    if (!t) return Errno{t.error()};
    r = sys::symlink_at(t->c_str(), od, un.c_str());
    if (r && ::fchownat(od, un.c_str(), st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) != 0)
      r = Errno{errno};
    if (r) r = sys::utimens_at(od, un.c_str(), times, AT_SYMLINK_NOFOLLOW);
  } else {
    r = sys::mknod_at(od, un.c_str(), st->st_mode, st->st_rdev);
    if (r && ::fchownat(od, un.c_str(), st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) != 0)
      r = Errno{errno};
    if (r && ::fchmodat(od, un.c_str(), st->st_mode & 07777, 0) != 0) r = Errno{errno};
    if (r) r = sys::utimens_at(od, un.c_str(), times, AT_SYMLINK_NOFOLLOW);
  }
  if (!r) {
    (void)sys::unlink_at(od, un.c_str(), S_ISDIR(st->st_mode) ? AT_REMOVEDIR : 0);
    return r;
  }
  StageObj o = cur ? *cur : StageObj{};
  o.upper = n;
  o.type = st->st_mode & S_IFMT;
  if (o.nlink < 0) o.nlink = static_cast<int64_t>(st->st_nlink);
  if (o.handle.empty() && node->has_handle) o.handle = encode_handle(node->handle);
  stage_->set_obj(id, o, log);
  node->upper.store(n);
  fds_.erase(node->serial());
  return {};
}

// Caller holds stage_->mu().
void View::keep_handle(Inode* node, StageLog& log) {
  if (node->key().dev == kUpperDev) return;
  ObjId id = obj_id(node);
  const StageObj* cur = stage_->obj(id);
  if (cur && !cur->handle.empty()) return;
  StageObj o = cur ? *cur : StageObj{};
  o.type = node->type();
  if (node->has_handle) o.handle = encode_handle(node->handle);
  stage_->set_obj(id, o, log);
}

// Caller holds stage_->mu().
void View::stamp(Inode* node, bool mtime, int64_t now, StageLog& log) {
  if (!node->synthetic()) stage_->stamp(obj_id(node), mtime, now, log);
}

// Caller holds stage_->mu().
void View::bump_nlink(Inode* node, int delta, StageLog& log) {
  if (node->synthetic()) return;
  ObjId id = obj_id(node);
  const StageObj* cur = stage_->obj(id);
  StageObj o = cur ? *cur : StageObj{};
  if (o.nlink < 0) {
    auto fd = attr_fd(node);
    auto st = fd ? sys::stat_fd((*fd)->get()) : Result<struct stat>(Errno{EIO});
    o.nlink = st ? static_cast<int64_t>(st->st_nlink) : (node->is_dir() ? 2 : 1);
  }
  o.nlink = std::max<int64_t>(0, o.nlink + delta);
  o.type = node->type();
  if (o.handle.empty() && node->has_handle && node->key().dev != kUpperDev)
    o.handle = encode_handle(node->handle);
  stage_->set_obj(id, o, log);
}

// Caller holds stage_->mu().
void View::remove_name(Inode* dir, std::string_view name, StageLog& log) {
  // A whiteout whenever the directory has a lower one, even if it has no
  // such name now: an approval may put the name there later, and the
  // overlay must still say it is gone.
  std::string n(name);
  if (lower_visible(dir)) stage_->set_entry(obj_id(dir), n, StageEntry{true, {}, 0}, log);
  else stage_->set_entry(obj_id(dir), n, std::nullopt, log);
}

// Caller holds stage_->mu().
void View::stage_commit(Change& c, StageLog& log, int err) {
  if (err == 0) stage_->claim_pending(log);
  if (err != 0) {
    // Put the overlay back as it was.
    for (auto it = log.undo.rbegin(); it != log.undo.rend(); ++it)
      stage_->apply_raw(it->first, it->second);
    for (auto it = log.side.rbegin(); it != log.side.rend(); ++it)
      stage_->apply_raw(it->first, it->second);
  } else {
    c.stage_undo = log.undo;
    c.stage_touch.assign(log.touched.begin(), log.touched.end());
    for (const auto& [k, old] : log.undo) c.stage_redo.emplace_back(k, stage_->value_of(k));
    for (const auto& [k, old] : log.side) c.stage_redo.emplace_back(k, stage_->value_of(k));
    c.stage_redo.emplace_back(StageLayer::kNextKey, stage_->next_value());
  }
  finish_change(c, err);
}

Result<std::vector<DirHandle::Item>> View::list_merged(Inode* dir) {
  std::vector<DirHandle::Item> items;
  std::lock_guard lk(stage_->mu());
  const auto* ents = stage_->entries(obj_id(dir));
  if (lower_visible(dir)) {
    auto p = path_fd(dir);
    if (!p) return Errno{p.error()};
    auto fd = sys::open_at((*p)->get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (!fd) return Errno{fd.error()};
    for (;;) {
      auto batch = sys::read_dir(fd->get());
      if (!batch) return Errno{batch.error()};
      if (batch->empty()) break;
      for (auto& e : *batch) {
        if (e.name == "." || e.name == "..") continue;
        if (ents && ents->count(e.name)) continue;
        items.push_back({std::move(e.name), e.type, report_ino(dir->key().dev, e.ino)});
      }
    }
  }
  if (ents) {
    for (const auto& [name, e] : *ents) {
      if (e.whiteout) continue;
      uint64_t ino = e.target.upper() ? report_ino(kUpperDev, e.target.ino)
                                      : report_ino(binds_[e.target.bind1 - 1].dev, e.target.ino);
      items.push_back({name, dt_of(e.type), ino});
    }
  }
  return items;
}

Result<Entry> View::stage_make(Inode* parent, std::string_view name, mode_t mode, dev_t rdev,
                               const std::string* target, int open_flags, const Caller& caller,
                               Change& c, std::unique_ptr<OpenFile>* out) {
  c.held = true;
  std::lock_guard lk(stage_->mu());
  if (auto ex = lookup(parent, name)) {
    forget(ex->node, 1);
    return Errno{EEXIST};
  } else if (ex.error() != ENOENT) {
    return Errno{ex.error()};
  }
  const mode_t type = target ? S_IFLNK : (mode & S_IFMT);
  uint64_t n = stage_->new_upper();
  std::string un = StageLayer::upper_name(n);
  int od = stage_->obj_dirfd();
  c.obj = ObjRef{od, un};
  if (auto b = gate_.begin(c); !b) return Errno{b.error()};
  // Owner: the caller; group: the parent's if it is set-group-ID.
  gid_t gid = caller.gid;
  mode_t perm = mode & 07777;
  if (auto pst = getattr(parent, nullptr); pst && (pst->st_mode & S_ISGID)) {
    gid = pst->st_gid;
    if (S_ISDIR(type)) perm |= S_ISGID;
  }
  Result<void> r;
  sys::UniqueFd fd;
  if (S_ISREG(type)) {
    auto f = sys::open_at(od, un.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, perm);
    if (f) fd = std::move(f).value();
    else r = Errno{f.error()};
  } else if (S_ISDIR(type)) {
    r = sys::mkdir_at(od, un.c_str(), perm);
  } else if (target) {
    r = sys::symlink_at(target->c_str(), od, un.c_str());
  } else {
    r = sys::mknod_at(od, un.c_str(), (mode & S_IFMT) | perm, rdev);
  }
  if (r && ::fchownat(od, un.c_str(), caller.uid, gid, AT_SYMLINK_NOFOLLOW) != 0) r = Errno{errno};
  // chown clears set-ID bits: set the mode after it.
  if (r && !target && ::fchmodat(od, un.c_str(), perm, 0) != 0) r = Errno{errno};
  StageLog log;
  if (!r) {
    (void)sys::unlink_at(od, un.c_str(), S_ISDIR(type) ? AT_REMOVEDIR : 0);
    stage_commit(c, log, r.error());
    return Errno{r.error()};
  }
  StageObj o;
  o.upper = n;
  o.nlink = S_ISDIR(type) ? 2 : 1;
  o.type = type;
  stage_->set_obj(ObjId{0, n}, o, log);
  stage_->set_entry(obj_id(parent), std::string(name), StageEntry{false, ObjId{0, n}, type}, log);
  if (S_ISDIR(type)) bump_nlink(parent, +1, log);
  stamp(parent, true, now_ns(), log);
  stage_commit(c, log, 0);
  auto e = lookup(parent, name);
  if (!e) return Errno{e.error()};
  if (out) {
    auto of = std::make_unique<OpenFile>();
    // Reopen with the caller's flags (the create made it O_RDWR).
    int oflags = (open_flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY));
    auto f = open_upper(n, oflags);
    if (!f) {
      forget(e->node, 1);
      return Errno{f.error()};
    }
    of->fd = std::move(f).value();
    of->node = e->node;
    of->writable = (open_flags & O_ACCMODE) != O_RDONLY;
    of->held = true;
    if (of->writable) e->node->open_writers.fetch_add(1);
    e->node->open_handles.fetch_add(1);
    *out = std::move(of);
  }
  return e;
}

Result<void> View::stage_remove(Inode* parent, std::string_view name, bool dir, Change& c) {
  c.held = true;
  std::lock_guard lk(stage_->mu());
  auto ex = lookup(parent, name);
  if (!ex) return Errno{ex.error()};
  Inode* t = ex->node;
  struct Forget {
    View* v;
    Inode* n;
    ~Forget() { v->forget(n, 1); }
  } guard{this, t};
  if (dir) {
    if (!t->is_dir()) return Errno{ENOTDIR};
    auto items = list_merged(t);
    if (!items) return Errno{items.error()};
    if (!items->empty()) return Errno{ENOTEMPTY};
  } else if (t->is_dir()) {
    return Errno{EISDIR};
  }
  auto fd = attr_fd(t);
  if (!fd) return Errno{fd.error()};
  c.obj = ObjRef{(*fd)->get(), ""};
  if (auto b = gate_.begin(c); !b) return b;
  StageLog log;
  remove_name(parent, name, log);
  if (dir) {
    bump_nlink(parent, -1, log);
    bump_nlink(t, -2, log);
  } else {
    bump_nlink(t, -1, log);
  }
  const int64_t now = now_ns();
  stamp(parent, true, now, log);
  if (!dir) stamp(t, false, now, log);  // a remaining link's ctime
  stage_->touch(obj_id(t), log);
  stage_commit(c, log, 0);
  table_.unlink_name(t->key(), parent, name);
  return {};
}

Result<void> View::stage_rename(Inode* parent, std::string_view name, Inode* newparent,
                                std::string_view newname, unsigned flags, Change& c) {
  c.held = true;
  std::lock_guard lk(stage_->mu());
  auto src = lookup(parent, name);
  if (!src) return Errno{src.error()};
  Inode* s = src->node;
  Inode* d = nullptr;
  struct Forget {
    View* v;
    Inode** n;
    ~Forget() {
      if (*n) v->forget(*n, 1);
    }
  } g1{this, &s}, g2{this, &d};
  auto dst = lookup(newparent, newname);
  if (dst) d = dst->node;
  else if (dst.error() != ENOENT) return Errno{dst.error()};
  if ((flags & RENAME_NOREPLACE) && d) return Errno{EEXIST};
  if ((flags & RENAME_EXCHANGE) && !d) return Errno{ENOENT};
  if (d == s) return {};  // two names of one object: nothing to do
  if (d && !(flags & RENAME_EXCHANGE)) {
    if (s->is_dir() && !d->is_dir()) return Errno{ENOTDIR};
    if (!s->is_dir() && d->is_dir()) return Errno{EISDIR};
    if (d->is_dir()) {
      auto items = list_merged(d);
      if (!items) return Errno{items.error()};
      if (!items->empty()) return Errno{ENOTEMPTY};
    }
  }
  // A directory's move would change the level of paths below it: EXDEV, so
  // that tools copy entry by entry (the policy then judges each).
  if ((s->is_dir() || (d && (flags & RENAME_EXCHANGE) && d->is_dir())) &&
      cfg_.policy.subtree_may_differ(c.path, c.path2))
    return Errno{EXDEV};
  auto sfd = attr_fd(s);
  if (!sfd) return Errno{sfd.error()};
  FdRef dfd;
  if (d) {
    auto r = attr_fd(d);
    if (!r) return Errno{r.error()};
    dfd = *r;
  }
  c.obj = ObjRef{(*sfd)->get(), ""};
  c.obj2 = d ? ObjRef{dfd->get(), ""} : ObjRef{};  // the victim, if any
  if (auto b = gate_.begin(c); !b) return b;
  StageLog log;
  keep_handle(s, log);
  stage_->set_entry(obj_id(newparent), std::string(newname),
                    StageEntry{false, obj_id(s), s->type()}, log);
  if (flags & RENAME_EXCHANGE) {
    keep_handle(d, log);
    stage_->set_entry(obj_id(parent), std::string(name), StageEntry{false, obj_id(d), d->type()},
                      log);
    if (parent != newparent) {
      if (s->is_dir()) bump_nlink(parent, -1, log), bump_nlink(newparent, +1, log);
      if (d->is_dir()) bump_nlink(newparent, -1, log), bump_nlink(parent, +1, log);
    }
    stage_->touch(obj_id(d), log);
  } else {
    remove_name(parent, name, log);
    if (d) {
      if (d->is_dir()) {
        bump_nlink(newparent, -1, log);
        bump_nlink(d, -2, log);
      } else {
        bump_nlink(d, -1, log);
      }
      stage_->touch(obj_id(d), log);
    }
    if (s->is_dir() && parent != newparent) {
      bump_nlink(parent, -1, log);
      bump_nlink(newparent, +1, log);
    }
  }
  const int64_t now = now_ns();
  stamp(parent, true, now, log);
  if (newparent != parent) stamp(newparent, true, now, log);
  stamp(s, false, now, log);
  if (d) stamp(d, false, now, log);
  stage_->touch(obj_id(s), log);
  // The source's record state: where it is now (its own object).
  c.obj2 = ObjRef{(*sfd)->get(), ""};
  stage_commit(c, log, 0);
  if ((flags & RENAME_EXCHANGE) && d) {
    table_.relink(s->key(), parent, name, newparent, newname);
    table_.relink(d->key(), newparent, newname, parent, name);
  } else {
    if (d) table_.unlink_name(d->key(), newparent, newname);
    table_.relink(s->key(), parent, name, newparent, newname);
  }
  if (s->is_dir() || (d && d->is_dir())) policy_gen_.fetch_add(1, std::memory_order_acq_rel);
  return {};
}

Result<Entry> View::stage_link(Inode* node, Inode* newparent, std::string_view newname, Change& c) {
  c.held = true;
  std::lock_guard lk(stage_->mu());
  if (auto ex = lookup(newparent, newname)) {
    forget(ex->node, 1);
    return Errno{EEXIST};
  } else if (ex.error() != ENOENT) {
    return Errno{ex.error()};
  }
  if (node->is_dir()) return Errno{EPERM};
  auto fd = attr_fd(node);
  if (!fd) return Errno{fd.error()};
  c.obj = ObjRef{(*fd)->get(), ""};
  c.obj2 = ObjRef{(*fd)->get(), ""};
  if (auto b = gate_.begin(c); !b) return Errno{b.error()};
  StageLog log;
  keep_handle(node, log);
  stage_->set_entry(obj_id(newparent), std::string(newname),
                    StageEntry{false, obj_id(node), node->type()}, log);
  bump_nlink(node, +1, log);
  const int64_t now = now_ns();
  stamp(newparent, true, now, log);
  stamp(node, false, now, log);
  stage_->touch(obj_id(node), log);
  stage_commit(c, log, 0);
  return lookup(newparent, newname);
}

bool View::obj_busy(const ObjId& id) {
  InodeKey key{kUpperDev, id.ino};
  if (!id.upper()) {
    if (id.bind1 == 0 || id.bind1 > binds_.size()) return false;
    key = InodeKey{binds_[id.bind1 - 1].dev, id.ino};
  }
  bool busy = false;
  table_.with(key,
              [&](Inode& n) { busy = n.open_handles.load() > 0 || n.open_writers.load() > 0; });
  return busy;
}

Result<void> View::stage_xattr(Inode* node, Change& c, bool must_exist,
                               const std::function<Result<void>(int fd)>& apply) {
  if (node->is_symlink()) return Errno{EPERM};
  std::lock_guard lk(stage_->mu());
  StageLog log;
  c.held = true;
  if (auto r = copy_up(node, log); !r) return r;
  stage_->touch(obj_id(node), log);
  auto p = attr_fd(node);
  if (!p) return Errno{p.error()};
  c.obj = ObjRef{(*p)->get(), ""};
  std::string old(65536, '\0');
  auto g = sys::getxattr_fd((*p)->get(), c.path2.c_str(), old.data(), old.size());
  if (g) {
    old.resize(*g);
    c.xattr_before = std::move(old);
  } else if (must_exist) {
    stage_commit(c, log, g.error());
    return Errno{g.error()};
  }
  if (auto b = gate_.begin(c); !b) {
    stage_commit(c, log, b.error());
    return b;
  }
  auto r = apply((*p)->get());
  stage_commit(c, log, r.error());
  return r;
}

void View::stage_changed(const std::vector<ObjId>& objs,
                         const std::vector<std::pair<ObjId, std::string>>& names) {
  auto key_of = [&](const ObjId& id) -> std::optional<InodeKey> {
    if (id.upper()) return InodeKey{kUpperDev, id.ino};
    if (id.bind1 == 0 || id.bind1 > binds_.size()) return std::nullopt;
    return InodeKey{binds_[id.bind1 - 1].dev, id.ino};
  };
  std::vector<uint64_t> inval_nodes;
  std::vector<std::pair<uint64_t, std::string>> inval_names_pre;
  for (const ObjId& id : objs) {
    auto key = key_of(id);
    if (!key) continue;
    uint64_t up = 0;
    {
      std::lock_guard lk(stage_->mu());
      if (const StageObj* o = stage_->obj(id)) up = o->upper;
    }
    uint64_t serial = 0;
    uint64_t nodeid = 0;
    bool found = table_.with(*key, [&](Inode& n) {
      if (n.key().dev != kUpperDev) n.upper.store(up);
      n.cache_mtime_ns.store(-1);
      serial = n.serial();
      nodeid = &n == root_ ? 1 : reinterpret_cast<uint64_t>(&n);
    });
    if (found) {
      fds_.erase(serial);
      inval_nodes.push_back(nodeid);
      for (auto& [parent, name] : table_.names_of(*key))
        if (parent)
          inval_names_pre.emplace_back(parent == root_ ? 1 : reinterpret_cast<uint64_t>(parent),
                                       name);
    }
  }
  std::vector<std::pair<uint64_t, std::string>> inval_names = std::move(inval_names_pre);
  for (const auto& [dir, name] : names) {
    auto key = key_of(dir);
    if (!key) continue;
    uint64_t nodeid = 0;
    if (table_.with(*key,
                    [&](Inode& n) { nodeid = &n == root_ ? 1 : reinterpret_cast<uint64_t>(&n); }))
      inval_names.emplace_back(nodeid, name);
  }
  // Bind roots are keyed like any lower object; the root of the view may be synthetic.
  policy_gen_.fetch_add(1, std::memory_order_acq_rel);
  if (notify_inode)
    for (uint64_t id : inval_nodes) notify_inode(id);
  if (notify_entry)
    for (auto& [p, n] : inval_names) notify_entry(p, n);
}

}  // namespace scopefs::fs
