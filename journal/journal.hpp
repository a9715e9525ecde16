// The journal of one task: records in a KvStore, before-images in a BlobStore.
//
// Keys:
//   "r/" seq(be64)                 → record (journal/record.hpp)
//   "p/" view path "\0" seq(be64)  → "" (index: records by path; a rename's
//                                   or link's second path too)
//   "t/" time(be64) seq(be64)      → "" (index: records by time; the time is
//                                   ns since the epoch, sign bit flipped)
//   "n/" run "\0" seq(be64)        → "" (index: records by run id)
//   "b/" hash hex                  → reference count (i64, merge-added)
//   "h/" seq(be64)                 → "" (index: held changes not yet decided)
//   "s/..."                        → the stage overlay (fs/stage.hpp)
//   "m/..."                        → metadata: "m/schema" (record schema
//                                   version), "m/index" (kIndexVersion once
//                                   every record is in the p/, t/, n/ indexes),
//                                   "m/chain", "m/stream/<sink>" (audit cursors)
//   "a/" eseq(be64)                → hash-chain event: every value written to
//                                    an "r/" key, in commit order (journal/chain.hpp)
//   "k/" eseq(be64)                → signed checkpoint of the chain's head
//
// Indexes: a record's p/, t/ and n/ keys are written with its first write
// (intent, append, append_with), so even an intent is found by path, time
// and run; a journal written before the t/ and n/ indexes existed gets them
// once, at its first writable open (then "m/index" is set). Readers
// (journal/query.hpp) use the indexes only when "m/index" says they are
// complete.
//
// Write-ahead protocol: intent() stores the record with state "intent" before
// the real tree changes, with its path, time and run index keys; complete()
// rewrites it with the outcome and adds its blob references, in one
// transaction. At open, leftover intents (a crash between the two) are marked
// "interrupted".
//
// Durability: every submit reaches RocksDB's log before returning (so it
// survives the daemon being killed); a background thread syncs the log every
// sync_interval_ms when something was written (group commit), and sync()
// makes everything durable at once — called at the agent's durability points
// (fsync). With `sync_each`, every intent is synced before the tree changes.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "journal/blob_store.hpp"
#include "journal/chain.hpp"
#include "journal/kv.hpp"
#include "journal/record.hpp"

namespace scopefs::journal {

struct JournalOptions {
  std::string task;
  std::string run;
  bool sync_each = false;
  int sync_interval_ms = 20;
  // How often the syncer signs a checkpoint of the chain's head (when it grew).
  int checkpoint_interval_ms = 1000;
};

class Journal {
 public:
  // Opens (creating) the journal in STATE_DIR/journal and STATE_DIR/blobs.
  // Throws std::runtime_error with a clear message on failure.
  static std::unique_ptr<Journal> open(const std::string& state_dir, JournalOptions opts);
  // Read-only view of a journal (safe beside a running daemon).
  static std::unique_ptr<Journal> open_read_only(const std::string& state_dir);
  // Over a given store (unit tests).
  Journal(std::unique_ptr<KvStore> kv, std::unique_ptr<BlobStore> blobs, JournalOptions opts,
          bool read_only, std::string state_dir = {});
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Assigns seq and time; stores the record as an intent.
  Result<void> intent(Record& r);
  // Stores the outcome, with path indexes and blob references (+1 for each
  // before-image the record names), in one transaction.
  Result<void> complete(Record& r);
  // A record written once (denied attempts, mount/unmount).
  Result<void> append(Record& r);
  // A record written once together with `extra` (held changes and the
  // overlay keys they set; decisions), with its indexes and blob references.
  // A preset r.seq (reserve_seq) is kept.
  Result<void> append_with(Record& r, const KvTxn& extra);
  // complete() together with `extra` (an approval and the held change's new state).
  Result<void> complete_with(Record& r, const KvTxn& extra);
  // A sequence number for a record written later with append_with().
  uint64_t reserve_seq();
  // Overlay keys alone (normalisation after approve).
  Result<void> rewrite_keys(const KvTxn& txn);
  // Rewrites a record (a held change's new state) together with `extra`.
  Result<void> rewrite(const Record& r, const KvTxn& extra);
  // Held changes not yet decided, by sequence.
  Result<std::vector<Record>> held();
  Result<void> sync();
  // False when the state directory's filesystem is below its low-water mark:
  // new changes are then refused (ENOSPC) so that the outcomes of changes
  // already under way can still be recorded.
  bool has_space();

  Result<std::optional<Record>> get(uint64_t seq);
  // Visits records from `from_seq` on, in order. Corrupt records are passed
  // with their errno (the record is default-constructed but for seq).
  Result<void> scan(uint64_t from_seq, const std::function<bool(const Record&, int err)>& fn);
  Result<int64_t> blob_refs(const Hash128& h);

  BlobStore* blobs() { return blobs_.get(); }
  KvStore& kv() { return *kv_; }
  const JournalOptions& options() const { return opts_; }
  uint64_t last_seq() const { return next_seq_.load() - 1; }
  // Records marked interrupted at open.
  uint64_t recovered() const { return recovered_; }
  // The hash chain (null for read-only journals).
  Chain* chain() { return chain_.get(); }
  // Signs a checkpoint of the chain's head now (if it grew).
  Result<void> checkpoint();

 private:
  Result<void> submit(KvTxn txn, bool sync);
  void recover();
  void sweep_linked_orphans(const std::unordered_set<std::string>& named);
  void syncer();

  std::unique_ptr<KvStore> kv_;
  std::unique_ptr<BlobStore> blobs_;
  JournalOptions opts_;
  bool read_only_;
  std::atomic<uint64_t> next_seq_{1};
  std::string state_dir_;  // empty for in-memory journals
  uint64_t low_water_ = 0;
  std::atomic<int64_t> space_checked_ms_{0};
  std::atomic<bool> space_plenty_{false};
  uint64_t recovered_ = 0;
  std::unique_ptr<Chain> chain_;  // every submit goes through it

  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  bool dirty_ = false;  // guarded by sync_mu_
  bool stop_ = false;   // guarded by sync_mu_
  std::thread syncer_;
};

std::string path_index_key(std::string_view path, uint64_t seq);
std::string time_index_key(int64_t time_ns, uint64_t seq);
std::string run_index_key(std::string_view run, uint64_t seq);
std::string held_key(uint64_t seq);
// The sequence number at the end of an index key (any of the above).
std::optional<uint64_t> seq_of_index_key(std::string_view key);

// Version of the index set (p/, t/, n/), stored at kIndexVersionKey.
constexpr int kIndexVersion = 1;
constexpr std::string_view kIndexVersionKey = "m/index";

}  // namespace scopefs::journal
