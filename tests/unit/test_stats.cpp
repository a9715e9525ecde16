// Journal KPIs (journal/stats.hpp) over both stores: counts by operation and
// outcome, held/approved/rejected, decision latency quantiles, rollbacks,
// denied attempts, before-image bytes (deduplicated too), the filters, the
// blob store's size, and the JSON and Prometheus (node-exporter textfile)
// renderings, whose format rules are checked line by line.
#include <doctest/doctest.h>

#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "journal/blob_store.hpp"
#include "journal/journal.hpp"
#include "journal/kv.hpp"
#include "journal/record.hpp"
#include "journal/stats.hpp"
#include "test_util.hpp"

namespace {

using scopefs::journal::BlobStore;
using scopefs::journal::CallerInfo;
using scopefs::journal::compute_stats;
using scopefs::journal::encode_record;
using scopefs::journal::Hash128;
using scopefs::journal::Journal;
using scopefs::journal::JournalOptions;
using scopefs::journal::JournalStats;
using scopefs::journal::KvStore;
using scopefs::journal::KvTxn;
using scopefs::journal::ObjectState;
using scopefs::journal::quantile;
using scopefs::journal::Record;
using scopefs::journal::record_key;
using scopefs::journal::RecordState;
using scopefs::journal::StatsFilter;
using scopefs::test::TempDir;

constexpr int64_t kT0 = 1764064800000000000;  // 2025-11-25T10:00:00Z
constexpr int64_t kSec = 1000000000;

std::unique_ptr<Journal> make_journal(bool rocks, TempDir& tmp) {
  std::unique_ptr<KvStore> kv;
  if (rocks) {
    std::filesystem::create_directories(tmp.at("journal"));
    std::string err;
    kv = scopefs::journal::open_rocksdb(tmp.at("journal"), false, err);
    REQUIRE(kv != nullptr);
  } else {
    kv = scopefs::journal::make_memory_store();
  }
  return std::make_unique<Journal>(std::move(kv), std::make_unique<BlobStore>(tmp.at("blobs")),
                                   JournalOptions{"recon", "run-a", false, 20}, false);
}

Hash128 hash_n(uint64_t n) {
  Hash128 h;
  h.high = n;
  h.low = n * 7;
  return h;
}

ObjectState file(uint64_t size, uint64_t hash, bool blob) {
  ObjectState o;
  o.exists = true;
  o.type = "file";
  o.size = size;
  o.hash = hash_n(hash);
  o.blob = blob;
  return o;
}

// Writes records with chosen times straight into the store (seq from 1).
class Writer {
 public:
  explicit Writer(Journal& j) : j_(j) {}
  Record& add(const std::string& op, RecordState st, int64_t at_s,
              const std::string& run = "run-a") {
    Record r;
    r.seq = ++seq_;
    r.time_ns = kT0 + at_s * kSec;
    r.task = "recon";
    r.run = run;
    r.op = op;
    r.path = "w/f" + std::to_string(r.seq);
    r.state = st;
    r.caller = CallerInfo{10, 1000, 1000, "agent"};
    recs_.push_back(r);
    return recs_.back();
  }
  void flush() {
    KvTxn t;
    for (const Record& r : recs_) t.put(record_key(r.seq), encode_record(r));
    REQUIRE(j_.kv().submit(t, false).ok());
  }

 private:
  Journal& j_;
  uint64_t seq_ = 0;
  std::deque<Record> recs_;
};

// A pilot's day: writes, denials, held changes decided after known delays,
// a rollback, a failure, an interruption.
void pilot(Journal& j) {
  Writer w(j);
  w.add("mount", RecordState::Applied, 0).path = "";
  w.add("write", RecordState::Applied, 1).before = file(100, 1, true);
  w.add("write", RecordState::Applied, 2).before = file(100, 1, true);  // the same content again
  w.add("unlink", RecordState::Applied, 3).before = file(50, 2, true);
  auto& ren = w.add("rename", RecordState::RolledBack, 4);
  ren.victim = file(30, 3, true);
  w.add("create", RecordState::Denied, 5).err = EROFS;
  w.add("write", RecordState::Denied, 6).err = EROFS;
  w.add("unlink", RecordState::Denied, 7).err = EACCES;
  // Held changes: 9 approved after 10 s, 10 after 30 s, 11 rejected after 100 s, 12 pending.
  w.add("unlink", RecordState::Approved, 10).ref = 14;
  w.add("rename", RecordState::Approved, 20).ref = 15;
  w.add("rmdir", RecordState::Rejected, 30).ref = 16;
  w.add("unlink", RecordState::Held, 40);
  w.add("write", RecordState::Failed, 41).err = ENOSPC;
  auto& a1 = w.add("approve", RecordState::Applied, 20);
  a1.ref = 9;
  a1.before = file(70, 4, true);
  w.add("approve", RecordState::Applied, 50).ref = 10;
  w.add("reject", RecordState::Applied, 130).ref = 11;
  w.add("rollback", RecordState::Applied, 140).ref = 5;
  w.add("rollback", RecordState::Failed, 141).ref = 2;
  w.add("write", RecordState::Interrupted, 150);
  w.add("write", RecordState::Applied, 160, "run-b").before =
      file(10, 5, false);  // no before-image kept
  w.flush();
}

}  // namespace

TEST_CASE("stats: nearest-rank quantiles") {
  std::vector<double> v;
  for (int i = 1; i <= 20; ++i) v.push_back(i);
  CHECK(quantile(v, 0.5) == 10);
  CHECK(quantile(v, 0.95) == 19);
  CHECK(quantile(v, 1.0) == 20);
  CHECK(quantile({5}, 0.5) == 5);
  CHECK(quantile({5}, 0.95) == 5);
  CHECK(quantile({1, 2}, 0.5) == 1);
  CHECK(quantile({1, 2}, 0.95) == 2);
  CHECK(quantile({}, 0.5) == 0);
}

TEST_CASE("stats: a pilot's figures (both stores)") {
  for (bool rocks : {false, true}) {
    CAPTURE(rocks);
    TempDir tmp;
    auto j = make_journal(rocks, tmp);
    pilot(*j);
    auto r = compute_stats(*j, StatsFilter{});
    REQUIRE(r.ok());
    const JournalStats& s = *r;
    CHECK(s.task == "recon");
    CHECK(s.records == 20);
    CHECK(s.unreadable == 0);
    CHECK(s.first_ns == kT0);
    CHECK(s.last_ns == kT0 + 160 * kSec);
    CHECK(s.operations.at("write").at("applied") == 3);
    CHECK(s.operations.at("write").at("denied") == 1);
    CHECK(s.operations.at("write").at("failed") == 1);
    CHECK(s.operations.at("write").at("interrupted") == 1);
    CHECK(s.operations.at("unlink").at("approved") == 1);
    CHECK(s.operations.at("unlink").at("held") == 1);
    CHECK(s.operations.at("rollback").at("applied") == 1);
    CHECK(s.states.at("denied") == 3);
    CHECK(s.states.at("applied") == 9);
    CHECK(s.held_total == 4);
    CHECK(s.pending == 1);
    CHECK(s.approved == 2);
    CHECK(s.rejected == 1);
    CHECK(s.approve_latency.count == 2);
    CHECK(s.approve_latency.p50_s == doctest::Approx(10));
    CHECK(s.approve_latency.p95_s == doctest::Approx(30));
    CHECK(s.approve_latency.max_s == doctest::Approx(30));
    CHECK(s.approve_latency.sum_s == doctest::Approx(40));
    CHECK(s.reject_latency.count == 1);
    CHECK(s.reject_latency.p50_s == doctest::Approx(100));
    CHECK(s.rollbacks == 1);
    CHECK(s.rollbacks_failed == 1);
    CHECK(s.rolled_back == 1);
    CHECK(s.denied == 3);
    CHECK(s.denied_by_errno == std::map<std::string, uint64_t>{{"EACCES", 1}, {"EROFS", 2}});
    CHECK(s.failed == 2);  // the write, the rollback
    CHECK(s.interrupted == 1);
    // Before-images: 100 + 100 (same content) + 50 + 30 (victim) + 70; not the expired one.
    CHECK(s.before_images == 5);
    CHECK(s.before_image_bytes == 350);
    CHECK(s.before_image_distinct == 4);
    CHECK(s.before_image_distinct_bytes == 250);

    // --since: what happened from t0+100s on; a decision's latency counts
    // though its held change is older.
    StatsFilter since;
    since.since_ns = kT0 + 100 * kSec;
    auto r2 = compute_stats(*j, since);
    REQUIRE(r2.ok());
    CHECK(r2->records == 5);
    CHECK(r2->reject_latency.count == 1);
    CHECK(r2->reject_latency.p50_s == doctest::Approx(100));
    CHECK(r2->approve_latency.count == 0);
    CHECK(r2->held_total == 0);
    // --run
    StatsFilter run;
    run.run = "run-b";
    auto r3 = compute_stats(*j, run);
    REQUIRE(r3.ok());
    CHECK(r3->records == 1);
    CHECK(r3->operations.at("write").at("applied") == 1);
  }
}

TEST_CASE("stats: the blob store's size comes from the state directory") {
  TempDir tmp;
  auto j = make_journal(true, tmp);
  tmp.file("blobs/ab/cdef", std::string(5000, 'x'));
  tmp.file("blobs/12/3456", "tiny");
  tmp.file("blobs/tmp/partial", std::string(100, 'y'));  // being made: not counted
  JournalStats s;
  scopefs::journal::add_disk_usage(s, *j, tmp.path());
  CHECK(s.blob_files == 2);
  CHECK(s.blob_bytes == 5004);
  CHECK(s.blob_disk_bytes >= 4096);
  CHECK(s.journal_bytes > 0);
}

TEST_CASE("stats: JSON and the node-exporter textfile format") {
  TempDir tmp;
  auto j = make_journal(false, tmp);
  pilot(*j);
  auto r = compute_stats(*j, StatsFilter{});
  REQUIRE(r.ok());
  auto js = scopefs::journal::stats_json(*r);
  CHECK(js["records"] == 20);
  CHECK(js["operations"]["write"]["denied"] == 1);
  CHECK(js["held"]["pending"] == 1);
  CHECK(js["decision_latency"]["approve"]["p95_s"] == 30.0);
  CHECK(js["denied"]["by_errno"]["EROFS"] == 2);
  CHECK(js["before_images"]["distinct_bytes"] == 250);

  // A task name that needs escaping in a label value.
  std::string text = scopefs::journal::stats_prometheus(*r, "we\"ird\\task\nname");
  REQUIRE(!text.empty());
  CHECK(text.back() == '\n');
  const std::regex help(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*)");
  const std::regex type(
      R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|summary|histogram|untyped))");
  const std::regex label(R"re(([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)")re");
  const std::regex sample_re(R"(([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (-?[0-9.e+-]+|NaN))");
  std::set<std::string> families;
  std::string family, family_type;
  std::map<std::string, double> samples;  // "name{labels}" → value
  std::istringstream in(text);
  std::string line;
  std::smatch m;
  while (std::getline(in, line)) {
    CAPTURE(line);
    REQUIRE(!line.empty());
    if (std::regex_match(line, m, help)) {
      family = m[1];
      CHECK(families.insert(family).second);  // each family once, its samples together
      REQUIRE(std::getline(in, line));
      REQUIRE(std::regex_match(line, m, type));
      CHECK(m[1] == family);
      family_type = m[2];
      continue;
    }
    REQUIRE(std::regex_match(line, m, sample_re));
    std::string name = m[1], labels = m[2];
    if (family_type == "summary")
      CHECK((name == family || name == family + "_sum" || name == family + "_count"));
    else CHECK(name == family);
    // Labels: comma-separated, each well escaped; task first.
    std::string rest = labels;
    std::smatch lm;
    std::vector<std::string> keys;
    while (!rest.empty()) {
      REQUIRE(std::regex_search(rest, lm, label, std::regex_constants::match_continuous));
      keys.push_back(lm[1]);
      rest = lm.suffix();
      if (!rest.empty()) {
        REQUIRE(rest.front() == ',');
        rest.erase(0, 1);
      }
    }
    REQUIRE(!keys.empty());
    CHECK(keys.front() == "task");
    CHECK(labels.rfind(R"(task="we\"ird\\task\nname")", 0) == 0);
    samples[name + "{" +
            labels.substr(labels.find(',') == std::string::npos ? labels.size()
                                                                : labels.find(',') + 1) +
            "}"] = std::stod(m[3]);
  }
  CHECK(samples.at("scopefs_records{}") == 20);
  CHECK(samples.at(R"(scopefs_operations_total{op="write",outcome="denied"})") == 1);
  CHECK(samples.at(R"(scopefs_operations_total{op="unlink",outcome="held"})") == 1);
  CHECK(samples.at("scopefs_pending_changes{}") == 1);
  CHECK(samples.at("scopefs_approved_changes_total{}") == 2);
  CHECK(samples.at("scopefs_rejected_changes_total{}") == 1);
  CHECK(samples.at(R"(scopefs_approval_latency_seconds{decision="approve",quantile="0.5"})") == 10);
  CHECK(samples.at(R"(scopefs_approval_latency_seconds{decision="approve",quantile="0.95"})") ==
        30);
  CHECK(samples.at(R"(scopefs_approval_latency_seconds_count{decision="approve"})") == 2);
  CHECK(samples.at(R"(scopefs_approval_latency_seconds_sum{decision="reject"})") == 100);
  CHECK(samples.at(R"(scopefs_rollbacks_total{outcome="applied"})") == 1);
  CHECK(samples.at("scopefs_denied_total{}") == 3);
  CHECK(samples.at(R"(scopefs_denied_by_errno_total{errno="EROFS"})") == 2);
  CHECK(samples.at(R"(scopefs_before_image_bytes{count="distinct"})") == 250);
  CHECK(samples.at("scopefs_last_record_timestamp_seconds{}") == doctest::Approx(1764064960.0));
}
