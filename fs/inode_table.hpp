// The inode table: the objects the kernel knows by node id.
//
// Identity. A real Inode is keyed by (dev, ino) of the object it stands for;
// its address is the node id given to the kernel, so an Inode is neither
// copyable nor movable. Synthetic inodes (the view's root when no bind sits
// there, and intermediate directories of nested bind paths) are created at
// mount and live until unmount.
//
// No pinned fds. An Inode holds a kernel file handle (name_to_handle_at) to
// reopen its object on demand, plus the (parent, name) links it is known by
// (the most recently used first): they give view paths, policy, and the
// fallback reopen by name when the filesystem has no file handles. A hard
// link adds a link, unlinking a name removes it (the last one stays, so an
// open unlinked file keeps a path for its records). Open fds live in the bounded
// FdCache, keyed by the inode's serial (never by address, which may be reused).
//
// Lifetime. nlookup counts the kernel's references (+1 per entry reply, -n per
// forget); children counts links of other Inodes that point here. An Inode is
// erased when both are zero and it is not pinned (bind roots, synthetic).
//
// Concurrency. One mutex, mu_, guards the map and every Inode's mutable
// fields (links_, nlookup_, children_, detached_). It is never held across a
// syscall or a fuse_reply_*; access_ is a cache with its own atomics.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "config/policy.hpp"
#include "fs/sys/sys.hpp"

namespace scopefs::fs {

struct InodeKey {
  dev_t dev;
  ino_t ino;
  bool operator==(const InodeKey&) const = default;
};

struct InodeKeyHash {
  size_t operator()(const InodeKey& k) const {
    return std::hash<uint64_t>()(static_cast<uint64_t>(k.ino) * 0x9E3779B97F4A7C15ULL ^
                                 static_cast<uint64_t>(k.dev));
  }
};

class Inode {
 public:
  Inode(InodeKey key, mode_t type, int bind, uint64_t serial)
      : key_(key), type_(type), bind_(bind), serial_(serial) {}
  Inode(const Inode&) = delete;
  Inode& operator=(const Inode&) = delete;
  Inode(Inode&&) = delete;
  Inode& operator=(Inode&&) = delete;

  const InodeKey& key() const { return key_; }
  mode_t type() const { return type_; }
  bool is_dir() const { return S_ISDIR(type_); }
  bool is_symlink() const { return S_ISLNK(type_); }
  int bind() const { return bind_; }  // -1: synthetic
  bool synthetic() const { return bind_ < 0; }
  uint64_t serial() const { return serial_; }

  // Set once before the Inode is published.
  sys::FileHandle handle;
  bool has_handle = false;
  bool pinned = false;
  size_t synthetic_index = 0;  // for synthetic inodes

  // Access level cache: valid while access_gen == the view's policy generation.
  std::atomic<uint64_t> access_gen{UINT64_MAX};
  std::atomic<config::Access> access{config::Access::Hide};

  // Handles open through the view (any mode), and those open for writing.
  std::atomic<int> open_handles{0};
  std::atomic<int> open_writers{0};

  // Held changes: the number of the object's upper copy in the stage
  // (fs/stage.hpp), 0 while the view shows the real object.
  std::atomic<uint64_t> upper{0};

  // keep_cache bookkeeping: mtime (ns) and size seen at the last open/release.
  std::atomic<int64_t> cache_mtime_ns{-1};
  std::atomic<int64_t> cache_size{-1};

 private:
  friend class InodeTable;
  const InodeKey key_;
  const mode_t type_;
  const int bind_;
  const uint64_t serial_;
  struct Link {
    Inode* parent;
    std::string name;
  };
  // Guarded by InodeTable::mu_.
  std::vector<Link> links_;  // front: the name used for the view path
  bool detached_ = false;
  uint64_t nlookup_ = 0;
  uint64_t children_ = 0;
};

class InodeTable {
 public:
  // Adds a pinned inode (bind root or synthetic) with the given parent link.
  Inode* add_pinned(std::unique_ptr<Inode> node, Inode* parent, std::string_view name);

  // Finds the inode for `key` or publishes `fresh` (which must have that key);
  // counts one kernel lookup and relinks it under (parent, name). If `fresh` is
  // null and the key is unknown, returns null without counting.
  Inode* acquire(const InodeKey& key, std::unique_ptr<Inode> fresh, Inode* parent,
                 std::string_view name);

  // The inode for `key` if known (no counting). Only for short checks: the
  // pointer may be erased by a concurrent forget.
  bool known_with(const InodeKey& key, const std::function<bool(const Inode&)>& pred) const;

  // Counts a lookup of the inode known by `key` (relinking it) if it still
  // names the same object: when `handle` differs from the inode's own, the
  // inode number was reused by a new object, so the old inode is detached
  // (kept until the kernel forgets it) and null is returned.
  Inode* acquire_if_same(const InodeKey& key, const sys::FileHandle* handle, Inode* parent,
                         std::string_view name);

  // Forgets n kernel lookups; returns the serials of inodes erased as a result
  // (the caller drops their cached fds outside the lock).
  std::vector<uint64_t> forget(Inode* node, uint64_t n);

  // After a rename: the inode known by `key` (if any) moves from (from, name)
  // to (to, newname).
  void relink(const InodeKey& key, Inode* from, std::string_view name, Inode* to,
              std::string_view newname);
  // After an unlink (or a rename over it): (parent, name) no longer names
  // the inode known by `key`, unless it was its only name.
  void unlink_name(const InodeKey& key, Inode* parent, std::string_view name);

  // The view path of an inode ("" for the root), from its parent links.
  std::string path_of(const Inode* node) const;
  // Parent and name, read consistently.
  std::pair<Inode*, std::string> parent_and_name(const Inode* node) const;

  size_t size() const;

  // Runs `fn` on the inode known by `key` (if any) under the table's lock;
  // `fn` must not block. Returns whether one was found.
  bool with(const InodeKey& key, const std::function<void(Inode&)>& fn);
  // The (parent, name) links of the inode known by `key`.
  std::vector<std::pair<Inode*, std::string>> names_of(const InodeKey& key) const;

 private:
  void link_locked(Inode* node, Inode* parent, std::string_view name);
  // Drops one link (and the parent's count); erases the parent if that was
  // all that kept it.
  void drop_link_locked(Inode* node, size_t index);
  void maybe_erase_locked(Inode* node, std::vector<uint64_t>& erased);

  mutable std::mutex mu_;
  std::unordered_map<InodeKey, std::unique_ptr<Inode>, InodeKeyHash> map_;
  std::vector<std::unique_ptr<Inode>> pinned_;  // synthetic inodes (no real key)
  // Inodes whose (dev, ino) was reused by another object, until forgotten.
  std::unordered_map<const Inode*, std::unique_ptr<Inode>> detached_;
};

}  // namespace scopefs::fs
