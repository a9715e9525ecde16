// The hash chain: a tamper-evident, append-only history of the journal.
//
// Records ("r/" keys) are rewritten as changes progress (intent → applied,
// held → approved ...). Every write of a record value also appends a chain
// *event* in the same transaction, holding the exact bytes written:
//
//   "a/" eseq(be64) → header ‖ record value ‖ hash
//     header = version(1 byte, 1) ‖ eseq(be64) ‖ record seq(be64) ‖
//              time_ns(be64, two's complement) ‖ prev(32)
//     hash   = BLAKE2b-256(header ‖ BLAKE2b-256(record value)); prev = the
//              previous event's hash (zeros for event 1). Hashing the value's
//              digest lets an export bundle leave a value out (another run's
//              record) and still be checked link by link.
//
// so the events form one chain in commit order and the current value of each
// record must be the value of its newest event. Signed checkpoints anchor the
// head:
//
//   "k/" eseq(be64) → version(1) ‖ eseq(be64) ‖ time_ns(be64) ‖ head hash(32) ‖
//                     public key(32) ‖ Ed25519 signature(64)
//     signed message = "scopefs-checkpoint-v1" ‖ the bytes before the signature
//
// and the newest checkpoint is also written outside RocksDB, to
// STATE_DIR/chain.head (one line of hex), so that deleting the tail of the
// database (records, events and checkpoints together) is still detected.
//
// Concurrency: the Journal serialises every submit through the chain (one
// mutex, held across building the events and the RocksDB write, so chain
// order is commit order). Checkpoints are taken by the journal's syncer
// thread about once a second when the chain grew, and when the journal
// closes; a checkpoint is written synced before its head file, so a crash can
// leave the file behind the database, never ahead of it.
//
// What it protects against (docs/audit.md): any edit, deletion, insertion or
// reordering of records or events by someone without the signing key is
// reported by verify_journal(); with the key (root on the host), only copies
// of the chain held elsewhere (the live stream, export bundles, a pinned
// public key) can show a rewrite.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fs/result.hpp"
#include "journal/kv.hpp"
#include "journal/signing.hpp"

namespace scopefs::journal {

constexpr uint8_t kChainVersion = 1;

struct ChainEvent {
  uint64_t eseq = 0;
  uint64_t rseq = 0;
  int64_t time_ns = 0;
  Digest prev{};
  std::string value;  // the record value as written
  Digest hash{};      // as stored (verify compares it with event_hash())
};

std::string event_key(uint64_t eseq);
std::string checkpoint_key(uint64_t eseq);
std::optional<uint64_t> eseq_of_key(std::string_view key, char prefix);
// The hash an event's fields give.
Digest event_hash(const ChainEvent& e);
// The same from the digest of its value (the value itself not at hand).
Digest event_hash_of(const ChainEvent& e, const Digest& value_digest);
// body ‖ event_hash(e).
std::string encode_event(const ChainEvent& e);
// EBADMSG when too short or of an unknown version.
Result<ChainEvent> decode_event(std::string_view v);

struct Checkpoint {
  uint64_t eseq = 0;
  int64_t time_ns = 0;
  Digest head{};
  PublicKey key{};
  Signature sig{};
};
std::string encode_checkpoint(const Checkpoint& c);
Result<Checkpoint> decode_checkpoint(std::string_view v);
// The message a checkpoint's signature covers.
std::string checkpoint_message(const Checkpoint& c);
Checkpoint make_checkpoint(uint64_t eseq, int64_t time_ns, const Digest& head,
                           const SigningKey& key);
bool checkpoint_signed_by(const Checkpoint& c, const PublicKey& pk);

// STATE_DIR/chain.head.
std::string head_file_path(const std::string& state_dir);
std::optional<Checkpoint> read_head_file(const std::string& state_dir);

class Chain {
 public:
  // Reads the chain's head from the store. A journal written before the
  // chain existed ("m/chain" absent but records present) is chained once
  // here, record by record in sequence order, and says so in "m/chain".
  // Throws std::runtime_error when the store cannot be read or written.
  Chain(KvStore& kv, std::optional<SigningKey> key, std::string state_dir, bool read_only);

  // Submits `txn` with one event appended for each record value it puts,
  // atomically, in chain order.
  Result<void> submit(KvTxn txn, bool sync, int64_t now_ns);
  // Writes a signed checkpoint of the head (synced) and the head file, if the
  // chain grew since the last one and a key is loaded.
  Result<void> checkpoint(int64_t now_ns);

  uint64_t head_eseq() const;
  const std::optional<SigningKey>& key() const { return key_; }

 private:
  KvStore& kv_;
  std::optional<SigningKey> key_;
  std::string state_dir_;
  mutable std::mutex mu_;      // serialises submits and checkpoints
  uint64_t head_eseq_ = 0;     // guarded by mu_
  Digest head_{};              // guarded by mu_
  uint64_t checkpointed_ = 0;  // guarded by mu_
};

// What `scopefs verify` finds. `rseq` names the record (0 when unknown).
struct VerifyProblem {
  uint64_t rseq = 0;
  uint64_t eseq = 0;
  std::string what;
};

struct VerifyReport {
  uint64_t records = 0;
  uint64_t events = 0;
  uint64_t checkpoints = 0;
  uint64_t head_eseq = 0;
  uint64_t anchored_eseq = 0;  // newest event covered by a valid checkpoint
  std::string key_fingerprint;
  std::vector<VerifyProblem> problems;
  std::vector<std::string> notes;
  bool ok() const { return problems.empty(); }
};

struct VerifyOptions {
  // The key checkpoints must be signed with (a pinned one, or the state's).
  std::optional<PublicKey> key;
  // The head file's checkpoint, if the caller read one.
  std::optional<Checkpoint> head_file;
  bool head_file_expected = false;
  // True when no process writes the journal (the state lock was free): every
  // event must then be covered by a checkpoint.
  bool quiescent = false;
};

VerifyReport verify_journal(KvStore& kv, const VerifyOptions& opts);

}  // namespace scopefs::journal
