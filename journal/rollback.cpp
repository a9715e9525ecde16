#include "journal/rollback.hpp"
#include "journal/real_tree.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>

#include "config/glob.hpp"
#include "fs/stage.hpp"
#include "fs/sys/sys.hpp"

namespace scopefs::journal {
namespace {

// One change in the coordinates where undoing it is defined (see the header).
// Ops beyond the journal's: "unlinked_link" (a hard link `path2` of `path`
// was removed; undone by linking again).
struct Change {
  std::string op;
  std::string path;
  std::string path2;
  uint32_t flags = 0;
  std::optional<ObjectState> before, after, victim;
  std::optional<ObjectState> dest_expected;  // rename: what may sit at `path` (a restored victim)
  std::optional<std::string> xv, xb;         // xattr value after / before
};

// The note of a rollback record that resolved an interrupted change.
constexpr const char* kInterruptedNote = "interrupted change";

bool is_create(const std::string& op) {
  return op == "create" || op == "mknod" || op == "mkdir" || op == "symlink";
}
bool is_content(const std::string& op) {
  return op == "write" || op == "truncate" || op == "fallocate" || op == "copy_file_range";
}
bool is_meta(const std::string& op) { return op == "chmod" || op == "chown" || op == "utimens"; }
bool is_xattr(const std::string& op) { return op == "setxattr" || op == "removexattr"; }

std::vector<std::string> paths_of(const Change& c) {
  std::vector<std::string> p{c.path};
  if (!c.path2.empty() && (c.op == "rename" || c.op == "link" || c.op == "unlinked_link"))
    p.push_back(c.path2);
  return p;
}

// The shape (op, paths) of the change that undoes `c`; `type` is the type of
// the object an undone unlink/rmdir brings back.
Change inverse_shape(const Change& c, const std::string& type) {
  Change i;
  i.flags = c.flags;
  i.path = c.path;
  i.path2 = c.path2;
  if (is_create(c.op)) {
    i.op = c.op == "mkdir" ? "rmdir" : "unlink";
  } else if (c.op == "link") {
    i.op = "unlinked_link";
  } else if (c.op == "unlinked_link") {
    i.op = "link";
  } else if (c.op == "unlink" || c.op == "rmdir") {
    i.op = type == "dir"       ? "mkdir"
           : type == "symlink" ? "symlink"
           : type == "file"    ? "create"
                               : "mknod";
  } else if (is_content(c.op)) {
    i.op = "write";
  } else if (is_xattr(c.op)) {
    i.op = "setxattr";
  } else if (c.op == "rename") {
    i.op = "rename";
    i.path = c.path2;
    i.path2 = c.path;
    i.dest_expected = c.victim;
  } else {
    i.op = c.op;
  }
  return i;
}

Result<Change> normalise(Journal& j, const Record& r, int depth = 0) {
  if (depth > 64) return Errno{ELOOP};
  Change c;
  if (r.op == "rollback") {
    auto inner_rec = j.get(r.ref);
    if (!inner_rec) return Errno{inner_rec.error()};
    if (!*inner_rec) return Errno{ENOENT};
    auto inner = normalise(j, **inner_rec, depth + 1);
    if (!inner) return inner;
    std::string type = r.after && r.after->exists ? r.after->type : "";
    c = inverse_shape(*inner, type);
    c.path = r.path;
    c.path2 = r.path2;
    c.before = r.before;
    c.after = r.after;
    c.victim = r.victim;
    c.xv = r.xattr_value;
    c.xb = r.xattr_before;
    return c;
  }
  c.op = r.op;
  c.path = r.path;
  c.path2 = r.path2;
  c.flags = r.flags;
  c.before = r.before;
  c.after = r.after;
  c.victim = r.victim;
  c.xv = r.xattr_value;
  c.xb = r.xattr_before;
  if (r.op == "approve") {
    auto held = j.get(r.ref);
    if (!held) return Errno{held.error()};
    if (!*held) return Errno{ENOENT};
    const Record& h = **held;
    c.op = h.op;
    c.path = h.path;
    c.path2 = h.path2;
    c.flags = h.flags;
    c.xv = h.xattr_value;
    c.xb = h.xattr_before;
  }
  if (!rollbackable_op(c.op)) return Errno{ENOTSUP};
  return c;
}

// The real object's state (content hash for files, target for symlinks).

// Empty if `real` is what `want` says (type, content hash, symlink target).

std::string proc_path(int dir, const std::string& name) {
  return "/proc/self/fd/" + std::to_string(dir) + "/" + name;
}

std::optional<std::string> get_xattr(int dir, const std::string& name, const std::string& attr) {
  std::string p = proc_path(dir, name);
  std::string v(4096, '\0');
  for (;;) {
    ssize_t n = ::lgetxattr(p.c_str(), attr.c_str(), v.data(), v.size());
    if (n >= 0) {
      v.resize(static_cast<size_t>(n));
      return v;
    }
    if (errno != ERANGE || v.size() > (1u << 20)) return std::nullopt;
    v.resize(v.size() * 4);
  }
}

std::string mode_str(uint32_t m) {
  char b[16];
  std::snprintf(b, sizeof b, "%04o", m & 07777);
  return b;
}

// A file's content needs a before-image (non-empty).
bool needs_blob(const std::optional<ObjectState>& s) {
  return s && s->exists && s->type == "file" && s->size > 0;
}

}  // namespace

bool rollbackable_op(const std::string& op) {
  return is_create(op) || is_content(op) || is_meta(op) || is_xattr(op) || op == "link" ||
         op == "unlink" || op == "rmdir" || op == "rename" || op == "unlinked_link";
}

namespace {

// One rollback run: the per-record work, with the report and caches.
class Run {
 public:
  Run(const config::TaskConfig& cfg, Journal& j, bool force, bool dry_run, const CallerInfo& who,
      RollbackReport& rep, Touched& touched)
      : cfg_(cfg),
        j_(j),
        force_(force),
        dry_run_(dry_run),
        who_(who),
        rep_(rep),
        touched_(touched) {}

  // Undoes one record; false if it was not undone (reported).
  bool undo(const Record& x);
  void finish();

  // An interrupted record (docs/journal.md, "Crash consistency"): whether its
  // change reached the real tree, decided from the real objects and the
  // record's `before`; undone like an applied one if it did.
  bool undo_interrupted(const Record& x);
  // A view path's object now (the plan's view of it in a dry run); a missing
  // parent is a missing object.
  Result<ObjectState> state_at(const std::string& path, struct stat* st);

 private:
  bool blocked(const Change& c) const {
    for (const auto& p : paths_of(c))
      for (const auto& b : blocked_)
        if (path_related(p, b)) return true;
    return false;
  }
  void block(const Change& c) {
    for (const auto& p : paths_of(c)) blocked_.push_back(p);
  }
  // Keeps the content of a regular file about to be replaced or removed.
  Result<std::optional<Hash128>> keep(int dir, const std::string& name, const struct stat& st,
                                      bool may_link);
  Result<void> recreate(int dir, const std::string& name, const ObjectState& s, uint64_t seq);
  Result<void> restore_content(int dir, const std::string& name, const ObjectState& want,
                               bool exists, const struct stat& cur_st, uint64_t seq,
                               std::optional<ObjectState>& kept);
  void touch(const RealLoc& loc, const struct stat* a, const struct stat* b);
  // Dry run: the tree as the planned undos would leave it.
  ObjectState sim_state(const std::string& path);
  void simulate(const Change& c, const ObjectState& cur);

  const config::TaskConfig& cfg_;
  Journal& j_;
  bool force_;
  bool dry_run_;
  const CallerInfo& who_;
  RollbackReport& rep_;
  Touched& touched_;
  std::vector<std::string> blocked_;
  std::vector<std::pair<std::string, ObjectState>> made_dirs_;
  // Dry run: states the planned undos set; view path prefixes whose objects
  // are (planned to be) elsewhere in the real tree, newest first; prefixes
  // whose real objects the plan removes.
  std::map<std::string, ObjectState> sim_;
  std::vector<std::pair<std::string, std::string>> alias_;
  std::vector<std::string> gone_;        // rmdir undone: mtime again at the end
  const Record* interrupted_ = nullptr;  // the interrupted record undo() resolves, as stored
};

Result<std::optional<Hash128>> Run::keep(int dir, const std::string& name, const struct stat& st,
                                         bool may_link) {
  if (!S_ISREG(st.st_mode)) return std::optional<Hash128>{};
  if (st.st_size == 0) return std::optional<Hash128>{empty_hash()};
  BlobStore* blobs = j_.blobs();
  Result<Hash128> h = Errno{EIO};
  if (may_link && st.st_nlink == 1 && blobs->same_fs(st.st_dev)) {
    h = blobs->put_link(dir, name.c_str());
  } else {
    auto fd = sys::open_at(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (!fd) return Errno{fd.error()};
    h = blobs->put_copy(fd->get());
  }
  if (!h) return Errno{h.error()};
  return std::optional<Hash128>{*h};
}

Result<void> Run::recreate(int dir, const std::string& name, const ObjectState& s, uint64_t seq) {
  if (s.type == "file") {
    std::string tmp = temp_name("rollback", seq);
    auto out = sys::open_at(dir, tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (!out) return Errno{out.error()};
    Result<void> r;
    if (s.size > 0) {
      auto in = s.hash ? j_.blobs()->open_blob(*s.hash) : Result<sys::UniqueFd>(Errno{ENODATA});
      if (in) {
        r = fs::copy_content(in->get(), out->get());
        // A blob linked from the removed file is that inode: its xattrs too.
        if (r) (void)fs::copy_xattrs(in->get(), out->get());
      } else {
        r = Errno{in.error()};
      }
    }
    out = Errno{EBADF};  // closes
    if (r) r = set_meta(dir, tmp, s, true);
    if (r) r = sys::rename_at2(dir, tmp.c_str(), dir, name.c_str(), RENAME_NOREPLACE);
    if (!r) (void)sys::unlink_at(dir, tmp.c_str(), 0);
    return r;
  }
  Result<void> r;
  if (s.type == "dir") r = sys::mkdir_at(dir, name.c_str(), 0700);
  else if (s.type == "symlink") r = sys::symlink_at(s.target.c_str(), dir, name.c_str());
  else r = sys::mknod_at(dir, name.c_str(), type_bits(s.type) | 0600, static_cast<dev_t>(s.rdev));
  if (r) r = set_meta(dir, name, s, true);
  return r;
}

Result<void> Run::restore_content(int dir, const std::string& name, const ObjectState& want,
                                  bool exists, const struct stat& cur_st, uint64_t seq,
                                  std::optional<ObjectState>& kept) {
  auto fill_kept = [&](const std::optional<Hash128>& h) {
    if (kept && h) {
      kept->hash = *h;
      kept->blob = *h != empty_hash();
    }
  };
  if (exists && S_ISREG(cur_st.st_mode) && cur_st.st_nlink > 1) {
    // Other hard links share the inode: rewrite it in place (a copy is kept).
    auto k = keep(dir, name, cur_st, false);
    if (!k) return Errno{k.error()};
    fill_kept(*k);
    auto dst = sys::open_at(dir, name.c_str(), O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
    if (!dst) return Errno{dst.error()};
    if (want.size > 0) {
      auto in =
          want.hash ? j_.blobs()->open_blob(*want.hash) : Result<sys::UniqueFd>(Errno{ENODATA});
      if (!in) return Errno{in.error()};
      if (auto r = fs::copy_content(in->get(), dst->get()); !r) return r;
    }
    return set_meta(dir, name, want, true);
  }
  std::string tmp = temp_name("rollback", seq);
  auto out = sys::open_at(dir, tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  if (!out) return Errno{out.error()};
  Result<void> r;
  if (want.size > 0) {
    auto in = want.hash ? j_.blobs()->open_blob(*want.hash) : Result<sys::UniqueFd>(Errno{ENODATA});
    r = in ? fs::copy_content(in->get(), out->get()) : Result<void>(Errno{in.error()});
  }
  if (r && exists && S_ISREG(cur_st.st_mode)) {
    auto cur = sys::open_at(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (cur) r = fs::copy_xattrs(cur->get(), out->get());
  }
  out = Errno{EBADF};  // closes
  if (r) r = set_meta(dir, tmp, want, true);
  if (r && exists) {
    auto k = keep(dir, name, cur_st, true);
    if (!k) r = Errno{k.error()};
    else fill_kept(*k);
  }
  if (r) r = sys::rename_at2(dir, tmp.c_str(), dir, name.c_str(), exists ? 0 : RENAME_NOREPLACE);
  if (!r) (void)sys::unlink_at(dir, tmp.c_str(), 0);
  return r;
}

void Run::touch(const RealLoc& loc, const struct stat* a, const struct stat* b) {
  auto dst = sys::stat_fd(loc.dir.get());
  if (dst) touched_.names.emplace_back(fs::ObjId{loc.bind1, dst->st_ino}, loc.name);
  if (a) touched_.objs.push_back(fs::ObjId{loc.bind1, a->st_ino});
  if (b && (!a || b->st_ino != a->st_ino)) touched_.objs.push_back(fs::ObjId{loc.bind1, b->st_ino});
  if (dst) touched_.objs.push_back(fs::ObjId{loc.bind1, dst->st_ino});
}

// The real path a view path stands for under the plan, or nullopt if the plan
// removed it.
static bool under_or_eq(const std::string& p, const std::string& pre) {
  return p == pre ||
         (p.size() > pre.size() && p.compare(0, pre.size(), pre) == 0 && p[pre.size()] == '/');
}

ObjectState Run::sim_state(const std::string& path) {
  if (auto it = sim_.find(path); it != sim_.end()) return it->second;
  // Below something the plan brings back (a directory re-created): empty.
  for (const auto& [p, st] : sim_)
    if (p != path && under_or_eq(path, p) && st.exists) {
      bool moved = std::any_of(alias_.begin(), alias_.end(),
                               [&](const auto& a) { return under_or_eq(path, a.first); });
      if (!moved) return ObjectState{};
    }
  std::string real = path;
  for (const auto& [from, to] : alias_)
    if (under_or_eq(real, from)) {
      real.replace(0, from.size(), to);
      break;
    }
  if (real == path)
    for (const auto& g : gone_)
      if (under_or_eq(path, g)) return ObjectState{};
  auto loc = locate(cfg_, real);
  if (!loc) return ObjectState{};
  auto st = real_state(loc->dir.get(), loc->name);
  return st ? *st : ObjectState{};
}

void Run::simulate(const Change& c, const ObjectState& cur) {
  const std::string& op = c.op;
  if (is_create(op)) {
    sim_[c.path] = ObjectState{};
    gone_.push_back(c.path);
  } else if (op == "link") {
    sim_[c.path2] = ObjectState{};
  } else if (op == "unlinked_link") {
    sim_[c.path2] = c.before.value_or(ObjectState{});
  } else if (op == "unlink" || op == "rmdir" || is_content(op) || is_meta(op)) {
    sim_[c.path] = c.before.value_or(ObjectState{});
  } else if (op == "rename") {
    // The object at path2 goes back to path (with its subtree).
    std::string real2 = c.path2;
    for (const auto& [from, to] : alias_)
      if (under_or_eq(real2, from)) {
        real2.replace(0, from.size(), to);
        break;
      }
    std::map<std::string, ObjectState> moved;
    for (auto it = sim_.begin(); it != sim_.end();) {
      if (it->first != c.path2 && under_or_eq(it->first, c.path2))
        moved[c.path + it->first.substr(c.path2.size())] = it->second;
      it = under_or_eq(it->first, c.path) || under_or_eq(it->first, c.path2) ? sim_.erase(it)
                                                                             : std::next(it);
    }
    sim_.merge(moved);
    alias_.insert(alias_.begin(), {c.path, real2});
    sim_[c.path] = cur;
    sim_[c.path2] = c.victim && !(c.flags & RENAME_EXCHANGE) ? *c.victim : ObjectState{};
    gone_.push_back(c.path2);
  }
}

bool Run::undo(const Record& x) {
  if (x.state == RecordState::Interrupted) return undo_interrupted(x);
  auto norm = normalise(j_, x);
  if (!norm) {
    rep_.failed.emplace_back(x.seq, "cannot read what change " + std::to_string(x.seq) +
                                        " did: " + std::strerror(norm.error()));
    return false;
  }
  const Change& c = *norm;
  if (blocked(c)) {
    rep_.conflicts.emplace_back(x.seq, c.path +
                                           ": skipped: a newer change to this path (or one "
                                           "above or below it) was not rolled back");
    block(c);
    return false;
  }
  const std::string& op = c.op;
  // Where the object the change left is now.
  const bool at2 = op == "rename" || op == "link" || op == "unlinked_link";
  const std::string& where = at2 ? c.path2 : c.path;
  std::optional<RealLoc> loc;
  struct stat cur_st {};
  std::optional<ObjectState> cur;
  if (dry_run_) {
    cur = sim_state(where);
  } else {
    auto l = locate(cfg_, where);
    if (!l) {
      rep_.failed.emplace_back(x.seq, "cannot reach " + where + ": " + std::strerror(l.error()));
      block(c);
      return false;
    }
    loc = std::move(l).value();
    auto st = real_state(loc->dir.get(), loc->name, &cur_st);
    if (!st) {
      rep_.failed.emplace_back(x.seq, "cannot read " + where + ": " + std::strerror(st.error()));
      block(c);
      return false;
    }
    cur = *st;
  }

  // 1. Conflicts: the real object must be what the change left.
  std::string why, loses;
  std::optional<RealLoc> loc2;  // rename: the old name; unlinked_link: the other name
  std::optional<ObjectState> dest;
  struct stat dest_st {};
  if (op == "unlink" || op == "rmdir" || op == "unlinked_link") {
    if (cur->exists) {
      why = mismatch(*cur, std::nullopt);
      loses = "the rollback cannot bring back the old object over it";
    }
  } else {
    std::optional<ObjectState> want = c.after;
    if ((is_meta(op) || is_xattr(op)) && want && want->exists) {
      want->hash.reset();
      want->target = cur->target;
    }
    why = mismatch(*cur, want);
    if (!why.empty())
      loses = is_create(op) || op == "link" ? "rolling back would delete it"
                                            : "rolling back would replace it";
  }
  if (op == "rename" || op == "unlinked_link") {
    if (dry_run_) {
      dest = sim_state(c.path);
    } else {
      auto l2 = locate(cfg_, c.path);
      if (!l2) {
        rep_.failed.emplace_back(x.seq,
                                 "cannot reach " + c.path + ": " + std::strerror(l2.error()));
        block(c);
        return false;
      }
      auto d = real_state(l2->dir.get(), l2->name, &dest_st);
      if (!d) {
        rep_.failed.emplace_back(x.seq, "cannot read " + c.path + ": " + std::strerror(d.error()));
        block(c);
        return false;
      }
      dest = *d;
      loc2 = std::move(l2).value();
    }
    if (!why.empty()) {
      why = where + ": " + why;
    } else if (op == "unlinked_link") {
      std::optional<ObjectState> want = c.before;
      std::string w = mismatch(*dest, want);
      if (!w.empty()) {
        why = c.path + ": " + w;
        loses = "the link cannot be made again";
      }
    } else if (c.flags & RENAME_EXCHANGE) {
      std::string w = mismatch(*dest, c.victim);
      if (!w.empty()) {
        why = c.path + ": " + w;
        loses = "rolling back would exchange it";
      }
    } else if (dest->exists) {
      std::string w =
          c.dest_expected ? mismatch(*dest, c.dest_expected) : mismatch(*dest, std::nullopt);
      if (!w.empty()) {
        why = c.path + ": " + w;
        loses = "rolling back would replace it";
      }
    }
  } else if (!why.empty()) {
    why = where + ": " + why;
  }
  if (!why.empty() && !force_) {
    rep_.conflicts.emplace_back(x.seq, "conflict: " + why + "; " + loses +
                                           " (--force keeps it as a before-image)");
    block(c);
    return false;
  }

  // 2. The before-images the undo needs.
  std::optional<ObjectState> image;  // what is restored from a blob
  if (op == "unlink" || op == "rmdir" || is_content(op) || op == "write") image = c.before;
  if (op == "rename" && !(c.flags & RENAME_EXCHANGE)) image = c.victim;
  if (needs_blob(image) &&
      (!image->hash || !image->blob || !j_.blobs() || !j_.blobs()->contains(*image->hash))) {
    if (x.expired)
      rep_.failed.emplace_back(x.seq, "change " + std::to_string(x.seq) +
                                          " is past the retention window; its before-image was "
                                          "collected by gc: cannot roll back " +
                                          where);
    else
      rep_.failed.emplace_back(x.seq,
                               where + ": before-image not kept" +
                                   (image->hash ? " (" + image->hash->hex() + ")" : std::string()) +
                                   ": cannot roll back");
    block(c);
    return false;
  }
  if ((op == "unlink" || op == "rmdir") && (!c.before || !c.before->exists)) {
    rep_.failed.emplace_back(x.seq, where + ": the journal has no state of the removed object");
    block(c);
    return false;
  }
  if ((is_meta(op) || is_content(op)) && (!c.before || !c.before->exists)) {
    rep_.failed.emplace_back(x.seq, where + ": the journal has no state from before the change");
    block(c);
    return false;
  }
  if (op == "setxattr" && !c.xv && !c.xb) {
    rep_.failed.emplace_back(x.seq, where + ": the attribute's old value was not journaled");
    block(c);
    return false;
  }
  if (op == "removexattr" && !c.xb) {
    rep_.failed.emplace_back(x.seq, where + ": the removed attribute's value was not journaled");
    block(c);
    return false;
  }

  // 3. The plan.
  RollbackStep step;
  step.seq = x.seq;
  step.op = op;
  step.path = where;
  if (image && image->hash && needs_blob(image)) step.blob = image->hash->hex();
  if (is_create(op)) step.becomes = "removed";
  else if (op == "link") step.becomes = "removed (a hard link of " + c.path + ")";
  else if (op == "unlinked_link") step.becomes = "a hard link of " + c.path + " again";
  else if (op == "unlink" || op == "rmdir")
    step.becomes = c.before->type + " " + mode_str(c.before->mode) +
                   (c.before->type == "symlink" ? " -> " + c.before->target : std::string());
  else if (is_content(op))
    step.becomes = "content of " + std::to_string(c.before ? c.before->size : 0) + " bytes";
  else if (op == "rename")
    step.becomes = "renamed back to " + c.path +
                   (c.victim && c.victim->exists && !(c.flags & RENAME_EXCHANGE)
                        ? "; " + c.path2 + " restored (" + c.victim->type + ")"
                        : std::string());
  else if (op == "chmod") step.becomes = "mode " + mode_str(c.before ? c.before->mode : 0);
  else if (op == "chown")
    step.becomes = "owner " + std::to_string(c.before ? c.before->uid : 0) + ":" +
                   std::to_string(c.before ? c.before->gid : 0);
  else if (op == "utimens")
    step.becomes = "mtime " + std::to_string(c.before ? c.before->mtime_ns : 0);
  else if (is_xattr(op))
    step.becomes = c.xb ? "xattr " + c.path2 + " restored" : "xattr " + c.path2 + " removed";
  if (!why.empty()) step.becomes += " (forced over: " + why + ")";
  if (interrupted_) step.becomes += " (interrupted change: it reached the real tree)";
  if (dry_run_) {
    rep_.plan.push_back(step);
    simulate(c, *cur);
    return true;
  }

  // 4. Intent, the change, outcome (write-ahead, like approve).
  std::string type = c.before && c.before->exists ? c.before->type : "";
  Change inv = inverse_shape(c, type);
  Record a;
  a.op = "rollback";
  a.path = inv.path;
  a.path2 = inv.path2;
  a.flags = c.flags;
  a.ref = x.seq;
  a.caller = who_;
  if (!why.empty()) a.note = "forced over a conflict: " + why;
  if (interrupted_) a.note = std::string(kInterruptedNote) + ": it had reached the real tree";
  if (auto w = j_.intent(a); !w) {
    rep_.failed.emplace_back(x.seq, std::string("cannot journal the rollback: ") +
                                        std::strerror(w.error()));
    block(c);
    return false;
  }
  int dir = loc->dir.get();
  const std::string& name = loc->name;
  Result<void> r;
  std::optional<ObjectState> before_rb = *cur;  // what the rollback found (inverse coordinates)
  std::optional<ObjectState> victim_rb;
  struct stat after_st {};
  if (is_create(op) || op == "link") {
    // Remove what the change made (its content kept: nothing is lost).
    if (cur->exists) {
      auto k = keep(dir, name, cur_st, true);
      if (!k) r = Errno{k.error()};
      else if (*k) {
        before_rb->hash = **k;
        before_rb->blob = **k != empty_hash();
      }
      if (r) r = sys::unlink_at(dir, name.c_str(), S_ISDIR(cur_st.st_mode) ? AT_REMOVEDIR : 0);
      if (!r && before_rb->blob && before_rb->hash)
        j_.blobs()->unlink_if_inode(*before_rb->hash, cur_st.st_dev, cur_st.st_ino);
    }
  } else if (op == "unlink" || op == "rmdir") {
    r = recreate(dir, name, *c.before, x.seq);
    if (r && c.before->type == "dir") made_dirs_.emplace_back(where, *c.before);
  } else if (op == "unlinked_link") {
    r = sys::link_at(loc2->dir.get(), loc2->name.c_str(), dir, name.c_str(), 0);
  } else if (is_content(op)) {
    before_rb = *cur;
    r = restore_content(dir, name, *c.before, cur->exists, cur_st, x.seq, before_rb);
  } else if (op == "chmod") {
    if (c.before->type != "symlink" && ::fchmodat(dir, name.c_str(), c.before->mode, 0) != 0)
      r = Errno{errno};
  } else if (op == "chown") {
    if (::fchownat(dir, name.c_str(), c.before->uid, c.before->gid, AT_SYMLINK_NOFOLLOW) != 0)
      r = Errno{errno};
    if (r && c.before->type != "symlink" && ::fchmodat(dir, name.c_str(), c.before->mode, 0) != 0)
      r = Errno{errno};
  } else if (op == "utimens") {
    struct timespec tv[2] = {ts_of(c.before->mtime_ns), ts_of(c.before->mtime_ns)};
    tv[0].tv_nsec = UTIME_OMIT;
    r = sys::utimens_at(dir, name.c_str(), tv, AT_SYMLINK_NOFOLLOW);
  } else if (is_xattr(op)) {
    a.xattr_before = get_xattr(dir, name, c.path2);
    a.xattr_value = c.xb;
    std::string p = proc_path(dir, name);
    if (c.xb) {
      if (::lsetxattr(p.c_str(), c.path2.c_str(), c.xb->data(), c.xb->size(), 0) != 0)
        r = Errno{errno};
    } else if (::lremovexattr(p.c_str(), c.path2.c_str()) != 0 && errno != ENODATA) {
      r = Errno{errno};
    }
  } else if (op == "rename") {
    // The object back from path2 to path; what sits at path (a victim
    // another rollback restored) is kept; the victim of the rename restored.
    int d2 = loc2->dir.get();
    if (c.flags & RENAME_EXCHANGE) {
      r = sys::rename_at2(dir, name.c_str(), d2, loc2->name.c_str(), RENAME_EXCHANGE);
      victim_rb = dest;
    } else {
      if (dest && dest->exists) {
        victim_rb = dest;
        auto k = keep(d2, loc2->name, dest_st, true);
        if (!k) r = Errno{k.error()};
        else if (*k) {
          victim_rb->hash = **k;
          victim_rb->blob = **k != empty_hash();
        }
      }
      if (r)
        r = sys::rename_at2(dir, name.c_str(), d2, loc2->name.c_str(),
                            dest && dest->exists ? 0 : RENAME_NOREPLACE);
      if (r && c.victim && c.victim->exists) r = recreate(dir, name, *c.victim, x.seq);
    }
  } else {
    r = Errno{ENOTSUP};
  }

  // Outcome, and the undone record's new state, in one transaction.
  KvTxn extra;
  if (r) {
    a.state = RecordState::Applied;
    a.before = before_rb;
    a.victim = victim_rb;
    if (inv.op == "rename") {
      // inverse coordinates: the object's state at inv.path2 (= c.path).
      auto st = real_state(loc2->dir.get(), loc2->name, &after_st);
      a.after = st ? *st : ObjectState{};
      if (!a.path2.empty()) extra.put(path_index_key(a.path2, a.seq), "");
    } else if (inv.op == "unlinked_link") {
      // The object at c.path2 before its removal: what the rollback found.
      a.after = ObjectState{};
      if (!a.path2.empty()) extra.put(path_index_key(a.path2, a.seq), "");
    } else if (inv.op == "link") {
      auto st = real_state(dir, name, &after_st);
      a.after = st ? *st : ObjectState{};
      a.before = ObjectState{};
      if (!a.path2.empty()) extra.put(path_index_key(a.path2, a.seq), "");
    } else if (inv.op == "unlink" || inv.op == "rmdir") {
      a.after = ObjectState{};
    } else {
      auto st = real_state(dir, name, &after_st);
      a.after = st ? *st : ObjectState{};
      if (inv.op == "create" || inv.op == "mkdir" || inv.op == "symlink" || inv.op == "mknod")
        a.before = ObjectState{};
    }
    Record undone = interrupted_ ? *interrupted_ : x;
    undone.state = RecordState::RolledBack;
    extra.put(record_key(undone.seq), encode_record(undone));
    if (x.op == "rollback") {
      // What x undid is in effect again.
      auto prev = j_.get(x.ref);
      if (prev && *prev && (*prev)->state == RecordState::RolledBack) {
        Record p = **prev;
        p.state = RecordState::Applied;
        extra.put(record_key(p.seq), encode_record(p));
      }
    }
    touch(*loc, &cur_st, a.after && a.after->exists ? &after_st : nullptr);
    if (loc2) touch(*loc2, dest && dest->exists ? &dest_st : nullptr, nullptr);
  } else {
    a.state = RecordState::Failed;
    a.err = r.error();
  }
  if (auto w = j_.complete_with(a, extra); !w) {
    rep_.failed.emplace_back(x.seq, std::string("cannot journal the rollback's outcome: ") +
                                        std::strerror(w.error()));
    block(c);
    return false;
  }
  if (!r) {
    rep_.failed.emplace_back(x.seq, "failed: " + where + ": " + std::strerror(r.error()));
    block(c);
    return false;
  }
  rep_.done.push_back(x.seq);
  if (!why.empty()) rep_.notes.push_back(std::to_string(x.seq) + ": forced over: " + why);
  return true;
}

Result<ObjectState> Run::state_at(const std::string& path, struct stat* st) {
  if (dry_run_) return sim_state(path);
  auto loc = locate(cfg_, path);
  if (!loc) {
    if (loc.error() == ENOENT || loc.error() == ENOTDIR) return ObjectState{};
    return Errno{loc.error()};
  }
  return real_state(loc->dir.get(), loc->name, st);
}

namespace {

// The real object is the one `want` describes: its type and, where the
// record knows them, content (size, hash), mtime of files, symlink target.
bool same_object(const ObjectState& real, const std::optional<ObjectState>& want) {
  if (!want || !want->exists) return !real.exists;
  if (!real.exists || real.type != want->type) return false;
  if (want->type == "file")
    return real.size == want->size && real.mtime_ns == want->mtime_ns &&
           (!want->hash || !real.hash || *want->hash == *real.hash);
  if (want->type == "symlink") return real.target == want->target;
  if (want->type == "chr" || want->type == "blk") return real.rdev == want->rdev;
  return true;
}

std::string describe(const ObjectState& s) {
  if (!s.exists) return "absent";
  std::string d = "a " + s.type;
  if (s.type == "file") d += " of " + std::to_string(s.size) + " bytes";
  if (s.type == "symlink") d += " -> " + s.target;
  return d;
}

}  // namespace

bool Run::undo_interrupted(const Record& x) {
  Change shape;
  shape.op = x.op;
  shape.path = x.path;
  shape.path2 = x.path2;
  if (blocked(shape)) {
    rep_.conflicts.emplace_back(x.seq, x.path +
                                           ": skipped: a newer change to this path (or one "
                                           "above or below it) was not rolled back");
    block(shape);
    return false;
  }
  const std::string& op = x.op;
  const bool two = op == "rename" || op == "link";
  struct stat st1 {
  }, st2{};
  auto cur1 = state_at(x.path, &st1);
  Result<ObjectState> cur2 = two ? state_at(x.path2, &st2) : Result<ObjectState>(ObjectState{});
  if (!cur1 || !cur2) {
    rep_.failed.emplace_back(x.seq, "cannot read " + (cur1 ? x.path2 : x.path) + ": " +
                                        std::strerror(cur1 ? cur2.error() : cur1.error()));
    block(shape);
    return false;
  }
  // reached: the change is in the real tree (undo it with `after` = what is
  // there); not reached: the real tree is as `before` says; else a conflict.
  bool reached = false;
  std::string why;
  std::optional<ObjectState> after;
  std::vector<std::pair<const ObjectState*, const struct stat*>> stale_links;
  if (is_create(op)) {
    reached = cur1->exists;
    after = *cur1;
  } else if (op == "link") {
    if (cur2->exists) {
      bool same_inode = dry_run_ || (st1.st_ino == st2.st_ino && st1.st_dev == st2.st_dev);
      if (!same_inode) why = x.path2 + " is " + describe(*cur2) + ", not a hard link of " + x.path;
      reached = same_inode;
      after = *cur2;
    }
  } else if (!x.before || !x.before->exists) {
    rep_.failed.emplace_back(x.seq, x.path + ": the journal has no state from before the change");
    block(shape);
    return false;
  } else if (op == "unlink" || op == "rmdir") {
    if (!cur1->exists) {
      reached = true;
      after = ObjectState{};
    } else if (same_object(*cur1, x.before)) {
      stale_links.emplace_back(&*x.before, &st1);
    } else {
      why = x.path + " is " + describe(*cur1) + ", neither the removed object nor absent";
    }
  } else if (op == "rename") {
    const bool exchange = (x.flags & RENAME_EXCHANGE) != 0;
    std::optional<ObjectState> victim = x.victim;
    if (same_object(*cur1, x.before) && same_object(*cur2, victim)) {
      if (victim && !exchange) stale_links.emplace_back(&*x.victim, &st2);
    } else if (same_object(*cur2, x.before) &&
               (exchange ? same_object(*cur1, victim) : !cur1->exists)) {
      reached = true;
      after = *cur2;
    } else {
      why = x.path + " is " + describe(*cur1) + " and " + x.path2 + " is " + describe(*cur2) +
            ": neither before nor after the rename";
    }
  } else if (!cur1->exists || cur1->type != x.before->type) {
    why = x.path + " is " + describe(*cur1) + ", was " + describe(*x.before);
  } else if (is_content(op)) {
    reached = !(cur1->hash && x.before->hash && *cur1->hash == *x.before->hash &&
                cur1->size == x.before->size && cur1->mtime_ns == x.before->mtime_ns &&
                cur1->mode == x.before->mode);
    after = *cur1;
  } else if (is_meta(op)) {
    reached = cur1->uid != x.before->uid || cur1->gid != x.before->gid ||
              (op == "utimens" && cur1->mtime_ns != x.before->mtime_ns) ||
              (cur1->type != "symlink" && cur1->mode != x.before->mode);
    after = *cur1;
  } else if (is_xattr(op)) {
    std::optional<std::string> now;
    if (auto loc = locate(cfg_, x.path)) now = get_xattr(loc->dir.get(), loc->name, x.path2);
    reached = now != x.xattr_before;
    after = *cur1;
  }
  if (!why.empty()) {
    // Neither the state before nor a state the change leaves: not guessed at,
    // even with --force.
    rep_.conflicts.emplace_back(x.seq, "conflict: interrupted " + op + ": " + why +
                                           "; resolve it by hand");
    block(shape);
    return false;
  }
  if (reached) {
    Record y = x;
    y.state = RecordState::Applied;
    y.after = after;
    interrupted_ = &x;
    bool ok = undo(y);
    interrupted_ = nullptr;
    return ok;
  }
  // The change never reached the real tree: nothing to undo. A before-image
  // hard-linked into the store is still a live file: unlink it there.
  if (dry_run_) {
    RollbackStep step;
    step.seq = x.seq;
    step.op = op;
    step.path = two && op == "link" ? x.path2 : x.path;
    step.becomes = "unchanged (interrupted change: it had not reached the real tree)";
    rep_.plan.push_back(step);
    return true;
  }
  for (const auto& [state, st] : stale_links)
    if (state->blob && state->hash && j_.blobs())
      j_.blobs()->unlink_if_inode(*state->hash, st->st_dev, st->st_ino);
  Record a;
  a.op = "rollback";
  a.path = x.path;
  a.path2 = x.path2;
  a.flags = x.flags;
  a.ref = x.seq;
  a.caller = who_;
  a.state = RecordState::Applied;
  a.before = *cur1;
  a.after = *cur1;
  a.note = std::string(kInterruptedNote) + ": it had not reached the real tree; nothing to undo";
  Record undone = x;
  undone.state = RecordState::RolledBack;
  KvTxn extra;
  extra.put(record_key(undone.seq), encode_record(undone));
  if (auto w = j_.append_with(a, extra); !w) {
    rep_.failed.emplace_back(x.seq, std::string("cannot journal the resolution: ") +
                                        std::strerror(w.error()));
    block(shape);
    return false;
  }
  rep_.done.push_back(x.seq);
  return true;
}

void Run::finish() {
  // Directories brought back: their children came back after them.
  for (auto it = made_dirs_.rbegin(); it != made_dirs_.rend(); ++it) {
    auto loc = locate(cfg_, it->first);
    if (!loc) continue;
    struct timespec tv[2] = {ts_of(it->second.mtime_ns), ts_of(it->second.mtime_ns)};
    tv[0].tv_nsec = UTIME_OMIT;
    (void)sys::utimens_at(loc->dir.get(), loc->name.c_str(), tv, AT_SYMLINK_NOFOLLOW);
  }
}

}  // namespace

Result<RollbackReport> RollBacker::rollback(const RollbackSelection& sel, bool force, bool dry_run,
                                            const CallerInfo& who, Touched& touched) {
  RollbackReport rep;
  std::vector<config::Glob> globs;
  for (const auto& g : sel.globs) {
    config::Glob gl;
    std::string err;
    size_t pos = 0;
    std::string pat = g;
    while (!pat.empty() && pat.front() == '/') pat.erase(0, 1);
    if (!config::Glob::compile(pat, gl, err, pos)) {
      rep.notes.push_back(std::string("bad glob ").append(g).append(": ").append(err));
      return Errno{EINVAL};
    }
    globs.push_back(std::move(gl));
  }
  std::vector<Record> chosen;
  std::vector<uint64_t> seen_ids;
  auto s = j_.scan(1, [&](const Record& r, int err) {
    if (err) return true;
    bool by_id = std::find(sel.ids.begin(), sel.ids.end(), r.seq) != sel.ids.end();
    bool candidate = (r.state == RecordState::Applied &&
                      (rollbackable_op(r.op) || r.op == "approve" || r.op == "rollback")) ||
                     (r.state == RecordState::Interrupted && rollbackable_op(r.op));
    // Resolving an interrupted change is not itself undone (its record may
    // say nothing happened).
    bool resolved_interrupted = r.op == "rollback" && r.note.rfind(kInterruptedNote, 0) == 0;
    if (by_id) {
      seen_ids.push_back(r.seq);
      if (!candidate || resolved_interrupted) {
        std::string why = resolved_interrupted ? "it resolved an interrupted change: not undoable"
                          : r.state == RecordState::RolledBack ? "already rolled back"
                          : r.state != RecordState::Applied
                              ? std::string("its state is ") + std::string(state_name(r.state))
                              : "a " + r.op + " record cannot be rolled back";
        rep.unknown.emplace_back(r.seq, why);
        return true;
      }
      chosen.push_back(r);
      return true;
    }
    if (!candidate || r.op == "rollback") return true;
    if (!sel.all && !sel.filtered()) return true;
    if (!sel.run.empty() && r.run != sel.run) return true;
    if (sel.since_ns != 0 && r.time_ns < sel.since_ns) return true;
    if (sel.has_after && r.seq <= sel.after_seq) return true;
    if (!globs.empty()) {
      std::vector<std::string> paths{r.path};
      if (!r.path2.empty() && (r.op == "rename" || r.op == "link")) paths.push_back(r.path2);
      if (r.op == "approve" && !r.path2.empty()) paths.push_back(r.path2);
      bool hit = false;
      for (const auto& g : globs)
        for (const auto& p : paths) hit = hit || g.matches(p);
      if (!hit) return true;
    }
    chosen.push_back(r);
    return true;
  });
  if (!s) return Errno{s.error()};
  for (uint64_t id : sel.ids)
    if (std::find(seen_ids.begin(), seen_ids.end(), id) == seen_ids.end())
      rep.unknown.emplace_back(id, "no such record");
  std::sort(chosen.begin(), chosen.end(),
            [](const Record& a, const Record& b) { return a.seq > b.seq; });
  Run run(cfg_, j_, force, dry_run, who, rep, touched);
  for (const Record& r : chosen) run.undo(r);
  if (!dry_run) run.finish();
  if (chosen.empty()) rep.notes.emplace_back("nothing to roll back");
  return rep;
}

}  // namespace scopefs::journal
