#include "fs/stage.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "fs/sys/sys.hpp"

namespace scopefs::fs {
namespace {

void put_be(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_be(std::string_view in, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i)
    v = (v << 8) | static_cast<unsigned char>(in[at + static_cast<size_t>(i)]);
  return v;
}

void put_id(std::string& out, const ObjId& id) {
  put_be(out, id.bind1, 4);
  put_be(out, id.ino, 8);
}

ObjId get_id(std::string_view in, size_t at) {
  return ObjId{static_cast<uint32_t>(get_be(in, at, 4)), get_be(in, at + 4, 8)};
}

}  // namespace

std::string encode_entry(const StageEntry& e) {
  std::string v;
  v.push_back(e.whiteout ? 1 : 0);
  put_id(v, e.target);
  put_be(v, e.type, 4);
  return v;
}

std::optional<StageEntry> decode_entry(std::string_view v) {
  if (v.size() != 17) return std::nullopt;
  StageEntry e;
  e.whiteout = v[0] != 0;
  e.target = get_id(v, 1);
  e.type = static_cast<uint32_t>(get_be(v, 13, 4));
  return e;
}

std::string encode_obj(const StageObj& o) {
  std::string v;
  put_be(v, o.upper, 8);
  put_be(v, static_cast<uint64_t>(o.nlink), 8);
  v.push_back(o.opaque ? 1 : 0);
  put_be(v, o.type, 4);
  v += o.handle;
  return v;
}

std::optional<StageObj> decode_obj(std::string_view v) {
  if (v.size() < 21) return std::nullopt;
  StageObj o;
  o.upper = get_be(v, 0, 8);
  o.nlink = static_cast<int64_t>(get_be(v, 8, 8));
  o.opaque = v[16] != 0;
  o.type = static_cast<uint32_t>(get_be(v, 17, 4));
  o.handle = std::string(v.substr(21));
  return o;
}

std::string encode_times(const StageTimes& t) {
  std::string v;
  put_be(v, static_cast<uint64_t>(t.mtime_ns), 8);
  put_be(v, static_cast<uint64_t>(t.ctime_ns), 8);
  return v;
}

std::optional<StageTimes> decode_times(std::string_view v) {
  if (v.size() != 16) return std::nullopt;
  StageTimes t;
  t.mtime_ns = static_cast<int64_t>(get_be(v, 0, 8));
  t.ctime_ns = static_cast<int64_t>(get_be(v, 8, 8));
  return t;
}

StageLayer::StageLayer(const std::string& stage_dir) : dir_(stage_dir) {
  ::mkdir(dir_.c_str(), 0700);
  std::string obj = dir_ + "/obj";
  ::mkdir(obj.c_str(), 0700);
  auto fd = sys::open_at(AT_FDCWD, obj.c_str(), O_RDONLY | O_DIRECTORY);
  if (!fd) throw std::runtime_error("cannot open " + obj + ": " + std::strerror(fd.error()));
  obj_dir_ = std::move(fd).value();
  auto st = sys::stat_fd(obj_dir_.get());
  if (st) obj_dev_ = st->st_dev;
}

std::string StageLayer::entry_key(const ObjId& dir, std::string_view name) {
  std::string k = "s/e/";
  put_id(k, dir);
  k.append(name);
  return k;
}

std::string StageLayer::obj_key(const ObjId& id) {
  std::string k = "s/o/";
  put_id(k, id);
  return k;
}

std::string StageLayer::times_key(const ObjId& id) {
  std::string k = "s/t/";
  put_id(k, id);
  return k;
}

bool StageLayer::parse_times_key(std::string_view key, ObjId& id) {
  if (key.size() != 16 || key.substr(0, 4) != "s/t/") return false;
  id = get_id(key, 4);
  return true;
}

bool StageLayer::parse_entry_key(std::string_view key, ObjId& dir, std::string& name) {
  if (key.size() < 17 || key.substr(0, 4) != "s/e/") return false;
  dir = get_id(key, 4);
  name = std::string(key.substr(16));
  return true;
}

bool StageLayer::parse_obj_key(std::string_view key, ObjId& id) {
  if (key.size() != 16 || key.substr(0, 4) != "s/o/") return false;
  id = get_id(key, 4);
  return true;
}

std::string StageLayer::upper_name(uint64_t n) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(n));
  return buf;
}

void StageLayer::load_key(std::string_view key, std::string_view value) {
  std::lock_guard lk(mu_);
  if (key == kNextKey) {
    if (value.size() == 8) next_upper_ = std::max(next_upper_, get_be(value, 0, 8));
    return;
  }
  apply_raw(std::string(key), std::string(value));
}

const StageEntry* StageLayer::entry(const ObjId& dir, std::string_view name) const {
  auto it = entries_.find(dir);
  if (it == entries_.end()) return nullptr;
  auto e = it->second.find(name);
  return e == it->second.end() ? nullptr : &e->second;
}

const std::map<std::string, StageEntry, std::less<>>* StageLayer::entries(const ObjId& dir) const {
  auto it = entries_.find(dir);
  return it == entries_.end() ? nullptr : &it->second;
}

const StageObj* StageLayer::obj(const ObjId& id) const {
  auto it = objs_.find(id);
  return it == objs_.end() ? nullptr : &it->second;
}

const StageTimes* StageLayer::times(const ObjId& id) const {
  auto it = times_.find(id);
  return it == times_.end() ? nullptr : &it->second;
}

bool StageLayer::has_entries(const ObjId& dir) const { return entries_.count(dir) != 0; }

size_t StageLayer::entry_count() const {
  size_t n = 0;
  for (const auto& [d, m] : entries_) n += m.size();
  return n;
}

std::vector<std::pair<ObjId, std::string>> StageLayer::names_of(const ObjId& id) const {
  std::vector<std::pair<ObjId, std::string>> out;
  for (const auto& [d, m] : entries_)
    for (const auto& [name, e] : m)
      if (!e.whiteout && e.target == id) out.emplace_back(d, name);
  return out;
}

std::optional<std::string> StageLayer::value_of(const std::string& key) const {
  ObjId id;
  std::string name;
  if (parse_entry_key(key, id, name)) {
    const StageEntry* e = entry(id, name);
    return e ? std::optional<std::string>(encode_entry(*e)) : std::nullopt;
  }
  if (parse_obj_key(key, id)) {
    const StageObj* o = obj(id);
    return o ? std::optional<std::string>(encode_obj(*o)) : std::nullopt;
  }
  if (parse_times_key(key, id)) {
    const StageTimes* t = times(id);
    return t ? std::optional<std::string>(encode_times(*t)) : std::nullopt;
  }
  return std::nullopt;
}

void StageLayer::set_entry(const ObjId& dir, const std::string& name, std::optional<StageEntry> e,
                           StageLog& log) {
  std::string key = entry_key(dir, name);
  if (log.seen.insert(key).second) log.undo.emplace_back(key, value_of(key));
  log.touched.insert(key);
  active_.store(true, std::memory_order_release);
  if (e) {
    entries_[dir][name] = *e;
  } else {
    auto it = entries_.find(dir);
    if (it != entries_.end()) {
      it->second.erase(name);
      if (it->second.empty()) entries_.erase(it);
    }
  }
}

void StageLayer::stamp(const ObjId& id, bool mtime, int64_t ns, StageLog& log) {
  std::string key = times_key(id);
  if (std::none_of(log.side.begin(), log.side.end(),
                   [&](const auto& kv) { return kv.first == key; }))
    log.side.emplace_back(key, value_of(key));
  active_.store(true, std::memory_order_release);
  StageTimes& t = times_[id];
  t.ctime_ns = std::max(t.ctime_ns, ns);
  if (mtime) t.mtime_ns = std::max(t.mtime_ns, ns);
}

void StageLayer::clear_mtime(const ObjId& id, StageLog& log) {
  auto it = times_.find(id);
  if (it == times_.end() || it->second.mtime_ns < 0) return;
  std::string key = times_key(id);
  if (std::none_of(log.side.begin(), log.side.end(),
                   [&](const auto& kv) { return kv.first == key; }))
    log.side.emplace_back(key, value_of(key));
  it->second.mtime_ns = -1;
}

void StageLayer::set_obj(const ObjId& id, std::optional<StageObj> o, StageLog& log) {
  std::string key = obj_key(id);
  if (log.seen.insert(key).second) log.undo.emplace_back(key, value_of(key));
  log.touched.insert(key);
  active_.store(true, std::memory_order_release);
  if (o) objs_[id] = *o;
  else objs_.erase(id);
}

uint64_t StageLayer::new_upper() { return next_upper_++; }

void StageLayer::add_pending(const StageLog& log) {
  for (const auto& [k, old] : log.undo) pending_.emplace(k, old);
}

void StageLayer::claim_pending(StageLog& log) {
  for (const auto& k : log.touched) {
    auto it = pending_.find(k);
    if (it == pending_.end()) continue;
    if (log.seen.insert(k).second) {
      log.undo.insert(log.undo.begin(), *it);
    } else {
      // The change set the key too: its old value is the one from before the copy-up.
      for (auto& u : log.undo)
        if (u.first == k) u.second = it->second;
    }
    pending_.erase(it);
  }
}

std::string StageLayer::next_value() const {
  std::string v;
  put_be(v, next_upper_, 8);
  return v;
}

bool StageLayer::apply_raw(const std::string& key, const std::optional<std::string>& value) {
  std::lock_guard lk(mu_);
  if (value) active_.store(true, std::memory_order_release);
  ObjId id;
  std::string name;
  if (parse_entry_key(key, id, name)) {
    std::optional<StageEntry> e = value ? decode_entry(*value) : std::nullopt;
    if (e) {
      entries_[id][name] = *e;
    } else {
      auto it = entries_.find(id);
      if (it != entries_.end()) {
        it->second.erase(name);
        if (it->second.empty()) entries_.erase(it);
      }
    }
    return true;
  }
  if (parse_obj_key(key, id)) {
    std::optional<StageObj> o = value ? decode_obj(*value) : std::nullopt;
    if (o) {
      objs_[id] = *o;
      if (o->upper >= next_upper_) next_upper_ = o->upper + 1;
    } else {
      objs_.erase(id);
    }
    return true;
  }
  if (parse_times_key(key, id)) {
    std::optional<StageTimes> t = value ? decode_times(*value) : std::nullopt;
    if (t) times_[id] = *t;
    else times_.erase(id);
    return true;
  }
  return false;
}

std::vector<std::string> StageLayer::all_keys() const {
  std::vector<std::string> out;
  for (const auto& [d, m] : entries_)
    for (const auto& [name, e] : m) out.push_back(entry_key(d, name));
  for (const auto& [id, o] : objs_) out.push_back(obj_key(id));
  for (const auto& [id, t] : times_) out.push_back(times_key(id));
  return out;
}

std::vector<uint64_t> StageLayer::orphans() const {
  std::set<uint64_t> live;
  for (const auto& [id, o] : objs_)
    if (o.upper) live.insert(o.upper);
  std::vector<uint64_t> out;
  auto d = sys::open_at(obj_dir_.get(), ".", O_RDONLY | O_DIRECTORY);
  if (!d) return out;
  for (;;) {
    auto batch = sys::read_dir(d->get());
    if (!batch || batch->empty()) break;
    for (const auto& e : *batch) {
      if (e.name.size() != 16) continue;
      char* end = nullptr;
      unsigned long long n = std::strtoull(e.name.c_str(), &end, 16);
      if (end && *end == '\0' && !live.count(n)) out.push_back(n);
    }
  }
  return out;
}

size_t StageLayer::remove_orphans() {
  size_t n = 0;
  for (uint64_t o : orphans()) {
    std::string un = upper_name(o);
    if (::unlinkat(obj_dir_.get(), un.c_str(), 0) == 0 ||
        (errno == EISDIR && ::unlinkat(obj_dir_.get(), un.c_str(), AT_REMOVEDIR) == 0))
      ++n;
  }
  return n;
}

Result<void> copy_content(int src, int dst) {
  if (::ioctl(dst, FICLONE, src) == 0) return {};
  // Holes stay holes: a copy-up of a sparse file costs its data only.
  return sys::copy_sparse(src, dst);
}

Result<void> copy_xattrs(int src, int dst) {
  std::vector<char> names(4096);
  ssize_t n;
  for (;;) {
    n = ::flistxattr(src, names.data(), names.size());
    if (n >= 0) break;
    if (errno == ERANGE) {
      names.resize(names.size() * 4);
      continue;
    }
    if (errno == ENOTSUP || errno == EBADF) return {};
    return Errno{errno};
  }
  std::vector<char> val(4096);
  for (ssize_t i = 0; i < n;) {
    const char* name = names.data() + i;
    size_t len = std::strlen(name);
    i += static_cast<ssize_t>(len) + 1;
    ssize_t v;
    for (;;) {
      v = ::fgetxattr(src, name, val.data(), val.size());
      if (v >= 0 || errno != ERANGE) break;
      val.resize(val.size() * 4);
    }
    if (v < 0) continue;
    if (::fsetxattr(dst, name, val.data(), static_cast<size_t>(v), 0) != 0 && errno != ENOTSUP &&
        errno != EPERM)
      return Errno{errno};
  }
  return {};
}

}  // namespace scopefs::fs
