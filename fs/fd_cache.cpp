#include "fs/fd_cache.hpp"

#include <vector>

namespace scopefs::fs {

FdRef FdCache::get(uint64_t serial) {
  std::lock_guard lk(mu_);
  auto it = map_.find(serial);
  if (it == map_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->fd;
}

void FdCache::put(uint64_t serial, FdRef fd) {
  std::vector<FdRef> evicted;  // closed after unlocking
  {
    std::lock_guard lk(mu_);
    auto it = map_.find(serial);
    if (it != map_.end()) {
      evicted.push_back(std::move(it->second->fd));
      it->second->fd = std::move(fd);
      lru_.splice(lru_.begin(), lru_, it->second);
      return;
    }
    lru_.push_front(Entry{serial, std::move(fd)});
    map_.emplace(serial, lru_.begin());
    while (map_.size() > capacity_) {
      evicted.push_back(std::move(lru_.back().fd));
      map_.erase(lru_.back().serial);
      lru_.pop_back();
    }
  }
}

void FdCache::erase(uint64_t serial) {
  FdRef victim;
  std::lock_guard lk(mu_);
  auto it = map_.find(serial);
  if (it == map_.end()) return;
  victim = std::move(it->second->fd);
  lru_.erase(it->second);
  map_.erase(it);
}

size_t FdCache::size() const {
  std::lock_guard lk(mu_);
  return map_.size();
}

}  // namespace scopefs::fs
