// The one place every mutation passes (DESIGN.md, "One change model").
//
// Each mutating operation of the view builds a Change, asks the policy
// (a refusal goes to denied()), then calls begin() before the real tree is
// touched — the journal's durable intent and before-image; a failure there
// aborts the operation with that errno and leaves the real tree untouched —
// and end() after the attempt, with its outcome. A file written through an
// open handle is one *write session*: begin() at its first mutation, wrote()
// after each successful write (the streaming hash), settle() at each close()
// (the after-state as the closing process left it), end() at release or fsync.
//
// Change objects refer to the real tree only through directory fds and names
// (ObjRef), never absolute paths.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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
  Write,
  Fallocate,
  CopyRange,
  Setxattr,
  Removexattr,
};

std::string_view op_name(OpKind op);

// An object of the real tree: `name` in directory `dirfd`, or, with an empty
// name, the object `dirfd` itself refers to (an O_PATH or open fd).
struct ObjRef {
  int dirfd = -1;
  std::string name;
  bool valid() const { return dirfd >= 0; }
};

// Whatever the gate keeps between begin() and end().
class GateState {
 public:
  virtual ~GateState() = default;
};

struct Change {
  Change(OpKind o, std::string p, std::string p2, Caller who, unsigned f)
      : op(o), path(std::move(p)), path2(std::move(p2)), caller(who), flags(f) {}

  OpKind op;
  std::string path;   // view path of the object changed
  std::string path2;  // rename/link target; symlink target; xattr name
  Caller caller;
  unsigned flags = 0;           // rename flags, open flags, setattr mask, fallocate mode
  ObjRef obj;                   // the object (or the name about to be created)
  ObjRef obj2;                  // rename/link destination
  bool open_for_write = false;  // the view holds the object open for writing
  // The view holds the object (unlink) or the replaced file (rename) open in
  // any mode: its before-image must be a copy, since a hard link into the
  // blob store would show in fstat's link count on the open descriptor.
  bool open_in_view = false;
  // obj's and obj2's lstat as the view took it right before begin(), so the
  // gate need not take it again (`known`); `absent`: it failed with ENOENT.
  struct Seen {
    bool known = false;
    bool absent = false;
    struct stat st {};
  };
  Seen obj_seen, obj2_seen;
  // Filled by the gate at end(): the object's lstat after the change, as it
  // took it for the record (the view answers with it instead of a new stat).
  Seen after_seen;
  std::unique_ptr<GateState> state;

  // Held changes (fs/stage.hpp): the real tree is not touched; obj/obj2
  // name the overlay's objects. `held_image`: the object is already an
  // upper copy whose content the change destroys (keep a before-image for
  // reject). At end(), `stage_undo` holds the overlay keys the change set
  // with their old values, `stage_redo` their new values (written with the
  // record), `stage_touch` the keys of the objects it depends on.
  bool held = false;
  bool held_image = false;
  std::vector<std::pair<std::string, std::optional<std::string>>> stage_undo;
  std::vector<std::pair<std::string, std::optional<std::string>>> stage_redo;
  std::vector<std::string> stage_touch;
  std::optional<std::string> xattr_value;   // setxattr: the new value
  std::optional<std::string> xattr_before;  // setxattr/removexattr: the old value
};

class ChangeGate {
 public:
  virtual ~ChangeGate() = default;
  // Before the real tree is touched. A non-ok result aborts the operation.
  virtual Result<void> begin(Change& c) = 0;
  // After the attempt: err == 0 means it was applied.
  virtual void end(Change& c, int err) = 0;
  // The policy refused the change with `err`.
  virtual void denied(Change& c, int err) = 0;
  // Write sessions: `n` bytes were written at `off`.
  virtual void wrote(Change& c, const void* data, size_t n, off_t off) {
    (void)c, (void)data, (void)n, (void)off;
  }
  // Write sessions: content changed other than by wrote() (truncate, fallocate, copy).
  virtual void reshaped(Change& c) { (void)c; }
  // Write sessions: a descriptor was closed (FUSE FLUSH, which close() waits
  // for). The after-state is taken now; end() uses it unless the session
  // changes the file again. RELEASE comes later and asynchronously: by then
  // a shell loop's next `>>` may have appended to the file.
  virtual void settle(Change& c) { (void)c; }
  // Write sessions: the regular file (real dev, ino) the session writes,
  // once the view knows it (a create's new file).
  virtual void identify(Change& c, dev_t dev, ino_t ino) { (void)c, (void)dev, (void)ino; }
  // The agent asked for durability (fsync): make the record of everything so far durable.
  virtual Result<void> sync() { return {}; }
};

// Logs at debug level; journals nothing.
class LoggingGate final : public ChangeGate {
 public:
  Result<void> begin(Change& c) override;
  void end(Change& c, int err) override;
  void denied(Change& c, int err) override;
};

}  // namespace scopefs::fs
