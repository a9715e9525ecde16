// A bounded LRU of O_PATH fds, keyed by inode serial.
//
// Inodes do not pin fds (DESIGN.md: the open-file limit is 20,000; trees have
// millions of files). Lookups and metadata operations borrow an fd from here;
// a miss reopens the object by file handle. Entries are shared_ptrs so that an
// eviction never closes an fd another thread is using: the fd closes when its
// last user lets go (unpublish before close, STYLE rule 16).
//
// Concurrency: one mutex guards the list and the map; no syscall runs under
// it (evicted fds are released after unlocking).
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "fs/sys/unique_fd.hpp"

namespace scopefs::fs {

using FdRef = std::shared_ptr<const sys::UniqueFd>;

class FdCache {
 public:
  explicit FdCache(size_t capacity) : capacity_(capacity) {}

  FdRef get(uint64_t serial);
  void put(uint64_t serial, FdRef fd);
  void erase(uint64_t serial);
  size_t size() const;

 private:
  struct Entry {
    uint64_t serial;
    FdRef fd;
  };
  size_t capacity_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // front = most recent
  std::unordered_map<uint64_t, std::list<Entry>::iterator> map_;
};

}  // namespace scopefs::fs
