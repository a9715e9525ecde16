// Retention (journal/gc.hpp) over the in-memory store with a real blob store:
// old records release their before-images, shared blobs survive while any
// record counts them, held changes and intents keep theirs, crash leftovers
// are swept, a dry run changes nothing, and the run is journaled.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <ctime>
#include <memory>
#include <string>

#include "fs/sys/sys.hpp"
#include "journal/blob_store.hpp"
#include "journal/gc.hpp"
#include "journal/journal.hpp"
#include "journal/kv.hpp"
#include "journal/record.hpp"
#include "test_util.hpp"

namespace {

using namespace scopefs::journal;
using scopefs::test::TempDir;

constexpr int64_t kNs = 1000000000;
constexpr int64_t kDay = 86400;

int64_t now_ns() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNs + ts.tv_nsec;
}

struct GcFixture {
  TempDir tmp;
  std::unique_ptr<Journal> j;
  GcFixture() {
    JournalOptions o;
    o.task = "t";
    o.run = "r";
    j = std::make_unique<Journal>(make_memory_store(), std::make_unique<BlobStore>(tmp.at("blobs")),
                                  o, false);
  }
  Hash128 blob(const std::string& content) {
    std::string p =
        tmp.file("src/" + std::to_string(content.size()) + content.substr(0, 4), content);
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    auto h = j->blobs()->put_copy(fd);
    ::close(fd);
    REQUIRE(h);
    return *h;
  }
  // An applied write whose before-image is `h`, `age_s` seconds old.
  uint64_t change(const Hash128& h, int64_t age_s, RecordState state = RecordState::Applied) {
    Record r;
    r.op = "write";
    r.path = "f";
    ObjectState b;
    b.exists = true;
    b.type = "file";
    b.size = 5;
    b.hash = h;
    b.blob = true;
    r.before = b;
    REQUIRE(j->intent(r));
    r.state = state;
    if (state == RecordState::Held) REQUIRE(j->append_with(r, KvTxn{}));
    else if (state != RecordState::Intent) REQUIRE(j->complete(r));
    age(r.seq, age_s);
    return r.seq;
  }
  void age(uint64_t seq, int64_t age_s) {
    auto r = j->get(seq);
    REQUIRE(r);
    REQUIRE(*r);
    Record x = **r;
    x.time_ns = now_ns() - age_s * kNs;
    KvTxn t;
    t.put(record_key(seq), encode_record(x));
    REQUIRE(j->rewrite_keys(t));
  }
  GcReport gc(int64_t retention_s, bool dry_run = false, int64_t later_s = 0) {
    GcOptions o;
    o.retention_s = retention_s;
    o.dry_run = dry_run;
    o.now_ns = now_ns() + later_s * kNs;
    o.orphan_age_s = 0;  // blob files are brand new here
    auto rep = collect_garbage(*j, o, CallerInfo{1, 0, 0, "test", {}, {}});
    REQUIRE(rep);
    return *rep;
  }
  Record rec(uint64_t seq) {
    auto r = j->get(seq);
    REQUIRE(r);
    REQUIRE(*r);
    return **r;
  }
  int64_t refs(const Hash128& h) {
    auto c = j->blob_refs(h);
    REQUIRE(c);
    return *c;
  }
};

}  // namespace

TEST_SUITE_BEGIN("gc");

TEST_CASE_FIXTURE(GcFixture, "an old record releases its before-image; the run is journaled") {
  Hash128 h = blob("alpha");
  uint64_t old = change(h, 3 * kDay);
  Hash128 h2 = blob("bravo");
  uint64_t young = change(h2, 60);
  REQUIRE(refs(h) == 1);
  GcReport rep = gc(kDay);
  CHECK(rep.records == 1);
  CHECK(rep.blobs == 1);
  CHECK(rep.bytes == 5);
  CHECK(rep.orphans == 0);
  CHECK(rep.expired == std::vector<uint64_t>{old});
  CHECK_FALSE(j->blobs()->contains(h));
  CHECK(j->blobs()->contains(h2));
  CHECK(refs(h) == 0);
  CHECK(refs(h2) == 1);
  Record r = rec(old);
  CHECK(r.expired);
  CHECK_FALSE(r.before->blob);
  CHECK(r.before->hash == h);  // the hash stays: what the content was
  CHECK_FALSE(rec(young).expired);
  Record g = rec(rep.seq);
  CHECK(g.op == "gc");
  CHECK(g.state == RecordState::Applied);
  CHECK(g.note.find("expired 1 records, removed 1 before-images (5 bytes") != std::string::npos);
  // The codec keeps the mark.
  auto back = decode_record(encode_record(r));
  REQUIRE(back);
  CHECK(back->expired);
  CHECK(record_json(r).find("\"expired\":true") != std::string::npos);
  // A second run has nothing left to do.
  GcReport again = gc(kDay);
  CHECK(again.records == 0);
  CHECK(again.blobs == 0);
}

TEST_CASE_FIXTURE(GcFixture, "a shared blob survives while any record counts it") {
  Hash128 h = blob("same!");
  uint64_t a = change(h, 3 * kDay);
  uint64_t b = change(h, 60);
  REQUIRE(refs(h) == 2);
  GcReport rep = gc(kDay);
  CHECK(rep.records == 1);
  CHECK(rep.blobs == 0);
  CHECK(rep.kept_shared == 1);
  CHECK(j->blobs()->contains(h));
  CHECK(refs(h) == 1);
  CHECK(rec(a).expired);
  CHECK_FALSE(rec(b).expired);
  CHECK(rec(b).before->blob);
  // Two days later the second one goes too.
  GcReport later = gc(kDay, false, 2 * kDay);
  CHECK(later.records == 1);
  CHECK(later.blobs == 1);
  CHECK_FALSE(j->blobs()->contains(h));
  CHECK(refs(h) == 0);
}

TEST_CASE_FIXTURE(GcFixture, "held changes and intents keep their images") {
  Hash128 hh = blob("held!");
  uint64_t held = change(hh, 3 * kDay, RecordState::Held);
  Hash128 hi = blob("inflight");
  uint64_t intent = change(hi, 3 * kDay, RecordState::Intent);
  GcReport rep = gc(kDay);
  CHECK(rep.records == 0);
  CHECK(rep.blobs == 0);
  CHECK(j->blobs()->contains(hh));
  CHECK(j->blobs()->contains(hi));  // uncounted, but an intent names it
  CHECK(rec(held).before->blob);
  CHECK_FALSE(rec(held).expired);
  CHECK(rec(intent).before->blob);
  CHECK(refs(hh) == 1);
}

TEST_CASE_FIXTURE(GcFixture, "unreferenced blob files and old temporaries are swept") {
  Hash128 orphan = blob("orphan");
  std::string t = tmp.at("blobs/tmp/l.1.1");
  tmp.file("blobs/tmp/l.1.1", "x");
  GcOptions o;
  o.retention_s = kDay;
  o.now_ns = now_ns() + 2 * 3600 * kNs;  // the temporary is two hours old by then
  o.orphan_age_s = 60;
  auto rep = collect_garbage(*j, o, CallerInfo{});
  REQUIRE(rep);
  CHECK(rep->blobs == 1);
  CHECK(rep->orphans == 1);
  CHECK(rep->tmp_files == 1);
  CHECK_FALSE(j->blobs()->contains(orphan));
  CHECK(::access(t.c_str(), F_OK) != 0);
}

TEST_CASE_FIXTURE(GcFixture,
                  "a young unreferenced blob stays (a change may be about to count it)") {
  Hash128 fresh = blob("fresh");
  GcOptions o;
  o.retention_s = kDay;
  o.orphan_age_s = 60;
  auto rep = collect_garbage(*j, o, CallerInfo{});
  REQUIRE(rep);
  CHECK(rep->blobs == 0);
  CHECK(j->blobs()->contains(fresh));
}

TEST_CASE_FIXTURE(GcFixture, "a dry run reports the same and changes nothing") {
  Hash128 h = blob("alpha");
  uint64_t old = change(h, 3 * kDay);
  Hash128 s = blob("share");
  change(s, 3 * kDay);
  change(s, 60);
  uint64_t last = j->last_seq();
  GcReport dry = gc(kDay, true);
  CHECK(dry.records == 2);
  CHECK(dry.blobs == 1);
  CHECK(dry.kept_shared == 1);
  CHECK(dry.seq == 0);
  CHECK(j->last_seq() == last);
  CHECK(j->blobs()->contains(h));
  CHECK(refs(h) == 1);
  CHECK_FALSE(rec(old).expired);
  GcReport real = gc(kDay);
  CHECK(real.records == dry.records);
  CHECK(real.blobs == dry.blobs);
  CHECK(real.bytes == dry.bytes);
  CHECK(j->blobs()->contains(s));
}

TEST_SUITE_END();
