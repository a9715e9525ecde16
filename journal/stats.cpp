#include "journal/stats.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "fs/sys/sys.hpp"

namespace scopefs::journal {
namespace {

bool held_change(RecordState s) {
  return s == RecordState::Held || s == RecordState::Approved || s == RecordState::Rejected;
}

LatencySummary summarise(std::vector<double>& v) {
  LatencySummary out;
  if (v.empty()) return out;
  std::sort(v.begin(), v.end());
  out.count = v.size();
  for (double x : v) out.sum_s += x;
  out.p50_s = quantile(v, 0.5);
  out.p95_s = quantile(v, 0.95);
  out.max_s = v.back();
  return out;
}

struct Hash128Hasher {
  size_t operator()(const Hash128& h) const {
    return static_cast<size_t>(h.low ^ (h.high * 0x9e3779b97f4a7c15ULL));
  }
};

}  // namespace

double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  auto n = static_cast<double>(sorted.size());
  auto rank = static_cast<size_t>(std::ceil(q * n));
  if (rank == 0) rank = 1;
  return sorted[std::min(rank, sorted.size()) - 1];
}

Result<JournalStats> compute_stats(Journal& j, const StatsFilter& f) {
  JournalStats s;
  // Times of held changes, for the latency of the decisions on them.
  std::unordered_map<uint64_t, int64_t> held_at;
  std::vector<double> approve_s, reject_s;
  std::unordered_set<Hash128, Hash128Hasher> distinct;
  auto held_time = [&](uint64_t seq) -> std::optional<int64_t> {
    if (auto it = held_at.find(seq); it != held_at.end()) return it->second;
    auto rec = j.get(seq);  // a held change the scan has not passed (not expected)
    if (rec && *rec && held_change((*rec)->state)) return (*rec)->time_ns;
    return std::nullopt;
  };
  auto r = j.scan(1, [&](const Record& rec, int err) {
    if (err) {
      ++s.records;
      ++s.unreadable;
      return true;
    }
    if (held_change(rec.state)) held_at.emplace(rec.seq, rec.time_ns);
    if (f.since_ns && rec.time_ns < *f.since_ns) return true;
    if (!f.run.empty() && rec.run != f.run) return true;
    ++s.records;
    s.task = rec.task;
    if (s.first_ns == 0 || rec.time_ns < s.first_ns) s.first_ns = rec.time_ns;
    s.last_ns = std::max(s.last_ns, rec.time_ns);
    std::string state(state_name(rec.state));
    ++s.operations[rec.op][state];
    ++s.states[state];
    switch (rec.state) {
      case RecordState::Held: ++s.pending; break;
      case RecordState::Approved: ++s.approved; break;
      case RecordState::Rejected: ++s.rejected; break;
      case RecordState::RolledBack: ++s.rolled_back; break;
      case RecordState::Failed: ++s.failed; break;
      case RecordState::Interrupted: ++s.interrupted; break;
      case RecordState::Denied: {
        ++s.denied;
        const char* name = rec.err ? strerrorname_np(rec.err) : nullptr;
        ++s.denied_by_errno[name ? name : "errno " + std::to_string(rec.err)];
        break;
      }
      default: break;
    }
    if (held_change(rec.state)) ++s.held_total;
    if (rec.op == "rollback") {
      if (rec.state == RecordState::Applied) ++s.rollbacks;
      if (rec.state == RecordState::Failed) ++s.rollbacks_failed;
    }
    if ((rec.op == "approve" || rec.op == "reject") && rec.state == RecordState::Applied &&
        rec.ref) {
      if (auto t = held_time(rec.ref)) {
        double secs = static_cast<double>(std::max<int64_t>(rec.time_ns - *t, 0)) / 1e9;
        (rec.op == "approve" ? approve_s : reject_s).push_back(secs);
      }
    }
    if (rec.expired) ++s.expired;
    for (const auto* st : {&rec.before, &rec.victim}) {
      if (!*st || !(*st)->blob || !(*st)->hash) continue;
      ++s.before_images;
      s.before_image_bytes += (*st)->size;
      if (distinct.insert(*(*st)->hash).second) {
        ++s.before_image_distinct;
        s.before_image_distinct_bytes += (*st)->size;
      }
    }
    return true;
  });
  if (!r) return Errno{r.error()};
  s.approve_latency = summarise(approve_s);
  s.reject_latency = summarise(reject_s);
  return s;
}

void add_disk_usage(JournalStats& s, Journal& j, const std::string& state_dir) {
  s.journal_bytes = j.kv().disk_bytes();
  std::error_code ec;
  const std::filesystem::path root = state_dir + "/blobs";
  for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().parent_path() == root && it->path().filename() == "tmp") {
      it.disable_recursion_pending();
      continue;
    }
    auto st = sys::stat_at(AT_FDCWD, it->path().c_str(), AT_SYMLINK_NOFOLLOW);
    if (!st || !S_ISREG(st->st_mode)) continue;
    ++s.blob_files;
    s.blob_bytes += static_cast<uint64_t>(st->st_size);
    s.blob_disk_bytes += static_cast<uint64_t>(st->st_blocks) * 512;
  }
}

namespace {

nlohmann::json latency_json(const LatencySummary& l) {
  return {{"count", l.count},
          {"sum_s", l.sum_s},
          {"p50_s", l.p50_s},
          {"p95_s", l.p95_s},
          {"max_s", l.max_s}};
}

}  // namespace

nlohmann::json stats_json(const JournalStats& s) {
  nlohmann::json out;
  out["task"] = s.task;
  out["records"] = s.records;
  out["unreadable_records"] = s.unreadable;
  out["first_t"] = s.first_ns;
  out["last_t"] = s.last_ns;
  out["operations"] = s.operations;
  out["states"] = s.states;
  out["held"] = {{"total", s.held_total},
                 {"pending", s.pending},
                 {"approved", s.approved},
                 {"rejected", s.rejected}};
  out["decision_latency"] = {{"approve", latency_json(s.approve_latency)},
                             {"reject", latency_json(s.reject_latency)}};
  out["rollbacks"] = {{"applied", s.rollbacks},
                      {"failed", s.rollbacks_failed},
                      {"changes_rolled_back", s.rolled_back}};
  out["denied"] = {{"total", s.denied}, {"by_errno", s.denied_by_errno}};
  out["failed"] = s.failed;
  out["interrupted"] = s.interrupted;
  out["expired"] = s.expired;
  out["before_images"] = {{"count", s.before_images},
                          {"bytes", s.before_image_bytes},
                          {"distinct", s.before_image_distinct},
                          {"distinct_bytes", s.before_image_distinct_bytes}};
  out["blob_store"] = {{"files", s.blob_files},
                       {"bytes", s.blob_bytes},
                       {"disk_bytes", s.blob_disk_bytes}};
  out["journal_bytes"] = s.journal_bytes;
  return out;
}

namespace {

// A label value: backslash, double quote and newline escaped.
std::string label_value(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out.push_back(c);
  }
  return out;
}

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

class PromWriter {
 public:
  explicit PromWriter(std::string_view task) : task_(label_value(task)) {}

  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void sample(std::string_view name,
              std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
              double value) {
    out_ += name;
    out_ += "{task=\"" + task_ + "\"";
    for (const auto& [k, v] : labels) {
      out_ += ',';
      out_ += k;
      out_ += "=\"" + label_value(v) + "\"";
    }
    out_ += "} " + number(value) + "\n";
  }
  void sample(std::string_view name, double value) { sample(name, {}, value); }
  std::string take() { return std::move(out_); }

 private:
  std::string task_;
  std::string out_;
};

void summary(PromWriter& w, std::string_view name, std::string_view decision,
             const LatencySummary& l) {
  if (l.count) {
    w.sample(name, {{"decision", decision}, {"quantile", "0.5"}}, l.p50_s);
    w.sample(name, {{"decision", decision}, {"quantile", "0.95"}}, l.p95_s);
  }
  w.sample(std::string(name) + "_sum", {{"decision", decision}}, l.sum_s);
  w.sample(std::string(name) + "_count", {{"decision", decision}}, static_cast<double>(l.count));
}

}  // namespace

std::string stats_prometheus(const JournalStats& s, std::string_view task) {
  PromWriter w(task);
  auto d = [](uint64_t v) { return static_cast<double>(v); };
  w.family("scopefs_records", "gauge", "Records in the journal (those the filter selects).");
  w.sample("scopefs_records", d(s.records));
  w.family("scopefs_unreadable_records", "gauge", "Journal records that cannot be decoded.");
  w.sample("scopefs_unreadable_records", d(s.unreadable));
  w.family("scopefs_operations_total", "counter",
           "Journal records by operation and outcome (state).");
  for (const auto& [op, by_state] : s.operations)
    for (const auto& [state, n] : by_state)
      w.sample("scopefs_operations_total", {{"op", op}, {"outcome", state}}, d(n));
  w.family("scopefs_held_changes_total", "counter",
           "Changes held for approval (pending, approved or rejected).");
  w.sample("scopefs_held_changes_total", d(s.held_total));
  w.family("scopefs_pending_changes", "gauge", "Held changes awaiting a decision.");
  w.sample("scopefs_pending_changes", d(s.pending));
  w.family("scopefs_approved_changes_total", "counter", "Held changes approved.");
  w.sample("scopefs_approved_changes_total", d(s.approved));
  w.family("scopefs_rejected_changes_total", "counter", "Held changes rejected.");
  w.sample("scopefs_rejected_changes_total", d(s.rejected));
  w.family("scopefs_approval_latency_seconds", "summary",
           "Time from a held change to the decision on it, by decision.");
  summary(w, "scopefs_approval_latency_seconds", "approve", s.approve_latency);
  summary(w, "scopefs_approval_latency_seconds", "reject", s.reject_latency);
  w.family("scopefs_rollbacks_total", "counter", "Rollbacks by outcome (one per change undone).");
  w.sample("scopefs_rollbacks_total", {{"outcome", "applied"}}, d(s.rollbacks));
  w.sample("scopefs_rollbacks_total", {{"outcome", "failed"}}, d(s.rollbacks_failed));
  w.family("scopefs_rolled_back_changes", "gauge", "Applied changes that were rolled back.");
  w.sample("scopefs_rolled_back_changes", d(s.rolled_back));
  w.family("scopefs_denied_total", "counter", "Denied attempts.");
  w.sample("scopefs_denied_total", d(s.denied));
  w.family("scopefs_denied_by_errno_total", "counter", "Denied attempts by errno.");
  for (const auto& [e, n] : s.denied_by_errno)
    w.sample("scopefs_denied_by_errno_total", {{"errno", e}}, d(n));
  w.family("scopefs_failed_total", "counter", "Changes that failed on the real tree.");
  w.sample("scopefs_failed_total", d(s.failed));
  w.family("scopefs_interrupted_total", "counter", "Changes interrupted by a crash.");
  w.sample("scopefs_interrupted_total", d(s.interrupted));
  w.family("scopefs_expired_records", "gauge", "Records whose before-images gc collected.");
  w.sample("scopefs_expired_records", d(s.expired));
  w.family("scopefs_before_images", "gauge", "Before-images kept, as records name them.");
  w.sample("scopefs_before_images", d(s.before_images));
  w.family("scopefs_before_image_bytes", "gauge",
           "Bytes of the before-images kept: as records name them, and once per content.");
  w.sample("scopefs_before_image_bytes", {{"count", "records"}}, d(s.before_image_bytes));
  w.sample("scopefs_before_image_bytes", {{"count", "distinct"}}, d(s.before_image_distinct_bytes));
  w.family("scopefs_blob_store_files", "gauge", "Files in the blob store.");
  w.sample("scopefs_blob_store_files", d(s.blob_files));
  w.family("scopefs_blob_store_bytes", "gauge",
           "Blob store size: file sizes, and blocks allocated on disk.");
  w.sample("scopefs_blob_store_bytes", {{"kind", "apparent"}}, d(s.blob_bytes));
  w.sample("scopefs_blob_store_bytes", {{"kind", "disk"}}, d(s.blob_disk_bytes));
  w.family("scopefs_journal_bytes", "gauge", "Journal (RocksDB) size on disk.");
  w.sample("scopefs_journal_bytes", d(s.journal_bytes));
  w.family("scopefs_last_record_timestamp_seconds", "gauge",
           "Time of the last record (epoch seconds).");
  w.sample("scopefs_last_record_timestamp_seconds", static_cast<double>(s.last_ns) / 1e9);
  return w.take();
}

}  // namespace scopefs::journal
