// Journal query benchmark (bench/query.sh; docs/benchmarks.md "Journal queries").
//
//   scopefs_bench_query [--records N] [--runs R] [--dir DIR] [--keep] [--quick]
//                       [--drop-caches] [--flush-first] [--out FILE]
//
// Builds a RocksDB journal of N synthetic records through the Journal API
// (non-synced writes; one run id per "mount" of a twentieth of them): paths across
// 3,000 directories (30 teams × 100 projects, 100 file names each), a mix of
// operations and outcomes like a busy agent's (writes, creates, renames,
// unlinks, denied attempts, held changes approved or rejected later,
// rollbacks), before-images named on destructive changes. Then, for each
// query, R times: open the journal read-only ("cold": a fresh open, after
// dropping the page cache with --drop-caches), run the query, run it again
// on the same open journal ("warm"); the median of each is reported with
// the plan the planner chose. For comparison, the same filter answered once
// by a full scan (what `scopefs log` did before the indexes), and `scopefs
// stats`' computation over the whole journal. Times are wall clock and the
// thread's CPU time: on a shared machine the first also counts waiting.
//
// A read-only open replays the RocksDB log the writer has not flushed yet
// (up to a memtable: 64 MiB by default); --flush-first opens the journal
// writable once before measuring, which flushes it (as a daemon's next mount
// would), to show the open without it.
//
// Every query's result is checked against the full scan's; a mismatch exits 1.
// --quick: 20,000 records, one run (a smoke test, run by ctest).
// With --dir, a journal already there with N records is reused.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "journal/journal.hpp"
#include "journal/query.hpp"
#include "journal/stats.hpp"

namespace {

using namespace scopefs::journal;
using Clock = std::chrono::steady_clock;

constexpr int kTeams = 30;
constexpr int kProjects = 100;
constexpr int kFilesPerDir = 100;

struct Args {
  uint64_t records = 1000000;
  int runs = 5;
  std::string dir;
  bool keep = false;
  bool drop_caches = false;
  bool flush_first = false;
  std::string out;
};

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// CPU time of this thread (ms): on a shared machine the wall clock also
// counts the time other processes held the CPU.
double cpu_ms() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::string dir_of(int team, int project) {
  char b[64];
  std::snprintf(b, sizeof b, "share/team-%02d/project-%03d", team, project);
  return b;
}

std::string file_of(int team, int project, int file) {
  static const char* kExt[] = {"csv", "xlsx", "md", "json", "pdf"};
  char b[96];
  std::snprintf(b, sizeof b, "%s/%s-%03d.%s", dir_of(team, project).c_str(),
                file % 3 == 0 ? "report" : "data", file, kExt[file % 5]);
  return b;
}

Hash128 fake_hash(uint64_t n) {
  Hash128 h;
  h.high = n * 0x9e3779b97f4a7c15ULL;
  h.low = ~n;
  return h;
}

// The synthetic workload, run by run.
void build(const std::string& dir, uint64_t n, uint64_t per_run) {
  std::mt19937_64 rng(42);
  auto pick = [&](int k) { return static_cast<int>(rng() % static_cast<uint64_t>(k)); };
  std::vector<Record> pending;  // held changes not decided yet
  uint64_t written = 0;
  uint64_t content = 1;
  auto t0 = Clock::now();
  for (int run = 0; written < n; ++run) {
    JournalOptions o;
    o.task = "bench";
    o.run = "run-" + std::to_string(run);
    o.sync_interval_ms = 1000;
    auto j = Journal::open(dir, o);
    uint64_t end = std::min(n, written + per_run);
    while (written < end) {
      // Agents work in a few directories at a time: 80% of changes go to
      // one of 20 "hot" projects of this run.
      int team, project;
      if (pick(10) < 8) {
        int hot = pick(20);
        team = (run * 7 + hot) % kTeams;
        project = (run * 13 + hot * 5) % kProjects;
      } else {
        team = pick(kTeams);
        project = pick(kProjects);
      }
      Record r;
      r.caller = CallerInfo{1000 + pick(50), 1000, 1000, "python3"};
      r.path = file_of(team, project, pick(kFilesPerDir));
      int dice = pick(100);
      // Decisions on held changes, now and then.
      if (!pending.empty() && dice < 3) {
        Record h = pending.front();
        pending.erase(pending.begin());
        Record d;
        d.op = pick(10) < 8 ? "approve" : "reject";
        d.path = h.path;
        d.ref = h.seq;
        d.caller = CallerInfo{4242, 0, 0, "scopefs"};
        d.state = RecordState::Applied;
        d.seq = j->reserve_seq();
        h.state = d.op == "approve" ? RecordState::Approved : RecordState::Rejected;
        h.ref = d.seq;
        KvTxn extra;
        extra.put(record_key(h.seq), encode_record(h));
        extra.del(held_key(h.seq));
        if (!j->append_with(d, extra)) throw std::runtime_error("write failed");
        ++written;
        continue;
      }
      static const char* kOps[] = {"write",    "write",  "write",  "write",   "create",   "create",
                                   "unlink",   "rename", "chmod",  "utimens", "truncate", "mkdir",
                                   "setxattr", "write",  "create", "utimens"};
      r.op = kOps[pick(16)];
      if (r.op == "mkdir") r.path = dir_of(team, project) + "/sub-" + std::to_string(pick(10));
      if (r.op == "rename") r.path2 = file_of(team, project, pick(kFilesPerDir));
      if (r.op == "setxattr") r.path2 = "user.tag";
      ObjectState before, after;
      before.exists = r.op != "create" && r.op != "mkdir";
      before.type = r.op == "mkdir" ? "dir" : "file";
      before.size = 1000 + rng() % 200000;
      before.hash = fake_hash(content++);
      after = before;
      after.exists = r.op != "unlink";
      after.hash = fake_hash(content++);
      r.before = before;
      r.after = after;
      if (dice < 12) {
        r.state = RecordState::Denied;
        r.err = dice < 6 ? EROFS : EACCES;
        r.before.reset();
        r.after.reset();
      } else if (dice < 16) {
        r.state = RecordState::Held;
      } else if (dice < 17) {
        r.state = RecordState::Failed;
        r.err = ENOSPC;
      } else {
        r.state = dice < 18 ? RecordState::RolledBack : RecordState::Applied;
        r.before->blob = r.op == "write" || r.op == "unlink" || r.op == "truncate";
      }
      if (!j->append_with(r, KvTxn{})) throw std::runtime_error("write failed");
      if (r.state == RecordState::Held) pending.push_back(r);
      ++written;
    }
    if (!j->sync()) throw std::runtime_error("sync failed");
  }
  std::fprintf(stderr, "built %llu records in %.1f s\n", static_cast<unsigned long long>(n),
               ms_since(t0) / 1000);
}

void drop_caches() {
  ::sync();
  std::ofstream("/proc/sys/vm/drop_caches") << "3\n";
}

struct Case {
  std::string name;
  QueryFilter filter;
};

// Wall-clock and CPU milliseconds of one step, medians over the runs.
struct Cost {
  std::vector<double> wall, cpu;
  void add(double w, double c) {
    wall.push_back(w);
    cpu.push_back(c);
  }
  std::string str() const {
    char b[64];
    std::snprintf(b, sizeof b, "%.1f (%.1f)", median(wall), median(cpu));
    return b;
  }
};

// Times `fn` into `c`.
template <typename F>
auto timed(Cost& c, F&& fn) {
  auto t0 = Clock::now();
  double c0 = cpu_ms();
  auto r = fn();
  c.add(ms_since(t0), cpu_ms() - c0);
  return r;
}

struct Row {
  std::string name;
  std::string plan;
  uint64_t matched = 0;
  uint64_t read = 0;
  Cost open, cold, warm, scan;
};

// The filter answered the old way: every record read and checked.
std::vector<uint64_t> full_scan(Journal& j, const Query& q) {
  std::vector<uint64_t> out;
  auto r = j.scan(1, [&](const Record& rec, int err) {
    if (!err && q.matches(rec)) out.push_back(rec.seq);
    return true;
  });
  if (!r) throw std::runtime_error("scan failed");
  return out;
}

int usage() {
  std::cerr
      << "usage: scopefs_bench_query [--records N] [--runs R] [--dir DIR] [--keep] [--quick]\n"
         "                           [--drop-caches] [--flush-first] [--out FILE]\n";
  return 2;
}

int bench_main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(s + " needs a value");
      return argv[++i];
    };
    try {
      if (s == "--records") a.records = std::stoull(next());
      else if (s == "--runs") a.runs = std::stoi(next());
      else if (s == "--dir") a.dir = next();
      else if (s == "--keep") a.keep = true;
      else if (s == "--drop-caches") a.drop_caches = true;
      else if (s == "--flush-first") a.flush_first = true;
      else if (s == "--out") a.out = next();
      else if (s == "--quick") {
        a.records = 20000;
        a.runs = 1;
      } else return usage();
    } catch (const std::exception& e) {
      std::cerr << e.what() << "\n";
      return usage();
    }
  }
  if (a.records == 0 || a.runs < 1) return usage();
  bool temp = a.dir.empty();
  if (temp) {
    char tmpl[] = "/var/tmp/scopefs-bench-query-XXXXXX";
    if (!::mkdtemp(tmpl)) {
      std::perror("mkdtemp");
      return 1;
    }
    a.dir = tmpl;
  }
  int rc = 0;
  // One run id per 5% of the journal (a mount).
  const uint64_t per_run = std::max<uint64_t>(a.records / 20, 1000);
  try {
    uint64_t have = 0;
    if (std::filesystem::exists(a.dir + "/journal"))
      have = Journal::open_read_only(a.dir)->last_seq();
    if (have != a.records) {
      if (have) {
        std::cerr << a.dir << " holds a journal of " << have << " records, not " << a.records
                  << "\n";
        return 1;
      }
      build(a.dir, a.records, per_run);
    }
    if (a.flush_first) {
      // A writable open replays the log into a memtable and flushes it to a
      // table file: read-only opens then have no log to replay.
      auto t0 = Clock::now();
      Journal::open(a.dir, JournalOptions{"bench", "flush", false, 1000}).reset();
      std::fprintf(stderr, "writable open and close: %.1f s\n", ms_since(t0) / 1000);
    }

    // Query parameters from the journal itself.
    QueryFilter exact, dirglob, treeglob, ext, time, run, held, uid;
    int64_t t_lo = 0, t_hi = 0;
    std::string some_path;
    {
      auto j = Journal::open_read_only(a.dir);
      uint64_t mid = a.records / 2, span = std::max<uint64_t>(a.records / 100, 1);
      auto lo = j->get(mid), hi = j->get(mid + span);
      if (!lo || !*lo || !hi || !*hi) throw std::runtime_error("cannot read records");
      t_lo = (*lo)->time_ns;
      t_hi = (*hi)->time_ns;
      auto p = j->get(mid + 1);
      if (!p || !*p) throw std::runtime_error("cannot read records");
      some_path = (*p)->path;
    }
    exact.path_glob = some_path;
    dirglob.path_glob = some_path.substr(0, some_path.rfind('/')) + "/*.csv";
    treeglob.path_glob = some_path.substr(0, some_path.find('/', some_path.find('/') + 1)) + "/**";
    ext.path_glob = "**/report-*.pdf";
    time.since_ns = t_lo;
    time.until_ns = t_hi;
    run.run = "run-" + std::to_string((a.records / per_run) / 2);
    held.states = {RecordState::Held};
    uid.uid = 1000;
    uid.ops = {"unlink"};
    std::vector<Case> cases = {
        {"exact path `" + exact.path_glob + "`", exact},
        {"directory glob `" + dirglob.path_glob + "`", dirglob},
        {"subtree glob `" + treeglob.path_glob + "`", treeglob},
        {"glob `" + ext.path_glob + "` (no literal prefix)", ext},
        {"time range (1% of the records)", time},
        {"one run (`--run`, 5%)", run},
        {"held changes (`--state held`)", held},
        {"uid + op (no index applies)", uid},
    };

    std::vector<Row> rows;
    for (const Case& c : cases) {
      Query q;
      std::string err;
      if (!Query::compile(c.filter, q, err)) throw std::runtime_error(c.name + ": " + err);
      Row row;
      row.name = c.name;
      std::vector<uint64_t> expect;
      for (int i = 0; i < a.runs; ++i) {
        if (a.drop_caches) drop_caches();
        auto j = timed(row.open, [&] { return Journal::open_read_only(a.dir); });
        std::vector<uint64_t> got;
        QueryPlan plan;
        for (int pass = 0; pass < 2; ++pass) {
          got.clear();
          auto r = timed(pass == 0 ? row.cold : row.warm, [&] {
            return q.run(*j, [&](const Record& rec, int e) {
              if (!e) got.push_back(rec.seq);
              return true;
            });
          });
          if (!r) throw std::runtime_error(c.name + ": query failed");
          plan = *r;
        }
        row.plan = std::string(access_name(plan.access));
        row.matched = plan.matched;
        row.read = plan.candidates;
        // The full scan once (it is what the planner's results are checked against).
        if (i == 0) expect = timed(row.scan, [&] { return full_scan(*j, q); });
        if (got != expect) {
          std::cerr << "MISMATCH: " << c.name << ": the planner found " << got.size()
                    << " records, the scan " << expect.size() << "\n";
          rc = 1;
        }
      }
      std::fprintf(stderr,
                   "%-55s %-11s %8llu found, %8llu read: open %s, cold %s, warm %s, scan %s ms\n",
                   row.name.c_str(), row.plan.c_str(), static_cast<unsigned long long>(row.matched),
                   static_cast<unsigned long long>(row.read), row.open.str().c_str(),
                   row.cold.str().c_str(), row.warm.str().c_str(), row.scan.str().c_str());
      rows.push_back(std::move(row));
    }

    // What opening costs: RocksDB alone, then the Journal on top (it finds the last record).
    Cost kv_open;
    for (int i = 0; i < a.runs; ++i) {
      if (a.drop_caches) drop_caches();
      std::string err;
      auto kv = timed(kv_open, [&] { return open_rocksdb(a.dir + "/journal", true, err); });
      if (!kv) throw std::runtime_error("open: " + err);
    }

    // scopefs stats over the whole journal.
    Cost stats;
    uint64_t counted = 0;
    for (int i = 0; i < a.runs; ++i) {
      if (a.drop_caches) drop_caches();
      auto s = timed(stats, [&] {
        auto j = Journal::open_read_only(a.dir);
        auto r = compute_stats(*j, StatsFilter{});
        if (r) add_disk_usage(*r, *j, a.dir);
        return r;
      });
      if (!s) throw std::runtime_error("stats failed");
      counted = s->records;
      if (s->records != a.records || s->unreadable) {
        std::cerr << "MISMATCH: stats counted " << s->records << " records\n";
        rc = 1;
      }
    }
    uint64_t journal_bytes = Journal::open_read_only(a.dir)->kv().disk_bytes();

    std::ostringstream md;
    md << "Journal of " << a.records << " records (" << journal_bytes / (1 << 20)
       << " MiB of RocksDB), median of " << a.runs << " run(s)"
       << (a.drop_caches ? ", page cache dropped before each open" : "")
       << "; each cell is wall-clock ms (CPU ms of the thread).\n\n";
    md << "| query | plan | found | records read | open | cold query | warm query | full scan |\n";
    md << "|---|---|---:|---:|---:|---:|---:|---:|\n";
    for (const Row& r : rows)
      md << "| " << r.name << " | " << r.plan << " | " << r.matched << " | " << r.read << " | "
         << r.open.str() << " | " << r.cold.str() << " | " << r.warm.str() << " | " << r.scan.str()
         << " |\n";
    md << "\nOpening read-only: RocksDB alone " << kv_open.str()
       << " ms; `scopefs stats` computation (open + one scan of " << counted
       << " records + the blob store): " << stats.str() << " ms.\n";
    std::cout << md.str();
    if (!a.out.empty()) std::ofstream(a.out) << md.str();
  } catch (const std::exception& e) {
    std::cerr << "scopefs_bench_query: " << e.what() << "\n";
    rc = 1;
  }
  if (temp && !a.keep) {
    std::error_code ec;
    std::filesystem::remove_all(a.dir, ec);
  } else {
    std::cerr << "journal kept in " << a.dir << "\n";
  }
  return rc;
}

}  // namespace

// Nothing escapes main(): what bench_main() does not catch itself (its argument
// parsing, the temp dir's cleanup) is reported, not a terminate().
int main(int argc, char** argv) {
  try {
    return bench_main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scopefs_bench_query: %s\n", e.what());
  } catch (...) {
    std::fputs("scopefs_bench_query: unknown error\n", stderr);
  }
  return 1;
}
