#include "journal/query.hpp"

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <limits>
#include <memory>

namespace scopefs::journal {
namespace {

// An index walk: the sequence numbers of the keys under `prefix` from
// `start` that `take` accepts (1 take, 0 skip, -1 stop), or nullopt once
// more than `limit` were taken.
struct Walk {
  Access access;
  std::string detail;
  std::string prefix;
  std::string start;
  std::function<int(std::string_view key)> take;
};

// The path of a "p/" key: between the prefix and "\0" seq(be64).
std::string_view path_of_index_key(std::string_view key) {
  if (key.size() < 2 + 9) return {};
  return key.substr(2, key.size() - 2 - 9);
}

bool indexes_complete(KvStore& kv) {
  auto v = kv.get(kIndexVersionKey);
  return v && *v && **v == std::to_string(kIndexVersion);
}

// Reads one record by sequence number for an index hit.
// Returns 0 (found), ENOENT (no such record), a decode errno (unreadable)
// or, through the Result, a read error.
Result<int> read_record(KvStore& kv, uint64_t seq, Record& out) {
  auto v = kv.get(record_key(seq));
  if (!v) return Errno{v.error()};
  if (!*v) return ENOENT;
  auto rec = decode_record(**v);
  if (!rec) {
    out = Record{};
    out.seq = seq;
    return rec.error();
  }
  out = std::move(rec).value();
  return 0;
}

}  // namespace

std::string_view access_name(Access a) {
  switch (a) {
    case Access::Scan: return "scan";
    case Access::Path: return "path index";
    case Access::Time: return "time index";
    case Access::Run: return "run index";
    case Access::Held: return "held index";
  }
  return "?";
}

std::string glob_literal_prefix(std::string_view pattern, bool& exact) {
  std::string out;
  exact = false;
  size_t seg_start = 0;  // where the current segment starts in `pattern`
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '/') {
      seg_start = i + 1;
    } else if (c == '\\' && i + 1 < pattern.size()) {
      out.push_back(pattern[++i]);
      continue;
    } else if (c == '*' || c == '?' || c == '[') {
      // "a/**" also matches "a" itself: '**' matches zero segments.
      if (c == '*' && pattern.substr(seg_start, 2) == "**" && !out.empty() && out.back() == '/')
        out.pop_back();
      return out;
    }
    out.push_back(c);
  }
  exact = true;
  return out;
}

bool Query::compile(QueryFilter f, Query& out, std::string& error) {
  out = Query{};
  while (!f.path_glob.empty() && f.path_glob.front() == '/') f.path_glob.erase(0, 1);
  if (!f.path_glob.empty()) {
    size_t pos = 0;
    if (!config::Glob::compile(f.path_glob, out.glob_, error, pos)) return false;
    out.has_glob_ = true;
    out.literal_ = glob_literal_prefix(f.path_glob, out.exact_);
  }
  out.f_ = std::move(f);
  return true;
}

bool Query::matches(const Record& r) const {
  if (f_.since_ns && r.time_ns < *f_.since_ns) return false;
  if (f_.until_ns && r.time_ns > *f_.until_ns) return false;
  if (!f_.ops.empty() && std::find(f_.ops.begin(), f_.ops.end(), r.op) == f_.ops.end())
    return false;
  if (!f_.states.empty() &&
      std::find(f_.states.begin(), f_.states.end(), r.state) == f_.states.end())
    return false;
  if (f_.uid && r.caller.uid != *f_.uid) return false;
  if (!f_.run.empty() && r.run != f_.run) return false;
  if (has_glob_) {
    bool hit = !r.path.empty() && glob_.matches(r.path);
    if (!hit && (r.op == "rename" || r.op == "link") && !r.path2.empty())
      hit = glob_.matches(r.path2);
    if (!hit) return false;
  }
  return true;
}

Result<QueryPlan> Query::run(Journal& j,
                             const std::function<bool(const Record&, int err)>& fn) const {
  KvStore& kv = j.kv();
  QueryPlan plan;

  // The usable index walks, likely narrowest first.
  std::vector<Walk> walks;
  bool indexed = indexes_complete(kv);
  if (indexed && has_glob_ && exact_) {
    std::string p = "p/" + literal_;
    p.push_back('\0');
    walks.push_back({Access::Path, "path '" + literal_ + "'", p, "", nullptr});
  }
  if (indexed && f_.states.size() == 1 && f_.states[0] == RecordState::Held)
    walks.push_back({Access::Held, "held changes", "h/", "", nullptr});
  if (indexed && !f_.run.empty()) {
    std::string p = "n/" + f_.run;
    p.push_back('\0');
    walks.push_back({Access::Run, "run '" + f_.run + "'", p, "", nullptr});
  }
  if (indexed && has_glob_ && !exact_) {
    // The glob is matched on each key's path; consecutive keys share a path.
    auto last = std::make_shared<std::pair<std::string, bool>>();
    const config::Glob* g = &glob_;
    walks.push_back({Access::Path, "paths under '" + literal_ + "' matching '" + f_.path_glob + "'",
                     "p/" + literal_, "", [last, g](std::string_view key) {
                       std::string_view path = path_of_index_key(key);
                       if (path != last->first) {
                         last->first = std::string(path);
                         last->second = g->matches(path);
                       }
                       return last->second ? 1 : 0;
                     }});
  }
  if (indexed && (f_.since_ns || f_.until_ns)) {
    int64_t since = f_.since_ns.value_or(std::numeric_limits<int64_t>::min());
    int64_t until = f_.until_ns.value_or(std::numeric_limits<int64_t>::max());
    std::string stop = time_index_key(until, std::numeric_limits<uint64_t>::max());
    walks.push_back({Access::Time, "time range", "t/", time_index_key(since, 0),
                     [stop](std::string_view key) { return key <= stop ? 1 : -1; }});
  }
  if (!indexed) plan.detail = "the journal's indexes are not complete yet";

  // More candidates than this: scanning beats reading them one by one.
  const uint64_t total = j.last_seq();
  const uint64_t scan_beyond = std::max<uint64_t>(total / 8, 64);
  std::vector<std::vector<uint64_t>> complete;  // candidate lists of the walks that finished
  std::vector<size_t> complete_walk;
  size_t best = SIZE_MAX;  // index in `complete`
  for (size_t w = 0; w < walks.size(); ++w) {
    const Walk& walk = walks[w];
    uint64_t limit = best == SIZE_MAX ? scan_beyond : complete[best].size();
    std::vector<uint64_t> seqs;
    bool finished = true;
    auto r = kv.scan(walk.prefix, walk.start, [&](std::string_view key, std::string_view) {
      ++plan.index_entries;
      int t = walk.take ? walk.take(key) : 1;
      if (t < 0) return false;
      if (t == 0) return true;
      if (auto s = seq_of_index_key(key)) seqs.push_back(*s);
      if (seqs.size() > limit) {
        finished = false;
        return false;
      }
      return true;
    });
    if (!r) return Errno{r.error()};
    if (!finished) continue;
    std::sort(seqs.begin(), seqs.end());
    seqs.erase(std::unique(seqs.begin(), seqs.end()), seqs.end());
    complete.push_back(std::move(seqs));
    complete_walk.push_back(w);
    if (best == SIZE_MAX || complete.back().size() < complete[best].size())
      best = complete.size() - 1;
  }

  if (best == SIZE_MAX) {
    plan.access = Access::Scan;
    if (plan.detail.empty())
      plan.detail = walks.empty() ? "no index applies" : "every index range is too wide";
    auto r = j.scan(1, [&](const Record& rec, int err) {
      ++plan.candidates;
      if (err) return fn(rec, err);
      if (!matches(rec)) return true;
      ++plan.matched;
      return fn(rec, 0);
    });
    if (!r) return Errno{r.error()};
    return plan;
  }

  std::vector<uint64_t> seqs = std::move(complete[best]);
  plan.access = walks[complete_walk[best]].access;
  plan.detail = walks[complete_walk[best]].detail;
  for (size_t c = 0; c < complete.size(); ++c) {
    if (c == best) continue;
    std::vector<uint64_t> both;
    std::set_intersection(seqs.begin(), seqs.end(), complete[c].begin(), complete[c].end(),
                          std::back_inserter(both));
    seqs = std::move(both);
    plan.detail += ", and " + walks[complete_walk[c]].detail;
  }
  for (uint64_t seq : seqs) {
    Record rec;
    auto got = read_record(kv, seq, rec);
    if (!got) return Errno{got.error()};
    if (*got == ENOENT) continue;  // an index key left by an unfinished write
    ++plan.candidates;
    if (*got != 0) {
      if (!fn(rec, *got)) break;
      continue;
    }
    if (!matches(rec)) continue;
    ++plan.matched;
    if (!fn(rec, 0)) break;
  }
  return plan;
}

}  // namespace scopefs::journal
