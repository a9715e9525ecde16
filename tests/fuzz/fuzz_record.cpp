// libFuzzer target for journal record decoding (journal/record.hpp).
//
// decode_record() on arbitrary bytes must return a Record or EBADMSG/EPROTO,
// never crash, throw or hit undefined behaviour. A value that decodes must
// survive encode_record() and decode back to an equal Record.
//
// Options (environment):
//   SCOPEFS_FUZZ_RECORD_JSON=1       also call record_json() on decoded records,
//                                    letting any exception escape (a crash).
//   SCOPEFS_FUZZ_WRITE_SEEDS=DIR     write the seed corpus (encoded records)
//                                    into DIR and exit; tests/fuzz/corpus/record
//                                    was made this way.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "journal/hash.hpp"
#include "journal/record.hpp"

namespace {

using scopefs::journal::CallerInfo;
using scopefs::journal::Hash128;
using scopefs::journal::ObjectState;
using scopefs::journal::Record;
using scopefs::journal::RecordState;

bool g_check_json = false;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
  std::abort();
}

#define FUZZ_CHECK(cond)      \
  do {                        \
    if (!(cond)) fail(#cond); \
  } while (0)

ObjectState file_state(const char* hash_hex, bool blob, uint64_t size) {
  ObjectState o;
  o.exists = true;
  o.type = "file";
  o.size = size;
  o.mode = 0644;
  o.uid = 1001;
  o.gid = 1001;
  o.mtime_ns = 1764064800000000000;
  if (hash_hex) {
    Hash128 h;
    if (!Hash128::parse(hash_hex, h)) fail("seed hash");
    o.hash = h;
  }
  o.blob = blob;
  return o;
}

std::vector<Record> seed_records() {
  std::vector<Record> out;
  Record minimal;  // all defaults
  out.push_back(minimal);

  Record w;
  w.seq = 1;
  w.time_ns = 1764064800123456789;
  w.task = "recon";
  w.run = "0f8e2a9c-1b2d-4c3e-8f00-112233445566";
  w.op = "write";
  w.path = "reports/q1.md";
  w.state = RecordState::Applied;
  w.caller = CallerInfo{4242, 1001, 1001, "python3", {}, {}};
  w.before = file_state("6bba86c7e069f56d5a10b435f1c8e49c", true, 6);
  w.after = file_state("99aa06d3014798d86001c324468d497f", false, 0);
  out.push_back(w);

  Record rn;
  rn.seq = 0x0102030405060708ULL;
  rn.time_ns = -1;
  rn.task = "demo";
  rn.run = "r";
  rn.op = "rename";
  rn.path = "exports/q1 report.csv";
  rn.path2 =
      "exports/\xc3\xbc"
      "n\xc3\xaf"
      "code/\xe2\x86\x92 target";  // ünïcode/→
  rn.flags = 0x80000001u;
  rn.state = RecordState::Intent;
  rn.caller = CallerInfo{-1, 0xffffffffu, 0, "mv", {}, {}};
  ObjectState link;
  link.exists = true;
  link.type = "symlink";
  link.size = 9;
  link.mode = 0777;
  link.mtime_ns = -5;
  link.target = "../a/b c";
  rn.before = link;
  rn.after = ObjectState{};  // absent
  ObjectState victim = file_state(nullptr, false, 0);
  victim.mode = 04755;
  rn.victim = victim;
  out.push_back(rn);

  Record denied;
  denied.seq = 77;
  denied.time_ns = 1764064800000000001;
  denied.task = "t";
  denied.run = "run";
  denied.op = "unlink";
  denied.path = "exports/bank/client.pem";
  denied.state = RecordState::Denied;
  denied.err = EACCES;
  denied.caller = CallerInfo{1, 0, 0, "rm", {}, {}};
  out.push_back(denied);

  Record failed = denied;
  failed.op = "mkdir";
  failed.path = "reports/new";
  failed.state = RecordState::Failed;
  failed.err = ENOSPC;
  ObjectState dir;
  dir.exists = true;
  dir.type = "dir";
  dir.size = 4096;
  dir.mode = 0755;
  failed.after = dir;
  out.push_back(failed);

  Record interrupted = w;
  interrupted.op = "setxattr";
  interrupted.path2 = "user.comment";
  interrupted.state = RecordState::Interrupted;
  out.push_back(interrupted);
  return out;
}

void write_seeds(const char* dir) {
  int n = 0;
  for (const Record& r : seed_records()) {
    std::string path = std::string(dir) + "/seed-" + std::to_string(++n) + "-" +
                       (r.op.empty() ? "minimal" : r.op) + ".bin";
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    std::string v = scopefs::journal::encode_record(r);
    f.write(v.data(), static_cast<std::streamsize>(v.size()));
    if (!f) {
      std::perror(path.c_str());
      std::exit(1);
    }
    std::printf("%s\n", path.c_str());
  }
  // An unknown schema version and a truncated body.
  std::string v = scopefs::journal::encode_record(seed_records()[1]);
  std::ofstream(std::string(dir) + "/seed-bad-version.bin", std::ios::binary)
      << std::string(1, '\x02') << v.substr(1);
  std::ofstream(std::string(dir) + "/seed-truncated.bin", std::ios::binary)
      << v.substr(0, v.size() / 2);
  std::exit(0);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  if (const char* dir = std::getenv("SCOPEFS_FUZZ_WRITE_SEEDS")) write_seeds(dir);
  const char* j = std::getenv("SCOPEFS_FUZZ_RECORD_JSON");
  g_check_json = j && *j && std::string_view(j) != "0";
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view value(reinterpret_cast<const char*>(data), size);
  auto d = scopefs::journal::decode_record(value);
  if (!d.ok()) {
    FUZZ_CHECK(d.error() == EBADMSG || d.error() == EPROTO);
    FUZZ_CHECK(d.error() == EPROTO || size == 0 || data[0] == scopefs::journal::kSchemaVersion);
    return 0;
  }
  FUZZ_CHECK(size > 0 && data[0] == scopefs::journal::kSchemaVersion);
  const Record& r = *d;
  std::string again = scopefs::journal::encode_record(r);
  auto d2 = scopefs::journal::decode_record(again);
  FUZZ_CHECK(d2.ok());
  FUZZ_CHECK(*d2 == r);
  FUZZ_CHECK(scopefs::journal::encode_record(*d2) == again);
  if (g_check_json) (void)scopefs::journal::record_json(r);
  return 0;
}
