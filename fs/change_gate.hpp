// The one place every mutation passes (DESIGN.md, "One change model").
//
// Each mutating operation of the view builds a Change, asks the policy, and
// then goes through the gate: begin() before the real tree is touched (the
// journal's durable intent; a failure there aborts the operation with that
// errno and leaves the real tree untouched), end() after it with the outcome.
// Refusals by policy are reported through denied(). The default gate only
// logs; the journal (issue: change journal) implements the same interface.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "fs/result.hpp"

namespace scopefs::fs {

struct Caller {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

enum class OpKind : uint8_t {
  Create,
  Mknod,
  Mkdir,
  Symlink,
  Link,
  Unlink,
  Rmdir,
  Rename,
  Chmod,
  Chown,
  Truncate,
  Utimens,
  OpenWrite,
  Write,
  Fallocate,
  CopyRange,
  Setxattr,
  Removexattr,
};

std::string_view op_name(OpKind op);

struct Change {
  OpKind op;
  std::string path;   // view path of the object changed
  std::string path2;  // second path: rename/link target
  Caller caller;
  unsigned flags = 0;  // rename flags, open flags, ...
};

class ChangeGate {
 public:
  virtual ~ChangeGate() = default;
  // Before the real tree is touched. A non-ok result aborts the operation.
  virtual Result<void> begin(const Change& c) = 0;
  // After the attempt: err == 0 means it was applied.
  virtual void end(const Change& c, int err) = 0;
  // The policy refused the change with `err`.
  virtual void denied(const Change& c, int err) = 0;
};

// Logs at debug level; journals nothing.
class LoggingGate final : public ChangeGate {
 public:
  Result<void> begin(const Change& c) override;
  void end(const Change& c, int err) override;
  void denied(const Change& c, int err) override;
};

}  // namespace scopefs::fs
