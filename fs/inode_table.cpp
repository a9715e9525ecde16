#include "fs/inode_table.hpp"

#include <algorithm>
#include <cassert>

namespace scopefs::fs {

Inode* InodeTable::add_pinned(std::unique_ptr<Inode> node, Inode* parent, std::string name) {
  std::lock_guard lk(mu_);
  Inode* raw = node.get();
  raw->pinned = true;
  link_locked(raw, parent, name);
  if (raw->synthetic())
    pinned_.push_back(std::move(node));
  else
    map_.emplace(raw->key(), std::move(node));
  return raw;
}

void InodeTable::link_locked(Inode* node, Inode* parent, std::string_view name) {
  if (node->parent_ == parent && node->name_ == name) return;
  Inode* old = node->parent_;
  node->parent_ = parent;
  node->name_.assign(name);
  if (parent) ++parent->children_;
  if (old) {
    --old->children_;
    // The old parent may have been kept only by this link. Its cached fd (if
    // any) is keyed by a serial never reused, so the cache just ages it out.
    std::vector<uint64_t> ignored;
    maybe_erase_locked(old, ignored);
  }
}

Inode* InodeTable::acquire(const InodeKey& key, std::unique_ptr<Inode> fresh, Inode* parent,
                           std::string_view name) {
  std::lock_guard lk(mu_);
  auto it = map_.find(key);
  Inode* node;
  if (it != map_.end()) {
    node = it->second.get();
  } else {
    if (!fresh) return nullptr;
    node = fresh.get();
    map_.emplace(key, std::move(fresh));
  }
  ++node->nlookup_;
  // Bind roots keep their fixed place in the view whatever name reaches them.
  if (!node->pinned) link_locked(node, parent, name);
  return node;
}

Inode* InodeTable::acquire_if_same(const InodeKey& key, const sys::FileHandle* handle,
                                   Inode* parent, std::string_view name) {
  std::lock_guard lk(mu_);
  auto it = map_.find(key);
  if (it == map_.end()) return nullptr;
  Inode* node = it->second.get();
  if (handle && node->has_handle && !node->pinned &&
      (node->handle.type != handle->type || node->handle.bytes != handle->bytes)) {
    node->detached_ = true;
    detached_.emplace(node, std::move(it->second));
    map_.erase(it);
    std::vector<uint64_t> ignored;
    maybe_erase_locked(node, ignored);
    return nullptr;
  }
  ++node->nlookup_;
  if (!node->pinned) link_locked(node, parent, name);
  return node;
}

void InodeTable::maybe_erase_locked(Inode* node, std::vector<uint64_t>& erased) {
  while (node && !node->pinned && node->nlookup_ == 0 && node->children_ == 0) {
    Inode* parent = node->parent_;
    if (parent) --parent->children_;
    erased.push_back(node->serial());
    if (node->detached_)
      detached_.erase(node);  // destroys node
    else
      map_.erase(node->key());  // destroys node
    node = parent;
  }
}

std::vector<uint64_t> InodeTable::forget(Inode* node, uint64_t n) {
  std::vector<uint64_t> erased;
  std::lock_guard lk(mu_);
  assert(node->nlookup_ >= n || node->pinned);
  node->nlookup_ = node->nlookup_ >= n ? node->nlookup_ - n : 0;
  maybe_erase_locked(node, erased);
  return erased;
}

void InodeTable::relink(const InodeKey& key, Inode* parent, std::string_view name) {
  std::lock_guard lk(mu_);
  auto it = map_.find(key);
  if (it == map_.end() || it->second->pinned) return;
  link_locked(it->second.get(), parent, name);
}

std::string InodeTable::path_of(const Inode* node) const {
  std::vector<const std::string*> parts;
  std::lock_guard lk(mu_);
  for (const Inode* n = node; n && n->parent_; n = n->parent_) parts.push_back(&n->name_);
  std::string out;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!out.empty()) out += '/';
    out += **it;
  }
  return out;
}

std::pair<Inode*, std::string> InodeTable::parent_and_name(const Inode* node) const {
  std::lock_guard lk(mu_);
  return {node->parent_, node->name_};
}

bool InodeTable::known_with(const InodeKey& key,
                            const std::function<bool(const Inode&)>& pred) const {
  std::lock_guard lk(mu_);
  auto it = map_.find(key);
  return it != map_.end() && pred(*it->second);
}

size_t InodeTable::size() const {
  std::lock_guard lk(mu_);
  return map_.size();
}

}  // namespace scopefs::fs
