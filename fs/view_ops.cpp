// Mutations, open files, directories, xattrs and statfs of the view.
//
// Shape of every mutation: build a Change → permit_* (policy) → resolve the
// fds → gate begin (intent, before-image) → the syscall relative to
// directory fds → finish_change (outcome). Writes through a handle form one
// session: begin at the first mutation, end at release or fsync (the after-state taken at each
// close). Create-type syscalls run under the caller's fsuid/fsgid (as_caller) so new objects belong
// to the caller, as on a native filesystem.
#include <dirent.h>
#include <linux/fs.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cstring>

#include "fs/sys/creds.hpp"
#include "fs/view.hpp"

namespace scopefs::fs {
namespace {

bool valid_name(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos;
}

// What a stat the view took tells the gate (Change::Seen).
Change::Seen seen(const Result<struct stat>& st) {
  Change::Seen s;
  if (st) {
    s.known = true;
    s.st = *st;
  } else if (st.error() == ENOENT) {
    s.known = true;
    s.absent = true;
  }
  return s;
}

int64_t mtime_ns(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

// An xattr's current value (nullopt: none, or unreadable).
std::optional<std::string> xattr_value_of(int fd, const char* name) {
  std::string v(65536, '\0');
  auto g = sys::getxattr_fd(fd, name, v.data(), v.size());
  if (!g) return std::nullopt;
  v.resize(*g);
  return v;
}

}  // namespace

template <typename F>
auto View::as_caller(const Caller& caller, F f) -> decltype(f()) {
  {
    sys::CredGuard g(caller.uid, caller.gid);
    auto r = f();
    if (r.ok() || r.error() != EACCES || caller.uid == 0) return r;
  }
  // The caller may hold the permission through a supplementary group.
  auto groups = sys::proc_groups(caller.pid);
  if (!groups) return f();  // caller gone: keep the first answer's semantics
  sys::CredGuard g(caller.uid, caller.gid, &*groups);
  return f();
}

Result<Entry> View::mknod(Inode* parent, std::string_view name, mode_t mode, dev_t rdev,
                          const Caller& caller) {
  if (!valid_name(name)) return Errno{EINVAL};
  Change c{
      S_ISDIR(mode) ? OpKind::Mkdir : OpKind::Mknod, {}, {}, caller, static_cast<unsigned>(mode)};
  if (auto r = permit_child(c, parent, name); !r) return Errno{r.error()};
  if (is_held(child_access(parent, c.path), c.op, parent, name, nullptr))
    return stage_make(parent, name, mode, rdev, nullptr, 0, caller, c, nullptr);
  auto pfd = path_fd(parent);
  if (!pfd) return Errno{pfd.error()};
  std::string n(name);
  c.obj = ObjRef{(*pfd)->get(), n};
  if (auto b = gate_.begin(c); !b) return Errno{b.error()};
  auto r = as_caller(caller, [&] {
    return S_ISDIR(mode) ? sys::mkdir_at((*pfd)->get(), n.c_str(), mode & 07777)
                         : sys::mknod_at((*pfd)->get(), n.c_str(), mode, rdev);
  });
  finish_change(c, r.error());
  if (!r) return Errno{r.error()};
  return lookup_real(parent, name);
}

Result<Entry> View::mkdir(Inode* parent, std::string_view name, mode_t mode, const Caller& caller) {
  return mknod(parent, name, S_IFDIR | (mode & 07777), 0, caller);
}

Result<Entry> View::symlink(std::string_view target, Inode* parent, std::string_view name,
                            const Caller& caller) {
  if (!valid_name(name)) return Errno{EINVAL};
  Change c{OpKind::Symlink, {}, std::string(target), caller, 0};
  if (auto r = permit_child(c, parent, name); !r) return Errno{r.error()};
  if (is_held(child_access(parent, c.path), c.op, parent, name, nullptr)) {
    std::string t(target);
    return stage_make(parent, name, S_IFLNK | 0777, 0, &t, 0, caller, c, nullptr);
  }
  auto pfd = path_fd(parent);
  if (!pfd) return Errno{pfd.error()};
  std::string n(name), t(target);
  c.obj = ObjRef{(*pfd)->get(), n};
  if (auto b = gate_.begin(c); !b) return Errno{b.error()};
  auto r = as_caller(caller, [&] { return sys::symlink_at(t.c_str(), (*pfd)->get(), n.c_str()); });
  finish_change(c, r.error());
  if (!r) return Errno{r.error()};
  return lookup_real(parent, name);
}

Result<Entry> View::link(Inode* node, Inode* newparent, std::string_view newname,
                         const Caller& caller) {
  if (!valid_name(newname)) return Errno{EINVAL};
  Change c{OpKind::Link, {}, {}, caller, 0};
  c.path = table_.path_of(node);
  c.path2 = child_path(newparent, newname);
  if (node->synthetic() || newparent->synthetic()) return Errno{deny(c, EROFS).error()};
  // A link changes the source inode (its link count) and makes a new name:
  // both must be writable, so a read-only or hidden file cannot be given a
  // writable (or visible) second name.
  Access worst = config::most_restrictive(access_of(node), child_access(newparent, c.path2));
  if (auto r = permit(c, worst); !r) return Errno{r.error()};
  if (node->bind() != newparent->bind()) return Errno{EXDEV};
  if (is_held(worst, c.op, newparent, newname, node))
    return stage_link(node, newparent, newname, c);
  auto fd = path_fd(node);
  if (!fd) return Errno{fd.error()};
  auto npfd = path_fd(newparent);
  if (!npfd) return Errno{npfd.error()};
  std::string n(newname);
  c.obj = ObjRef{(*fd)->get(), ""};
  c.obj2 = ObjRef{(*npfd)->get(), n};
  if (auto b = gate_.begin(c); !b) return Errno{b.error()};
  auto r = sys::link_at((*fd)->get(), "", (*npfd)->get(), n.c_str(), AT_EMPTY_PATH);
  finish_change(c, r.error());
  if (!r) return Errno{r.error()};
  return lookup_real(newparent, newname);
}

Result<void> View::unlink(Inode* parent, std::string_view name, const Caller& caller) {
  Change c{OpKind::Unlink, {}, {}, caller, 0};
  if (auto r = permit_child(c, parent, name); !r) return r;
  if (is_held(child_access(parent, c.path), c.op, parent, name, nullptr))
    return stage_remove(parent, name, false, c);
  auto pfd = path_fd(parent);
  if (!pfd) return Errno{pfd.error()};
  std::string n(name);
  c.obj = ObjRef{(*pfd)->get(), n};
  auto st = sys::stat_at((*pfd)->get(), n.c_str(), AT_SYMLINK_NOFOLLOW);
  c.open_for_write = st && open_for_write(*st);
  c.open_in_view = st && open_in_view(*st);
  c.obj_seen = seen(st);
  if (auto b = gate_.begin(c); !b) return b;
  auto r = sys::unlink_at((*pfd)->get(), n.c_str(), 0);
  finish_change(c, r.error());
  if (r) deletes_.fetch_add(1, std::memory_order_relaxed);
  if (r && st) table_.unlink_name(InodeKey{st->st_dev, st->st_ino}, parent, name);
  return r;
}

Result<void> View::rmdir(Inode* parent, std::string_view name, const Caller& caller) {
  Change c{OpKind::Rmdir, {}, {}, caller, 0};
  if (auto r = permit_child(c, parent, name); !r) return r;
  if (is_held(child_access(parent, c.path), c.op, parent, name, nullptr))
    return stage_remove(parent, name, true, c);
  auto pfd = path_fd(parent);
  if (!pfd) return Errno{pfd.error()};
  std::string n(name);
  c.obj = ObjRef{(*pfd)->get(), n};
  if (auto b = gate_.begin(c); !b) return b;
  auto r = sys::unlink_at((*pfd)->get(), n.c_str(), AT_REMOVEDIR);
  finish_change(c, r.error());
  if (r) deletes_.fetch_add(1, std::memory_order_relaxed);
  return r;
}

Result<bool> View::subtree_levels_equal(int dirfd, const std::string& from, const std::string& to,
                                        Access bind_default, size_t& budget) {
  for (;;) {
    auto batch = sys::read_dir(dirfd);
    if (!batch) return Errno{batch.error()};
    if (batch->empty()) return true;
    for (const auto& e : *batch) {
      if (e.name == "." || e.name == "..") continue;
      if (budget == 0) return false;
      --budget;
      std::string f = from + "/" + e.name, t = to + "/" + e.name;
      if (cfg_.policy.access(f, bind_default) != cfg_.policy.access(t, bind_default)) return false;
      bool is_dir = e.type == DT_DIR;
      if (e.type == DT_UNKNOWN) {  // some filesystems do not report types
        auto st = sys::stat_at(dirfd, e.name.c_str(), AT_SYMLINK_NOFOLLOW);
        is_dir = st && S_ISDIR(st->st_mode);
      }
      if (is_dir) {
        auto sub = sys::open_at(dirfd, e.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        if (!sub) return Errno{sub.error()};
        auto eq = subtree_levels_equal(sub->get(), f, t, bind_default, budget);
        if (!eq || !*eq) return eq;
      }
    }
  }
}

Result<void> View::rename(Inode* parent, std::string_view name, Inode* newparent,
                          std::string_view newname, unsigned flags, const Caller& caller) {
  if (!valid_name(name) || !valid_name(newname)) return Errno{EINVAL};
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return Errno{EINVAL};
  Change c{OpKind::Rename, child_path(parent, name), child_path(newparent, newname), caller, flags};
  if (parent->synthetic() || newparent->synthetic()) return deny(c, EROFS);
  Access worst =
      config::most_restrictive(child_access(parent, c.path), child_access(newparent, c.path2));
  if (auto r = permit(c, worst); !r) return r;
  if (parent->bind() != newparent->bind()) return Errno{EXDEV};
  if (is_held(worst, c.op, parent, name, nullptr) ||
      is_held(worst, c.op, newparent, newname, nullptr))
    return stage_rename(parent, name, newparent, newname, flags, c);

  auto pfd = path_fd(parent);
  if (!pfd) return Errno{pfd.error()};
  auto npfd = path_fd(newparent);
  if (!npfd) return Errno{npfd.error()};
  std::string n(name), nn(newname);
  auto src = sys::stat_at((*pfd)->get(), n.c_str(), AT_SYMLINK_NOFOLLOW);
  if (!src) return Errno{src.error()};
  auto dst = sys::stat_at((*npfd)->get(), nn.c_str(), AT_SYMLINK_NOFOLLOW);

  // Moving a directory moves its subtree's view paths: if that could change
  // the level of anything below it, refuse with EXDEV so that tools fall back
  // to copy + delete, which the policy then judges entry by entry.
  const Access bind_default = binds_[static_cast<size_t>(parent->bind())].cfg.access;
  auto check_subtree = [&](int dfd, const std::string& nm, const std::string& from,
                           const std::string& to) -> Result<void> {
    if (!cfg_.policy.subtree_may_differ(from, to)) return {};
    auto d = sys::open_at(dfd, nm.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!d) return Errno{d.error()};
    size_t budget = 100000;
    auto eq = subtree_levels_equal(d->get(), from, to, bind_default, budget);
    if (!eq) return Errno{eq.error()};
    if (!*eq) {
      spdlog::info("rename {} -> {}: levels below it would change; EXDEV", from, to);
      return Errno{EXDEV};
    }
    return {};
  };
  const bool moves_dir =
      S_ISDIR(src->st_mode) || ((flags & RENAME_EXCHANGE) && dst && S_ISDIR(dst->st_mode));
  if (S_ISDIR(src->st_mode))
    if (auto r = check_subtree((*pfd)->get(), n, c.path, c.path2); !r) return r;
  if ((flags & RENAME_EXCHANGE) && dst && S_ISDIR(dst->st_mode))
    if (auto r = check_subtree((*npfd)->get(), nn, c.path2, c.path); !r) return r;

  c.obj = ObjRef{(*pfd)->get(), n};
  c.obj2 = ObjRef{(*npfd)->get(), nn};
  c.open_for_write = dst && open_for_write(*dst);
  c.open_in_view = dst && open_in_view(*dst);
  c.obj_seen = seen(src);
  c.obj2_seen = seen(dst);
  if (auto b = gate_.begin(c); !b) return b;
  auto r = sys::rename_at2((*pfd)->get(), n.c_str(), (*npfd)->get(), nn.c_str(), flags);
  finish_change(c, r.error());
  if (!r) return r;
  InodeKey src_key{src->st_dev, src->st_ino};
  if ((flags & RENAME_EXCHANGE) && dst) {
    InodeKey dst_key{dst->st_dev, dst->st_ino};
    table_.relink(src_key, parent, name, newparent, newname);
    table_.relink(dst_key, newparent, newname, parent, name);
  } else {
    if (dst) table_.unlink_name(InodeKey{dst->st_dev, dst->st_ino}, newparent, newname);
    table_.relink(src_key, parent, name, newparent, newname);
  }
  // The moved inodes' cached levels were reset by relink(); a directory
  // also moves the view paths of its whole subtree: every cached level is
  // then recomputed on next use. (A file rename, e.g. each atomic save,
  // leaves the other inodes' caches alone.)
  if (moves_dir) policy_gen_.fetch_add(1, std::memory_order_acq_rel);
  return {};
}

// ---------------------------------------------------------------------------
// Attributes

Result<struct stat> View::setattr(Inode* node, const SetattrRequest& req, const OpenFile* fh,
                                  const Caller& caller) {
  using R = SetattrRequest;
  OpKind op = (req.to_set & R::kSize)                          ? OpKind::Truncate
              : (req.to_set & R::kMode)                        ? OpKind::Chmod
              : (req.to_set & (R::kUid | R::kGid | R::kCtime)) ? OpKind::Chown
                                                               : OpKind::Utimens;
  Change c{op, {}, {}, caller, static_cast<unsigned>(req.to_set)};
  if (auto r = permit_node(c, node); !r) return Errno{r.error()};
  const bool held = is_held(access_of(node), op, nullptr, {}, node);
  std::unique_lock<std::recursive_mutex> slk;
  StageLog log;
  if (held) {
    slk = std::unique_lock<std::recursive_mutex>(stage_->mu());
    c.held = true;
    c.held_image = upper_backed(node);
    if (auto r = copy_up(node, log); !r) return Errno{r.error()};
    stage_->touch(obj_id(node), log);
    if (req.to_set & (R::kMtime | R::kMtimeNow)) stage_->clear_mtime(obj_id(node), log);
  }
  FdRef pathfd;
  int fd = -1;
  if (fh && (!held || fh->held)) {
    fd = fh->fd.get();
  } else {
    auto p = attr_fd(node);
    if (!p) {
      if (held) stage_commit(c, log, p.error());
      return Errno{p.error()};
    }
    pathfd = *p;
    fd = pathfd->get();
  }
  c.obj = ObjRef{fd, ""};
  c.open_for_write = node->open_writers.load() > 0;
  if (auto b = gate_.begin(c); !b) {
    if (held) {
      for (auto it = log.undo.rbegin(); it != log.undo.rend(); ++it)
        stage_->apply_raw(it->first, it->second);
    }
    return Errno{b.error()};
  }
  Result<void> r;
  if (req.to_set & R::kMode) r = sys::chmod_fd(fd, req.mode & 07777);
  if (r && (req.to_set & (R::kUid | R::kGid | R::kCtime))) {
    // kCtime alone: an ownership change to the same owner, which updates
    // the change time and nothing else.
    uid_t uid = (req.to_set & R::kUid) ? req.uid : static_cast<uid_t>(-1);
    gid_t gid = (req.to_set & R::kGid) ? req.gid : static_cast<gid_t>(-1);
    r = sys::chown_fd(fd, uid, gid);
  }
  if (r && (req.to_set & R::kSize)) r = sys::truncate_fd(fd, req.size, fh && fh->writable);
  const bool times = req.to_set & (R::kAtime | R::kMtime | R::kAtimeNow | R::kMtimeNow);
  struct timespec tv[2];
  tv[0].tv_sec = 0;
  tv[1].tv_sec = 0;
  tv[0].tv_nsec = (req.to_set & R::kAtimeNow) ? UTIME_NOW : UTIME_OMIT;
  tv[1].tv_nsec = (req.to_set & R::kMtimeNow) ? UTIME_NOW : UTIME_OMIT;
  if ((req.to_set & R::kAtime) && !(req.to_set & R::kAtimeNow)) tv[0] = req.atime;
  if ((req.to_set & R::kMtime) && !(req.to_set & R::kMtimeNow)) tv[1] = req.mtime;
  auto set_symlink_times = [&]() -> Result<void> {
    if (upper_backed(node)) {
      uint64_t n = node->key().dev == kUpperDev ? node->key().ino : node->upper.load();
      return sys::utimens_at(stage_->obj_dirfd(), StageLayer::upper_name(n).c_str(), tv,
                             AT_SYMLINK_NOFOLLOW);
    }
    auto [parent, name] = table_.parent_and_name(node);
    auto pfd = parent ? path_fd(parent) : Result<FdRef>(Errno{ENOENT});
    return pfd ? sys::utimens_at((*pfd)->get(), name.c_str(), tv, AT_SYMLINK_NOFOLLOW)
               : Result<void>(Errno{pfd.error()});
  };
  if (r && times) r = node->is_symlink() ? set_symlink_times() : sys::utimens_fd(fd, tv);
  if (held) {
    stage_commit(c, log, r.error());
    slk.unlock();  // before a handle's lock (end_session takes them the other way)
  } else {
    finish_change(c, r.error());
  }
  // The journal reads a symlink's target to record it, and reading a link
  // updates its atime (relatime): set the times the caller asked for again.
  if (r && times && node->is_symlink()) (void)set_symlink_times();
  if (r && (req.to_set & R::kSize) && fh) {
    // A truncate through a handle reshapes its write session, if any.
    auto* of = const_cast<OpenFile*>(fh);
    std::lock_guard lk(of->mu);
    if (of->session) gate_.reshaped(*of->session);
  }
  if (!r) return Errno{r.error()};
  // The journal's stat of the object after the change, if it took one.
  auto st = (!held && !node->is_symlink() && c.after_seen.known && !c.after_seen.absent)
                ? Result<struct stat>(c.after_seen.st)
                : sys::stat_fd(fd);
  if (st) {
    fix_attr(*st);
    if (stage_) stage_fix(node, *st);
  }
  return st;
}

// ---------------------------------------------------------------------------
// Files

Result<void> View::ensure_session(OpenFile& fh, const Caller& caller, OpKind kind, unsigned flags) {
  if (fh.session) return {};
  // The session's record is named by the mutation that starts it.
  auto c = std::make_unique<Change>(Change{kind, {}, {}, caller, flags});
  if (auto r = permit_node(*c, fh.node); !r) return r;
  c->obj = ObjRef{fh.fd.get(), ""};
  if (fh.held) {
    c->held = true;
    // A copy-up not yet recorded is undone by reject (this session's record
    // claims it); an upper copy that existed before needs its content kept.
    std::lock_guard lk(stage_->mu());
    c->held_image = !stage_->pending(obj_id(fh.node));
  }
  c->open_for_write = true;
  if (auto b = gate_.begin(*c); !b) return b;
  fh.session = std::move(c);
  return {};
}

void View::end_session(OpenFile& fh) {
  if (!fh.session) return;
  if (fh.session->held) {
    std::lock_guard lk(stage_->mu());
    StageLog log;
    stage_->touch(obj_id(fh.node), log);
    stage_commit(*fh.session, log, 0);
  } else {
    finish_change(*fh.session, 0);
  }
  fh.session.reset();
}

Result<std::unique_ptr<OpenFile>> View::open(Inode* node, int flags, const Caller& caller,
                                             bool& keep_cache) {
  keep_cache = false;
  if (node->synthetic() || node->is_dir()) return Errno{EISDIR};
  bool writable = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
  auto of = std::make_unique<OpenFile>();
  of->node = node;
  of->writable = writable;
  if (writable) {
    Change c{OpKind::Write, {}, {}, caller, static_cast<unsigned>(flags)};
    if (auto r = permit_node(c, node); !r) return Errno{r.error()};
    if (is_held(access_of(node), OpKind::Write, nullptr, {}, node)) {
      // Held writes go to the object's upper copy, made now.
      std::lock_guard lk(stage_->mu());
      StageLog log;
      if (auto r = copy_up(node, log); !r) return Errno{r.error()};
      stage_->add_pending(log);
      of->held = true;
      c.held = true;
      c.held_image = !stage_->pending(obj_id(node));
    }
    if (flags & O_TRUNC) {
      // Truncating at open destroys content: the write session (and its
      // before-image) starts before the open.
      auto p = path_fd(node);
      if (!p) return Errno{p.error()};
      auto sc = std::make_unique<Change>(std::move(c));
      sc->obj = ObjRef{(*p)->get(), ""};
      sc->open_for_write = true;
      if (auto b = gate_.begin(*sc); !b) return Errno{b.error()};
      of->session = std::move(sc);
    }
  } else if (access_of(node) == Access::Hide) {
    return Errno{EACCES};
  }
  int oflags = (flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW)) | O_CLOEXEC;
  Result<sys::UniqueFd> fd = Errno{EIO};
  int mfd = node->has_handle ? mount_fd_for(node->handle.mount_id) : -1;
  if (upper_backed(node)) {
    fd = open_upper(node->key().dev == kUpperDev ? node->key().ino : node->upper.load(), oflags);
  } else if (mfd >= 0) {
    fd = sys::open_by_handle(mfd, node->handle, oflags);
    if (!fd && fd.error() == ESTALE) fd = Errno{ENOENT};
  } else {
    auto p = path_fd(node);
    if (!p) {
      fd = Errno{p.error()};
    } else {
      sys::ProcPath pp((*p)->get());
      fd = sys::open_at(AT_FDCWD, pp.c_str(), oflags);
    }
  }
  if (!fd) {
    if (of->session) {
      finish_change(*of->session, fd.error());
      of->session.reset();
    }
    return Errno{fd.error()};
  }
  of->fd = std::move(fd).value();
  if (of->session) of->session->obj = ObjRef{of->fd.get(), ""};
  if (auto st = sys::stat_fd(of->fd.get())) {
    int64_t m = mtime_ns(*st);
    keep_cache = !(flags & O_TRUNC) && node->cache_mtime_ns.load() == m &&
                 node->cache_size.load() == st->st_size;
    node->cache_mtime_ns.store(m);
    node->cache_size.store(st->st_size);
  }
  if (writable) node->open_writers.fetch_add(1);
  node->open_handles.fetch_add(1);
  return of;
}

Result<std::pair<Entry, std::unique_ptr<OpenFile>>> View::create(Inode* parent,
                                                                 std::string_view name, mode_t mode,
                                                                 int flags, const Caller& caller) {
  if (!valid_name(name)) return Errno{EINVAL};
  Change c{OpKind::Create, {}, {}, caller, static_cast<unsigned>(flags)};
  if (auto r = permit_child(c, parent, name); !r) return Errno{r.error()};
  if (is_held(child_access(parent, c.path), c.op, parent, name, nullptr)) {
    std::unique_ptr<OpenFile> of;
    auto e = stage_make(parent, name, S_IFREG | (mode & 07777), 0, nullptr, flags, caller, c, &of);
    if (!e) {
      // O_CREAT without O_EXCL opens an existing file.
      if (e.error() == EEXIST && !(flags & O_EXCL)) {
        auto ex = lookup(parent, name);
        if (!ex) return Errno{ex.error()};
        bool keep = false;
        auto o = open(ex->node, flags & ~O_CREAT, caller, keep);
        if (!o) {
          forget(ex->node, 1);
          return Errno{o.error()};
        }
        return std::make_pair(*ex, std::move(o).value());
      }
      return Errno{e.error()};
    }
    return std::make_pair(*e, std::move(of));
  }
  auto pfd = path_fd(parent);
  if (!pfd) return Errno{pfd.error()};
  std::string n(name);
  // The kernel sends CREATE for a name it believes absent (a negative entry
  // it cached, or none), yet the real tree may have gained that name since
  // (changed outside the view). O_CREAT alone would open that file and the
  // journal would call it created — a rollback would then delete it. The
  // real call is O_EXCL; a name that exists is opened as an existing file
  // (its own record, with a before-image if O_TRUNC destroys content).
  auto open_existing = [&]() -> Result<std::pair<Entry, std::unique_ptr<OpenFile>>> {
    // The kernel checked no permission on a file it thought absent: open it
    // as the caller first (non-blocking: it may be a FIFO).
    auto probe = as_caller(caller, [&] {
      return sys::open_at((*pfd)->get(), n.c_str(),
                          (flags & O_ACCMODE) | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    });
    if (!probe) return Errno{probe.error()};
    auto ex = lookup(parent, name);
    if (!ex) return Errno{ex.error()};
    bool keep = false;
    auto o = open(ex->node, flags & ~(O_CREAT | O_EXCL), caller, keep);
    if (!o) {
      forget(ex->node, 1);
      return Errno{o.error()};
    }
    return std::make_pair(*ex, std::move(o).value());
  };
  if (!(flags & O_EXCL) && sys::stat_at((*pfd)->get(), n.c_str(), AT_SYMLINK_NOFOLLOW))
    return open_existing();
  c.obj = ObjRef{(*pfd)->get(), n};
  if (auto b = gate_.begin(c); !b) return Errno{b.error()};
  int oflags = (flags & ~O_NOCTTY) | O_CREAT | O_EXCL | O_NOFOLLOW;
  auto fd = as_caller(caller,
                      [&] { return sys::open_at((*pfd)->get(), n.c_str(), oflags, mode & 07777); });
  if (!fd) {
    finish_change(c, fd.error());
    if (fd.error() == EEXIST && !(flags & O_EXCL)) return open_existing();  // made meanwhile
    return Errno{fd.error()};
  }
  auto of = std::make_unique<OpenFile>();
  of->fd = std::move(fd).value();
  of->writable = (flags & O_ACCMODE) != O_RDONLY;
  if (of->writable) {
    // A file created for writing is one change: the create is the handle's
    // write session, so what is written before close lands in the create's
    // record (one record per new file, not a create and then a write).
    auto sc = std::make_unique<Change>(std::move(c));
    sc->obj = ObjRef{of->fd.get(), ""};
    sc->open_for_write = true;
    of->session = std::move(sc);
  } else {
    finish_change(c, 0);
  }
  auto e = lookup_real(parent, name);
  if (!e) {
    if (of->session) finish_change(*of->session, 0);
    return Errno{e.error()};
  }
  of->node = e->node;
  if (of->session) gate_.identify(*of->session, e->node->key().dev, e->node->key().ino);
  if (of->writable) e->node->open_writers.fetch_add(1);
  e->node->open_handles.fetch_add(1);
  e->node->cache_mtime_ns.store(mtime_ns(e->attr));
  e->node->cache_size.store(e->attr.st_size);
  return std::make_pair(*e, std::move(of));
}

Result<size_t> View::write(OpenFile& fh, const char* buf, size_t size, off_t off,
                           const Caller& caller) {
  std::lock_guard lk(fh.mu);
  if (auto r = ensure_session(fh, caller, OpKind::Write, 0); !r) return Errno{r.error()};
  auto n = sys::pwrite_fd(fh.fd.get(), buf, size, off);
  if (n) {
    // Another handle may write the same file: this session's stream would
    // miss those writes, so it rehashes at its end.
    if (fh.node->open_writers.load(std::memory_order_relaxed) > 1) gate_.reshaped(*fh.session);
    else gate_.wrote(*fh.session, buf, *n, off);
  }
  return n;
}

void View::track(OpenFile* fh) {
  std::lock_guard lk(handles_mu_);
  handles_.insert(fh);
}

void View::release_all() {
  std::unordered_set<OpenFile*> left;
  {
    std::lock_guard lk(handles_mu_);
    left.swap(handles_);
  }
  for (OpenFile* fh : left) release(std::unique_ptr<OpenFile>(fh));
}

void View::release(std::unique_ptr<OpenFile> fh) {
  {
    std::lock_guard lk(handles_mu_);
    handles_.erase(fh.get());
  }
  fh->node->open_handles.fetch_sub(1);
  {
    std::lock_guard lk(fh->mu);
    end_session(*fh);
  }
  if (fh->writable) {
    fh->node->open_writers.fetch_sub(1);
    // Our own writes went through the kernel's page cache: remember the
    // result so the next open may keep that cache.
    if (auto st = sys::stat_fd(fh->fd.get())) {
      fh->node->cache_mtime_ns.store(mtime_ns(*st));
      fh->node->cache_size.store(st->st_size);
    }
  }
  fh.reset();
}

void View::flush(OpenFile& fh) {
  std::lock_guard lk(fh.mu);
  if (fh.session) gate_.settle(*fh.session);
}

Result<void> View::fsync(OpenFile& fh, bool datasync) {
  auto r = sys::fsync_fd(fh.fd.get(), datasync);
  if (!r) return r;
  // A durability point: the session so far becomes one record, made durable.
  {
    std::lock_guard lk(fh.mu);
    end_session(fh);
  }
  return gate_.sync();
}

Result<void> View::fallocate(OpenFile& fh, int mode, off_t off, off_t len, const Caller& caller) {
  if (!fh.writable) return Errno{EBADF};
  std::lock_guard lk(fh.mu);
  if (auto r = ensure_session(fh, caller, OpKind::Fallocate, static_cast<unsigned>(mode)); !r)
    return r;
  auto r = sys::fallocate_fd(fh.fd.get(), mode, off, len);
  if (r) gate_.reshaped(*fh.session);
  return r;
}

Result<size_t> View::copy_file_range(OpenFile& in, off_t off_in, OpenFile& out, off_t off_out,
                                     size_t len, unsigned flags, const Caller& caller) {
  if (!out.writable) return Errno{EBADF};
  std::lock_guard lk(out.mu);
  if (auto r = ensure_session(out, caller, OpKind::CopyRange, flags); !r) return Errno{r.error()};
  auto r = sys::copy_range(in.fd.get(), &off_in, out.fd.get(), &off_out, len, flags);
  if (r) gate_.reshaped(*out.session);
  return r;
}

Result<off_t> View::lseek(OpenFile& fh, off_t off, int whence) {
  return sys::lseek_fd(fh.fd.get(), off, whence);
}

// ---------------------------------------------------------------------------
// Directories

Result<std::unique_ptr<DirHandle>> View::opendir(Inode* node) {
  auto dh = std::make_unique<DirHandle>();
  dh->node = node;
  dh->path = table_.path_of(node);
  dh->access = access_of(node);
  if (dh->access == Access::Hide) return Errno{ENOENT};
  if (node->synthetic()) return dh;
  if (!node->is_dir()) return Errno{ENOTDIR};
  if (stage_ && (node->key().dev == kUpperDev || stage_->active())) {
    std::lock_guard lk(stage_->mu());
    const StageObj* o = stage_->obj(obj_id(node));
    dh->merged =
        node->key().dev == kUpperDev || stage_->has_entries(obj_id(node)) || (o && o->opaque);
    if (dh->merged) return dh;
  }
  auto p = path_fd(node);
  if (!p) return Errno{p.error()};
  auto fd = sys::open_at((*p)->get(), ".", O_RDONLY | O_DIRECTORY);
  if (!fd) return Errno{fd.error()};
  dh->fd = std::move(fd).value();
  return dh;
}

Result<void> View::readdir(DirHandle& dh, int64_t off, bool plus,
                           const std::function<bool(const DirItem&)>& emit) {
  std::lock_guard lk(dh.mu);
  if (dh.node->synthetic()) {
    const SyntheticDir& sd = synth_[dh.node->synthetic_index];
    std::vector<std::pair<std::string_view, Inode*>> items;
    items.emplace_back(".", dh.node);
    items.emplace_back("..", nullptr);
    for (auto& [name, child] : sd.children)
      if (access_of(child) != Access::Hide) items.emplace_back(name, child);
    for (size_t i = static_cast<size_t>(off); i < items.size(); ++i) {
      DirItem it;
      it.name = items[i].first;
      it.next_off = static_cast<int64_t>(i + 1);
      Inode* child = items[i].second;
      if (i < 2) {
        it.attr.st_mode = S_IFDIR;
        it.attr.st_ino = child ? child->key().ino : 1;
      } else {
        auto st = getattr(child, nullptr);
        if (!st) continue;
        it.attr = *st;
        if (plus) it.node = child;  // pinned: no lookup counting
      }
      if (!emit(it)) break;
    }
    return {};
  }

  if (dh.merged) {
    if (off == 0 || dh.items.empty()) {
      auto items = list_merged(dh.node);
      if (!items) return Errno{items.error()};
      dh.items = std::move(items).value();
    }
    for (size_t i = static_cast<size_t>(off); i < dh.items.size() + 2; ++i) {
      DirItem it;
      it.next_off = static_cast<int64_t>(i + 1);
      if (i < 2) {
        it.name = i == 0 ? "." : "..";
        it.attr.st_mode = S_IFDIR;
        it.attr.st_ino = i == 0 ? report_ino(dh.node->key().dev, dh.node->key().ino) : 1;
        if (!emit(it)) break;
        continue;
      }
      const DirHandle::Item& e = dh.items[i - 2];
      std::string path = dh.path.empty() ? e.name : dh.path + "/" + e.name;
      auto exact = cfg_.policy.exact_access(path);
      Access a = exact ? *exact : dh.access;
      if (a == Access::Hide) continue;
      it.name = e.name;
      if (plus) {
        auto ent = lookup(dh.node, e.name);
        if (!ent) continue;
        it.node = ent->node;
        it.attr = ent->attr;
      } else {
        it.attr.st_ino = e.ino;
        it.attr.st_mode = e.type << 12;
      }
      if (!emit(it)) break;
    }
    return {};
  }
  if (off != dh.next_off || (off == 0 && dh.batch.empty() && !dh.eof)) {
    if (auto r = sys::seek_dir(dh.fd.get(), off); !r) return r;
    dh.batch.clear();
    dh.batch_pos = 0;
    dh.next_off = off;
    dh.eof = false;
  }
  const dev_t dir_dev = dh.node->key().dev;
  for (;;) {
    if (dh.batch_pos >= dh.batch.size()) {
      if (dh.eof) break;
      auto b = sys::read_dir(dh.fd.get());
      if (!b) return Errno{b.error()};
      dh.batch = std::move(b).value();
      dh.batch_pos = 0;
      if (dh.batch.empty()) {
        dh.eof = true;
        break;
      }
    }
    const sys::DirEntry& e = dh.batch[dh.batch_pos];
    DirItem it;
    it.name = e.name;
    it.next_off = e.off;
    bool skip = false;
    if (e.name == "." || e.name == "..") {
      it.attr.st_ino = report_ino(dir_dev, e.ino);
      it.attr.st_mode = static_cast<mode_t>(e.type) << 12;
    } else {
      std::string path = dh.path.empty() ? e.name : dh.path + "/" + e.name;
      auto exact = cfg_.policy.exact_access(path);
      Access a = exact ? *exact : dh.access;
      if (a == Access::Hide) {
        skip = true;
      } else if (plus) {
        auto ent = lookup_real(dh.node, e.name, a);
        if (!ent) {
          skip = true;  // vanished meanwhile
        } else {
          it.node = ent->node;
          it.attr = ent->attr;
        }
      } else {
        it.attr.st_ino = report_ino(dir_dev, e.ino);
        it.attr.st_mode = static_cast<mode_t>(e.type) << 12;
      }
    }
    if (!skip && !emit(it)) break;  // the caller undoes it.node's lookup
    dh.next_off = e.off;
    ++dh.batch_pos;
  }
  return {};
}

Result<void> View::fsyncdir(DirHandle& dh, bool datasync) {
  if (!dh.fd) return {};
  return sys::fsync_fd(dh.fd.get(), datasync);
}

// ---------------------------------------------------------------------------
// Filesystem, xattrs, access

Result<struct statvfs> View::statfs(Inode* node) {
  if (node->synthetic()) {
    if (binds_.empty()) return Errno{ENOSYS};
    return sys::statvfs_fd(binds_[0].root_fd->get());
  }
  auto p = path_fd(node);
  if (!p) return Errno{p.error()};
  return sys::statvfs_fd((*p)->get());
}

Result<size_t> View::getxattr(Inode* node, const char* name, void* buf, size_t size) {
  if (node->synthetic()) return Errno{ENODATA};
  auto p = attr_fd(node);
  if (!p) return Errno{p.error()};
  if (node->is_symlink()) return Errno{ENODATA};
  return sys::getxattr_fd((*p)->get(), name, buf, size);
}

Result<size_t> View::listxattr(Inode* node, char* buf, size_t size) {
  if (node->synthetic() || node->is_symlink()) return size_t{0};
  auto p = attr_fd(node);
  if (!p) return Errno{p.error()};
  return sys::listxattr_fd((*p)->get(), buf, size);
}

Result<void> View::setxattr(Inode* node, const char* name, const void* value, size_t size,
                            int flags, const Caller& caller) {
  Change c{OpKind::Setxattr, {}, name, caller, static_cast<unsigned>(flags)};
  if (auto r = permit_node(c, node); !r) return r;
  if (is_held(access_of(node), c.op, nullptr, {}, node)) {
    c.xattr_value = std::string(static_cast<const char*>(value), size);
    return stage_xattr(node, c, false,
                       [&](int fd) { return sys::setxattr_fd(fd, name, value, size, flags); });
  }
  auto p = path_fd(node);
  if (!p) return Errno{p.error()};
  c.obj = ObjRef{(*p)->get(), ""};
  c.xattr_before = xattr_value_of((*p)->get(), name);  // for rollback
  c.xattr_value = std::string(static_cast<const char*>(value), size);
  if (auto b = gate_.begin(c); !b) return b;
  Result<void> r = node->is_symlink() ? Result<void>(Errno{EPERM})
                                      : sys::setxattr_fd((*p)->get(), name, value, size, flags);
  finish_change(c, r.error());
  return r;
}

Result<void> View::removexattr(Inode* node, const char* name, const Caller& caller) {
  Change c{OpKind::Removexattr, {}, name, caller, 0};
  if (auto r = permit_node(c, node); !r) return r;
  if (is_held(access_of(node), c.op, nullptr, {}, node))
    return stage_xattr(node, c, true, [&](int fd) { return sys::removexattr_fd(fd, name); });
  auto p = path_fd(node);
  if (!p) return Errno{p.error()};
  c.obj = ObjRef{(*p)->get(), ""};
  c.xattr_before = xattr_value_of((*p)->get(), name);  // for rollback
  if (auto b = gate_.begin(c); !b) return b;
  Result<void> r =
      node->is_symlink() ? Result<void>(Errno{EPERM}) : sys::removexattr_fd((*p)->get(), name);
  finish_change(c, r.error());
  return r;
}

Result<void> View::access(Inode* node, int mask) {
  Access a = access_of(node);
  if (a == Access::Hide) return Errno{ENOENT};
  if ((mask & W_OK) && a != Access::Write && !(a == Access::Stage && stage_)) return Errno{EROFS};
  return {};
}

}  // namespace scopefs::fs
