// Journal records: the schema (version 1) and its codec.
//
// Key:   "r/" + 8-byte big-endian sequence number (so keys sort by sequence).
// Value: 1 byte schema version, then a CBOR map with these fields:
//
//   seq     u64     sequence number, dense, from 1
//   t       i64     time, ns since the epoch (CLOCK_REALTIME)
//   task    str     task name            run   str   run id (fresh per mount)
//   op      str     operation: create mknod mkdir symlink link unlink rmdir
//                   rename chmod chown truncate utimens write fallocate
//                   copy_file_range setxattr removexattr mount unmount; admin
//                   records: approve reject rollback gc
//   path    str     view path of the object; path2: second path (rename/link
//                   target, symlink target, xattr name)
//   flags   u32     operation flags (rename flags, open flags, setattr mask)
//   state   str     intent | applied | failed | denied | interrupted | held |
//                   approved | rejected | rolled_back (an applied change undone by a
//                   "rollback" record, whose ref names it)
//   ref     u64?    held change → the record of the decision on it; approve /
//                   reject records → the held change they decide
//   undo    array?  held changes: the overlay keys the change set, each
//                   [key bytes, old value bytes or null] (reject restores them)
//   touch   array?  held changes: overlay keys of the objects the change
//                   depends on (bytes), for dependencies between changes
//   xv, xv0 bytes?  setxattr/removexattr: the value after and before
//   note    str?    what an admin decision overrode (approve --force); gc: what
//                   it collected ("expired N records, removed N before-images
//                   (N bytes), ...")
//   expired bool?   `scopefs gc` collected this record's before-images (its
//                   states' blob flags are then false): past the retention
//                   window, it can no longer be rolled back (absent = false)
//   err     i32     errno of a failed or denied operation (0 otherwise)
//   caller  map     pid, uid, gid, comm (process name); args (command line,
//                   array of str) and exe (executable path) where known
//   before  map?    state of the object before: see ObjectState
//   after   map?    state after
//   victim  map?    state of an object a rename replaced or exchanged
//
// ObjectState: exists(bool), type (file|dir|symlink|fifo|chr|blk|sock), size,
// mode (permission bits), uid, gid, mtime (ns), hash (32 hex digits, XXH3-128
// as `xxhsum -H2` prints it; regular files), blob (bool: a before-image with
// that hash is in the blob store), target (symlinks), rdev (devices).
//
// A record is first written with state "intent" before the real tree
// changes, then rewritten under the same key with its outcome. Readers must
// reject an unknown schema version's body but still count the record.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fs/result.hpp"
#include "journal/hash.hpp"

namespace scopefs::journal {

constexpr uint8_t kSchemaVersion = 1;

enum class RecordState : uint8_t {
  Intent,
  Applied,
  Failed,
  Denied,
  Interrupted,
  Held,
  Approved,
  Rejected,
  RolledBack
};
std::string_view state_name(RecordState s);
std::optional<RecordState> parse_state(std::string_view s);

struct ObjectState {
  bool exists = false;
  std::string type;  // file, dir, symlink, fifo, chr, blk, sock
  uint64_t size = 0;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t mtime_ns = 0;
  std::optional<Hash128> hash;
  bool blob = false;
  std::string target;
  uint64_t rdev = 0;
  bool operator==(const ObjectState&) const = default;
};

struct CallerInfo {
  // Not an aggregate, so that CallerInfo{pid, uid, gid, comm} stays valid
  // (without -Wmissing-field-initializers) as fields are added.
  CallerInfo(int32_t pid_ = 0, uint32_t uid_ = 0, uint32_t gid_ = 0, std::string comm_ = {},
             std::vector<std::string> args_ = {}, std::string exe_ = {})
      : pid(pid_),
        uid(uid_),
        gid(gid_),
        comm(std::move(comm_)),
        args(std::move(args_)),
        exe(std::move(exe_)) {}
  int32_t pid = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string comm;
  std::vector<std::string> args;  // command line (from /proc, once per process)
  std::string exe;                // executable path
  bool operator==(const CallerInfo&) const = default;
};

struct Record {
  uint64_t seq = 0;
  int64_t time_ns = 0;
  std::string task;
  std::string run;
  std::string op;
  std::string path;
  std::string path2;
  uint32_t flags = 0;
  RecordState state = RecordState::Intent;
  int32_t err = 0;
  CallerInfo caller;
  std::optional<ObjectState> before;
  std::optional<ObjectState> after;
  std::optional<ObjectState> victim;
  uint64_t ref = 0;
  std::vector<std::pair<std::string, std::optional<std::string>>> undo;
  std::vector<std::string> touch;
  std::optional<std::string> xattr_value;
  std::optional<std::string> xattr_before;
  std::string note;
  bool expired = false;
  bool operator==(const Record&) const = default;
};

std::string record_key(uint64_t seq);
std::optional<uint64_t> seq_of_key(std::string_view key);

std::string encode_record(const Record& r);
// The same bytes, through a JSON tree (slower): the reference encode_record
// is tested against.
std::string encode_record_via_json(const Record& r);
// EBADMSG for a corrupt value, EPROTO for an unknown schema version.
Result<Record> decode_record(std::string_view value);

// One JSON object (no newline), for `scopefs log --json`.
std::string record_json(const Record& r);

// ObjectState from an lstat result (hash and target filled by the caller).
ObjectState object_state(const struct stat& st);

}  // namespace scopefs::journal
