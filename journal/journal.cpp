#include "journal/journal.hpp"

#include <sys/stat.h>

#include <spdlog/spdlog.h>

#include <sys/statvfs.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <stdexcept>
#include <unordered_set>

namespace scopefs::journal {
namespace {

int64_t now_ns() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string be64(uint64_t v) {
  std::string s;
  for (int i = 7; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}

// The indexes written with a record's first write (intent, append,
// append_with), and by the backfill of older journals: by path (and a
// rename's or link's second path), by time, by run.
void add_first_write_indexes(KvTxn& txn, const Record& r) {
  if (!r.path.empty()) txn.put(path_index_key(r.path, r.seq), "");
  if (!r.path2.empty() && (r.op == "rename" || r.op == "link"))
    txn.put(path_index_key(r.path2, r.seq), "");
  txn.put(time_index_key(r.time_ns, r.seq), "");
  if (!r.run.empty()) txn.put(run_index_key(r.run, r.seq), "");
}

// A journal written before the time and run indexes existed gets them (and
// any missing path key) once: every record's indexes, in batches, then
// "m/index". Idempotent, so an interrupted backfill simply runs again.
void backfill_indexes(KvStore& kv) {
  auto v = kv.get(kIndexVersionKey);
  if (!v) throw std::runtime_error("cannot read the journal");
  if (*v && **v == std::to_string(kIndexVersion)) return;
  KvTxn txn;
  size_t in_batch = 0;
  uint64_t done = 0;
  int err = 0;
  auto r = kv.scan("r/", "", [&](std::string_view, std::string_view val) {
    auto rec = decode_record(val);
    if (!rec) return true;  // unreadable: nothing to index it by
    add_first_write_indexes(txn, *rec);
    ++done;
    if (++in_batch == 4096) {
      if (auto s = kv.submit(txn, false); !s) {
        err = s.error();
        return false;
      }
      txn = KvTxn{};
      in_batch = 0;
    }
    return true;
  });
  if (!r) throw std::runtime_error("cannot scan the journal to index it");
  txn.put(std::string(kIndexVersionKey), std::to_string(kIndexVersion));
  if (err == 0) {
    if (auto s = kv.submit(txn, true); !s) err = s.error();
  }
  if (err)
    throw std::runtime_error(std::string("cannot write the journal's indexes: ") +
                             std::strerror(err));
  if (done) spdlog::info("journal: indexed {} records by time and run", done);
}

}  // namespace

std::string path_index_key(std::string_view path, uint64_t seq) {
  std::string k = "p/";
  k.append(path);
  k.push_back('\0');
  k += be64(seq);
  return k;
}

std::string time_index_key(int64_t time_ns, uint64_t seq) {
  // Offset binary: the sign bit flipped, so negative times sort first.
  std::string k = "t/";
  k += be64(static_cast<uint64_t>(time_ns) ^ (uint64_t{1} << 63));
  k += be64(seq);
  return k;
}

std::string run_index_key(std::string_view run, uint64_t seq) {
  std::string k = "n/";
  k.append(run);
  k.push_back('\0');
  k += be64(seq);
  return k;
}

std::optional<uint64_t> seq_of_index_key(std::string_view key) {
  if (key.size() < 10) return std::nullopt;
  uint64_t v = 0;
  for (size_t i = key.size() - 8; i < key.size(); ++i)
    v = (v << 8) | static_cast<unsigned char>(key[i]);
  return v;
}

std::unique_ptr<Journal> Journal::open(const std::string& state_dir, JournalOptions opts) {
  std::string err;
  std::error_code ec;
  std::filesystem::create_directories(state_dir + "/journal", ec);
  auto kv = open_rocksdb(state_dir + "/journal", false, err);
  if (!kv) throw std::runtime_error("cannot open the journal in " + state_dir + "/journal: " + err);
  auto blobs = std::make_unique<BlobStore>(state_dir + "/blobs");
  // Root's alone, whatever the umask (the daemon runs with 0 so that the
  // view's files get the modes their callers ask for): the state directory
  // itself may be opened to the admin group for its control socket.
  for (const char* sub : {"/journal", "/blobs", "/blobs/tmp"})
    ::chmod((state_dir + sub).c_str(), 0700);
  return std::make_unique<Journal>(std::move(kv), std::move(blobs), std::move(opts), false,
                                   state_dir);
}

std::unique_ptr<Journal> Journal::open_read_only(const std::string& state_dir) {
  std::string err;
  auto kv = open_rocksdb(state_dir + "/journal", true, err);
  if (!kv) throw std::runtime_error("cannot open the journal in " + state_dir + "/journal: " + err);
  return std::make_unique<Journal>(std::move(kv), nullptr, JournalOptions{}, true);
}

Journal::Journal(std::unique_ptr<KvStore> kv, std::unique_ptr<BlobStore> blobs, JournalOptions opts,
                 bool read_only, std::string state_dir)
    : kv_(std::move(kv)),
      blobs_(std::move(blobs)),
      opts_(std::move(opts)),
      read_only_(read_only),
      state_dir_(std::move(state_dir)) {
  if (!state_dir_.empty()) {
    struct statvfs sv {};
    if (::statvfs(state_dir_.c_str(), &sv) == 0) {
      // 5% of the filesystem, between 1 MiB and 16 MiB.
      uint64_t total = static_cast<uint64_t>(sv.f_blocks) * sv.f_frsize;
      low_water_ = std::clamp<uint64_t>(total / 20, 1 << 20, 16 << 20);
    }
  }
  // The next sequence follows the last record.
  auto last = kv_->last("r/");
  if (!last) throw std::runtime_error("cannot read the journal");
  next_seq_ = (*last ? seq_of_key((*last)->first).value_or(0) : 0) + 1;
  if (!read_only_) {
    KvTxn meta;
    meta.put("m/schema", std::to_string(kSchemaVersion));
    if (auto s = kv_->submit(meta, true); !s)
      throw std::runtime_error(std::string("cannot write the journal: ") +
                               std::strerror(s.error()));
    // The signing key lives in the state directory; an in-memory journal
    // (unit tests) signs with a key of its own.
    chain_ = std::make_unique<Chain>(*kv_,
                                     state_dir_.empty() ? SigningKey::generate()
                                                        : SigningKey::load_or_create(state_dir_),
                                     state_dir_, false);
    backfill_indexes(*kv_);
    recover();
    syncer_ = std::thread([this] { syncer(); });
  }
}

Journal::~Journal() {
  if (syncer_.joinable()) {
    {
      std::lock_guard lk(sync_mu_);
      stop_ = true;
    }
    sync_cv_.notify_all();
    syncer_.join();
  }
  if (chain_) {
    if (auto r = checkpoint(); !r)
      spdlog::error("journal: final checkpoint failed: {}", std::strerror(r.error()));
  }
  if (!read_only_) {
    KvTxn closed;
    closed.del("m/open");
    if (auto r = kv_->submit(closed, false); !r)
      spdlog::error("journal: cannot mark the journal closed: {}", std::strerror(r.error()));
    if (auto r = kv_->sync(); !r)
      spdlog::error("journal: final sync failed: {}", std::strerror(r.error()));
  }
}

void Journal::recover() {
  // "m/open" is set while a writer has the journal open and removed when it
  // closes cleanly: found set, the last writer crashed.
  auto was_open = kv_->get("m/open");
  bool crashed = was_open && *was_open;
  std::vector<Record> open;
  std::unordered_set<std::string> named;  // blobs named by uncounted (intent, interrupted) records
  auto r = kv_->scan("r/", "", [&](std::string_view, std::string_view v) {
    auto rec = decode_record(v);
    if (!rec || (rec->state != RecordState::Intent && rec->state != RecordState::Interrupted))
      return true;
    if (rec->state == RecordState::Intent) open.push_back(*rec);
    for (const auto* st : {&rec->before, &rec->victim, &rec->after})
      if (*st && (*st)->blob && (*st)->hash) named.insert((*st)->hash->hex());
    return true;
  });
  if (!r) throw std::runtime_error("cannot scan the journal for interrupted changes");
  for (Record& rec : open) {
    rec.state = RecordState::Interrupted;
    KvTxn txn;
    txn.put(record_key(rec.seq), encode_record(rec));
    txn.put(path_index_key(rec.path, rec.seq), "");
    if (!rec.path2.empty() && rec.op == "rename") txn.put(path_index_key(rec.path2, rec.seq), "");
    if (auto s = submit(txn, true); !s)
      throw std::runtime_error("cannot mark interrupted change " + std::to_string(rec.seq));
    spdlog::warn("journal: change {} ({} {}) was interrupted by a crash", rec.seq, rec.op,
                 rec.path);
  }
  recovered_ = open.size();
  if (crashed) sweep_linked_orphans(named);
  KvTxn mark;
  mark.put("m/open", "1");
  if (auto s = kv_->submit(mark, true); !s)
    throw std::runtime_error("cannot write the journal's metadata");
}

// A crash between publishing a before-image by hard link (the agent's file
// about to lose its last name) and writing the intent that names it leaves
// the user's file with an extra link into the store and no record. After a
// crash, at open (nothing under way yet), such blob files — more than one
// link, no reference count, named by no uncounted record — are unlinked, so
// the user's file gets its link count back.
void Journal::sweep_linked_orphans(const std::unordered_set<std::string>& named) {
  if (!blobs_) return;
  size_t removed = blobs_->remove_tmp_links();
  blobs_->for_each_blob([&](const Hash128& h, const std::string& p) {
    if (named.count(h.hex())) return;
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink < 2) return;
    auto c = blob_refs(h);
    if (!c || *c > 0) return;
    if (::unlink(p.c_str()) == 0) ++removed;
  });
  if (removed)
    spdlog::warn("journal: unlinked {} before-image(s) a crash left linked to live files", removed);
}

void Journal::syncer() {
  std::unique_lock lk(sync_mu_);
  auto last_checkpoint = std::chrono::steady_clock::now();
  while (!stop_) {
    sync_cv_.wait_for(lk, std::chrono::milliseconds(opts_.sync_interval_ms));
    auto now = std::chrono::steady_clock::now();
    bool sign = now - last_checkpoint >= std::chrono::milliseconds(opts_.checkpoint_interval_ms);
    if (!dirty_ && !sign) continue;
    dirty_ = false;
    lk.unlock();
    if (auto r = kv_->sync(); !r)
      spdlog::error("journal: sync failed: {}", std::strerror(r.error()));
    if (sign) {
      last_checkpoint = now;
      if (auto r = checkpoint(); !r)
        spdlog::error("journal: checkpoint failed: {}", std::strerror(r.error()));
    }
    lk.lock();
  }
}

Result<void> Journal::checkpoint() {
  if (!chain_) return {};
  return chain_->checkpoint(now_ns());
}

Result<void> Journal::submit(KvTxn txn, bool sync) {
  if (read_only_) return Errno{EROFS};
  auto r = chain_->submit(std::move(txn), sync, now_ns());
  if (r && !sync) {
    std::lock_guard lk(sync_mu_);
    dirty_ = true;
  }
  return r;
}

Result<void> Journal::intent(Record& r) {
  r.seq = next_seq_.fetch_add(1);
  r.time_ns = now_ns();
  r.task = opts_.task;
  r.run = opts_.run;
  r.state = RecordState::Intent;
  KvTxn txn;
  txn.put(record_key(r.seq), encode_record(r));
  add_first_write_indexes(txn, r);
  return submit(std::move(txn), opts_.sync_each);
}

namespace {

// +1 on the reference count of every blob the record names.
void add_blob_refs(KvTxn& txn, const Record& r) {
  for (const auto* st : {&r.before, &r.victim, &r.after})
    if (*st && (*st)->blob && (*st)->hash) txn.add("b/" + (*st)->hash->hex(), 1);
}

void append_ops(KvTxn& txn, const KvTxn& extra) {
  for (const auto& op : extra.ops()) {
    switch (op.kind) {
      case KvTxn::Kind::Put: txn.put(op.key, op.value); break;
      case KvTxn::Kind::Delete: txn.del(op.key); break;
      case KvTxn::Kind::Add: txn.add(op.key, decode_i64(op.value)); break;
    }
  }
}

}  // namespace

Result<void> Journal::complete(Record& r) { return complete_with(r, KvTxn{}); }

uint64_t Journal::reserve_seq() { return next_seq_.fetch_add(1); }

Result<void> Journal::rewrite_keys(const KvTxn& txn) { return submit(txn, false); }

Result<void> Journal::complete_with(Record& r, const KvTxn& extra) {
  // The path keys were written with the intent (same seq, same paths): the
  // outcome rewrites only the record, and adds its blob references.
  KvTxn txn;
  txn.put(record_key(r.seq), encode_record(r));
  add_blob_refs(txn, r);
  append_ops(txn, extra);
  return submit(std::move(txn), false);
}

Result<void> Journal::append_with(Record& r, const KvTxn& extra) {
  if (r.seq == 0) r.seq = next_seq_.fetch_add(1);
  r.time_ns = now_ns();
  r.task = opts_.task;
  r.run = opts_.run;
  KvTxn txn;
  txn.put(record_key(r.seq), encode_record(r));
  add_first_write_indexes(txn, r);
  add_blob_refs(txn, r);
  if (r.state == RecordState::Held) txn.put(held_key(r.seq), "");
  append_ops(txn, extra);
  return submit(std::move(txn), false);
}

Result<void> Journal::rewrite(const Record& r, const KvTxn& extra) {
  KvTxn txn;
  txn.put(record_key(r.seq), encode_record(r));
  if (r.state == RecordState::Held) txn.put(held_key(r.seq), "");
  else txn.del(held_key(r.seq));
  append_ops(txn, extra);
  return submit(std::move(txn), false);
}

Result<std::vector<Record>> Journal::held() {
  std::vector<uint64_t> seqs;
  auto r = kv_->scan("h/", "", [&](std::string_view k, std::string_view) {
    if (k.size() == 10) {
      uint64_t v = 0;
      for (size_t i = 2; i < 10; ++i) v = (v << 8) | static_cast<unsigned char>(k[i]);
      seqs.push_back(v);
    }
    return true;
  });
  if (!r) return Errno{r.error()};
  std::vector<Record> out;
  for (uint64_t s : seqs) {
    auto rec = get(s);
    if (!rec) return Errno{rec.error()};
    if (*rec && (*rec)->state == RecordState::Held) out.push_back(**rec);
  }
  return out;
}

std::string held_key(uint64_t seq) {
  std::string k = record_key(seq);
  k[0] = 'h';
  return k;
}

Result<void> Journal::append(Record& r) {
  r.seq = next_seq_.fetch_add(1);
  r.time_ns = now_ns();
  r.task = opts_.task;
  r.run = opts_.run;
  KvTxn txn;
  txn.put(record_key(r.seq), encode_record(r));
  add_first_write_indexes(txn, r);
  return submit(std::move(txn), false);
}

bool Journal::has_space() {
  if (state_dir_.empty() || low_water_ == 0) return true;
  // Asked before every change: look at the filesystem at most every 50 ms
  // while there is plenty of room, at every call once it gets close.
  struct timespec ts {};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  int64_t now_ms = static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
  if (now_ms - space_checked_ms_.load(std::memory_order_relaxed) < 50 &&
      space_plenty_.load(std::memory_order_relaxed))
    return true;
  struct statvfs sv {};
  if (::statvfs(state_dir_.c_str(), &sv) != 0) return true;
  uint64_t avail = static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
  space_plenty_.store(avail >= 4 * low_water_, std::memory_order_relaxed);
  space_checked_ms_.store(now_ms, std::memory_order_relaxed);
  return avail >= low_water_;
}

Result<void> Journal::sync() {
  if (read_only_) return {};
  return kv_->sync();
}

Result<std::optional<Record>> Journal::get(uint64_t seq) {
  auto v = kv_->get(record_key(seq));
  if (!v) return Errno{v.error()};
  if (!*v) return std::optional<Record>{};
  auto rec = decode_record(**v);
  if (!rec) return Errno{rec.error()};
  return std::optional<Record>{*rec};
}

Result<void> Journal::scan(uint64_t from_seq,
                           const std::function<bool(const Record&, int err)>& fn) {
  return kv_->scan("r/", record_key(from_seq), [&](std::string_view k, std::string_view v) {
    auto rec = decode_record(v);
    if (rec) return fn(*rec, 0);
    Record bad;
    bad.seq = seq_of_key(k).value_or(0);
    return fn(bad, rec.error());
  });
}

Result<int64_t> Journal::blob_refs(const Hash128& h) {
  auto v = kv_->get("b/" + h.hex());
  if (!v) return Errno{v.error()};
  return *v ? decode_i64(**v) : int64_t{0};
}

}  // namespace scopefs::journal
