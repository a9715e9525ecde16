// RocksDB implementation of KvStore (STYLE rules 8, 15, 21).
//
// Every rocksdb::Status is inspected and mapped to an errno (NoSpace →
// ENOSPC, other I/O errors → EIO). After a write error RocksDB stops
// accepting writes; the next submit tries DB::Resume() once, so a state
// directory that had a full disk recovers when space is freed.
#include <rocksdb/db.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/options.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <filesystem>
#include <mutex>

#include "journal/kv.hpp"

namespace scopefs::journal {
namespace {

// The one place where a Status is deliberately not acted upon (rule 8).
void permit_unchecked(const rocksdb::Status& s, const char* what) {
  if (!s.ok()) SPDLOG_DEBUG("rocksdb {} ignored: {}", what, s.ToString());
  (void)what;
}

int to_errno(const rocksdb::Status& s) {
  if (s.ok()) return 0;
  if (s.IsNoSpace() || s.subcode() == rocksdb::Status::kNoSpace) return ENOSPC;
  if (s.IsIOError()) return EIO;
  if (s.IsCorruption()) return EIO;
  if (s.IsNotFound()) return ENOENT;
  if (s.IsBusy() || s.IsTryAgain()) return EAGAIN;
  return EIO;
}

class AddOperator final : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&, const rocksdb::Slice* existing, const rocksdb::Slice& value,
             std::string* new_value, rocksdb::Logger*) const override {
    int64_t base = existing ? decode_i64(std::string_view(existing->data(), existing->size())) : 0;
    *new_value = encode_i64(base + decode_i64(std::string_view(value.data(), value.size())));
    return true;
  }
  const char* Name() const override { return "scopefs.add64"; }
};

class RocksStore final : public KvStore {
 public:
  RocksStore(rocksdb::DB* db, bool read_only, std::string path)
      : db_(db), read_only_(read_only), path_(std::move(path)) {}
  ~RocksStore() override {
    if (!read_only_ && healthy()) permit_unchecked(db_->SyncWAL(), "SyncWAL at close");
    permit_unchecked(db_->Close(), "Close");
    delete db_;
  }

  Result<void> submit(const KvTxn& txn, bool sync) override {
    if (read_only_) return Errno{EROFS};
    rocksdb::WriteBatch batch;
    for (const auto& op : txn.ops()) {
      rocksdb::Status s;
      switch (op.kind) {
        case KvTxn::Kind::Put: s = batch.Put(op.key, op.value); break;
        case KvTxn::Kind::Delete: s = batch.Delete(op.key); break;
        case KvTxn::Kind::Add: s = batch.Merge(op.key, op.value); break;
      }
      if (!s.ok()) return Errno{to_errno(s)};
    }
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    if (failed_.load()) {
      std::lock_guard lk(mu_);
      if (failed_.load() && !resume_locked()) return Errno{failed_errno_.load()};
    }
    rocksdb::Status s = db_->Write(wo, &batch);
    if (!s.ok()) {
      failed_errno_.store(to_errno(s));
      failed_.store(true);
      spdlog::error("journal write failed: {}", s.ToString());
      return Errno{to_errno(s)};
    }
    return {};
  }

  Result<std::optional<std::string>> get(std::string_view key) override {
    std::string value;
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), rocksdb::Slice(key.data(), key.size()), &value);
    if (s.IsNotFound()) return std::optional<std::string>{};
    if (!s.ok()) return Errno{to_errno(s)};
    return std::optional<std::string>{std::move(value)};
  }

  Result<std::optional<std::pair<std::string, std::string>>> last(
      std::string_view prefix) override {
    using Kv = std::optional<std::pair<std::string, std::string>>;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    std::string end(prefix);
    while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xff) end.pop_back();
    if (end.empty()) {
      it->SeekToLast();
    } else {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      it->SeekForPrev(end);
      // SeekForPrev lands on `end` itself when that key exists.
      if (it->Valid() && it->key().compare(rocksdb::Slice(end)) >= 0) it->Prev();
    }
    if (!it->status().ok()) return Errno{to_errno(it->status())};
    if (!it->Valid()) return Kv{};
    rocksdb::Slice k = it->key();
    if (k.size() < prefix.size() || std::string_view(k.data(), prefix.size()) != prefix)
      return Kv{};
    return Kv{std::pair{k.ToString(), it->value().ToString()}};
  }
  Result<void> scan(std::string_view prefix, std::string_view start,
                    const std::function<bool(std::string_view, std::string_view)>& fn) override {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    std::string from = start.empty() || start < prefix ? std::string(prefix) : std::string(start);
    for (it->Seek(from); it->Valid(); it->Next()) {
      rocksdb::Slice k = it->key();
      if (k.size() < prefix.size() || std::string_view(k.data(), prefix.size()) != prefix) break;
      rocksdb::Slice v = it->value();
      if (!fn(std::string_view(k.data(), k.size()), std::string_view(v.data(), v.size()))) break;
    }
    if (!it->status().ok()) return Errno{to_errno(it->status())};
    return {};
  }

  Result<void> sync() override {
    if (read_only_) return {};
    std::lock_guard lk(mu_);
    // After a failed log append, SyncWAL must not run before the database has
    // resumed (RocksDB asserts on it).
    if (failed_.load() && !resume_locked()) return Errno{failed_errno_.load()};
    rocksdb::Status s = db_->SyncWAL();
    if (!s.ok()) return Errno{to_errno(s)};
    return {};
  }

  bool healthy() {
    std::lock_guard lk(mu_);
    return !failed_.load() || resume_locked();
  }

  // Tries to leave RocksDB's read-only error state (mu_ held).
  bool resume_locked() {
    rocksdb::Status r = db_->Resume();
    if (!r.ok()) return false;
    failed_.store(false);
    spdlog::info("journal: writes resumed");
    return true;
  }

  uint64_t disk_bytes() const override {
    uint64_t total = 0;
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator(path_, ec))
      if (e.is_regular_file(ec)) total += e.file_size(ec);
    return total;
  }

 private:
  rocksdb::DB* db_;
  bool read_only_;
  std::string path_;
  // After a failed write, every write and sync first resumes the database
  // (under mu_, which also serialises syncs with resumption).
  std::mutex mu_;
  std::atomic<bool> failed_{false};
  std::atomic<int> failed_errno_{0};
};

}  // namespace

std::unique_ptr<KvStore> open_rocksdb(const std::string& path, bool read_only, std::string& error) {
  rocksdb::Options opts;
  opts.create_if_missing = !read_only;
  opts.merge_operator = std::make_shared<AddOperator>();
  opts.manual_wal_flush = false;
  opts.max_log_file_size = 64 << 20;
  opts.keep_log_file_num = 4;
  opts.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  opts.paranoid_checks = true;
  // Record, event, time and run keys are appended in order under their
  // two-byte prefix ("r/", "a/", "t/", "u/"): the memtable keeps an insert
  // hint per prefix instead of searching the skiplist from the top each time.
  opts.memtable_insert_with_hint_prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(2));
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = read_only ? rocksdb::DB::OpenForReadOnly(opts, path, &db)
                                : rocksdb::DB::Open(opts, path, &db);
  if (!s.ok()) {
    error = s.ToString();
    return nullptr;
  }
  return std::make_unique<RocksStore>(db, read_only, path);
}

}  // namespace scopefs::journal
