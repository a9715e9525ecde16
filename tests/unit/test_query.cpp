// The journal's query planner (journal/query.hpp) and its indexes, over both
// stores: every plan returns exactly what a full scan with the same filter
// returns (random journals, many filters), the planner picks the index it
// should, renames are found under both paths and reported once, intents are
// found, and a journal written before the time/run indexes is backfilled at
// its first writable open (until then, queries scan).
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "journal/blob_store.hpp"
#include "journal/journal.hpp"
#include "journal/kv.hpp"
#include "journal/query.hpp"
#include "journal/record.hpp"
#include "test_util.hpp"

namespace {

using scopefs::journal::Access;
using scopefs::journal::access_name;
using scopefs::journal::BlobStore;
using scopefs::journal::CallerInfo;
using scopefs::journal::encode_record;
using scopefs::journal::glob_literal_prefix;
using scopefs::journal::Journal;
using scopefs::journal::JournalOptions;
using scopefs::journal::KvStore;
using scopefs::journal::KvTxn;
using scopefs::journal::Query;
using scopefs::journal::QueryFilter;
using scopefs::journal::QueryPlan;
using scopefs::journal::Record;
using scopefs::journal::record_key;
using scopefs::journal::RecordState;
using scopefs::test::TempDir;

// A journal over a fresh store: memory, or RocksDB in DIR/journal (reopenable).
struct Store {
  bool rocks;
  TempDir tmp;
  std::unique_ptr<Journal> j;

  explicit Store(bool rocksdb) : rocks(rocksdb) {}
  Journal& open(const std::string& run, std::unique_ptr<KvStore> kv = nullptr) {
    j.reset();
    if (!kv) {
      if (rocks) {
        std::filesystem::create_directories(tmp.at("journal"));
        std::string err;
        kv = scopefs::journal::open_rocksdb(tmp.at("journal"), false, err);
        REQUIRE(kv != nullptr);
      } else {
        kv = scopefs::journal::make_memory_store();
      }
    }
    j = std::make_unique<Journal>(std::move(kv), std::make_unique<BlobStore>(tmp.at("blobs")),
                                  JournalOptions{"task1", run, false, 20}, false);
    return *j;
  }
};

void for_each_store(const std::function<void(Store&)>& fn) {
  for (bool rocks : {false, true}) {
    CAPTURE(rocks);
    Store s(rocks);
    fn(s);
  }
}

std::vector<uint64_t> run_query(Journal& j, const QueryFilter& f, QueryPlan* plan_out = nullptr) {
  Query q;
  std::string err;
  REQUIRE(Query::compile(f, q, err));
  std::vector<uint64_t> out;
  auto r = q.run(j, [&](const Record& rec, int e) {
    CHECK(e == 0);
    out.push_back(rec.seq);
    return true;
  });
  REQUIRE(r.ok());
  if (plan_out) *plan_out = *r;
  return out;
}

std::vector<uint64_t> brute_force(Journal& j, const QueryFilter& f) {
  Query q;
  std::string err;
  REQUIRE(Query::compile(f, q, err));
  std::vector<uint64_t> out;
  REQUIRE(j.scan(1, [&](const Record& rec, int) {
             if (q.matches(rec)) out.push_back(rec.seq);
             return true;
           }).ok());
  return out;
}

Record change(const std::string& op, const std::string& path, RecordState st, uint32_t uid = 1000) {
  Record r;
  r.op = op;
  r.path = path;
  r.state = st;
  r.caller = CallerInfo{100, uid, uid, "agent"};
  return r;
}

const char* kDirs[] = {"in",          "in/2024", "in/2025", "out",
                       "out/reports", "tmp",     "a b",     "in/2024/q1"};
const char* kNames[] = {"x.csv", "y.csv", "z.txt", "r.md", ".env", "k.pem"};

// A random workload: intents completed (or left open), appends, held changes
// decided or not, renames and links; `runs` runs (RocksDB: a reopen each).
std::vector<int64_t> random_journal(Store& s, int runs, int per_run, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  auto path = [&] { return std::string(kDirs[pick(8)]) + "/" + kNames[pick(6)]; };
  std::vector<int64_t> times;
  for (int run = 0; run < runs; ++run) {
    Journal& j = (run == 0 || s.rocks) ? s.open("run" + std::to_string(run)) : *s.j;
    for (int i = 0; i < per_run; ++i) {
      int dice = static_cast<int>(pick(10));
      Record r = change(dice < 2   ? "rename"
                        : dice < 3 ? "link"
                        : dice < 6 ? "write"
                                   : "create",
                        path(), RecordState::Applied, pick(3) == 0 ? 0 : 1000);
      if (r.op == "rename" || r.op == "link") r.path2 = path();
      if (dice == 9) {
        r.op = "setxattr";
        r.path2 = "user.x";
      }
      int how = static_cast<int>(pick(10));
      if (how < 5) {
        REQUIRE(j.intent(r).ok());
        if (pick(20) != 0) {  // now and then an intent stays open
          r.state = pick(10) == 0 ? RecordState::Failed : RecordState::Applied;
          REQUIRE(j.complete(r).ok());
        }
      } else if (how < 8) {
        r.state = pick(2) ? RecordState::Denied : RecordState::Applied;
        REQUIRE(j.append(r).ok());
      } else {
        r.state = RecordState::Held;
        REQUIRE(j.append_with(r, KvTxn{}).ok());
        if (pick(2)) {  // decided later
          Record h = r;
          h.state = pick(2) ? RecordState::Approved : RecordState::Rejected;
          REQUIRE(j.rewrite(h, KvTxn{}).ok());
        }
      }
      times.push_back(r.time_ns);
    }
    if (run == 0) {
      Record m = change("mount", "", RecordState::Applied, 0);
      REQUIRE(j.append(m).ok());
    }
  }
  std::sort(times.begin(), times.end());
  return times;
}

}  // namespace

TEST_CASE("query: a glob's literal prefix bounds every path it matches") {
  bool exact = false;
  CHECK(glob_literal_prefix("w/d/**", exact) == "w/d");  // '**' also matches zero segments
  CHECK(!exact);
  CHECK(glob_literal_prefix("w/*.txt", exact) == "w/");
  CHECK(glob_literal_prefix("w/b?.log", exact) == "w/b");
  CHECK(glob_literal_prefix("w/[ab].log", exact) == "w/");
  CHECK(glob_literal_prefix("a/**/b", exact) == "a");
  CHECK(glob_literal_prefix("**/*.pem", exact).empty());
  CHECK(!exact);
  CHECK(glob_literal_prefix("w/b.log", exact) == "w/b.log");
  CHECK(exact);
  CHECK(glob_literal_prefix("w/a\\*b", exact) == "w/a*b");  // an escaped wildcard is literal
  CHECK(exact);
  CHECK(glob_literal_prefix("w/x\\*y*", exact) == "w/x*y");
  CHECK(!exact);
  // The prefix is sound: whatever matches starts with it.
  for (const char* g : {"w/d/**", "a/**/b", "w/*.txt", "in/202?/*"}) {
    Query q;
    std::string err;
    QueryFilter f;
    f.path_glob = g;
    REQUIRE(Query::compile(f, q, err));
    std::string lit = glob_literal_prefix(g, exact);
    for (const char* p : {"w/d", "w/d/x", "a/b", "a/x/y/b", "w/a.txt", "in/2024/x", "w/dd"}) {
      Record r = change("write", p, RecordState::Applied);
      if (q.matches(r)) CHECK(std::string(p).rfind(lit, 0) == 0);
    }
  }
}

TEST_CASE("query: a bad glob is refused at compile") {
  Query q;
  std::string err;
  QueryFilter f;
  f.path_glob = "a//b";
  CHECK(!Query::compile(f, q, err));
  CHECK(!err.empty());
  f.path_glob = "/w/x.txt";  // a leading '/' is ignored
  CHECK(Query::compile(f, q, err));
  CHECK(q.filter().path_glob == "w/x.txt");
}

TEST_CASE("query: every plan returns what a full scan returns (random journals, both stores)") {
  for_each_store([](Store& s) {
    auto times = random_journal(s, 4, 150, 7);
    Journal& j = *s.j;
    std::mt19937_64 rng(11);
    std::vector<QueryFilter> filters;
    auto add = [&](auto fill) {
      QueryFilter f;
      fill(f);
      filters.push_back(f);
    };
    for (const char* d : kDirs) {
      add([&](QueryFilter& f) { f.path_glob = std::string(d) + "/x.csv"; });
      add([&](QueryFilter& f) { f.path_glob = std::string(d) + "/*.csv"; });
      add([&](QueryFilter& f) { f.path_glob = std::string(d) + "/**"; });
      add([&](QueryFilter& f) {
        f.path_glob = std::string(d) + "/**";
        f.states = {RecordState::Denied};
      });
    }
    add([](QueryFilter& f) { f.path_glob = "**/*.pem"; });
    add([](QueryFilter& f) { f.path_glob = "**"; });
    add([](QueryFilter& f) { f.path_glob = "user.x"; });  // an xattr name is no path
    add([](QueryFilter& f) { f.path_glob = "in/202[45]/*"; });
    add([](QueryFilter& f) { f.states = {RecordState::Held}; });
    add([](QueryFilter& f) { f.states = {RecordState::Intent}; });
    add([](QueryFilter& f) { f.states = {RecordState::Held, RecordState::Approved}; });
    add([](QueryFilter& f) { f.uid = 0; });
    add([](QueryFilter& f) { f.ops = {"rename", "link"}; });
    for (int run = 0; run < 5; ++run)
      add([&](QueryFilter& f) { f.run = "run" + std::to_string(run); });
    add([](QueryFilter& f) { f.run = "nope"; });
    for (int i = 0; i < 12; ++i) {
      size_t a = rng() % times.size(), b = rng() % times.size();
      if (a > b) std::swap(a, b);
      add([&](QueryFilter& f) {
        f.since_ns = times[a];
        if (i % 3) f.until_ns = times[b];
      });
      add([&](QueryFilter& f) {
        f.until_ns = times[a];
        f.path_glob = "in/**";
        f.ops = {"write"};
      });
    }
    add([&](QueryFilter& f) {
      f.path_glob = "out/**";
      f.run = "run1";
      f.since_ns = times[times.size() / 3];
      f.uid = 1000;
    });
    for (const QueryFilter& f : filters) {
      CAPTURE(f.path_glob);
      CAPTURE(f.run);
      QueryPlan plan;
      auto got = run_query(j, f, &plan);
      CAPTURE(access_name(plan.access));
      CAPTURE(plan.detail);
      CHECK(got == brute_force(j, f));
      CHECK(std::is_sorted(got.begin(), got.end()));
      CHECK(std::adjacent_find(got.begin(), got.end()) == got.end());
      CHECK(plan.matched == got.size());
    }
  });
}

TEST_CASE("query: the planner takes the narrowest index, and scans when none helps") {
  for_each_store([](Store& s) {
    Journal& j = s.open("r1");
    // 400 records across 40 directories; one directory's file written often.
    for (int i = 0; i < 400; ++i) {
      Record r = change("write", "d" + std::to_string(i % 40) + "/f" + std::to_string(i % 7),
                        RecordState::Applied);
      REQUIRE(j.append(r).ok());
    }
    Record h = change("unlink", "d3/f1", RecordState::Held);
    REQUIRE(j.append_with(h, KvTxn{}).ok());
    QueryPlan p;
    QueryFilter exact;
    exact.path_glob = "d3/f3";
    auto got = run_query(j, exact, &p);
    CHECK(p.access == Access::Path);
    CHECK(got.size() == 2);  // i = 3 + 280k ≡ 3 (mod 40) and ≡ 3 (mod 7): 3, 283
    CHECK(p.candidates == got.size());
    CHECK(got == brute_force(j, exact));

    QueryFilter dir;
    dir.path_glob = "d3/**";
    got = run_query(j, dir, &p);
    CHECK(p.access == Access::Path);
    CHECK(got.size() == 11);  // 10 writes + the held unlink
    CHECK(p.candidates == 11);
    // "d3/**" walks the keys under "d3" (d3, d30..d39) but reads only d3's records.
    CHECK(p.index_entries > 11);

    QueryFilter held;
    held.states = {RecordState::Held};
    got = run_query(j, held, &p);
    CHECK(p.access == Access::Held);
    CHECK(got == std::vector<uint64_t>{h.seq});

    // Everything matches: reading records one by one would cost more than a scan.
    QueryFilter all;
    all.path_glob = "**";
    got = run_query(j, all, &p);
    CHECK(p.access == Access::Scan);
    CHECK(got.size() == 401);
    QueryFilter none;
    none.ops = {"unlink"};
    got = run_query(j, none, &p);
    CHECK(p.access == Access::Scan);
    CHECK(p.detail == "no index applies");
    CHECK(got == std::vector<uint64_t>{h.seq});

    // A narrow time range: the time index.
    Record late = change("chmod", "d9/f9", RecordState::Applied);
    REQUIRE(j.append(late).ok());
    QueryFilter recent;
    recent.since_ns = late.time_ns;
    got = run_query(j, recent, &p);
    CHECK(got.back() == late.seq);
    CHECK(got == brute_force(j, recent));
    CHECK(p.access == Access::Time);

    // Two complete index walks are intersected: path ∩ time.
    QueryFilter both = dir;
    both.since_ns = late.time_ns;
    got = run_query(j, both, &p);
    CHECK(got.empty());
    CHECK(got == brute_force(j, both));
  });
}

TEST_CASE("query: a rename is found under both paths and reported once; intents are found") {
  for_each_store([](Store& s) {
    Journal& j = s.open("r1");
    Record ren = change("rename", "in/a.csv", RecordState::Applied);
    ren.path2 = "in/b.csv";
    REQUIRE(j.intent(ren).ok());
    // The intent alone is already indexed by path, time and run.
    QueryFilter f;
    f.path_glob = "in/b.csv";
    QueryPlan p;
    CHECK(run_query(j, f, &p) == std::vector<uint64_t>{ren.seq});
    CHECK(p.access == Access::Path);
    QueryFilter byrun;
    byrun.run = "r1";
    CHECK(run_query(j, byrun) == std::vector<uint64_t>{ren.seq});
    REQUIRE(j.complete(ren).ok());
    f.path_glob = "in/*.csv";
    CHECK(run_query(j, f, &p) == std::vector<uint64_t>{ren.seq});
    CHECK(p.access == Access::Path);
    CHECK(p.candidates == 1);
    f.path_glob = "in/a.csv";
    CHECK(run_query(j, f) == std::vector<uint64_t>{ren.seq});
    // A denied rename is indexed under its target too.
    Record den = change("rename", "in/c.csv", RecordState::Denied);
    den.path2 = "in/d.csv";
    REQUIRE(j.append(den).ok());
    f.path_glob = "in/d.csv";
    CHECK(run_query(j, f) == std::vector<uint64_t>{den.seq});
    // A symlink's target and an xattr name are not paths of the view.
    Record sl = change("symlink", "in/l", RecordState::Applied);
    sl.path2 = "in/e.csv";
    REQUIRE(j.append(sl).ok());
    f.path_glob = "in/e.csv";
    CHECK(run_query(j, f).empty());
    CHECK(brute_force(j, f).empty());
  });
}

TEST_CASE("query: a journal without the time and run indexes scans, then is backfilled at open") {
  for_each_store([](Store& s) {
    // Records as a journal written before the indexes: only "r/" and "p/" keys.
    auto kv = s.rocks ? nullptr : scopefs::journal::make_memory_store();
    KvStore* store = kv.get();
    std::unique_ptr<KvStore> rocks;
    if (s.rocks) {
      std::filesystem::create_directories(s.tmp.at("journal"));
      std::string err;
      rocks = scopefs::journal::open_rocksdb(s.tmp.at("journal"), false, err);
      REQUIRE(rocks != nullptr);
      store = rocks.get();
    }
    KvTxn old;
    for (uint64_t seq = 1; seq <= 30; ++seq) {
      Record r = change(seq % 2 ? "write" : "rename", "old/f" + std::to_string(seq % 5),
                        RecordState::Applied);
      if (r.op == "rename") r.path2 = "old/g" + std::to_string(seq % 5);
      r.seq = seq;
      r.time_ns = 1700000000000000000 + static_cast<int64_t>(seq) * 1000000000;
      r.task = "task1";
      r.run = seq <= 10 ? "old-run-a" : "old-run-b";
      old.put(record_key(seq), encode_record(r));
      old.put(scopefs::journal::path_index_key(r.path, seq), "");
    }
    REQUIRE(store->submit(old, true).ok());
    if (s.rocks) {
      rocks.reset();
      // Read-only, as `scopefs log` beside an old daemon: no "m/index" → scan.
      auto ro = Journal::open_read_only(s.tmp.path());
      QueryFilter f;
      f.run = "old-run-a";
      Query q;
      std::string err;
      REQUIRE(Query::compile(f, q, err));
      uint64_t n = 0;
      auto plan = q.run(*ro, [&](const Record&, int) {
        ++n;
        return true;
      });
      REQUIRE(plan.ok());
      CHECK(plan->access == Access::Scan);
      CHECK(n == 10);
    }
    // The first writable open indexes every record.
    Journal& j = s.open("new-run", std::move(kv));
    auto v = j.kv().get(scopefs::journal::kIndexVersionKey);
    REQUIRE(v.ok());
    CHECK(*v == std::to_string(scopefs::journal::kIndexVersion));
    QueryPlan p;
    QueryFilter f;
    f.run = "old-run-a";
    auto got = run_query(j, f, &p);
    CHECK(p.access == Access::Run);
    CHECK(got.size() == 10);
    CHECK(got == brute_force(j, f));
    QueryFilter t;
    t.since_ns = 1700000000000000000 + 12 * int64_t{1000000000};
    t.until_ns = 1700000000000000000 + 14 * int64_t{1000000000};
    got = run_query(j, t, &p);
    CHECK(p.access == Access::Time);
    CHECK(got == std::vector<uint64_t>{12, 13, 14});
    QueryFilter g;
    g.path_glob = "old/g2";  // a rename target: the backfill indexed it
    got = run_query(j, g, &p);
    CHECK(p.access == Access::Path);
    CHECK(got == std::vector<uint64_t>{2, 12, 22});
  });
}
