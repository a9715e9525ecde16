#include "journal/chain.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <unordered_map>

#include "journal/record.hpp"

namespace scopefs::journal {
namespace {

constexpr size_t kEventHeader = 1 + 8 + 8 + 8 + 32;  // version, eseq, rseq, time, prev
constexpr size_t kCheckpointSize = 1 + 8 + 8 + 32 + 32 + 64;
constexpr std::string_view kCheckpointDomain = "scopefs-checkpoint-v1";

void put_be64(std::string& s, uint64_t v) {
  for (int i = 7; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_be64(std::string_view s, size_t at) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

template <size_t N>
void put_bytes(std::string& s, const std::array<uint8_t, N>& a) {
  s.append(reinterpret_cast<const char*>(a.data()), N);
}

template <size_t N>
void get_bytes(std::string_view s, size_t at, std::array<uint8_t, N>& a) {
  std::memcpy(a.data(), s.data() + at, N);
}

// What an event's hash covers: its header and the digest of the value (so a
// bundle can leave a value out and keep the chain checkable).
std::string event_header(const ChainEvent& e) {
  std::string b;
  b.reserve(kEventHeader);
  b.push_back(static_cast<char>(kChainVersion));
  put_be64(b, e.eseq);
  put_be64(b, e.rseq);
  put_be64(b, static_cast<uint64_t>(e.time_ns));
  put_bytes(b, e.prev);
  return b;
}

}  // namespace

std::string event_key(uint64_t eseq) {
  std::string k = "a/";
  put_be64(k, eseq);
  return k;
}

std::string checkpoint_key(uint64_t eseq) {
  std::string k = "k/";
  put_be64(k, eseq);
  return k;
}

std::optional<uint64_t> eseq_of_key(std::string_view key, char prefix) {
  if (key.size() != 10 || key[0] != prefix || key[1] != '/') return std::nullopt;
  return get_be64(key, 2);
}

Digest event_hash_of(const ChainEvent& e, const Digest& value_digest) {
  std::string b = event_header(e);
  put_bytes(b, value_digest);
  return blake2b(b);
}

Digest event_hash(const ChainEvent& e) { return event_hash_of(e, blake2b(e.value)); }

std::string encode_event(const ChainEvent& e) {
  std::string b = event_header(e);
  b += e.value;
  put_bytes(b, event_hash(e));
  return b;
}

Result<ChainEvent> decode_event(std::string_view v) {
  if (v.size() < kEventHeader + 32 || static_cast<uint8_t>(v[0]) != kChainVersion)
    return Errno{EBADMSG};
  ChainEvent e;
  e.eseq = get_be64(v, 1);
  e.rseq = get_be64(v, 9);
  e.time_ns = static_cast<int64_t>(get_be64(v, 17));
  get_bytes(v, 25, e.prev);
  e.value.assign(v.substr(kEventHeader, v.size() - kEventHeader - 32));
  get_bytes(v, v.size() - 32, e.hash);
  return e;
}

std::string checkpoint_message(const Checkpoint& c) {
  std::string m(kCheckpointDomain);
  m.push_back(static_cast<char>(kChainVersion));
  put_be64(m, c.eseq);
  put_be64(m, static_cast<uint64_t>(c.time_ns));
  put_bytes(m, c.head);
  put_bytes(m, c.key);
  return m;
}

std::string encode_checkpoint(const Checkpoint& c) {
  std::string m = checkpoint_message(c).substr(kCheckpointDomain.size());
  put_bytes(m, c.sig);
  return m;
}

Result<Checkpoint> decode_checkpoint(std::string_view v) {
  if (v.size() != kCheckpointSize || static_cast<uint8_t>(v[0]) != kChainVersion)
    return Errno{EBADMSG};
  Checkpoint c;
  c.eseq = get_be64(v, 1);
  c.time_ns = static_cast<int64_t>(get_be64(v, 9));
  get_bytes(v, 17, c.head);
  get_bytes(v, 49, c.key);
  get_bytes(v, 81, c.sig);
  return c;
}

Checkpoint make_checkpoint(uint64_t eseq, int64_t time_ns, const Digest& head,
                           const SigningKey& key) {
  Checkpoint c;
  c.eseq = eseq;
  c.time_ns = time_ns;
  c.head = head;
  c.key = key.public_key();
  c.sig = key.sign(checkpoint_message(c));
  return c;
}

bool checkpoint_signed_by(const Checkpoint& c, const PublicKey& pk) {
  return c.key == pk && verify_signature(pk, checkpoint_message(c), c.sig);
}

std::string head_file_path(const std::string& state_dir) { return state_dir + "/chain.head"; }

std::optional<Checkpoint> read_head_file(const std::string& state_dir) {
  std::ifstream in(head_file_path(state_dir));
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  std::string bytes(kCheckpointSize, '\0');
  if (!from_hex(line, reinterpret_cast<uint8_t*>(bytes.data()), bytes.size())) return std::nullopt;
  auto c = decode_checkpoint(bytes);
  if (!c) return std::nullopt;
  return *c;
}

// ---------------------------------------------------------------------------

Chain::Chain(KvStore& kv, std::optional<SigningKey> key, std::string state_dir, bool read_only)
    : kv_(kv), key_(key), state_dir_(std::move(state_dir)) {
  auto last = kv_.last("a/");
  if (!last) throw std::runtime_error("cannot read the journal's hash chain");
  if (*last) {
    auto e = decode_event((*last)->second);
    if (!e)
      throw std::runtime_error(
          "the newest event of the hash chain cannot be read (scopefs verify)");
    head_eseq_ = e->eseq;
    head_ = e->hash;
  }
  if (auto c = kv_.last("k/"); c && *c) {
    if (auto cp = decode_checkpoint((*c)->second)) checkpointed_ = cp->eseq;
  }
  if (read_only) return;
  auto marker = kv_.get("m/chain");
  if (!marker) throw std::runtime_error("cannot read the journal's metadata");
  if (*marker) return;
  // A journal from before the chain: chain its records as they are now.
  uint64_t chained = 0;
  KvTxn batch;
  auto flush = [&]() -> bool {
    if (batch.empty()) return true;
    bool ok = static_cast<bool>(kv_.submit(batch, false));
    batch = KvTxn{};
    return ok;
  };
  bool failed = false;
  auto r = kv_.scan("r/", "", [&](std::string_view k, std::string_view v) {
    auto seq = seq_of_key(k);
    if (!seq) return true;
    ChainEvent e;
    e.eseq = head_eseq_ + 1;
    e.rseq = *seq;
    e.time_ns = 0;
    e.prev = head_;
    e.value.assign(v);
    batch.put(event_key(e.eseq), encode_event(e));
    head_ = event_hash(e);
    head_eseq_ = e.eseq;
    ++chained;
    if (chained % 1000 == 0 && !flush()) {
      failed = true;
      return false;
    }
    return true;
  });
  if (!r || failed || !flush())
    throw std::runtime_error("cannot chain the journal's existing records");
  KvTxn m;
  m.put("m/chain",
        chained ? "1 (" + std::to_string(chained) + " records chained at upgrade)" : "1");
  if (!kv_.submit(m, true)) throw std::runtime_error("cannot write the journal's metadata");
  if (chained)
    spdlog::info("journal: {} records from before the hash chain are now chained", chained);
}

uint64_t Chain::head_eseq() const {
  std::lock_guard lk(mu_);
  return head_eseq_;
}

Result<void> Chain::submit(KvTxn txn, bool sync, int64_t now_ns) {
  std::lock_guard lk(mu_);
  uint64_t eseq = head_eseq_;
  Digest head = head_;
  // One event per record written, added to the same transaction (the
  // record's bytes are not copied again into a second one).
  std::vector<std::pair<std::string, std::string>> events;
  for (const auto& op : txn.ops()) {
    if (op.kind != KvTxn::Kind::Put) continue;
    auto rseq = seq_of_key(op.key);
    if (!rseq) continue;
    ChainEvent e;
    e.eseq = ++eseq;
    e.rseq = *rseq;
    e.time_ns = now_ns;
    e.prev = head;
    e.value = op.value;
    std::string stored = encode_event(e);
    get_bytes(stored, stored.size() - 32, head);
    events.emplace_back(event_key(e.eseq), std::move(stored));
  }
  for (auto& [k, v] : events) txn.put(std::move(k), std::move(v));
  auto r = kv_.submit(txn, sync);
  if (!r) return r;
  head_eseq_ = eseq;
  head_ = head;
  return {};
}

Result<void> Chain::checkpoint(int64_t now_ns) {
  if (!key_) return {};
  Checkpoint c;
  {
    std::lock_guard lk(mu_);
    if (head_eseq_ == checkpointed_) return {};
    c = make_checkpoint(head_eseq_, now_ns, head_, *key_);
    KvTxn txn;
    txn.put(checkpoint_key(c.eseq), encode_checkpoint(c));
    // Synced: the events it covers are in the log before it.
    if (auto r = kv_.submit(txn, true); !r) return r;
    checkpointed_ = c.eseq;
  }
  if (state_dir_.empty()) return {};
  // The head file, replaced atomically; written after the synced checkpoint
  // so that it is never ahead of the database.
  std::string enc = encode_checkpoint(c);
  std::string line = to_hex(reinterpret_cast<const uint8_t*>(enc.data()), enc.size()) + "\n";
  std::string path = head_file_path(state_dir_), tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno{errno};
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
            ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    if (ok) err = errno;
    ::unlink(tmp.c_str());
    return Errno{err};
  }
  return {};
}

// ---------------------------------------------------------------------------

VerifyReport verify_journal(KvStore& kv, const VerifyOptions& opts) {
  VerifyReport rep;
  auto problem = [&](uint64_t rseq, uint64_t eseq, std::string what) {
    rep.problems.push_back({rseq, eseq, std::move(what)});
  };
  // Pass 1: the events, in key order. For each record, the digest of its
  // newest chained value.
  struct Newest {
    Digest value;
    uint64_t eseq;
  };
  std::unordered_map<uint64_t, Newest> newest;
  std::unordered_map<uint64_t, Digest> hash_at;  // event → hash, for checkpoints
  uint64_t expect = 1;
  Digest prev{};
  auto r = kv.scan("a/", "", [&](std::string_view k, std::string_view v) {
    ++rep.events;
    bool broken = false;
    auto key_eseq = eseq_of_key(k, 'a');
    auto e = decode_event(v);
    if (!key_eseq || !e) {
      problem(0, key_eseq.value_or(0),
              "chain event " + std::to_string(key_eseq.value_or(0)) + " is unreadable (corrupt)");
      return true;
    }
    auto rec = decode_record(e->value);
    std::string who = "record " + std::to_string(e->rseq);
    if (*key_eseq != expect) {
      if (*key_eseq > expect)
        problem(e->rseq, expect,
                "chain events " + std::to_string(expect) + ".." + std::to_string(*key_eseq - 1) +
                    " are missing (deleted) before " + who + "'s event " +
                    std::to_string(*key_eseq));
      else
        problem(e->rseq, *key_eseq,
                "chain event " + std::to_string(*key_eseq) + " is out of order");
      broken = true;
    }
    if (e->eseq != *key_eseq) {
      problem(e->rseq, *key_eseq,
              "chain event stored at " + std::to_string(*key_eseq) + " is event " +
                  std::to_string(e->eseq) + " (" + who + "): events reordered");
      broken = true;
    }
    if (event_hash(*e) != e->hash) {
      problem(e->rseq, *key_eseq,
              who + ": its chain event " + std::to_string(*key_eseq) +
                  " was edited (hash mismatch)");
      broken = true;
    } else if (!broken && e->prev != prev) {
      problem(e->rseq, *key_eseq,
              who + ": chain event " + std::to_string(*key_eseq) +
                  " does not follow the one before it (inserted, deleted or reordered)");
      broken = true;
    }
    if (!rec || rec->seq != e->rseq)
      problem(e->rseq, *key_eseq, who + ": its chained value is not that record's (forged event)");
    newest[e->rseq] = Newest{blake2b(e->value), *key_eseq};
    hash_at[*key_eseq] = e->hash;
    prev = e->hash;
    expect = *key_eseq + 1;
    rep.head_eseq = *key_eseq;
    return true;
  });
  if (!r) {
    problem(0, 0, std::string("the chain cannot be read: ") + std::strerror(r.error()));
    return rep;
  }
  // Pass 2: the records as they are now.
  std::unordered_map<uint64_t, bool> seen;
  std::unordered_map<std::string, uint64_t> by_digest;  // only built when needed
  r = kv.scan("r/", "", [&](std::string_view k, std::string_view v) {
    ++rep.records;
    auto seq = seq_of_key(k);
    if (!seq) return true;
    seen[*seq] = true;
    auto it = newest.find(*seq);
    if (it == newest.end()) {
      problem(*seq, 0, "record " + std::to_string(*seq) + " is not in the chain (inserted)");
      return true;
    }
    Digest d = blake2b(v);
    if (d == it->second.value) return true;
    auto rec = decode_record(v);
    if (rec && rec->seq != *seq) {
      problem(*seq, it->second.eseq,
              "record " + std::to_string(*seq) + " holds record " + std::to_string(rec->seq) +
                  "'s content (records swapped or moved)");
      return true;
    }
    problem(*seq, it->second.eseq,
            "record " + std::to_string(*seq) +
                " was edited: it differs from its chained value (event " +
                std::to_string(it->second.eseq) + ")");
    return true;
  });
  if (!r) {
    problem(0, 0, std::string("the records cannot be read: ") + std::strerror(r.error()));
    return rep;
  }
  std::vector<uint64_t> deleted;
  for (const auto& [seq, n] : newest)
    if (!seen.count(seq)) deleted.push_back(seq);
  std::sort(deleted.begin(), deleted.end());
  for (uint64_t seq : deleted)
    problem(seq, newest[seq].eseq,
            "record " + std::to_string(seq) + " was deleted (its chain event " +
                std::to_string(newest[seq].eseq) + " remains)");
  // Pass 3: checkpoints.
  if (opts.key) rep.key_fingerprint = fingerprint(*opts.key);
  auto check_cp = [&](const Checkpoint& c, const std::string& where) {
    if (opts.key && !checkpoint_signed_by(c, *opts.key)) {
      problem(0, c.eseq,
              where + " of event " + std::to_string(c.eseq) +
                  (c.key == *opts.key ? " has a bad signature (forged or edited)"
                                      : " is signed by another key (" + fingerprint(c.key) + ")"));
      return;
    }
    auto it = hash_at.find(c.eseq);
    if (it == hash_at.end()) {
      if (c.eseq > rep.head_eseq)
        problem(0, rep.head_eseq + 1,
                "the journal was truncated: " + where + " covers events up to " +
                    std::to_string(c.eseq) + " but the chain ends at event " +
                    std::to_string(rep.head_eseq) + " (records after " +
                    "the newest one left were deleted)");
      else
        problem(0, c.eseq, where + " names event " + std::to_string(c.eseq) + ", which is missing");
      return;
    }
    if (it->second != c.head) {
      problem(0, c.eseq,
              where + " does not match chain event " + std::to_string(c.eseq) +
                  ": the chain was rewritten up to there");
      return;
    }
    if (opts.key && c.eseq > rep.anchored_eseq) rep.anchored_eseq = c.eseq;
  };
  r = kv.scan("k/", "", [&](std::string_view k, std::string_view v) {
    ++rep.checkpoints;
    auto c = decode_checkpoint(v);
    auto at = eseq_of_key(k, 'k');
    if (!c || !at || *at != c->eseq) {
      problem(0, at.value_or(0), "checkpoint " + std::to_string(at.value_or(0)) + " is corrupt");
      return true;
    }
    check_cp(*c, "checkpoint");
    return true;
  });
  if (!r) problem(0, 0, std::string("the checkpoints cannot be read: ") + std::strerror(r.error()));
  if (opts.head_file) check_cp(*opts.head_file, "the head file (chain.head)");
  else if (opts.head_file_expected && rep.events > 0)
    problem(0, 0,
            "the head file (chain.head) is missing or unreadable: the tail cannot be checked");
  if (!opts.key && rep.events > 0)
    rep.notes.emplace_back("no public key: checkpoint signatures not checked");
  if (opts.key && rep.head_eseq > rep.anchored_eseq) {
    std::string what = std::to_string(rep.head_eseq - rep.anchored_eseq) + " newest event(s) (" +
                       std::to_string(rep.anchored_eseq + 1) + ".." +
                       std::to_string(rep.head_eseq) + ") are not covered by a signed checkpoint";
    if (opts.quiescent)
      problem(0, rep.anchored_eseq + 1,
              what + " although no daemon is writing: appended or forged");
    else rep.notes.push_back(what + " yet (a running daemon signs about once a second)");
  }
  std::stable_sort(rep.problems.begin(), rep.problems.end(), [](const auto& a, const auto& b) {
    uint64_t ka = a.eseq ? a.eseq : UINT64_MAX, kb = b.eseq ? b.eseq : UINT64_MAX;
    return ka < kb;
  });
  return rep;
}

}  // namespace scopefs::journal
