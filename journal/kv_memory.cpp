#include <map>
#include <mutex>

#include "journal/kv.hpp"

namespace scopefs::journal {

void KvTxn::add(std::string key, int64_t delta) {
  ops_.push_back({Kind::Add, std::move(key), encode_i64(delta)});
}

std::string encode_i64(int64_t v) {
  std::string s(8, '\0');
  auto u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i) s[static_cast<size_t>(i)] = static_cast<char>((u >> (8 * i)) & 0xff);
  return s;
}

int64_t decode_i64(std::string_view s) {
  if (s.size() != 8) return 0;
  uint64_t u = 0;
  for (int i = 7; i >= 0; --i) u = (u << 8) | static_cast<unsigned char>(s[static_cast<size_t>(i)]);
  return static_cast<int64_t>(u);
}

namespace {

class MemoryStore final : public KvStore {
 public:
  Result<void> submit(const KvTxn& txn, bool) override {
    std::lock_guard lk(mu_);
    for (const auto& op : txn.ops()) {
      switch (op.kind) {
        case KvTxn::Kind::Put: map_[op.key] = op.value; break;
        case KvTxn::Kind::Delete: map_.erase(op.key); break;
        case KvTxn::Kind::Add: {
          auto it = map_.find(op.key);
          int64_t cur = it == map_.end() ? 0 : decode_i64(it->second);
          map_[op.key] = encode_i64(cur + decode_i64(op.value));
          break;
        }
      }
    }
    return {};
  }
  Result<std::optional<std::string>> get(std::string_view key) override {
    std::lock_guard lk(mu_);
    auto it = map_.find(std::string(key));
    if (it == map_.end()) return std::optional<std::string>{};
    return std::optional<std::string>{it->second};
  }
  Result<void> scan(std::string_view prefix, std::string_view start,
                    const std::function<bool(std::string_view, std::string_view)>& fn) override {
    std::vector<std::pair<std::string, std::string>> items;
    {
      std::lock_guard lk(mu_);
      std::string from = start.empty() || start < prefix ? std::string(prefix) : std::string(start);
      for (auto it = map_.lower_bound(from); it != map_.end(); ++it) {
        if (it->first.compare(0, prefix.size(), prefix) != 0) break;
        items.emplace_back(it->first, it->second);
      }
    }
    for (auto& [k, v] : items)
      if (!fn(k, v)) break;
    return {};
  }
  Result<std::optional<std::pair<std::string, std::string>>> last(
      std::string_view prefix) override {
    using Kv = std::optional<std::pair<std::string, std::string>>;
    std::lock_guard lk(mu_);
    // The first key past every key with the prefix, then one step back.
    std::string end(prefix);
    while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xff) end.pop_back();
    auto it = map_.end();
    if (!end.empty()) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      it = map_.lower_bound(end);
    }
    if (it == map_.begin()) return Kv{};
    --it;
    if (it->first.compare(0, prefix.size(), prefix) != 0) return Kv{};
    return Kv{std::pair{it->first, it->second}};
  }
  Result<void> sync() override { return {}; }
  uint64_t disk_bytes() const override { return 0; }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> map_;
};

}  // namespace

std::unique_ptr<KvStore> make_memory_store() { return std::make_unique<MemoryStore>(); }

}  // namespace scopefs::journal
