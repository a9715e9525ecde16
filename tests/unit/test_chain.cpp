// The hash chain and its verification over the in-memory store and over
// RocksDB across a reopen; export bundles round trip and tampering.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "journal/audit_json.hpp"
#include "journal/chain.hpp"
#include "journal/export.hpp"
#include "journal/journal.hpp"
#include "tests/unit/test_util.hpp"

using namespace scopefs::journal;

namespace {

Record make(const char* op, const char* path) {
  Record r;
  r.op = op;
  r.path = path;
  r.caller = CallerInfo{42, 1000, 1000, "agent"};
  return r;
}

// A journal with a few records written through the normal paths (intent +
// complete, append), checkpointed.
void fill(Journal& j) {
  for (int i = 0; i < 5; ++i) {
    Record r = make("write", ("w/f" + std::to_string(i)).c_str());
    REQUIRE(j.intent(r));
    r.state = RecordState::Applied;
    REQUIRE(j.complete(r));
  }
  Record d = make("create", "ro/x");
  d.state = RecordState::Denied;
  d.err = EROFS;
  REQUIRE(j.append(d));
  REQUIRE(j.checkpoint());
}

VerifyOptions opts_for(Journal& j) {
  VerifyOptions o;
  o.key = j.chain()->key()->public_key();
  o.quiescent = true;
  return o;
}

}  // namespace

TEST_CASE("chain: a journal written normally verifies, every write is an event") {
  Journal j(make_memory_store(), nullptr, JournalOptions{"t", "run1"}, false);
  fill(j);
  auto rep = verify_journal(j.kv(), opts_for(j));
  CHECK(rep.ok());
  CHECK(rep.records == 6);
  CHECK(rep.events == 11);  // 5 intents + 5 outcomes + 1 denied
  CHECK(rep.anchored_eseq == rep.head_eseq);
}

TEST_CASE("chain: edits, deletions, swaps, insertions and unsigned appends are named") {
  Journal j(make_memory_store(), nullptr, JournalOptions{"t", "run1"}, false);
  fill(j);
  KvStore& kv = j.kv();
  auto value = [&](uint64_t seq) { return **kv.get(record_key(seq)); };
  auto first_seq = [&] {
    auto rep = verify_journal(kv, opts_for(j));
    REQUIRE(!rep.ok());
    return rep.problems.front().rseq;
  };

  SUBCASE("edit") {
    std::string v = value(3);
    auto at = v.find("w/f2");
    REQUIRE(at != std::string::npos);
    v[at + 3] = 'X';
    KvTxn t;
    t.put(record_key(3), v);
    REQUIRE(kv.submit(t, false));
    CHECK(first_seq() == 3);
  }
  SUBCASE("delete") {
    KvTxn t;
    t.del(record_key(2));
    REQUIRE(kv.submit(t, false));
    CHECK(first_seq() == 2);
  }
  SUBCASE("swap") {
    std::string a = value(1), b = value(4);
    KvTxn t;
    t.put(record_key(1), b);
    t.put(record_key(4), a);
    REQUIRE(kv.submit(t, false));
    auto rep = verify_journal(kv, opts_for(j));
    CHECK(rep.problems.size() == 2);
  }
  SUBCASE("insert") {
    KvTxn t;
    t.put(record_key(99), value(6));
    REQUIRE(kv.submit(t, false));
    CHECK(first_seq() == 99);
  }
  SUBCASE("an event appended without a checkpoint, no writer running") {
    // Through the chain itself (a forger who knows the format), after the
    // last signed checkpoint.
    Record r = make("unlink", "w/f0");
    r.seq = 7;
    r.state = RecordState::Applied;
    KvTxn t;
    t.put(record_key(7), encode_record(r));
    REQUIRE(j.chain()->submit(t, false, 1));
    auto rep = verify_journal(kv, opts_for(j));
    CHECK(!rep.ok());
    VerifyOptions live = opts_for(j);
    live.quiescent = false;  // a running daemon signs within a second: a note only
    CHECK(verify_journal(kv, live).ok());
  }
  SUBCASE("checkpoint signed by another key") {
    VerifyOptions o = opts_for(j);
    o.key = SigningKey::generate().public_key();
    CHECK(!verify_journal(kv, o).ok());
  }
}

TEST_CASE("chain: survives a reopen, truncation is caught by the head file (rocksdb)") {
  scopefs::test::TempDir dir;
  const std::string& state = dir.path();
  {
    auto j = Journal::open(state, JournalOptions{"t", "run1"});
    fill(*j);
  }
  {
    auto j = Journal::open(state, JournalOptions{"t", "run2"});
    Record r = make("rename", "w/f1");
    r.path2 = "w/g1";
    REQUIRE(j->intent(r));
    r.state = RecordState::Applied;
    REQUIRE(j->complete(r));
  }
  std::string err;
  auto kv = open_rocksdb(state + "/journal", false, err);
  REQUIRE(kv);
  VerifyOptions o;
  o.key = read_public_key(state);
  REQUIRE(o.key);
  o.head_file = read_head_file(state);
  REQUIRE(o.head_file);
  o.head_file_expected = true;
  o.quiescent = true;
  auto rep = verify_journal(*kv, o);
  CHECK(rep.ok());
  CHECK(rep.records == 7);

  // Cut the tail everywhere in the database: the head file still knows.
  auto last_event = rep.head_eseq;
  KvTxn cut;
  cut.del(record_key(7));
  cut.del(event_key(last_event));
  cut.del(event_key(last_event - 1));
  (void)kv->scan("k/", "", [&](std::string_view k, std::string_view) {
    cut.del(std::string(k));
    return true;
  });
  REQUIRE(kv->submit(cut, true));
  rep = verify_journal(*kv, o);
  REQUIRE(!rep.ok());
  bool truncated = false;
  for (const auto& p : rep.problems)
    truncated = truncated || p.what.find("truncated") != std::string::npos;
  CHECK(truncated);
}

TEST_CASE("export: a bundle round trips, a changed byte or another key fails") {
  scopefs::test::TempDir dir;
  Journal j(make_memory_store(), nullptr, JournalOptions{"t", "run1"}, false);
  fill(j);
  const SigningKey& key = *j.chain()->key();
  ExportOptions eo;
  eo.out = dir.at("b.tar");
  auto sum = export_bundle(j.kv(), key, "t", eo);
  CHECK(sum.records == 11);
  REQUIRE(looks_like_bundle(eo.out));
  CHECK(verify_bundle(eo.out, key.public_key()).ok());
  CHECK(!verify_bundle(eo.out, SigningKey::generate().public_key()).ok());

  std::string data;
  {
    std::ifstream in(eo.out, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    data = ss.str();
  }
  auto at = data.find("\"write\"");
  REQUIRE(at != std::string::npos);
  data[at + 2] = 'W';
  {
    std::ofstream out(dir.at("bad.tar"), std::ios::binary);
    out << data;
  }
  CHECK(!verify_bundle(dir.at("bad.tar"), key.public_key()).ok());
}

TEST_CASE("utc_time: fixed digits, clamped, floor for times before 1970") {
  using scopefs::journal::utc_time;
  const int64_t t = 1700000000LL * 1000000000LL + 123456789;
  CHECK(utc_time(t, 9) == "2023-11-14T22:13:20.123456789Z");
  CHECK(utc_time(t, 3) == "2023-11-14T22:13:20.123Z");
  CHECK(utc_time(t, 0) == "2023-11-14T22:13:20Z");
  CHECK(utc_time(t, 42) == "2023-11-14T22:13:20.123456789Z");
  CHECK(utc_time(t - 123456789 + 5000000, 3) == "2023-11-14T22:13:20.005Z");
  CHECK(utc_time(-1, 9) == "1969-12-31T23:59:59.999999999Z");
}
