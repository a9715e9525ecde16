#include "journal/real_tree.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>

#include "fs/sys/sys.hpp"
#include "journal/hash.hpp"

namespace scopefs::journal {

mode_t type_bits(const std::string& t) {
  if (t == "file") return S_IFREG;
  if (t == "dir") return S_IFDIR;
  if (t == "symlink") return S_IFLNK;
  if (t == "fifo") return S_IFIFO;
  if (t == "chr") return S_IFCHR;
  if (t == "blk") return S_IFBLK;
  return S_IFSOCK;
}

struct timespec ts_of(int64_t ns) {
  struct timespec t {};
  t.tv_sec = ns / 1000000000;
  t.tv_nsec = ns % 1000000000;
  return t;
}

bool path_related(const std::string& a, const std::string& b) {
  if (a == b) return true;
  auto under = [](const std::string& x, const std::string& y) {
    return y.empty() ||
           (x.size() > y.size() && x.compare(0, y.size(), y) == 0 && x[y.size()] == '/');
  };
  return under(a, b) || under(b, a);
}

Result<RealLoc> locate(const config::TaskConfig& cfg, const std::string& path) {
  const config::BindConfig* best = nullptr;
  uint32_t idx = 0;
  for (size_t i = 0; i < cfg.binds.size(); ++i) {
    const auto& b = cfg.binds[i];
    bool match = b.path.empty() || path == b.path ||
                 (path.size() > b.path.size() && path.compare(0, b.path.size(), b.path) == 0 &&
                  path[b.path.size()] == '/');
    if (match && (!best || b.path.size() > best->path.size())) {
      best = &b;
      idx = static_cast<uint32_t>(i);
    }
  }
  if (!best) return Errno{ENOENT};
  std::string rel =
      best->path.empty() ? path : path.substr(std::min(path.size(), best->path.size() + 1));
  if (rel.empty()) return Errno{EINVAL};
  auto fd = sys::open_at(AT_FDCWD, best->source.c_str(), O_PATH | O_DIRECTORY);
  if (!fd) return Errno{fd.error()};
  sys::UniqueFd dir = std::move(fd).value();
  size_t start = 0;
  for (;;) {
    size_t slash = rel.find('/', start);
    if (slash == std::string::npos) break;
    std::string seg = rel.substr(start, slash - start);
    auto next = sys::open_at(dir.get(), seg.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
    if (!next) return Errno{next.error()};
    dir = std::move(next).value();
    start = slash + 1;
  }
  return RealLoc{std::move(dir), rel.substr(start), idx + 1};
}

Result<ObjectState> real_state(int dir, const std::string& name, struct stat* st_out) {
  auto st = sys::stat_at(dir, name.c_str(), AT_SYMLINK_NOFOLLOW);
  if (!st) {
    if (st.error() == ENOENT) return ObjectState{};
    return Errno{st.error()};
  }
  if (st_out) *st_out = *st;
  ObjectState o = object_state(*st);
  if (S_ISREG(st->st_mode)) {
    if (st->st_size == 0) {
      o.hash = empty_hash();
    } else {
      auto fd = sys::open_at(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      if (!fd) return Errno{fd.error()};
      auto h = hash_fd(fd->get());
      if (!h) return Errno{h.error()};
      o.hash = *h;
    }
  } else if (S_ISLNK(st->st_mode)) {
    auto t = sys::readlink_at(dir, name.c_str());
    if (t) o.target = *t;
  }
  return o;
}

std::string mismatch(const ObjectState& real, const std::optional<ObjectState>& want) {
  if (!want || !want->exists) return real.exists ? "it exists (a " + real.type + ")" : "";
  if (!real.exists) return "it no longer exists";
  if (real.type != want->type) return "it is now a " + real.type + ", was a " + want->type;
  if (want->type == "file" && want->hash && real.hash && *want->hash != *real.hash)
    return "its content changed (" + real.hash->hex() + ", expected " + want->hash->hex() + ")";
  if (want->type == "symlink" && real.target != want->target)
    return "it now points to " + real.target;
  return "";
}

Result<void> set_meta(int dir, const std::string& name, const ObjectState& a, bool times) {
  if (::fchownat(dir, name.c_str(), a.uid, a.gid, AT_SYMLINK_NOFOLLOW) != 0) return Errno{errno};
  if (a.type != "symlink" && ::fchmodat(dir, name.c_str(), a.mode, 0) != 0) return Errno{errno};
  if (times) {
    struct timespec tv[2] = {ts_of(a.mtime_ns), ts_of(a.mtime_ns)};
    tv[0].tv_nsec = UTIME_OMIT;
    if (auto r = sys::utimens_at(dir, name.c_str(), tv, AT_SYMLINK_NOFOLLOW); !r) return r;
  }
  return {};
}

std::string temp_name(const char* what, uint64_t seq) {
  static std::atomic<uint64_t> n{0};
  return std::string(".scopefs-") + what + "-" + std::to_string(seq) + "-" +
         std::to_string(::getpid()) + "-" + std::to_string(n.fetch_add(1));
}

}  // namespace scopefs::journal
