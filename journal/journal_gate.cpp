#include "journal/journal_gate.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "fs/sys/sys.hpp"

namespace scopefs::journal {
namespace {

int64_t mtime_ns(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

int64_t ctime_ns(const struct stat& st) {
  return static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
}

// What the gate keeps for one change between begin() and end().
struct State final : fs::GateState {
  ~State() override {
    if (auto* g = live_in.load(std::memory_order_acquire)) g->forget_session(live_key, this);
  }
  Record rec;
  struct stat before_st {};
  bool linked_victim = false;  // a blob may be a hard link to the unlinked file
  struct stat victim_st {};
  bool linked_replaced = false;  // a blob may be a hard link to the file a rename replaces
  // Write sessions: streaming hash of bytes [0, streamed). A live session
  // (registered by inode, live_in) is also read by other threads: its
  // stream under `smu`; `stale` is set when the file's content changes other
  // than through this session (another handle, a truncate by path).
  std::mutex smu;
  Hasher hasher;
  uint64_t streamed = 0;
  bool stream_valid = true;
  std::atomic<bool> stale{false};
  std::atomic<JournalGate*> live_in{nullptr};
  std::pair<dev_t, ino_t> live_key{};
  // The session's after-state was taken at a close() and nothing changed
  // since through this handle (settle()).
  bool settled = false;
};

// The same file, its size and mtime unchanged: a change in between kept the
// content (as far as the hash cache can tell).
bool same_content_key(const struct stat& before, const struct stat& now) {
  return before.st_dev == now.st_dev && before.st_ino == now.st_ino &&
         before.st_size == now.st_size && mtime_ns(before) == mtime_ns(now);
}

bool content_destroying(fs::OpKind op) {
  using fs::OpKind;
  return op == OpKind::Unlink || op == OpKind::Truncate || op == OpKind::Write ||
         op == OpKind::Fallocate || op == OpKind::CopyRange;
}

// Undoes hard links into the store of files that, the change having failed,
// are still live files (a later write to them must never change a blob).
void drop_links(State& s, BlobStore* blobs) {
  const Record& r = s.rec;
  if (s.linked_victim && r.before && r.before->hash)
    blobs->unlink_if_inode(*r.before->hash, s.before_st.st_dev, s.before_st.st_ino);
  if (s.linked_replaced && r.victim && r.victim->hash)
    blobs->unlink_if_inode(*r.victim->hash, s.victim_st.st_dev, s.victim_st.st_ino);
}

// Opens the content of an object for reading, without following a symlink
// and without touching its atime.
Result<sys::UniqueFd> open_content(const fs::ObjRef& ref) {
  if (!ref.name.empty())
    return sys::open_at(ref.dirfd, ref.name.c_str(), O_RDONLY | O_NOFOLLOW | O_NOATIME);
  sys::ProcPath pp(ref.dirfd);
  return sys::open_at(AT_FDCWD, pp.c_str(), O_RDONLY | O_NOATIME);
}

}  // namespace

namespace {

std::string read_proc(pid_t pid, const char* what, size_t limit) {
  std::string path = "/proc/" + std::to_string(pid) + "/" + what;
  std::ifstream in(path, std::ios::binary);
  std::string out;
  if (!in) return out;
  out.resize(limit);
  in.read(out.data(), static_cast<std::streamsize>(limit));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

// The process's start time (field 22 of /proc/PID/stat), which tells a
// reused pid from the process first seen under it.
std::string start_time(const std::string& stat) {
  auto close = stat.rfind(')');
  if (close == std::string::npos) return {};
  size_t field = 2, i = close + 1;
  while (i < stat.size() && field < 22) {
    if (stat[i] == ' ') ++field;
    ++i;
  }
  auto end = stat.find(' ', i);
  return stat.substr(i, end == std::string::npos ? std::string::npos : end - i);
}

}  // namespace

CallerInfo caller_info(const fs::Caller& c) {
  // Command line and executable are read once per process: a cache entry is
  // revalidated at most once a second against the process's start time and
  // name (an exec changes the name), so a busy agent's thousands of calls a
  // second cost one small /proc read a second, not three per call.
  struct Seen {
    std::string start;
    CallerInfo info;
    int64_t checked = 0;
  };
  static std::mutex mu;
  static std::unordered_map<pid_t, Seen> cache;  // guarded by mu
  const int64_t now = std::time(nullptr);
  CallerInfo ci{c.pid, c.uid, c.gid, {}, {}, {}};
  std::optional<Seen> prev;
  {
    std::lock_guard lk(mu);
    auto it = cache.find(c.pid);
    if (it != cache.end()) {
      if (it->second.checked == now) {
        CallerInfo out = it->second.info;
        out.uid = c.uid;
        out.gid = c.gid;
        return out;
      }
      prev = it->second;
    }
  }
  std::string stat = read_proc(c.pid, "stat", 1024);
  std::string start = start_time(stat);
  auto open = stat.find('('), close = stat.rfind(')');
  if (open != std::string::npos && close != std::string::npos && close > open)
    ci.comm = stat.substr(open + 1, close - open - 1);
  if (prev && !start.empty() && prev->start == start && prev->info.comm == ci.comm) {
    ci.args = prev->info.args;
    ci.exe = prev->info.exe;
  } else {
    // NUL-separated arguments, at most 4 KiB of them.
    std::string cmd = read_proc(c.pid, "cmdline", 4096);
    size_t at = 0;
    while (at < cmd.size()) {
      size_t nul = cmd.find('\0', at);
      if (nul == std::string::npos) nul = cmd.size();
      ci.args.push_back(cmd.substr(at, nul - at));
      at = nul + 1;
    }
    std::error_code ec;
    auto exe = std::filesystem::read_symlink("/proc/" + std::to_string(c.pid) + "/exe", ec);
    if (!ec) ci.exe = exe.string();
  }
  std::lock_guard lk(mu);
  if (cache.size() > 4096) cache.clear();
  cache[c.pid] = Seen{start, ci, now};
  return ci;
}

std::optional<Hash128> JournalGate::known_hash(const struct stat& st) {
  std::lock_guard lk(known_mu_);
  auto it = known_.find({st.st_dev, st.st_ino});
  if (it == known_.end() || it->second.size != st.st_size || it->second.mtime_ns != mtime_ns(st) ||
      it->second.ctime_ns != ctime_ns(st))
    return std::nullopt;
  return it->second.hash;
}

void JournalGate::remember(const struct stat& st, const Hash128& h) {
  std::lock_guard lk(known_mu_);
  if (known_.size() > 65536) known_.clear();
  known_[{st.st_dev, st.st_ino}] = Known{h, st.st_size, mtime_ns(st), ctime_ns(st)};
}

Result<Hash128> JournalGate::hash_of(const fs::ObjRef& ref, const struct stat& st) {
  if (st.st_size == 0) return empty_hash();
  if (auto k = known_hash(st)) return *k;
  auto fd = open_content(ref);
  if (!fd) return Errno{fd.error()};
  auto h = hash_fd(fd->get());
  if (h) remember(st, *h);
  return h;
}

Result<ObjectState> JournalGate::capture(const fs::ObjRef& ref, bool content_image, bool may_link,
                                         struct stat* st_out, const fs::Change::Seen* seen) {
  ObjectState o;
  if (!ref.valid()) return o;
  Result<struct stat> st = Errno{ENOENT};
  if (seen && seen->known) {
    if (!seen->absent) st = seen->st;
  } else {
    st = ref.name.empty() ? sys::stat_fd(ref.dirfd)
                          : sys::stat_at(ref.dirfd, ref.name.c_str(), AT_SYMLINK_NOFOLLOW);
  }
  if (!st) {
    if (st.error() == ENOENT) return o;  // does not exist (yet)
    return Errno{st.error()};
  }
  if (st_out) *st_out = *st;
  o = object_state(*st);
  if (S_ISLNK(st->st_mode)) {
    auto t = sys::readlink_at(ref.dirfd, ref.name.c_str());
    if (t) o.target = *t;
    return o;
  }
  if (!S_ISREG(st->st_mode)) return o;
  if (!content_image) {
    if (auto k = known_hash(*st)) o.hash = *k;
    return o;
  }
  if (st->st_size == 0) {
    o.hash = empty_hash();
    return o;
  }
  BlobStore* blobs = j_.blobs();
  Result<Hash128> h = Errno{EIO};
  if (may_link && !ref.name.empty() && st->st_nlink == 1 && blobs->same_fs(st->st_dev)) {
    // Written through the view and unchanged since: its hash is known, and
    // the file need not be read again.
    if (auto k = known_hash(*st)) {
      if (auto l = blobs->put_link_known(ref.dirfd, ref.name.c_str(), *k, *st); l) {
        o.hash = *k;
        o.blob = true;
        return o;
      }
    }
    h = blobs->put_link(ref.dirfd, ref.name.c_str());
  } else {
    auto fd = open_content(ref);
    if (!fd) return Errno{fd.error()};
    h = blobs->put_copy(fd->get());
  }
  if (!h) return Errno{h.error()};
  o.hash = *h;
  o.blob = true;
  return o;
}

Result<void> JournalGate::begin(fs::Change& c) {
  // Keep room for the outcomes of changes under way: refuse new ones first.
  if (!j_.has_space()) {
    // At most one line every 10 s: the log may live on the full filesystem.
    static std::atomic<int64_t> last_warn{0};
    int64_t now = std::time(nullptr);
    if (now - last_warn.exchange(now) >= 10)
      spdlog::warn("journal: state directory nearly full; refusing changes (ENOSPC), e.g. {} of {}",
                   fs::op_name(c.op), c.path);
    return Errno{ENOSPC};
  }
  auto s = std::make_unique<State>();
  Record& r = s->rec;
  r.op = std::string(fs::op_name(c.op));
  r.path = c.path;
  r.path2 = c.path2;
  r.flags = c.flags;
  r.caller = caller_info(c.caller);
  using fs::OpKind;
  if (c.held) {
    // The real tree is not touched: no intent; a before-image only of an
    // upper copy whose content the change destroys (reject restores it).
    bool creates = c.op == OpKind::Create || c.op == OpKind::Mknod || c.op == OpKind::Mkdir ||
                   c.op == OpKind::Symlink;
    if (!creates) {
      bool image = c.held_image &&
                   (content_destroying(c.op) || (c.op == OpKind::Write && (c.flags & O_TRUNC)));
      auto b = capture(c.obj, image, false, &s->before_st);
      if (!b) return Errno{b.error()};
      r.before = *b;
      // Approve compares the real file with what the change was made against.
      if (b->exists && !b->hash && S_ISREG(s->before_st.st_mode))
        if (auto h = hash_of(c.obj, s->before_st)) r.before->hash = *h;
    } else {
      r.before = ObjectState{};
    }
    if (c.op == OpKind::Rename) {
      auto v = capture(c.obj2, false, false, &s->victim_st);
      if (!v) return Errno{v.error()};
      if (v->exists) r.victim = *v;
    }
    // Ordered by when the change began, like applied changes (their intent
    // takes the number): a write session recorded at its end still comes
    // before an unlink or chmod made while it was open.
    r.seq = j_.reserve_seq();
    c.state = std::move(s);
    return {};
  }
  bool creates = c.op == OpKind::Create || c.op == OpKind::Mknod || c.op == OpKind::Mkdir ||
                 c.op == OpKind::Symlink;
  if (!creates && c.op != OpKind::Link) {
    bool image = content_destroying(c.op) || (c.op == OpKind::Write && (c.flags & O_TRUNC));
    // Linking into the store would make a later write through an open handle
    // change the blob: only for objects nobody holds open for writing.
    bool may_link = c.op == OpKind::Unlink && !c.open_for_write && !c.open_in_view;
    auto b = capture(c.obj, image, may_link, &s->before_st, &c.obj_seen);
    if (!b) return Errno{b.error()};
    r.before = *b;
    s->linked_victim = may_link && b->blob && s->before_st.st_nlink == 1 &&
                       j_.blobs()->same_fs(s->before_st.st_dev);
  } else {
    r.before = ObjectState{};
  }
  if (c.op == OpKind::Rename && !(c.flags & RENAME_EXCHANGE)) {
    // The object a rename replaces loses its name: keep its content.
    const bool may_link = !c.open_for_write && !c.open_in_view;
    auto v = capture(c.obj2, true, may_link, &s->victim_st, &c.obj2_seen);
    if (!v) return Errno{v.error()};
    if (v->exists) r.victim = *v;
    s->linked_replaced = v->blob && may_link && s->victim_st.st_nlink == 1 &&
                         j_.blobs()->same_fs(s->victim_st.st_dev);
  } else if (c.op == OpKind::Rename) {
    auto v = capture(c.obj2, false, false, &s->victim_st, &c.obj2_seen);
    if (!v) return Errno{v.error()};
    if (v->exists) r.victim = *v;
  }
  // An interrupted xattr change is resolved against the value before it.
  r.xattr_value = c.xattr_value;
  r.xattr_before = c.xattr_before;
  if (auto w = j_.intent(r); !w) {
    drop_links(*s, j_.blobs());
    return Errno{w.error()};
  }
  const bool session =
      c.op == OpKind::Write || c.op == OpKind::Fallocate || c.op == OpKind::CopyRange;
  const bool reg = session && r.before && r.before->exists && S_ISREG(s->before_st.st_mode);
  const dev_t dev = s->before_st.st_dev;
  const ino_t ino = s->before_st.st_ino;
  auto* self = s.get();
  c.state = std::move(s);
  if (reg) identify(c, dev, ino);
  // Opened with O_TRUNC: the file's other open sessions streamed bytes that
  // are about to go.
  if (reg && (c.flags & O_TRUNC)) mark_stale({dev, ino}, self);
  return {};
}

void JournalGate::wrote(fs::Change& c, const void* data, size_t n, off_t off) {
  auto* s = static_cast<State*>(c.state.get());
  if (s) s->settled = false;
  if (!s) return;
  std::lock_guard lk(s->smu);
  if (s->stale.load(std::memory_order_acquire)) s->stream_valid = false;
  if (!s->stream_valid) return;
  auto uoff = static_cast<uint64_t>(off);
  if (uoff == s->streamed) {
    s->hasher.update(data, n);
    s->streamed += n;
  } else if (uoff < s->streamed) {
    s->stream_valid = false;  // rewrote streamed bytes: rehash at the end
  }
  // A write past the streamed prefix leaves a gap that end() reads.
}

void JournalGate::reshaped(fs::Change& c) {
  auto* s = static_cast<State*>(c.state.get());
  if (!s) return;
  {
    std::lock_guard lk(s->smu);
    s->stream_valid = false;
    s->settled = false;
  }
  // Another writer's stream no longer describes the file either.
  if (s->live_in.load(std::memory_order_acquire)) mark_stale(s->live_key, s);
}

void JournalGate::identify(fs::Change& c, dev_t dev, ino_t ino) {
  auto* s = static_cast<State*>(c.state.get());
  if (!s || c.held || s->live_in.load(std::memory_order_acquire)) return;
  s->live_key = {dev, ino};
  std::lock_guard lk(live_mu_);
  live_.emplace(s->live_key, s);
  s->live_in.store(this, std::memory_order_release);
}

void JournalGate::forget_session(const std::pair<dev_t, ino_t>& key, const fs::GateState* s) {
  std::lock_guard lk(live_mu_);
  auto [b, e] = live_.equal_range(key);
  for (auto it = b; it != e; ++it) {
    if (it->second == s) {
      live_.erase(it);
      return;
    }
  }
}

void JournalGate::mark_stale(const std::pair<dev_t, ino_t>& key, const fs::GateState* except) {
  std::lock_guard lk(live_mu_);
  auto [b, e] = live_.equal_range(key);
  for (auto it = b; it != e; ++it)
    if (it->second != except)
      static_cast<State*>(it->second)->stale.store(true, std::memory_order_release);
}

std::optional<Hash128> JournalGate::live_digest(const struct stat& st) {
  std::lock_guard lk(live_mu_);
  auto [b, e] = live_.equal_range({st.st_dev, st.st_ino});
  if (b == e || std::next(b) != e) return std::nullopt;  // none, or several writers
  auto* ss = static_cast<State*>(b->second);
  std::lock_guard slk(ss->smu);
  if (ss->stale.load(std::memory_order_acquire) || !ss->stream_valid ||
      ss->streamed != static_cast<uint64_t>(st.st_size))
    return std::nullopt;
  return ss->hasher.digest();
}

void JournalGate::take_after_held(fs::Change& c, fs::GateState& gs) {
  Record& r = static_cast<State&>(gs).rec;
  using fs::OpKind;
  const fs::ObjRef& where = (c.op == OpKind::Rename || c.op == OpKind::Link) ? c.obj2 : c.obj;
  if (c.op == OpKind::Unlink || c.op == OpKind::Rmdir) {
    r.after = ObjectState{};
  } else {
    struct stat st {};
    auto a = capture(where, false, false, &st);
    if (a) {
      r.after = *a;
      bool content = c.op == OpKind::Create || c.op == OpKind::Write || c.op == OpKind::Truncate ||
                     c.op == OpKind::Fallocate || c.op == OpKind::CopyRange;
      if (a->exists && S_ISREG(st.st_mode) && (content || !r.after->hash)) {
        if (st.st_size == 0) {
          r.after->hash = empty_hash();
        } else if (content) {
          // The held content itself, for approve: a copy (the upper file
          // keeps changing).
          auto fd = open_content(where);
          Result<Hash128> h =
              fd ? j_.blobs()->put_copy(fd->get()) : Result<Hash128>(Errno{fd.error()});
          if (h) {
            r.after->hash = *h;
            r.after->blob = true;
          } else {
            spdlog::error("journal: cannot keep the held content of {}: {}", r.path,
                          std::strerror(h.error()));
          }
        } else if (r.before && r.before->hash && c.op != OpKind::Utimens &&
                   same_content_key(static_cast<State&>(gs).before_st, st)) {
          // Metadata or name only, nothing else changed the file: the hash
          // it had carries over to its new ctime (as in take_after()).
          r.after->hash = r.before->hash;
          remember(st, *r.before->hash);
        } else if (auto h = hash_of(where, st)) {
          r.after->hash = *h;
        }
      }
      if (r.before && r.before->exists && !r.before->hash && r.after->hash && !content)
        r.before->hash = r.after->hash;
    }
  }
}

void JournalGate::end_held(fs::Change& c, fs::GateState& gs, int err) {
  Record& r = static_cast<State&>(gs).rec;
  using fs::OpKind;
  if (err != 0) {
    // The overlay did not change; the number taken at begin() is used.
    r.state = RecordState::Failed;
    r.err = err;
    if (auto w = j_.append_with(r, KvTxn{}); !w)
      spdlog::error("journal: cannot record a failed change ({} {}): {}", r.op, r.path,
                    std::strerror(w.error()));
    return;
  }
  r.state = RecordState::Held;
  if (!static_cast<State&>(gs).settled) take_after_held(c, gs);
  r.undo = std::move(c.stage_undo);
  r.touch = std::move(c.stage_touch);
  r.xattr_value = std::move(c.xattr_value);
  r.xattr_before = std::move(c.xattr_before);
  KvTxn extra;
  for (auto& [k, v] : c.stage_redo) {
    if (v) extra.put(k, *v);
    else extra.del(k);
  }
  if (auto w = j_.append_with(r, extra); !w)
    spdlog::error("journal: cannot record held change ({} {}): {}", r.op, r.path,
                  std::strerror(w.error()));
}

// The after-state of an applied change: the object as it is now. A write
// session's streamed hash is finished with whatever lies past the stream,
// which then covers [0, size): later writes may go on streaming.
void JournalGate::take_after(fs::Change& c, fs::GateState& gs) {
  auto* s = &static_cast<State&>(gs);
  Record& r = s->rec;
  using fs::OpKind;
  // Where the object is now.
  const fs::ObjRef& where = (c.op == OpKind::Rename || c.op == OpKind::Link) ? c.obj2 : c.obj;
  struct stat st {};
  if (c.op == OpKind::Unlink || c.op == OpKind::Rmdir) {
    r.after = ObjectState{};
  } else if (auto a = capture(where, false, false, &st); a) {
    r.after = *a;
    if (a->exists) {
      c.after_seen.known = true;
      c.after_seen.st = st;
    }
    if (a->exists && S_ISREG(st.st_mode)) {
      Result<Hash128> h = Errno{EIO};
      // A create is the write session of the handle it opened (fs/view_ops.cpp).
      bool session = c.op == OpKind::Write || c.op == OpKind::Fallocate ||
                     c.op == OpKind::CopyRange || c.op == OpKind::Create;
      std::unique_lock slk(s->smu);
      if (s->stale.load(std::memory_order_acquire)) s->stream_valid = false;
      if (session && s->stream_valid) {
        if (static_cast<uint64_t>(st.st_size) == s->streamed) {
          h = s->hasher.digest();  // written front to back: nothing to read
        } else if (static_cast<uint64_t>(st.st_size) > s->streamed) {
          // Finish the stream with whatever lies past it (a gap or a tail).
          auto fd = open_content(where);
          if (fd) {
            auto more = hash_fd_range(fd->get(), s->streamed, s->hasher);
            if (more) {
              s->streamed += *more;
              h = s->hasher.digest();
            } else {
              s->stream_valid = false;
            }
          }
        }
        if (h) remember(st, *h);
      }
      slk.unlock();
      // A change of metadata or name keeps the content: its known hash
      // carries over to the new ctime (the cache is keyed by it), unless the
      // size or mtime moved meanwhile (a write through another handle or
      // from outside). A utimens sets the mtime itself: it is read again.
      const bool keeps_content = !content_destroying(c.op) && c.op != OpKind::Create;
      if (!h && keeps_content && c.op != OpKind::Utimens && r.before && r.before->hash &&
          same_content_key(s->before_st, st)) {
        h = *r.before->hash;
        remember(st, *h);
      }
      // The file's only write session has streamed all of it (cp -a sets
      // the times of the file it is still writing): its digest.
      if (!h && keeps_content) {
        if (auto d = live_digest(st)) {
          h = *d;
          remember(st, *h);
        }
      }
      if (!h) {
        bool content_changed = content_destroying(c.op) || c.op == OpKind::Create;
        if (content_changed) {
          std::lock_guard lk(known_mu_);
          known_.erase({st.st_dev, st.st_ino});
        }
        // Open write sessions of the file no longer stream its content.
        if (content_changed) mark_stale({st.st_dev, st.st_ino}, s);
        h = hash_of(where, st);
      }
      if (h) {
        r.after->hash = *h;
        // Metadata-only changes keep the content: the before hash is the after hash.
        if (r.before && r.before->exists && !r.before->hash && !content_destroying(c.op))
          r.before->hash = *h;
      }
    }
  }
}

void JournalGate::settle(fs::Change& c) {
  auto* s = static_cast<State*>(c.state.get());
  if (!s) return;
  // Held: the content as it is now is kept as a copy (the upper file keeps
  // changing), so a later append's bytes are never this record's.
  if (c.held) take_after_held(c, *s);
  else take_after(c, *s);
  s->settled = true;
}

void JournalGate::end(fs::Change& c, int err) {
  auto* s = static_cast<State*>(c.state.get());
  if (!s) return;
  if (c.held) {
    end_held(c, *s, err);
    c.state.reset();
    return;
  }
  Record& r = s->rec;
  using fs::OpKind;
  if (err != 0) {
    r.state = RecordState::Failed;
    r.err = err;
    // A file linked into the store stays a live file: drop that link.
    drop_links(*s, j_.blobs());
    if (r.before) r.before->blob = false;
    if (r.victim) r.victim->blob = false;
  } else {
    r.state = RecordState::Applied;
    if (!s->settled) take_after(c, *s);
  }
  r.xattr_value = std::move(c.xattr_value);
  r.xattr_before = std::move(c.xattr_before);
  if (auto w = j_.complete(r); !w) {
    spdlog::error("journal: cannot record the outcome of change {} ({} {}): {}", r.seq, r.op,
                  r.path, std::strerror(w.error()));
  }
  c.state.reset();
}

void JournalGate::denied(fs::Change& c, int err) {
  Record r;
  r.op = std::string(fs::op_name(c.op));
  r.path = c.path;
  r.path2 = c.path2;
  r.flags = c.flags;
  r.caller = caller_info(c.caller);
  r.state = RecordState::Denied;
  r.err = err;
  if (auto w = j_.append(r); !w)
    spdlog::error("journal: cannot record a denied {} of {}: {}", r.op, r.path,
                  std::strerror(w.error()));
  spdlog::info("denied op={} path={}{}{} err={} pid={} uid={}", r.op, c.path,
               c.path2.empty() ? "" : " -> ", c.path2, std::strerror(err), c.caller.pid,
               c.caller.uid);
}

void JournalGate::lifecycle(const std::string& op, const std::string& detail) {
  Record r;
  r.op = op;
  r.path = "";
  r.path2 = detail;
  r.state = RecordState::Applied;
  r.caller = caller_info(fs::Caller{::getpid(), ::getuid(), ::getgid()});
  if (auto w = j_.append(r); !w)
    spdlog::error("journal: cannot record {}: {}", op, std::strerror(w.error()));
}

}  // namespace scopefs::journal
