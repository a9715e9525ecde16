// View setup, name resolution, attributes and policy. Mutations, files and
// directories are in view_ops.cpp. See view.hpp for the model.
#include "fs/view.hpp"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <stdexcept>

#include "fs/sys/creds.hpp"

namespace scopefs::fs {
namespace {

constexpr ino_t kSyntheticInoBase = 0xFFFF000000000000ULL;

bool is_dot(std::string_view n) { return n == "." || n == ".."; }

}  // namespace

View::View(const config::TaskConfig& cfg, ChangeGate& gate, ViewOptions opts)
    : cfg_(cfg), gate_(gate), stage_(opts.stage), opts_(opts), fds_(opts.fd_cache_capacity) {
  ::clock_gettime(CLOCK_REALTIME, &mount_time_);
}

View::~View() = default;

void View::open() {
  const auto& policy = cfg_.policy;
  // Synthetic root unless a bind sits at "".
  auto make_synth = [&](Inode* parent, std::string_view name, const std::string& path) {
    size_t idx = synth_.size();
    auto node =
        std::make_unique<Inode>(InodeKey{0, kSyntheticInoBase | idx}, S_IFDIR, -1, next_serial_++);
    node->synthetic_index = idx;
    Inode* raw = table_.add_pinned(std::move(node), parent, name);
    SyntheticDir sd;
    sd.node = raw;
    sd.path = path;
    // Synthetic directories are read-only; a rule can still hide them.
    bool hidden = false;
    if (parent && parent->synthetic() && synth_[parent->synthetic_index].access == Access::Hide)
      hidden = true;
    auto r = path.empty() ? std::nullopt : policy.exact_access(path);
    sd.access = (hidden || (r && *r == Access::Hide)) ? Access::Hide : Access::Read;
    synth_.push_back(std::move(sd));
    return raw;
  };

  bool root_bind = false;
  for (const auto& b : cfg_.binds) root_bind = root_bind || b.path.empty();
  if (!root_bind) root_ = make_synth(nullptr, "", "");

  binds_.reserve(cfg_.binds.size());
  for (size_t i = 0; i < cfg_.binds.size(); ++i) {
    const auto& bc = cfg_.binds[i];
    auto fd = sys::open_at(AT_FDCWD, bc.source.c_str(), O_PATH | O_DIRECTORY);
    if (!fd) {
      throw std::runtime_error("cannot open bind source " + bc.source + ": " +
                               std::strerror(fd.error()));
    }
    auto st = sys::stat_fd(fd->get());
    if (!st) throw std::runtime_error("cannot stat bind source " + bc.source);
    Bind b;
    b.cfg = bc;
    b.dev = st->st_dev;
    auto fdref = std::make_shared<const sys::UniqueFd>(std::move(fd).value());
    b.root_fd = fdref;
    auto h = sys::handle_of(fdref->get());
    if (h) b.mount_id = h->mount_id;
    if (h) {
      // open_by_handle_at refuses O_PATH fds as its mount anchor.
      auto anchor = sys::open_at(fdref->get(), ".", O_RDONLY | O_DIRECTORY);
      if (anchor) {
        std::lock_guard lk(mount_mu_);
        mount_fds_.emplace(h->mount_id,
                           std::make_shared<const sys::UniqueFd>(std::move(anchor).value()));
      }
    }
    {
      std::lock_guard lk(dev_mu_);
      if (std::find(devs_.begin(), devs_.end(), b.dev) == devs_.end()) devs_.push_back(b.dev);
    }

    // Synthetic parents of the bind path.
    Inode* parent = root_;
    std::string built;
    auto segs = config::split_path(bc.path);
    for (size_t s = 0; s + 1 < segs.size(); ++s) {
      std::string seg(segs[s]);
      built += (built.empty() ? "" : "/") + seg;
      SyntheticDir& pd = synth_[parent->synthetic_index];
      auto it = pd.children.find(seg);
      if (it != pd.children.end()) {
        parent = it->second;
        continue;
      }
      Inode* child = make_synth(parent, seg, built);
      synth_[parent->synthetic_index].children.emplace(seg, child);
      parent = child;
    }
    auto node = std::make_unique<Inode>(InodeKey{st->st_dev, st->st_ino}, S_IFDIR,
                                        static_cast<int>(i), next_serial_++);
    if (h) {
      node->handle = std::move(h).value();
      node->has_handle = true;
    }
    std::string name = segs.empty() ? "" : std::string(segs.back());
    Inode* raw = table_.add_pinned(std::move(node), segs.empty() ? nullptr : parent, name);
    b.root = raw;
    if (segs.empty()) {
      root_ = raw;
    } else {
      synth_[parent->synthetic_index].children.emplace(name, raw);
    }
    binds_.push_back(std::move(b));
  }
  spdlog::debug("view open: {} binds, {} synthetic dirs", binds_.size(), synth_.size());
}

// ---------------------------------------------------------------------------
// Policy

std::string View::child_path(Inode* parent, std::string_view name) const {
  std::string p = table_.path_of(parent);
  if (!p.empty()) p += '/';
  p.append(name);
  return p;
}

Access View::child_access(Inode* parent, std::string_view path) {
  if (parent->synthetic()) return Access::Read;
  Access pa = access_of(parent);
  if (pa == Access::Hide) return Access::Hide;
  auto exact = cfg_.policy.exact_access(path);
  return exact ? *exact : pa;
}

Access View::access_of(Inode* node) {
  uint64_t gen = policy_gen_.load(std::memory_order_acquire);
  if (node->access_gen.load(std::memory_order_acquire) == gen)
    return node->access.load(std::memory_order_relaxed);
  Access a;
  if (node->synthetic()) {
    a = synth_[node->synthetic_index].access;
  } else {
    const Bind& b = binds_[static_cast<size_t>(node->bind())];
    std::string path = table_.path_of(node);
    a = cfg_.policy.access(path, b.cfg.access);
    // A bind below a hidden synthetic directory is hidden too.
    auto [parent, name] = table_.parent_and_name(b.root);
    if (parent && parent->synthetic() && synth_[parent->synthetic_index].access == Access::Hide)
      a = Access::Hide;
  }
  node->access.store(a, std::memory_order_relaxed);
  node->access_gen.store(gen, std::memory_order_release);
  return a;
}

Result<void> View::deny(Change& c, int err) {
  gate_.denied(c, err);
  return Errno{err};
}

Result<void> View::permit(Change& c, Access level) {
  switch (level) {
    case Access::Hide: return deny(c, EACCES);
    case Access::Read: return deny(c, EROFS);
    case Access::Stage:
      if (!stage_) return deny(c, EROFS);  // no overlay (unit tests)
      break;
    case Access::Write: break;
  }
  return {};
}

void View::finish_change(Change& c, int err) { gate_.end(c, err); }

Result<void> View::permit_child(Change& c, Inode* parent, std::string_view name) {
  c.path = child_path(parent, name);
  if (parent->synthetic()) return deny(c, EROFS);
  return permit(c, child_access(parent, c.path));
}

Result<void> View::permit_node(Change& c, Inode* node) {
  c.path = table_.path_of(node);
  if (node->synthetic()) return deny(c, EROFS);
  return permit(c, access_of(node));
}

bool View::open_for_write(const struct stat& st) {
  if (!S_ISREG(st.st_mode)) return false;
  return table_.known_with(InodeKey{st.st_dev, st.st_ino},
                           [](const Inode& n) { return n.open_writers.load() > 0; });
}

bool View::open_in_view(const struct stat& st) {
  if (!S_ISREG(st.st_mode)) return false;
  return table_.known_with(InodeKey{st.st_dev, st.st_ino},
                           [](const Inode& n) { return n.open_handles.load() > 0; });
}

// ---------------------------------------------------------------------------
// fds

int View::mount_fd_for(int mount_id) {
  std::lock_guard lk(mount_mu_);
  auto it = mount_fds_.find(mount_id);
  return it == mount_fds_.end() ? -1 : it->second->get();
}

Result<FdRef> View::reopen(Inode* node) {
  if (node->has_handle) {
    int mfd = mount_fd_for(node->handle.mount_id);
    if (mfd >= 0) {
      auto fd = sys::open_by_handle(mfd, node->handle, O_PATH);
      if (fd) return FdRef(std::make_shared<const sys::UniqueFd>(std::move(fd).value()));
      if (fd.error() == ESTALE) return Errno{ENOENT};
      if (fd.error() != EOPNOTSUPP && fd.error() != EPERM) return Errno{fd.error()};
    }
  }
  // Fallback: reopen by name from the parent, and check it is the same object.
  auto [parent, name] = table_.parent_and_name(node);
  if (!parent || parent->synthetic()) return Errno{ENOENT};
  auto pfd = path_fd(parent);
  if (!pfd) return Errno{pfd.error()};
  auto fd = sys::open_at((*pfd)->get(), name.c_str(), O_PATH | O_NOFOLLOW);
  if (!fd) return Errno{fd.error()};
  auto st = sys::stat_fd(fd->get());
  if (!st) return Errno{st.error()};
  if (InodeKey{st->st_dev, st->st_ino} != node->key()) return Errno{ENOENT};
  return FdRef(std::make_shared<const sys::UniqueFd>(std::move(fd).value()));
}

bool View::upper_backed(const Inode* node) const {
  return node->key().dev == kUpperDev ||
         (node->upper.load(std::memory_order_acquire) && !node->is_dir());
}

Result<FdRef> View::path_fd(Inode* node) {
  if (node->synthetic()) return Errno{EPERM};
  const Bind& b = binds_[static_cast<size_t>(node->bind())];
  if (node == b.root) return b.root_fd;
  if (FdRef fd = fds_.get(node->serial())) return fd;
  auto fd = upper_backed(node) ? open_upper_path(node) : reopen(node);
  if (!fd) return fd;
  fds_.put(node->serial(), *fd);
  return fd;
}

// ---------------------------------------------------------------------------
// Attributes

ino_t View::report_ino(dev_t dev, ino_t ino) {
  if (!binds_.empty() && dev == binds_[0].dev) return ino;
  std::lock_guard lk(dev_mu_);
  size_t idx = 0;
  for (; idx < devs_.size(); ++idx)
    if (devs_[idx] == dev) break;
  if (idx == devs_.size()) devs_.push_back(dev);
  return idx == 0 ? ino : (ino ^ (static_cast<ino_t>(idx) << 48));
}

void View::fix_attr(struct stat& st) { st.st_ino = report_ino(st.st_dev, st.st_ino); }

struct stat View::synthetic_attr(const Inode* node) const {
  struct stat st {};
  const SyntheticDir& sd = synth_[node->synthetic_index];
  st.st_ino = node->key().ino;
  st.st_mode = S_IFDIR | 0555;
  st.st_nlink = 2;
  for (auto& [name, child] : sd.children)
    if (child->synthetic()) ++st.st_nlink;
  st.st_uid = 0;
  st.st_gid = 0;
  st.st_size = 4096;
  st.st_blksize = 4096;
  st.st_atim = st.st_mtim = st.st_ctim = mount_time_;
  return st;
}

Result<FdRef> View::open_upper_path(Inode* node) {
  uint64_t n = node->key().dev == kUpperDev ? node->key().ino : node->upper.load();
  auto u =
      sys::open_at(stage_->obj_dirfd(), StageLayer::upper_name(n).c_str(), O_PATH | O_NOFOLLOW);
  if (!u) return Errno{u.error()};
  return FdRef(std::make_shared<const sys::UniqueFd>(std::move(u).value()));
}

Result<FdRef> View::attr_fd(Inode* node) {
  uint64_t n = node->upper.load(std::memory_order_acquire);
  if (n && node->is_dir() && node->key().dev != kUpperDev) {
    auto u =
        sys::open_at(stage_->obj_dirfd(), StageLayer::upper_name(n).c_str(), O_PATH | O_NOFOLLOW);
    if (!u) return Errno{u.error()};
    return FdRef(std::make_shared<const sys::UniqueFd>(std::move(u).value()));
  }
  return path_fd(node);
}

Result<struct stat> View::getattr(Inode* node, const OpenFile* fh) {
  if (node->synthetic()) return synthetic_attr(node);
  Result<struct stat> st = Errno{EIO};
  if (fh) {
    st = sys::stat_fd(fh->fd.get());
  } else {
    auto fd = attr_fd(node);
    if (!fd) return Errno{fd.error()};
    st = sys::stat_fd((*fd)->get());
  }
  if (st) {
    fix_attr(*st);
    if (stage_) stage_fix(node, *st);
  }
  return st;
}

Result<std::string> View::readlink(Inode* node) {
  if (node->synthetic()) return Errno{EINVAL};
  auto fd = attr_fd(node);
  if (!fd) return Errno{fd.error()};
  return sys::readlink_at((*fd)->get(), "");
}

// ---------------------------------------------------------------------------
// Lookup

Result<Entry> View::lookup(Inode* parent, std::string_view name) {
  if (name.empty() || is_dot(name) || name.find('/') != std::string_view::npos || name.size() > 255)
    return Errno{name.size() > 255 ? ENAMETOOLONG : ENOENT};
  if (parent->synthetic()) {
    const SyntheticDir& sd = synth_[parent->synthetic_index];
    auto it = sd.children.find(name);
    if (it == sd.children.end()) return Errno{ENOENT};
    Inode* child = it->second;
    if (access_of(child) == Access::Hide) return Errno{ENOENT};
    auto st = getattr(child, nullptr);
    if (!st) return Errno{st.error()};
    return Entry{child, *st};
  }
  if (!parent->is_dir()) return Errno{ENOTDIR};
  Access level = child_access(parent, child_path(parent, name));
  if (level == Access::Hide) return Errno{ENOENT};
  if (stage_ && (parent->key().dev == kUpperDev || stage_->active())) {
    std::optional<StageEntry> e;
    bool lower = true;
    {
      std::lock_guard lk(stage_->mu());
      if (const StageEntry* se = stage_->entry(obj_id(parent), name)) e = *se;
      if (!e) lower = lower_visible(parent);
    }
    if (e) {
      if (e->whiteout) return Errno{ENOENT};
      return stage_lookup(parent, name, *e, level);
    }
    if (!lower) return Errno{ENOENT};
  }
  return lookup_real(parent, name, level);
}

Result<Entry> View::lookup_real(Inode* parent, std::string_view name, std::optional<Access> level) {
  uint64_t gen = policy_gen_.load(std::memory_order_acquire);
  auto pfd = path_fd(parent);
  if (!pfd) return Errno{pfd.error()};
  std::string n(name);
  auto st = sys::stat_at((*pfd)->get(), n.c_str(), AT_SYMLINK_NOFOLLOW);
  if (!st) return Errno{st.error()};
  InodeKey key{st->st_dev, st->st_ino};
  Inode* node = nullptr;
  if (table_.known_with(key, [](const Inode&) { return true; })) {
    // Known (dev, ino): make sure it is still the same object (inode numbers
    // are reused once a file is gone and its handle is dead).
    auto h = sys::handle_at((*pfd)->get(), n.c_str());
    node = table_.acquire_if_same(key, h ? &*h : nullptr, parent, name);
  }
  if (!node) {
    auto fd = sys::open_at((*pfd)->get(), n.c_str(), O_PATH | O_NOFOLLOW);
    if (!fd) return Errno{fd.error()};
    auto st2 = sys::stat_fd(fd->get());
    if (!st2) return Errno{st2.error()};
    st = st2;
    key = InodeKey{st->st_dev, st->st_ino};
    auto fresh = std::make_unique<Inode>(key, st->st_mode & S_IFMT, parent->bind(), next_serial_++);
    if (auto h = sys::handle_of(fd->get())) {
      bool known = mount_fd_for(h->mount_id) >= 0;
      auto fdref = std::make_shared<const sys::UniqueFd>(std::move(fd).value());
      if (!known && S_ISDIR(st->st_mode)) {
        // First directory seen on another mount inside the bind: it anchors
        // open_by_handle_at for that mount (which refuses O_PATH fds).
        if (auto anchor = sys::open_at(fdref->get(), ".", O_RDONLY | O_DIRECTORY)) {
          std::lock_guard lk(mount_mu_);
          mount_fds_.emplace(h->mount_id,
                             std::make_shared<const sys::UniqueFd>(std::move(anchor).value()));
          known = true;
        }
      }
      if (known) {
        fresh->handle = std::move(h).value();
        fresh->has_handle = true;
      }
      uint64_t serial = fresh->serial();
      node = table_.acquire(key, std::move(fresh), parent, name);
      if (node->serial() == serial) fds_.put(serial, fdref);
    } else {
      uint64_t serial = fresh->serial();
      auto fdref = std::make_shared<const sys::UniqueFd>(std::move(fd).value());
      node = table_.acquire(key, std::move(fresh), parent, name);
      if (node->serial() == serial) fds_.put(serial, fdref);
    }
  }
  // Cache the level for the name it was reached by.
  Access a = level ? *level : child_access(parent, child_path(parent, name));
  node->access.store(a, std::memory_order_relaxed);
  node->access_gen.store(gen, std::memory_order_release);
  if (stage_ && stage_->active()) {
    // An object with an upper copy shows the copy.
    uint64_t up = 0;
    {
      std::lock_guard lk(stage_->mu());
      if (const StageObj* o = stage_->obj(obj_id(node)); o && same_object(node, *o)) up = o->upper;
    }
    if (up != node->upper.load()) {
      node->upper.store(up);
      fds_.erase(node->serial());
    }
    if (up) {
      auto st2 = getattr(node, nullptr);
      if (!st2) return Errno{st2.error()};
      return Entry{node, *st2};
    }
    Entry e{node, *st};
    fix_attr(e.attr);
    stage_fix(node, e.attr);
    return e;
  }
  Entry e{node, *st};
  fix_attr(e.attr);
  return e;
}

void View::forget(Inode* node, uint64_t n) {
  if (node->pinned) return;
  auto erased = table_.forget(node, n);
  for (uint64_t serial : erased) fds_.erase(serial);
  if (erased.empty()) return;
  // When the kernel forgets many nodes (memory pressure, drop_caches, the
  // end of a big walk) their memory is freed, but glibc keeps it in the heap
  // and the daemon's RSS stays at its peak. Each time the table has shrunk
  // by a quarter (and at least 8,192 nodes) since the largest size seen, the
  // heap's free memory goes back to the kernel: a few trims per forget storm,
  // at geometric steps, whatever its size.
  constexpr size_t kTrimAtLeast = 8192;
  size_t size = table_.size();
  size_t peak = trim_peak_.load(std::memory_order_relaxed);
  while (size > peak && !trim_peak_.compare_exchange_weak(peak, size, std::memory_order_relaxed)) {
  }
  if (size >= peak) return;
  size_t freed = peak - size;
  if (freed < kTrimAtLeast || freed < peak / 4) return;
  if (!trim_peak_.compare_exchange_strong(peak, size, std::memory_order_relaxed)) return;
  ::malloc_trim(0);
}

}  // namespace scopefs::fs
