// The journal's building blocks without FUSE: both KvStore implementations
// (the same checks run over each), the Journal's write-ahead protocol,
// sequence numbers across reopen and crash recovery, the record codec, the
// XXH3-128 hashes (pinned to what `xxhsum -H2` prints) and the blob store.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "journal/blob_store.hpp"
#include "journal/hash.hpp"
#include "journal/journal.hpp"
#include "journal/kv.hpp"
#include "journal/record.hpp"
#include "test_util.hpp"

namespace {

using scopefs::journal::BlobStore;
using scopefs::journal::CallerInfo;
using scopefs::journal::decode_i64;
using scopefs::journal::decode_record;
using scopefs::journal::empty_hash;
using scopefs::journal::encode_i64;
using scopefs::journal::encode_record;
using scopefs::journal::Hash128;
using scopefs::journal::hash_bytes;
using scopefs::journal::hash_fd;
using scopefs::journal::hash_fd_range;
using scopefs::journal::Hasher;
using scopefs::journal::Journal;
using scopefs::journal::JournalOptions;
using scopefs::journal::KvStore;
using scopefs::journal::KvTxn;
using scopefs::journal::ObjectState;
using scopefs::journal::Record;
using scopefs::journal::record_key;
using scopefs::journal::RecordState;
using scopefs::journal::seq_of_key;
using scopefs::test::read_file;
using scopefs::test::TempDir;

namespace fsys = std::filesystem;

// `printf 'hello\n' | xxhsum -H2` and `printf '' | xxhsum -H2` (xxhsum 0.8.1).
constexpr const char* kHelloHash = "6bba86c7e069f56d5a10b435f1c8e49c";
constexpr const char* kEmptyHash = "99aa06d3014798d86001c324468d497f";

const std::vector<std::string> kOps = {"create",      "mknod",     "mkdir",           "symlink",
                                       "link",        "unlink",    "rmdir",           "rename",
                                       "chmod",       "chown",     "truncate",        "utimens",
                                       "write",       "fallocate", "copy_file_range", "setxattr",
                                       "removexattr", "mount",     "unmount"};
const std::vector<RecordState> kStates = {RecordState::Intent, RecordState::Applied,
                                          RecordState::Failed, RecordState::Denied,
                                          RecordState::Interrupted};

Hash128 H(const char* hex) {
  Hash128 h;
  REQUIRE(Hash128::parse(hex, h));
  return h;
}

// ---------------------------------------------------------------------------
// Store factories: each check runs over both implementations.

struct StoreKind {
  const char* name;
  bool persistent;
};
const StoreKind kMemory{"memory", false};
const StoreKind kRocks{"rocksdb", true};

std::unique_ptr<KvStore> make_store(const StoreKind& k, const std::string& dir) {
  if (!k.persistent) return scopefs::journal::make_memory_store();
  std::string err;
  auto s = scopefs::journal::open_rocksdb(dir, false, err);
  INFO("open_rocksdb(", dir, "): ", err);
  REQUIRE(s != nullptr);
  return s;
}

// Runs `fn(kind, store)` once with each store, each over a fresh temp dir.
void for_each_store(const std::function<void(const StoreKind&, KvStore&, TempDir&)>& fn) {
  for (const StoreKind* k : {&kMemory, &kRocks}) {
    CAPTURE(k->name);
    TempDir tmp;
    auto store = make_store(*k, tmp.at("kv"));
    fn(*k, *store, tmp);
  }
}

// A Journal over a store of kind `k` in `dir` (rocksdb: DIR/journal; blobs: DIR/blobs).
std::unique_ptr<Journal> make_journal(const StoreKind& k, const std::string& dir,
                                      JournalOptions opts = {"task1", "run1", false, 20},
                                      std::unique_ptr<KvStore> kv = nullptr) {
  if (!kv) {
    fsys::create_directories(dir + "/journal");
    kv = make_store(k, dir + "/journal");
  }
  return std::make_unique<Journal>(std::move(kv), std::make_unique<BlobStore>(dir + "/blobs"),
                                   std::move(opts), false);
}

void for_each_journal(const std::function<void(const StoreKind&, Journal&, TempDir&)>& fn) {
  for (const StoreKind* k : {&kMemory, &kRocks}) {
    CAPTURE(k->name);
    TempDir tmp;
    auto j = make_journal(*k, tmp.path());
    fn(*k, *j, tmp);
  }
}

std::optional<std::string> get(KvStore& s, std::string_view key) {
  auto r = s.get(key);
  INFO("get errno ", r.error());
  REQUIRE(r.ok());
  return *r;
}

std::vector<std::pair<std::string, std::string>> scan_all(KvStore& s, std::string_view prefix,
                                                          std::string_view start = {},
                                                          size_t limit = SIZE_MAX) {
  std::vector<std::pair<std::string, std::string>> out;
  auto r = s.scan(prefix, start, [&](std::string_view k, std::string_view v) {
    out.emplace_back(std::string(k), std::string(v));
    return out.size() < limit;
  });
  INFO("scan errno ", r.error());
  REQUIRE(r.ok());
  return out;
}

std::vector<std::string> keys_of(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::vector<std::string> out;
  out.reserve(kv.size());
  for (const auto& [k, v] : kv) out.push_back(k);
  return out;
}

void submit(KvStore& s, const KvTxn& t, bool sync = false) {
  auto r = s.submit(t, sync);
  INFO("submit errno ", r.error());
  REQUIRE(r.ok());
}

Record get_record(Journal& j, uint64_t seq) {
  auto r = j.get(seq);
  INFO("get(", seq, ") errno ", r.error());
  REQUIRE(r.ok());
  REQUIRE(r->has_value());
  return **r;
}

std::vector<Record> all_records(Journal& j, uint64_t from = 1) {
  std::vector<Record> out;
  auto r = j.scan(from, [&](const Record& rec, int err) {
    INFO("record ", rec.seq, " errno ", err);
    CHECK(err == 0);
    out.push_back(rec);
    return true;
  });
  REQUIRE(r.ok());
  return out;
}

ObjectState file_state(const char* hash_hex, bool blob, uint64_t size = 6) {
  ObjectState o;
  o.exists = true;
  o.type = "file";
  o.size = size;
  o.mode = 0644;
  o.uid = 1000;
  o.gid = 100;
  o.mtime_ns = 1700000000123456789;
  if (hash_hex) o.hash = H(hash_hex);
  o.blob = blob;
  return o;
}

// A record with every field set to something other than its default.
Record full_record(const std::string& op, RecordState st) {
  Record r;
  r.seq = 0x0102030405060708ULL;
  r.time_ns = 1764064800123456789;
  r.task = "recon";
  r.run = "0f8e2a9c-1b2d-4c3e-8f00-112233445566";
  r.op = op;
  r.path = "exports/q1 report.csv";
  r.path2 = "exports/ünïcode/→ target";
  r.flags = 0x80000001u;
  r.state = st;
  r.err = 30;
  r.caller = CallerInfo{4242, 1001, 1002, "python3", {}, {}};
  r.before = file_state(kHelloHash, true);
  ObjectState after;
  after.exists = true;
  after.type = "symlink";
  after.size = 9;
  after.mode = 0777;
  after.uid = 0;
  after.gid = 0;
  after.mtime_ns = -5;  // before the epoch
  after.target = "../a/b c";
  r.after = after;
  ObjectState victim = file_state(kEmptyHash, false, 0);
  victim.type = "file";
  victim.mode = 04755;
  victim.uid = 65534;
  victim.gid = 65534;
  r.victim = victim;
  return r;
}

size_t count_blob_files(const std::string& blobs_dir) {
  size_t n = 0;
  for (const auto& sub : fsys::directory_iterator(blobs_dir)) {
    if (sub.path().filename() == "tmp") continue;
    REQUIRE(sub.is_directory());
    for (const auto& f : fsys::directory_iterator(sub.path())) {
      (void)f;
      ++n;
    }
  }
  return n;
}

// Every blob is named by the XXH3-128 of its content: DIR/<2 hex>/<30 hex>.
void check_blobs_named_by_content(const std::string& blobs_dir) {
  for (const auto& sub : fsys::directory_iterator(blobs_dir)) {
    if (sub.path().filename() == "tmp") continue;
    for (const auto& f : fsys::directory_iterator(sub.path())) {
      std::string name = sub.path().filename().string() + f.path().filename().string();
      CAPTURE(f.path().string());
      CHECK(name.size() == 32);
      int fd = ::open(f.path().c_str(), O_RDONLY);
      REQUIRE(fd >= 0);
      auto h = hash_fd(fd);
      ::close(fd);
      REQUIRE(h.ok());
      CHECK(h->hex() == name);
      CHECK(hash_bytes(read_file(f.path().string())).hex() == name);
    }
  }
}

scopefs::sys::UniqueFd open_ro(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  return scopefs::sys::UniqueFd(fd);
}

}  // namespace

// ---------------------------------------------------------------------------
// KvStore

TEST_CASE("kv: put, get, overwrite and delete") {
  for_each_store([](const StoreKind&, KvStore& s, TempDir&) {
    CHECK(get(s, "missing") == std::nullopt);
    KvTxn t;
    t.put("a", "1");
    t.put("b", std::string("x\0y", 3));  // values are bytes
    t.put(std::string("k\0z", 3), "nul key");
    submit(s, t);
    CHECK(get(s, "a") == "1");
    CHECK(get(s, "b") == std::string("x\0y", 3));
    CHECK(get(s, std::string("k\0z", 3)) == "nul key");
    CHECK(get(s, "k") == std::nullopt);

    KvTxn t2;
    t2.put("a", "2");
    t2.del("b");
    t2.del("never-existed");
    submit(s, t2, true);
    CHECK(get(s, "a") == "2");
    CHECK(get(s, "b") == std::nullopt);

    // Within one transaction, later operations win.
    KvTxn t3;
    t3.put("c", "first");
    t3.put("c", "second");
    t3.put("d", "gone");
    t3.del("d");
    submit(s, t3);
    CHECK(get(s, "c") == "second");
    CHECK(get(s, "d") == std::nullopt);

    KvTxn empty;
    CHECK(empty.empty());
    submit(s, empty);
    CHECK(s.sync().ok());
  });
}

TEST_CASE("kv: scan visits a prefix in key order, from a start key, until told to stop") {
  for_each_store([](const StoreKind&, KvStore& s, TempDir&) {
    KvTxn t;
    for (const char* k : {"p/c", "p/a", "p/b", "p", "pa", "q/a", "o/z", "p/b/x"}) t.put(k, k);
    t.put(std::string("p/\xff", 3), "high byte");
    submit(s, t);
    CHECK(keys_of(scan_all(s, "p/")) ==
          std::vector<std::string>{"p/a", "p/b", "p/b/x", "p/c", std::string("p/\xff", 3)});
    auto all = scan_all(s, "p/");
    for (const auto& [k, v] : all)
      if (k != std::string("p/\xff", 3)) CHECK(k == v);
    CHECK(keys_of(scan_all(s, "p/", "p/b/")) ==
          std::vector<std::string>{"p/b/x", "p/c", std::string("p/\xff", 3)});
    // A start before the prefix begins at the prefix.
    CHECK(keys_of(scan_all(s, "p/", "a")) == keys_of(scan_all(s, "p/")));
    CHECK(keys_of(scan_all(s, "p/", {}, 2)) == std::vector<std::string>{"p/a", "p/b"});
    CHECK(scan_all(s, "zz/").empty());
    CHECK(keys_of(scan_all(s, "q/")) == std::vector<std::string>{"q/a"});
    // Empty prefix: everything, in order.
    CHECK(keys_of(scan_all(s, "")).size() == 9);
    CHECK(keys_of(scan_all(s, "")).front() == "o/z");
  });
}

TEST_CASE("kv: add counters start at zero, accumulate and mix with put and delete") {
  CHECK(decode_i64(encode_i64(0)) == 0);
  CHECK(decode_i64(encode_i64(-1)) == -1);
  CHECK(decode_i64(encode_i64(INT64_MIN)) == INT64_MIN);
  CHECK(decode_i64(encode_i64(INT64_MAX)) == INT64_MAX);
  CHECK(encode_i64(1) == std::string("\x01\0\0\0\0\0\0\0", 8));
  for_each_store([](const StoreKind&, KvStore& s, TempDir&) {
    KvTxn t;
    t.add("b/x", 1);
    submit(s, t);
    REQUIRE(get(s, "b/x").has_value());
    CHECK(decode_i64(*get(s, "b/x")) == 1);
    KvTxn t2;
    t2.add("b/x", 5);
    t2.add("b/x", -2);  // twice in one transaction
    t2.add("b/y", -7);
    submit(s, t2, true);
    CHECK(decode_i64(*get(s, "b/x")) == 4);
    CHECK(decode_i64(*get(s, "b/y")) == -7);
    // Counters are visible to scan like any value.
    auto sc = scan_all(s, "b/");
    REQUIRE(sc.size() == 2);
    CHECK(decode_i64(sc[0].second) == 4);
    KvTxn t3;
    t3.del("b/x");
    t3.add("b/x", 3);  // after a delete in the same transaction: from zero
    submit(s, t3);
    CHECK(decode_i64(*get(s, "b/x")) == 3);
    KvTxn t4;
    t4.put("b/y", encode_i64(100));
    t4.add("b/y", 1);
    submit(s, t4);
    CHECK(decode_i64(*get(s, "b/y")) == 101);
    KvTxn t5;
    t5.del("b/y");
    submit(s, t5);
    CHECK(get(s, "b/y") == std::nullopt);
  });
}

TEST_CASE("kv: rocksdb keeps data across close and reopen, and a read-only open cannot write") {
  TempDir tmp;
  std::string err;
  {
    auto s = scopefs::journal::open_rocksdb(tmp.at("kv"), false, err);
    REQUIRE(s != nullptr);
    KvTxn t;
    t.put("k", "v");
    t.add("n", 41);
    submit(*s, t);  // not synced: a clean close must still keep it
    KvTxn t2;
    t2.add("n", 1);
    submit(*s, t2);
  }
  {
    auto ro = scopefs::journal::open_rocksdb(tmp.at("kv"), true, err);
    INFO(err);
    REQUIRE(ro != nullptr);
    CHECK(get(*ro, "k") == "v");
    CHECK(decode_i64(*get(*ro, "n")) == 42);
    KvTxn t;
    t.put("x", "y");
    auto r = ro->submit(t, false);
    CHECK_FALSE(r.ok());
    CHECK(r.error() == EROFS);
  }
  auto none = scopefs::journal::open_rocksdb(tmp.at("does-not-exist"), true, err);
  CHECK(none == nullptr);
  CHECK_FALSE(err.empty());
}

// ---------------------------------------------------------------------------
// Journal

TEST_CASE("journal: intent then complete rewrites one record under its sequence number") {
  for_each_journal([](const StoreKind&, Journal& j, TempDir&) {
    CHECK(j.last_seq() == 0);
    CHECK(j.recovered() == 0);
    Record r;
    r.op = "write";
    r.path = "out/a.txt";
    r.caller = CallerInfo{123, 1000, 1000, "sh", {}, {}};
    r.before = file_state(kHelloHash, true);
    REQUIRE(j.intent(r).ok());
    CHECK(r.seq == 1);
    CHECK(r.state == RecordState::Intent);
    CHECK(r.task == "task1");
    CHECK(r.run == "run1");
    CHECK(r.time_ns > 1600000000LL * 1000000000LL);
    CHECK(j.last_seq() == 1);
    Record stored = get_record(j, 1);
    CHECK(stored == r);
    CHECK(stored.state == RecordState::Intent);
    // A bare intent is indexed (path, time, run: journal/query.hpp finds
    // changes in flight) but holds no blob reference.
    CHECK(get(j.kv(), scopefs::journal::path_index_key("out/a.txt", 1)) == std::string());
    CHECK(get(j.kv(), scopefs::journal::time_index_key(r.time_ns, 1)) == std::string());
    CHECK(get(j.kv(), scopefs::journal::run_index_key("run1", 1)) == std::string());
    CHECK(*j.blob_refs(H(kHelloHash)) == 0);

    r.state = RecordState::Applied;
    r.after = file_state(kEmptyHash, false, 0);
    REQUIRE(j.complete(r).ok());
    CHECK(r.seq == 1);
    Record done = get_record(j, 1);
    CHECK(done == r);
    CHECK(done.state == RecordState::Applied);
    CHECK(done.after->hash == H(kEmptyHash));
    CHECK(j.last_seq() == 1);
    CHECK(all_records(j).size() == 1);
    CHECK(get(j.kv(), scopefs::journal::path_index_key("out/a.txt", 1)) == std::string());
    CHECK(*j.blob_refs(H(kHelloHash)) == 1);

    // A failed outcome keeps its errno.
    Record f;
    f.op = "unlink";
    f.path = "out/b";
    REQUIRE(j.intent(f).ok());
    CHECK(f.seq == 2);
    f.state = RecordState::Failed;
    f.err = ENOENT;
    REQUIRE(j.complete(f).ok());
    CHECK(get_record(j, 2).state == RecordState::Failed);
    CHECK(get_record(j, 2).err == ENOENT);

    // A missing sequence number is no record, not an error.
    auto none = j.get(99);
    REQUIRE(none.ok());
    CHECK_FALSE(none->has_value());
    CHECK(j.sync().ok());
  });
}

TEST_CASE("journal: append, path indexes, and scan in sequence order") {
  for_each_journal([](const StoreKind&, Journal& j, TempDir&) {
    Record m;
    m.op = "mount";
    m.path2 = "/run/scopefs/t";
    m.state = RecordState::Applied;
    REQUIRE(j.append(m).ok());
    CHECK(m.seq == 1);
    CHECK(m.task == "task1");

    Record d;
    d.op = "create";
    d.path = "in/x";
    d.state = RecordState::Denied;
    d.err = EROFS;
    d.caller = CallerInfo{7, 0, 0, "touch", {}, {}};
    REQUIRE(j.append(d).ok());
    CHECK(d.seq == 2);
    Record got = get_record(j, 2);
    CHECK(got == d);
    CHECK(got.state == RecordState::Denied);
    CHECK(got.err == EROFS);
    CHECK(got.caller.comm == "touch");
    CHECK(get(j.kv(), scopefs::journal::path_index_key("in/x", 2)) == std::string());

    Record ren;
    ren.op = "rename";
    ren.path = "out/old";
    ren.path2 = "out/new";
    REQUIRE(j.intent(ren).ok());
    CHECK(ren.seq == 3);
    ren.state = RecordState::Applied;
    REQUIRE(j.complete(ren).ok());
    CHECK(get(j.kv(), scopefs::journal::path_index_key("out/old", 3)) == std::string());
    CHECK(get(j.kv(), scopefs::journal::path_index_key("out/new", 3)) == std::string());

    Record lnk;
    lnk.op = "link";
    lnk.path = "out/new";
    lnk.path2 = "out/hard";
    REQUIRE(j.intent(lnk).ok());
    lnk.state = RecordState::Applied;
    REQUIRE(j.complete(lnk).ok());
    CHECK(get(j.kv(), scopefs::journal::path_index_key("out/hard", 4)) == std::string());

    // A symlink's path2 is its target, not a path of the view: not indexed.
    Record sl;
    sl.op = "symlink";
    sl.path = "out/sl";
    sl.path2 = "out/target";
    REQUIRE(j.intent(sl).ok());
    sl.state = RecordState::Applied;
    REQUIRE(j.complete(sl).ok());
    CHECK(get(j.kv(), scopefs::journal::path_index_key("out/target", 5)) == std::nullopt);

    // The path index lists a path's records in sequence order.
    auto idx = keys_of(scan_all(j.kv(), std::string("p/out/new") + '\0'));
    CHECK(idx == std::vector<std::string>{scopefs::journal::path_index_key("out/new", 3),
                                          scopefs::journal::path_index_key("out/new", 4)});

    auto recs = all_records(j);
    REQUIRE(recs.size() == 5);
    for (size_t i = 0; i < recs.size(); ++i) CHECK(recs[i].seq == i + 1);
    CHECK(recs[0].op == "mount");
    CHECK(recs[2].op == "rename");
    auto from3 = all_records(j, 3);
    REQUIRE(from3.size() == 3);
    CHECK(from3.front().seq == 3);
    // Stopping early.
    int seen = 0;
    REQUIRE(j.scan(1, [&](const Record&, int) { return ++seen < 2; }).ok());
    CHECK(seen == 2);
    // Times never go backwards along the sequence.
    for (size_t i = 1; i < recs.size(); ++i) CHECK(recs[i].time_ns >= recs[i - 1].time_ns);
  });
}

TEST_CASE("journal: a corrupt or future-version record is passed to scan with its errno") {
  for_each_journal([](const StoreKind&, Journal& j, TempDir&) {
    Record a;
    a.op = "mkdir";
    a.path = "d";
    a.state = RecordState::Applied;
    REQUIRE(j.append(a).ok());
    KvTxn t;
    t.put(record_key(2), "\x01garbage that is not cbor");
    t.put(record_key(3), std::string("\x02", 1) + encode_record(a).substr(1));
    submit(j.kv(), t);
    std::vector<std::pair<uint64_t, int>> seen;
    REQUIRE(j.scan(1, [&](const Record& r, int err) {
               seen.emplace_back(r.seq, err);
               return true;
             }).ok());
    CHECK(seen == std::vector<std::pair<uint64_t, int>>{{1, 0}, {2, EBADMSG}, {3, EPROTO}});
    CHECK(j.get(2).error() == EBADMSG);
    CHECK(j.get(3).error() == EPROTO);
  });
}

TEST_CASE("journal: sequence numbers continue after close and reopen (rocksdb)") {
  TempDir tmp;
  JournalOptions o1{"task1", "run-a", false, 20};
  {
    auto j = Journal::open(tmp.path(), o1);
    for (int i = 0; i < 3; ++i) {
      Record r;
      r.op = "create";
      r.path = "f" + std::to_string(i);
      REQUIRE(j->intent(r).ok());
      r.state = RecordState::Applied;
      REQUIRE(j->complete(r).ok());
    }
    Record d;
    d.op = "unlink";
    d.path = "x";
    d.state = RecordState::Denied;
    d.err = EACCES;
    REQUIRE(j->append(d).ok());
    CHECK(j->last_seq() == 4);
  }
  {
    auto j = Journal::open(tmp.path(), JournalOptions{"task1", "run-b", false, 20});
    CHECK(j->recovered() == 0);
    CHECK(j->last_seq() == 4);
    Record r;
    r.op = "write";
    r.path = "f0";
    REQUIRE(j->intent(r).ok());
    CHECK(r.seq == 5);
    CHECK(r.run == "run-b");
    r.state = RecordState::Applied;
    REQUIRE(j->complete(r).ok());
    auto recs = all_records(*j);
    REQUIRE(recs.size() == 5);
    CHECK(recs[0].run == "run-a");
    CHECK(recs[3].state == RecordState::Denied);
    CHECK(recs[4].run == "run-b");
  }
  {
    // A read-only journal beside (here: after) the writer sees everything and refuses writes.
    auto ro = Journal::open_read_only(tmp.path());
    CHECK(ro->last_seq() == 5);
    CHECK(all_records(*ro).size() == 5);
    Record r;
    r.op = "mkdir";
    r.path = "z";
    CHECK(ro->append(r).error() == EROFS);
  }
  {
    auto j = Journal::open(tmp.path(), o1);
    Record r;
    r.op = "mkdir";
    r.path = "z";
    REQUIRE(j->append(r).ok());
    CHECK(r.seq == 6);
  }
}

TEST_CASE("journal: a leftover intent is marked interrupted at reopen (rocksdb)") {
  TempDir tmp;
  Record left;
  {
    auto j = Journal::open(tmp.path(), JournalOptions{"task1", "run-a", false, 20});
    Record ok;
    ok.op = "create";
    ok.path = "a";
    REQUIRE(j->intent(ok).ok());
    ok.state = RecordState::Applied;
    REQUIRE(j->complete(ok).ok());
    left.op = "rename";
    left.path = "a";
    left.path2 = "b";
    left.before = file_state(kHelloHash, false);
    REQUIRE(j->intent(left).ok());  // the daemon "dies" before complete()
    CHECK(left.seq == 2);
  }
  auto j = Journal::open(tmp.path(), JournalOptions{"task1", "run-b", false, 20});
  CHECK(j->recovered() == 1);
  CHECK(j->last_seq() == 2);
  Record got = get_record(*j, 2);
  CHECK(got.state == RecordState::Interrupted);
  CHECK(got.op == "rename");
  CHECK(got.path == "a");
  CHECK(got.path2 == "b");
  CHECK(got.run == "run-a");
  CHECK(got.before == left.before);
  CHECK(get_record(*j, 1).state == RecordState::Applied);
  // The interrupted change is findable by both its paths.
  CHECK(get(j->kv(), scopefs::journal::path_index_key("a", 2)) == std::string());
  CHECK(get(j->kv(), scopefs::journal::path_index_key("b", 2)) == std::string());
  for (const Record& r : all_records(*j)) CHECK(r.state != RecordState::Intent);
  Record next;
  next.op = "unlink";
  next.path = "b";
  REQUIRE(j->intent(next).ok());
  CHECK(next.seq == 3);
  j.reset();  // record 3 is left as an intent in turn
  auto j2 = Journal::open(tmp.path(), JournalOptions{"task1", "run-c", false, 20});
  CHECK(j2->recovered() == 1);
  CHECK(get_record(*j2, 3).state == RecordState::Interrupted);
  CHECK(get_record(*j2, 2).state == RecordState::Interrupted);
  j2.reset();
  // Recovery happens once: a third open finds nothing left.
  auto j3 = Journal::open(tmp.path(), JournalOptions{"task1", "run-d", false, 20});
  CHECK(j3->recovered() == 0);
}

TEST_CASE("journal: construction over a store holding intents recovers them (both stores)") {
  for (const StoreKind* k : {&kMemory, &kRocks}) {
    CAPTURE(k->name);
    TempDir tmp;
    fsys::create_directories(tmp.at("journal"));
    auto kv = make_store(*k, tmp.at("journal"));
    Record a = full_record("write", RecordState::Intent);
    a.seq = 7;
    Record b = full_record("unlink", RecordState::Applied);
    b.seq = 8;
    KvTxn t;
    t.put(record_key(7), encode_record(a));
    t.put(record_key(8), encode_record(b));
    submit(*kv, t);
    auto j = make_journal(*k, tmp.path(), {"task1", "run1", false, 20}, std::move(kv));
    CHECK(j->recovered() == 1);
    CHECK(j->last_seq() == 8);
    Record got = get_record(*j, 7);
    CHECK(got.state == RecordState::Interrupted);
    Record expect = a;
    expect.state = RecordState::Interrupted;
    CHECK(got == expect);
    CHECK(get_record(*j, 8) == b);
    Record n;
    n.op = "mkdir";
    n.path = "d";
    REQUIRE(j->append(n).ok());
    CHECK(n.seq == 9);
  }
}

TEST_CASE("journal: complete adds one blob reference per before-image it names") {
  for_each_journal([](const StoreKind&, Journal& j, TempDir&) {
    Hash128 h = H(kHelloHash);
    Hash128 v = H("00112233445566778899aabbccddeeff");
    CHECK(*j.blob_refs(h) == 0);
    for (int i = 0; i < 2; ++i) {
      Record r;
      r.op = "unlink";
      r.path = "f" + std::to_string(i);
      r.before = file_state(kHelloHash, true);
      REQUIRE(j.intent(r).ok());
      r.state = RecordState::Applied;
      r.after = ObjectState{};
      REQUIRE(j.complete(r).ok());
    }
    CHECK(*j.blob_refs(h) == 2);
    // A hash without a blob is not a reference; a replaced victim is.
    Record r;
    r.op = "rename";
    r.path = "a";
    r.path2 = "b";
    r.before = file_state(kHelloHash, false);
    r.victim = file_state("00112233445566778899aabbccddeeff", true);
    REQUIRE(j.intent(r).ok());
    r.state = RecordState::Applied;
    REQUIRE(j.complete(r).ok());
    CHECK(*j.blob_refs(h) == 2);
    CHECK(*j.blob_refs(v) == 1);
    // The same blob as before-image and victim of one record: two references.
    Record w;
    w.op = "rename";
    w.path = "c";
    w.path2 = "d";
    w.before = file_state("00112233445566778899aabbccddeeff", true);
    w.victim = file_state("00112233445566778899aabbccddeeff", true);
    REQUIRE(j.intent(w).ok());
    w.state = RecordState::Applied;
    REQUIRE(j.complete(w).ok());
    CHECK(*j.blob_refs(v) == 3);
  });
}

TEST_CASE("journal: blob references survive reopen (rocksdb)") {
  TempDir tmp;
  {
    auto j = Journal::open(tmp.path(), JournalOptions{"t", "r", false, 20});
    for (int i = 0; i < 2; ++i) {
      Record r;
      r.op = "write";
      r.path = "f";
      r.before = file_state(kHelloHash, true);
      REQUIRE(j->intent(r).ok());
      r.state = RecordState::Applied;
      REQUIRE(j->complete(r).ok());
    }
  }
  auto j = Journal::open_read_only(tmp.path());
  CHECK(*j->blob_refs(H(kHelloHash)) == 2);
}

// ---------------------------------------------------------------------------
// Record codec

TEST_CASE("record: every op and state round-trips through encode/decode with every field set") {
  for (const auto& op : kOps) {
    for (RecordState st : kStates) {
      CAPTURE(op);
      CAPTURE(std::string(scopefs::journal::state_name(st)));
      Record r = full_record(op, st);
      std::string v = encode_record(r);
      REQUIRE(!v.empty());
      CHECK(static_cast<uint8_t>(v[0]) == scopefs::journal::kSchemaVersion);
      auto d = decode_record(v);
      REQUIRE(d.ok());
      CHECK(*d == r);
      CHECK(d->op == op);
      CHECK(d->state == st);
      CHECK(d->before->hash == H(kHelloHash));
      CHECK(d->before->blob);
      CHECK(d->after->target == "../a/b c");
      CHECK(d->victim->mode == 04755);
      // JSON carries the same names.
      std::string js = scopefs::journal::record_json(r);
      CHECK(js.find("\"op\":\"" + op + "\"") != std::string::npos);
      CHECK(js.find("\"state\":\"" + std::string(scopefs::journal::state_name(st)) + "\"") !=
            std::string::npos);
      CHECK(js.find(std::string("\"hash\":\"") + kHelloHash + "\"") != std::string::npos);
    }
  }
}

TEST_CASE("record: minimal records and absent objects round-trip") {
  Record r;  // all defaults
  auto d = decode_record(encode_record(r));
  REQUIRE(d.ok());
  CHECK(*d == r);
  CHECK_FALSE(d->before.has_value());

  Record g;
  g.seq = 1;
  g.op = "unlink";
  g.path = "p";
  g.state = RecordState::Applied;
  g.before = file_state(nullptr, false);  // a file whose hash is unknown
  g.after = ObjectState{};                // does not exist
  auto e = decode_record(encode_record(g));
  REQUIRE(e.ok());
  CHECK(*e == g);
  CHECK_FALSE(e->before->hash.has_value());
  CHECK(e->after.has_value());
  CHECK_FALSE(e->after->exists);
}

TEST_CASE("record: state names parse back; unknown names do not") {
  for (RecordState st : kStates) {
    auto p = scopefs::journal::parse_state(scopefs::journal::state_name(st));
    REQUIRE(p.has_value());
    CHECK(*p == st);
  }
  CHECK(scopefs::journal::state_name(RecordState::Interrupted) == "interrupted");
  CHECK_FALSE(scopefs::journal::parse_state("done").has_value());
  CHECK_FALSE(scopefs::journal::parse_state("").has_value());
}

TEST_CASE("record: a corrupt value is EBADMSG, an unknown schema version EPROTO") {
  Record r = full_record("rename", RecordState::Applied);
  std::string v = encode_record(r);
  CHECK(decode_record("").error() == EBADMSG);
  CHECK(decode_record(std::string(1, '\x01')).error() == EBADMSG);     // version only
  CHECK(decode_record(v.substr(0, v.size() / 2)).error() == EBADMSG);  // truncated
  CHECK(decode_record(std::string("\x01\xff\xff\xff", 4)).error() == EBADMSG);
  std::string flipped = v;
  flipped[1] = '\x00';  // the map header becomes an unsigned integer
  CHECK(decode_record(flipped).error() == EBADMSG);
  // Valid CBOR with a required field missing or of the wrong type.
  std::string no_seq = v;
  auto pos = no_seq.find("seq");
  REQUIRE(pos != std::string::npos);
  no_seq.replace(pos, 3, "sex");
  CHECK(decode_record(no_seq).error() == EBADMSG);
  std::string bad_state = encode_record(r);
  pos = bad_state.find("applied");
  REQUIRE(pos != std::string::npos);
  bad_state.replace(pos, 7, "applie_");
  CHECK(decode_record(bad_state).error() == EBADMSG);
  std::string bad_hash = encode_record(r);
  pos = bad_hash.find(kHelloHash);
  REQUIRE(pos != std::string::npos);
  bad_hash[pos] = 'X';
  CHECK(decode_record(bad_hash).error() == EBADMSG);

  for (uint8_t ver : {uint8_t{0}, uint8_t{2}, uint8_t{0xff}}) {
    CAPTURE(int(ver));
    std::string future = v;
    future[0] = static_cast<char>(ver);
    CHECK(decode_record(future).error() == EPROTO);
  }
  CHECK(decode_record(std::string(1, '\x02')).error() == EPROTO);
}

TEST_CASE("record: keys sort by sequence and map back") {
  CHECK(record_key(1) < record_key(2));
  CHECK(record_key(255) < record_key(256));
  CHECK(record_key(0xffffffffULL) < record_key(0x100000000ULL));
  for (uint64_t s :
       {uint64_t{0}, uint64_t{1}, uint64_t{256}, uint64_t{0x0102030405060708ULL}, UINT64_MAX}) {
    auto back = seq_of_key(record_key(s));
    REQUIRE(back.has_value());
    CHECK(*back == s);
  }
  CHECK_FALSE(seq_of_key("r/").has_value());
  CHECK_FALSE(seq_of_key("p/12345678").has_value());
  CHECK(scopefs::journal::path_index_key("a", 1) < scopefs::journal::path_index_key("a", 2));
  // "a" and its records sort before "a/b" and "ab": a path's index is contiguous.
  CHECK(scopefs::journal::path_index_key("a", UINT64_MAX) <
        scopefs::journal::path_index_key("a/b", 0));
}

// ---------------------------------------------------------------------------
// Hashes

TEST_CASE("hash: hex and parse round-trip; values match xxhsum -H2") {
  Hash128 h{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  CHECK(h.hex() == "0123456789abcdeffedcba9876543210");
  Hash128 back;
  REQUIRE(Hash128::parse(h.hex(), back));
  CHECK(back == h);
  Hash128 small{0, 1};
  CHECK(small.hex() == "00000000000000000000000000000001");
  REQUIRE(Hash128::parse(small.hex(), back));
  CHECK(back == small);
  Hash128 junk;
  CHECK_FALSE(Hash128::parse("", junk));
  CHECK_FALSE(Hash128::parse("0123456789abcdeffedcba987654321", junk));    // 31
  CHECK_FALSE(Hash128::parse("0123456789abcdeffedcba98765432100", junk));  // 33
  CHECK_FALSE(Hash128::parse("0123456789abcdeffedcba987654321g", junk));
  CHECK_FALSE(Hash128::parse("0123456789abcdef fedcba987654321", junk));

  CHECK(hash_bytes("hello\n").hex() == kHelloHash);
  CHECK(hash_bytes("").hex() == kEmptyHash);
  CHECK(empty_hash().hex() == kEmptyHash);
  CHECK(hash_bytes("hello") != hash_bytes("hello\n"));
}

TEST_CASE("hash: the streaming hasher equals the one-shot hash, however it is fed") {
  std::string data;
  for (uint32_t i = 0; i < 300000; ++i) data.push_back(static_cast<char>((i * 7919u) % 251u));
  Hasher h;
  h.update(data.data(), data.size());
  CHECK(h.digest() == hash_bytes(data));
  h.reset();
  size_t off = 0;
  for (size_t n : {size_t{1}, size_t{15}, size_t{240}, size_t{4096}, size_t{100000}}) {
    h.update(data.data() + off, n);
    off += n;
  }
  h.update(data.data() + off, data.size() - off);
  CHECK(h.digest() == hash_bytes(data));
  h.reset();
  CHECK(h.digest() == empty_hash());
  h.update("hello\n", 6);
  CHECK(h.digest().hex() == kHelloHash);
}

TEST_CASE("hash: hash_fd of a sparse file equals the hash of its bytes") {
  TempDir tmp;
  struct Case {
    const char* name;
    std::vector<std::pair<off_t, std::string>> writes;
    off_t size;
  };
  const off_t MiB = 1 << 20;
  std::vector<Case> cases = {
      {"hole then data then hole", {{4 * MiB, "abc"}}, 10 * MiB},
      {"data then hole to EOF", {{0, "head"}}, 3 * MiB + 17},
      {"only a hole", {}, 5 * MiB},
      {"holes between data",
       {{0, "a"}, {2 * MiB, std::string(70000, 'x')}, {7 * MiB - 1, "z"}},
       7 * MiB},
      {"empty", {}, 0},
      {"dense", {{0, std::string(3 * MiB + 5, 'q')}}, 3 * MiB + 5},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    std::string path = tmp.at(c.name);
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    scopefs::sys::UniqueFd guard(fd);
    REQUIRE(::ftruncate(fd, c.size) == 0);
    std::string expect(static_cast<size_t>(c.size), '\0');
    for (const auto& [off, bytes] : c.writes) {
      REQUIRE(::pwrite(fd, bytes.data(), bytes.size(), off) == static_cast<ssize_t>(bytes.size()));
      expect.replace(static_cast<size_t>(off), bytes.size(), bytes);
    }
    REQUIRE(::fsync(fd) == 0);
    struct stat st {};
    REQUIRE(::fstat(fd, &st) == 0);
    REQUIRE(st.st_size == c.size);
    if (c.size >= 5 * MiB) CHECK(st.st_blocks * 512 < c.size);  // really sparse
    auto h = hash_fd(fd);
    REQUIRE(h.ok());
    CHECK(*h == hash_bytes(expect));
    CHECK(*h == hash_bytes(read_file(path)));
    // A range from an offset inside the file, including inside a hole.
    for (uint64_t from : {uint64_t{0}, uint64_t{1}, static_cast<uint64_t>(c.size / 2),
                          static_cast<uint64_t>(c.size)}) {
      if (from > static_cast<uint64_t>(c.size)) continue;
      CAPTURE(from);
      Hasher hs;
      auto n = hash_fd_range(fd, from, hs);
      REQUIRE(n.ok());
      CHECK(*n == static_cast<uint64_t>(c.size) - from);
      CHECK(hs.digest() == hash_bytes(std::string_view(expect).substr(from)));
    }
  }
}

// ---------------------------------------------------------------------------
// Blob store

TEST_CASE("blobs: put_copy of equal content twice yields one blob, named by its content") {
  TempDir tmp;
  BlobStore bs(tmp.at("blobs"));
  CHECK(fsys::is_directory(tmp.at("blobs/tmp")));
  std::string content = "hello\n";
  tmp.file("a", content);
  tmp.file("b", content);  // another file, same bytes
  auto fa = open_ro(tmp.at("a"));
  auto fb = open_ro(tmp.at("b"));
  auto h1 = bs.put_copy(fa.get());
  REQUIRE(h1.ok());
  auto h2 = bs.put_copy(fb.get());
  REQUIRE(h2.ok());
  auto h3 = bs.put_copy(fa.get());
  REQUIRE(h3.ok());
  CHECK(h1->hex() == kHelloHash);
  CHECK(*h2 == *h1);
  CHECK(*h3 == *h1);
  CHECK(count_blob_files(tmp.at("blobs")) == 1);
  std::string p = bs.path_of(*h1);
  CHECK(p == tmp.at("blobs") + "/6b/ba86c7e069f56d5a10b435f1c8e49c");
  CHECK(read_file(p) == content);
  CHECK(bs.contains(*h1));
  CHECK_FALSE(bs.contains(hash_bytes("other")));
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0400);
  CHECK(st.st_nlink == 1);  // the copy is its own inode, not one of the sources
  // The source files are untouched.
  CHECK(read_file(tmp.at("a")) == content);
  CHECK(fsys::is_empty(tmp.at("blobs/tmp")));
  auto ob = bs.open_blob(*h1);
  REQUIRE(ob.ok());
  auto hb = hash_fd(ob->get());
  REQUIRE(hb.ok());
  CHECK(*hb == *h1);
  CHECK(bs.open_blob(hash_bytes("absent")).error() == ENOENT);

  // Different content: a second blob; larger and empty content too.
  std::string big(5 << 20, 'b');
  big[12345] = 'x';
  tmp.file("big", big);
  tmp.file("empty", "");
  auto fbig = open_ro(tmp.at("big"));
  auto fe = open_ro(tmp.at("empty"));
  auto hbig = bs.put_copy(fbig.get());
  REQUIRE(hbig.ok());
  CHECK(*hbig == hash_bytes(big));
  auto he = bs.put_copy(fe.get());
  REQUIRE(he.ok());
  CHECK(he->hex() == kEmptyHash);
  CHECK(count_blob_files(tmp.at("blobs")) == 3);
  CHECK(read_file(bs.path_of(*hbig)) == big);
  CHECK(bs.disk_bytes() >= big.size());
  check_blobs_named_by_content(tmp.at("blobs"));
}

TEST_CASE("blobs: the 256 fan-out directories come with the store; a missing one is made again") {
  TempDir tmp;
  {
    BlobStore bs(tmp.at("blobs"));
    for (const char* sub : {"00", "6b", "a0", "ff"})
      CHECK(fsys::is_directory(tmp.at("blobs") + "/" + sub));
    size_t dirs = 0;
    for (const auto& e : fsys::directory_iterator(tmp.at("blobs")))
      dirs += e.is_directory() ? 1 : 0;
    CHECK(dirs == 257);  // and tmp/
  }
  // Removed by hand (say, emptied while cleaning up): a blob named into it
  // is still stored, and reopening the store needs no directory.
  REQUIRE(::rmdir(tmp.at("blobs/6b").c_str()) == 0);
  BlobStore bs(tmp.at("blobs"));
  tmp.file("a", "hello\n");
  auto fa = open_ro(tmp.at("a"));
  auto h = bs.put_copy(fa.get());
  REQUIRE(h.ok());
  CHECK(h->hex() == kHelloHash);
  CHECK(read_file(bs.path_of(*h)) == "hello\n");
}

TEST_CASE("blobs: put_link makes the file itself a blob, named by its content") {
  TempDir tmp;
  BlobStore bs(tmp.at("blobs"));
  std::string content = "to be deleted\n";
  tmp.mkdir("src");
  tmp.file("src/victim", content, 0640);
  struct stat before {};
  REQUIRE(::stat(tmp.at("src/victim").c_str(), &before) == 0);
  CHECK(bs.same_fs(before.st_dev));
  auto dir = ::open(tmp.at("src").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(dir >= 0);
  scopefs::sys::UniqueFd dguard(dir);
  auto h = bs.put_link(dir, "victim");
  REQUIRE(h.ok());
  CHECK(*h == hash_bytes(content));
  std::string p = bs.path_of(*h);
  CHECK(read_file(p) == content);
  struct stat bst {};
  REQUIRE(::stat(p.c_str(), &bst) == 0);
  CHECK(bst.st_ino == before.st_ino);  // a link, no copy
  CHECK(bst.st_dev == before.st_dev);
  CHECK(bst.st_nlink == 2);
  CHECK(fsys::is_empty(tmp.at("blobs/tmp")));  // the staging link is gone
  // Now the "unlink" proceeds: the blob keeps the content.
  REQUIRE(::unlinkat(dir, "victim", 0) == 0);
  CHECK(read_file(p) == content);
  check_blobs_named_by_content(tmp.at("blobs"));
  CHECK(count_blob_files(tmp.at("blobs")) == 1);

  // Linking equal content again leaves one blob (the existing one).
  tmp.file("src/again", content);
  auto h2 = bs.put_link(dir, "again");
  REQUIRE(h2.ok());
  CHECK(*h2 == *h);
  CHECK(count_blob_files(tmp.at("blobs")) == 1);
  CHECK(fsys::is_empty(tmp.at("blobs/tmp")));

  // unlink_if_inode removes the blob only if it is that inode.
  struct stat again {};
  REQUIRE(::stat(tmp.at("src/again").c_str(), &again) == 0);
  bs.unlink_if_inode(*h, again.st_dev, again.st_ino);  // another inode: kept
  CHECK(bs.contains(*h));
  bs.unlink_if_inode(*h, bst.st_dev, bst.st_ino);
  CHECK_FALSE(bs.contains(*h));
  CHECK(read_file(tmp.at("src/again")) == content);

  CHECK(bs.put_link(dir, "no-such-file").error() == ENOENT);
}

TEST_CASE("blobs: put_link_known links a file of known content without reading it") {
  TempDir tmp;
  BlobStore bs(tmp.at("blobs"));
  std::string content = "known content\n";
  tmp.mkdir("src");
  tmp.file("src/victim", content);
  auto dir = ::open(tmp.at("src").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(dir >= 0);
  scopefs::sys::UniqueFd dguard(dir);
  struct stat st {};
  REQUIRE(::fstatat(dir, "victim", &st, 0) == 0);
  const Hash128 h = hash_bytes(content);
  REQUIRE(bs.put_link_known(dir, "victim", h, st).ok());
  struct stat bst {};
  REQUIRE(::stat(bs.path_of(h).c_str(), &bst) == 0);
  CHECK(bst.st_ino == st.st_ino);
  CHECK(bst.st_nlink == 2);
  CHECK(fsys::is_empty(tmp.at("blobs/tmp")));
  // Known content already stored: nothing more is linked.
  tmp.file("src/twin", content);
  struct stat tst {};
  REQUIRE(::fstatat(dir, "twin", &tst, 0) == 0);
  REQUIRE(bs.put_link_known(dir, "twin", h, tst).ok());
  CHECK(count_blob_files(tmp.at("blobs")) == 1);
  CHECK(::stat(tmp.at("src/twin").c_str(), &tst) == 0);
  CHECK(tst.st_nlink == 1);

  // The name now holds another file than the one the hash was known for: the
  // link is undone, ESTALE, and the store holds no wrongly named blob.
  tmp.file("src/moved", "other bytes\n");
  struct stat old_st {};
  REQUIRE(::fstatat(dir, "moved", &old_st, 0) == 0);
  const Hash128 other = hash_bytes("other bytes\n");
  REQUIRE(::unlinkat(dir, "moved", 0) == 0);
  tmp.file("src/moved", "replaced by someone else\n");
  CHECK(bs.put_link_known(dir, "moved", other, old_st).error() == ESTALE);
  CHECK_FALSE(bs.contains(other));
  check_blobs_named_by_content(tmp.at("blobs"));
  CHECK(bs.put_link_known(dir, "gone", other, old_st).error() == ENOENT);
}

TEST_CASE("blobs: put_link refuses what is not a regular file") {
  TempDir tmp;
  BlobStore bs(tmp.at("blobs"));
  tmp.mkdir("src");
  REQUIRE(::mkfifo(tmp.at("src/fifo").c_str(), 0600) == 0);
  tmp.mkdir("src/dir");
  auto dir = ::open(tmp.at("src").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(dir >= 0);
  scopefs::sys::UniqueFd dguard(dir);
  CHECK(bs.put_link(dir, "fifo").error() == EINVAL);  // opened without blocking, then refused
  CHECK_FALSE(bs.put_link(dir, "dir").ok());
  CHECK(count_blob_files(tmp.at("blobs")) == 0);
}

TEST_CASE("blobs: equal content from two files and a journal's blob references agree") {
  for_each_journal([](const StoreKind&, Journal& j, TempDir& tmp) {
    REQUIRE(j.blobs() != nullptr);
    tmp.file("f1", "same\n");
    tmp.file("f2", "same\n");
    auto f1 = open_ro(tmp.at("f1"));
    auto f2 = open_ro(tmp.at("f2"));
    auto h1 = j.blobs()->put_copy(f1.get());
    auto h2 = j.blobs()->put_copy(f2.get());
    REQUIRE(h1.ok());
    REQUIRE(h2.ok());
    CHECK(*h1 == *h2);
    for (const char* path : {"f1", "f2"}) {
      Record r;
      r.op = "unlink";
      r.path = path;
      r.before = file_state(nullptr, true);
      r.before->hash = *h1;
      REQUIRE(j.intent(r).ok());
      r.state = RecordState::Applied;
      r.after = ObjectState{};
      REQUIRE(j.complete(r).ok());
    }
    CHECK(*j.blob_refs(*h1) == 2);
    CHECK(count_blob_files(tmp.at("blobs")) == 1);
    check_blobs_named_by_content(tmp.at("blobs"));
  });
}
