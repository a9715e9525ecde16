#include "journal/gc.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <set>

namespace scopefs::journal {
namespace {

constexpr int64_t kNs = 1000000000;
constexpr size_t kBatch = 256;  // records per transaction

int64_t clock_ns() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNs + ts.tv_nsec;
}

int64_t ctime_ns(const struct stat& st) {
  return static_cast<int64_t>(st.st_ctim.tv_sec) * kNs + st.st_ctim.tv_nsec;
}

// States whose images the record's blob references were counted for: every
// record written by complete()/append_with() (journal.hpp); not intents or
// records a crash left as intents.
bool counted(RecordState s) { return s != RecordState::Intent && s != RecordState::Interrupted; }

// The states of `r` naming a before-image.
std::vector<std::optional<ObjectState>*> with_blob(Record& r) {
  std::vector<std::optional<ObjectState>*> out;
  for (auto* st : {&r.before, &r.victim, &r.after})
    if (*st && (*st)->blob && (*st)->hash) out.push_back(st);
  return out;
}

}  // namespace

std::string GcReport::summary() const {
  return "expired " + std::to_string(records) + " records, removed " + std::to_string(blobs) +
         " before-images (" + std::to_string(bytes) + " bytes; " + std::to_string(orphans) +
         " unreferenced), " + std::to_string(kept_shared) + " still shared, " +
         std::to_string(tmp_files) + " temporary files";
}

Result<GcReport> collect_garbage(Journal& j, const GcOptions& opts, const CallerInfo& who) {
  GcReport rep;
  const int64_t now = opts.now_ns ? opts.now_ns : clock_ns();
  rep.cutoff_ns = now - opts.retention_s * kNs;

  // 1. Expire old records; note what the others still name.
  std::set<std::string> live;               // hashes (hex) records still name
  std::map<std::string, int64_t> released;  // hash → references released
  std::vector<Record> batch;
  auto flush = [&]() -> Result<void> {
    if (batch.empty() || opts.dry_run) {
      batch.clear();
      return {};
    }
    KvTxn txn;
    for (Record& r : batch) {
      for (auto* st : with_blob(r)) {
        txn.add("b/" + (*st)->hash->hex(), -1);
        (*st)->blob = false;
      }
      r.expired = true;
      txn.put(record_key(r.seq), encode_record(r));
    }
    batch.clear();
    return j.rewrite_keys(txn);
  };
  Result<void> werr;
  auto s = j.scan(1, [&](const Record& r, int err) {
    if (err) return true;  // unreadable: left alone (its blobs may be swept only if uncounted)
    Record copy = r;
    auto blobs = with_blob(copy);
    if (blobs.empty()) return true;
    bool expire = r.time_ns < rep.cutoff_ns && counted(r.state) && r.state != RecordState::Held;
    if (!expire) {
      for (auto* st : blobs) live.insert((*st)->hash->hex());
      return true;
    }
    for (auto* st : blobs) ++released[(*st)->hash->hex()];
    rep.expired.push_back(r.seq);
    ++rep.records;
    batch.push_back(std::move(copy));
    if (batch.size() >= kBatch) {
      werr = flush();
      if (!werr) return false;
    }
    return true;
  });
  if (!s) return Errno{s.error()};
  if (!werr) return Errno{werr.error()};
  if (auto f = flush(); !f) return Errno{f.error()};

  // 2. Remove blob files nothing needs.
  BlobStore* store = j.blobs();
  if (store) {
    const int64_t young = std::min(opts.orphan_age_s, opts.retention_s) * kNs;
    for (const auto& [hex, n] : released) {
      Hash128 h;
      if (!Hash128::parse(hex, h)) continue;
      auto c = j.blob_refs(h);
      if (live.count(hex) || (c && *c - (opts.dry_run ? n : 0) > 0)) ++rep.kept_shared;
    }
    store->for_each_blob([&](const Hash128& h, const std::string& p) {
      std::string hex = h.hex();
      if (live.count(hex)) return;
      auto c = j.blob_refs(h);
      if (!c) return;
      auto rel = released.find(hex);
      int64_t pending = opts.dry_run && rel != released.end() ? rel->second : 0;
      if (*c - pending > 0) return;
      struct stat st {};
      if (::lstat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
      if (ctime_ns(st) > now - young) return;
      if (!opts.dry_run && ::unlink(p.c_str()) != 0) {
        spdlog::warn("gc: cannot remove {}: {}", p, std::strerror(errno));
        return;
      }
      ++rep.blobs;
      rep.bytes += static_cast<uint64_t>(st.st_size);
      if (rel == released.end()) ++rep.orphans;
    });
    namespace stdfs = std::filesystem;
    std::error_code ec3;
    for (auto f = stdfs::directory_iterator(store->dir() + "/tmp", ec3);
         !ec3 && f != stdfs::directory_iterator(); f.increment(ec3)) {
      struct stat st {};
      std::string p = f->path().string();
      if (::lstat(p.c_str(), &st) != 0 || S_ISDIR(st.st_mode)) continue;
      if (ctime_ns(st) > now - opts.tmp_age_s * kNs) continue;
      if (!opts.dry_run && ::unlink(p.c_str()) != 0) continue;
      ++rep.tmp_files;
    }
  }

  // 3. The gc record.
  if (!opts.dry_run) {
    Record g;
    g.op = "gc";
    g.state = RecordState::Applied;
    g.caller = who;
    g.note = rep.summary();
    if (auto w = j.append(g); !w) return Errno{w.error()};
    rep.seq = g.seq;
    if (auto y = j.sync(); !y) spdlog::warn("gc: journal sync: {}", std::strerror(y.error()));
  }
  return rep;
}

}  // namespace scopefs::journal
