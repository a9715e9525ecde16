// The journal's narrow key-value interface (STYLE rule 4): build a transaction
// value, submit it (optionally durably), get, iterate a prefix, sync. RocksDB
// backs the daemon and CLI; the in-memory store backs unit tests.
//
// Keys are byte strings; each logical change is one transaction (one RocksDB
// WriteBatch), so a record, its indexes and its blob reference counts land
// together or not at all.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fs/result.hpp"

namespace scopefs::journal {

class KvTxn {
 public:
  enum class Kind : uint8_t { Put, Delete, Add };
  struct Op {
    Kind kind;
    std::string key;
    std::string value;  // Put: bytes; Add: signed 64-bit delta, 8 bytes little-endian
  };
  void put(std::string key, std::string value) {
    ops_.push_back({Kind::Put, std::move(key), std::move(value)});
  }
  void del(std::string key) { ops_.push_back({Kind::Delete, std::move(key), {}}); }
  // Adds `delta` to a 64-bit counter stored at `key` (missing = 0).
  void add(std::string key, int64_t delta);
  const std::vector<Op>& ops() const { return ops_; }
  bool empty() const { return ops_.empty(); }

 private:
  std::vector<Op> ops_;
};

// Encoding of counters (KvTxn::add): 8 bytes little-endian, signed.
std::string encode_i64(int64_t v);
int64_t decode_i64(std::string_view s);

class KvStore {
 public:
  virtual ~KvStore() = default;
  // Applies the transaction atomically. `sync`: durable (fsync'd) on return;
  // otherwise written to the store's log (survives a process crash) and made
  // durable by the next sync().
  virtual Result<void> submit(const KvTxn& txn, bool sync) = 0;
  virtual Result<std::optional<std::string>> get(std::string_view key) = 0;
  // Visits keys >= start that begin with `prefix`, in order, until `fn` returns false.
  virtual Result<void> scan(std::string_view prefix, std::string_view start,
                            const std::function<bool(std::string_view, std::string_view)>& fn) = 0;
  // The last key that begins with `prefix`, with its value (none if no key does).
  virtual Result<std::optional<std::pair<std::string, std::string>>> last(
      std::string_view prefix) = 0;
  // Makes everything submitted so far durable.
  virtual Result<void> sync() = 0;
  // Bytes used on disk (0 for memory).
  virtual uint64_t disk_bytes() const = 0;
};

// Opens (creating if asked) a RocksDB store. On failure returns null and sets
// `error`. read_only: no writes, safe beside a running daemon.
std::unique_ptr<KvStore> open_rocksdb(const std::string& path, bool read_only, std::string& error);
std::unique_ptr<KvStore> make_memory_store();

}  // namespace scopefs::journal
