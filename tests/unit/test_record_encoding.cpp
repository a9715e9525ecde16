// The journal's stored record form: encode_record writes CBOR directly and
// must give the bytes of the JSON path it replaced (records already in a
// journal, and their hash chain, were written that way).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "journal/hash.hpp"
#include "journal/record.hpp"

using namespace scopefs::journal;

namespace {

std::vector<scopefs::journal::Record> sample_records() {
  using namespace scopefs::journal;
  std::vector<Record> v;
  Record a;  // an unlink as the gate writes it
  a.seq = 42;
  a.time_ns = 1796692494814162773;
  a.task = "bench";
  a.run = "20261208T011600Z-4242";
  a.op = "unlink";
  a.path = "small/d3/f00123";
  a.state = RecordState::Applied;
  a.caller = CallerInfo{25488, 1000, 1000, "rm", {"rm", "-rf", "small"}, "/usr/bin/rm"};
  ObjectState b;
  b.exists = true;
  b.type = "file";
  b.size = 4096;
  b.mode = 0100644;
  b.uid = 1000;
  b.gid = 1000;
  b.mtime_ns = 1796692494000000001;
  Hash128 h;
  (void)Hash128::parse("7f4282d69c4c82ef27960803e2d69007", h);
  b.hash = h;
  b.blob = true;
  a.before = b;
  a.after = ObjectState{};
  v.push_back(a);

  Record c;  // every optional field, integers and lengths at each boundary
  c.seq = 0xFFFFFFFFULL + 1;
  c.time_ns = -1;
  c.task = std::string(23, 't');
  c.run = std::string(24, 'r');
  c.op = "rename";
  c.path = std::string(255, 'p');
  c.path2 = std::string(256, 'q');
  c.flags = 0xFFFF + 1;
  c.state = RecordState::Failed;
  c.err = -25;
  c.caller = CallerInfo{-24, 0xFFFFFFFFU, 255, std::string(70000, 'c'), {}, {}};
  ObjectState s;
  s.exists = true;
  s.type = "symlink";
  s.size = 23;
  s.mode = 24;
  s.uid = 0;
  s.gid = 65535;
  s.mtime_ns = -257;
  s.target = "";
  s.rdev = 0xFFFFFFFFFFFFFFFFULL;
  c.before = s;
  ObjectState d = s;
  d.type = "chr";
  d.target = "not empty";
  d.mtime_ns = -(1LL << 40);
  d.rdev = 256;
  c.victim = d;
  c.after = ObjectState{};
  c.ref = 65536;
  c.undo = {{"k1", std::string("v1")}, {std::string(300, 'k'), std::nullopt}};
  c.touch = {"", std::string(24, '\x01')};
  c.xattr_value = std::string(65536, 'x');
  c.xattr_before = std::string();
  c.note = "a note";
  c.expired = true;
  v.push_back(c);

  Record e;  // the defaults
  v.push_back(e);
  return v;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

}  // namespace

TEST_CASE("records encode to the bytes the JSON path gave") {
  auto v = sample_records();
  // Size and FNV-1a of each record as the JSON path encoded it (computed with
  // the encoder before this one, at 74c38ff).
  const std::vector<std::pair<size_t, uint64_t>> gold = {{316, 0x10ef36391c7cdd1aULL},
                                                         {136803, 0x90dc42df205b5ffbULL},
                                                         {85, 0x4975fbc4d3a86fe3ULL}};
  REQUIRE(v.size() == gold.size());
  for (size_t i = 0; i < v.size(); ++i) {
    CAPTURE(i);
    std::string e = encode_record(v[i]);
    CHECK(e == encode_record_via_json(v[i]));
    CHECK(e.size() == gold[i].first);
    CHECK(fnv1a(e) == gold[i].second);
    auto back = decode_record(e);
    REQUIRE(back.ok());
    CHECK(*back == v[i]);
  }
}

TEST_CASE("random records encode as the JSON path does and decode back") {
  std::mt19937_64 rng(8);
  auto pick = [&](std::initializer_list<uint64_t> xs) {
    std::vector<uint64_t> v(xs);
    uint64_t x = v[rng() % v.size()];
    return rng() % 4 == 0 ? x + (rng() % 3) - 1 : x;  // near each length class's edge
  };
  auto str = [&](size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
  };
  const std::initializer_list<uint64_t> edges = {
      0, 23, 24, 255, 256, 65535, 65536, 0xffffffffULL, 0x100000000ULL, UINT64_MAX};
  auto state = [&]() {
    ObjectState o;
    o.exists = rng() % 5 != 0;
    if (!o.exists) return o;
    const char* types[] = {"file", "dir", "symlink", "fifo", "chr"};
    o.type = types[rng() % 5];
    o.size = pick(edges);
    o.mode = static_cast<uint32_t>(pick({0, 0644, 0100755}));
    o.uid = static_cast<uint32_t>(pick({0, 23, 1000, 0xffffffffULL}));
    o.gid = static_cast<uint32_t>(pick({0, 24, 65536}));
    o.mtime_ns = static_cast<int64_t>(rng()) >> (rng() % 64);
    if (rng() % 2) o.hash = hash_bytes(str(8));
    o.blob = rng() % 2;
    if (rng() % 3 == 0) o.target = str(rng() % 300);
    if (rng() % 3 == 0) o.rdev = pick(edges);
    return o;
  };
  for (int i = 0; i < 500; ++i) {
    CAPTURE(i);
    Record r;
    r.seq = pick(edges);
    r.time_ns = static_cast<int64_t>(rng()) >> (rng() % 64);
    r.task = str(pick({0, 23, 24, 255}) % 300);
    r.run = str(rng() % 40);
    r.op = "write";
    r.path = str(pick({0, 23, 24, 255, 256}) % 400);
    if (rng() % 2) r.path2 = str(rng() % 300);
    r.flags = static_cast<uint32_t>(pick({0, 23, 24, 0x8000, 0xffffffffULL}));
    r.state = static_cast<RecordState>(rng() % 9);
    r.err = static_cast<int32_t>(static_cast<int64_t>(rng() % 600) - 300);
    r.caller = CallerInfo{static_cast<int32_t>(static_cast<int64_t>(rng() % 70000) - 100),
                          static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng() % 300),
                          str(rng() % 30)};
    for (size_t a = rng() % 4; a > 0; --a) r.caller.args.push_back(str(rng() % 40));
    if (rng() % 2) r.caller.exe = str(rng() % 60);
    if (rng() % 2) r.before = state();
    if (rng() % 2) r.after = state();
    if (rng() % 3 == 0) r.victim = state();
    if (rng() % 3 == 0) r.ref = pick(edges);
    for (size_t u = rng() % 3; u > 0; --u)
      r.undo.emplace_back(str(rng() % 30),
                          rng() % 2 ? std::optional<std::string>(str(rng() % 300)) : std::nullopt);
    for (size_t t = rng() % 3; t > 0; --t) r.touch.push_back(str(rng() % 30));
    if (rng() % 3 == 0) r.xattr_value = str(pick({0, 23, 24, 255, 256}) % 400);
    if (rng() % 3 == 0) r.xattr_before = str(rng() % 100);
    if (rng() % 4 == 0) r.note = str(rng() % 50);
    r.expired = rng() % 5 == 0;
    std::string e = encode_record(r);
    REQUIRE(e == encode_record_via_json(r));
    auto back = decode_record(e);
    REQUIRE(back.ok());
    CHECK(*back == r);
  }
}
