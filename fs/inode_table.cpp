#include "fs/inode_table.hpp"

#include <algorithm>
#include <cassert>
#include <string>

namespace scopefs::fs {

Inode* InodeTable::add_pinned(std::unique_ptr<Inode> node, Inode* parent, std::string_view name) {
  std::lock_guard lk(mu_);
  Inode* raw = node.get();
  raw->pinned = true;
  link_locked(raw, parent, name);
  if (raw->synthetic()) pinned_.push_back(std::move(node));
  else map_.emplace(raw->key(), std::move(node));
  return raw;
}

void InodeTable::link_locked(Inode* node, Inode* parent, std::string_view name) {
  if (!parent) {
    if (node->links_.empty()) node->links_.push_back({nullptr, std::string(name)});
    return;
  }
  auto& links = node->links_;
  for (size_t i = 0; i < links.size(); ++i) {
    if (links[i].parent == parent && links[i].name == name) {
      if (i != 0)
        std::rotate(links.begin(), links.begin() + static_cast<long>(i),
                    links.begin() + static_cast<long>(i) + 1);
      return;
    }
  }
  links.insert(links.begin(), {parent, std::string(name)});
  ++parent->children_;
}

void InodeTable::drop_link_locked(Inode* node, size_t index) {
  Inode* old = node->links_[index].parent;
  node->links_.erase(node->links_.begin() + static_cast<long>(index));
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
  std::vector<Inode*> todo{node};
  while (!todo.empty()) {
    Inode* n = todo.back();
    todo.pop_back();
    if (!n || n->pinned || n->nlookup_ != 0 || n->children_ != 0) continue;
    for (auto& l : n->links_) {
      if (!l.parent) continue;
      --l.parent->children_;
      todo.push_back(l.parent);
    }
    erased.push_back(n->serial());
    if (n->detached_) detached_.erase(n);  // destroys n
    else map_.erase(n->key());             // destroys n
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

void InodeTable::relink(const InodeKey& key, Inode* from, std::string_view name, Inode* to,
                        std::string_view newname) {
  std::lock_guard lk(mu_);
  auto it = map_.find(key);
  if (it == map_.end() || it->second->pinned) return;
  Inode* node = it->second.get();
  link_locked(node, to, newname);                                 // now at the front
  node->access_gen.store(UINT64_MAX, std::memory_order_release);  // its path changed
  auto& links = node->links_;
  for (size_t i = 1; i < links.size(); ++i) {
    if (links[i].parent == from && links[i].name == name) {
      drop_link_locked(node, i);
      break;
    }
  }
}

void InodeTable::unlink_name(const InodeKey& key, Inode* parent, std::string_view name) {
  std::lock_guard lk(mu_);
  auto it = map_.find(key);
  if (it == map_.end() || it->second->pinned) return;
  Inode* node = it->second.get();
  if (node->links_.size() < 2) return;  // keep the last name
  for (size_t i = 0; i < node->links_.size(); ++i) {
    if (node->links_[i].parent == parent && node->links_[i].name == name) {
      drop_link_locked(node, i);
      node->access_gen.store(UINT64_MAX, std::memory_order_release);  // its path may change
      return;
    }
  }
}

std::string InodeTable::path_of(const Inode* node) const {
  std::vector<const std::string*> parts;
  std::lock_guard lk(mu_);
  for (const Inode* n = node; n && !n->links_.empty() && n->links_.front().parent;
       n = n->links_.front().parent)
    parts.push_back(&n->links_.front().name);
  std::string out;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!out.empty()) out += '/';
    out += **it;
  }
  return out;
}

std::pair<Inode*, std::string> InodeTable::parent_and_name(const Inode* node) const {
  std::lock_guard lk(mu_);
  if (node->links_.empty()) return {nullptr, {}};
  return {node->links_.front().parent, node->links_.front().name};
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

std::vector<std::pair<Inode*, std::string>> InodeTable::names_of(const InodeKey& key) const {
  std::lock_guard lk(mu_);
  std::vector<std::pair<Inode*, std::string>> out;
  auto it = map_.find(key);
  if (it == map_.end()) return out;
  for (const auto& l : it->second->links_) out.emplace_back(l.parent, l.name);
  return out;
}

bool InodeTable::with(const InodeKey& key, const std::function<void(Inode&)>& fn) {
  std::lock_guard lk(mu_);
  auto it = map_.find(key);
  if (it == map_.end()) return false;
  fn(*it->second);
  return true;
}

}  // namespace scopefs::fs
