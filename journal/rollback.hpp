// Rollback of applied changes (`scopefs rollback`): docs/journal.md, "Rollback".
//
// What can be rolled back: records in state "applied" of the tree operations
// (create mknod mkdir symlink link unlink rmdir rename chmod chown truncate
// utimens write fallocate copy_file_range setxattr removexattr), "approve"
// records (the change applied is the held record's op, with the approval's
// before/after states) and "rollback" records themselves (by id only).
// Records in state "interrupted" (a crash between intent and outcome) of the
// tree operations too: whether the change reached the real tree is decided
// from the real objects and the record's `before` (docs/journal.md, "Crash
// consistency"); if it did, it is undone like an applied one with `after` =
// what is there now; if not, only a resolution record is written.
//
// Every such record is first normalised into a Change: an operation with the
// states before and after it, in the coordinates where undoing it is defined.
// A rollback record stores its own states in the coordinates of the inverse
// Change (rolling back a create is an unlink; a rename a→b a rename b→a), so
// rolling back a rollback is the same machinery once more.
//
// Per selected record, newest first:
//   1. the real object must be the record's `after` (type, content hash,
//      symlink target; metadata and xattr changes only the type), else it is
//      a conflict: reported with what would be lost, skipped together with
//      every older selected record on a related path (equal, above, below),
//      unless `force`;
//   2. a needed before-image missing from the blob store is an error
//      ("before-image not kept") and blocks the path likewise;
//   3. an intent record (op "rollback", ref = the undone record) is written,
//      the real tree changed — whatever the rollback destroys is kept as a
//      before-image of that record (hard link into the store, else a copy) —
//      and the outcome is stored together with the undone record's new state
//      "rolled_back" (a rolled-back rollback puts its record back to
//      "applied") in one transaction.
// Content is restored through a temp file beside the target renamed over it
// (in place when the target has other hard links). With `dry_run` only the
// plan (and the conflicts) are reported: nothing is touched or written.
//
// Directory mtimes: restoring children changes a directory's mtime; every
// directory this rollback re-created (rmdir undone) gets its recorded mtime
// again at the end. Parents that were never removed are not restored: the
// journal does not record a parent's mtime.
//
// Concurrency: one rollback at a time per task (the daemon's control handler
// or the CLI under the state lock); the agent may work meanwhile — a change
// it makes to a path being rolled back shows up as a conflict.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "fs/result.hpp"
#include "journal/decide.hpp"
#include "journal/journal.hpp"

namespace scopefs::journal {

struct RollbackSelection {
  std::vector<uint64_t> ids;       // any applied record, rollbacks included
  std::vector<std::string> globs;  // view paths (either path of a change)
  std::string run;                 // run id
  int64_t since_ns = 0;            // records at or after this time
  uint64_t after_seq = 0;          // --to SEQ: records after SEQ
  bool has_after = false;
  bool all = false;
  // Filters (globs, run, since, to) are combined: all must match. Without
  // ids, at least one filter or `all` must be given. Filters never select
  // rollback records (a second `rollback --all` must not redo what the first
  // undid); name those by id.
  bool filtered() const { return !globs.empty() || !run.empty() || since_ns != 0 || has_after; }
  bool empty() const { return ids.empty() && !filtered() && !all; }
};

struct RollbackStep {
  uint64_t seq = 0;
  std::string op;       // the operation undone
  std::string path;     // where the real tree changes
  std::string becomes;  // what it becomes
  std::string blob;     // the before-image used (hex), if any
};

struct RollbackReport {
  std::vector<uint64_t> done;
  std::vector<RollbackStep> plan;                           // dry run: what would be done
  std::vector<std::pair<uint64_t, std::string>> conflicts;  // skipped
  std::vector<std::pair<uint64_t, std::string>> failed;
  std::vector<std::pair<uint64_t, std::string>> unknown;  // ids not rollback-able, and why
  std::vector<std::string> notes;
  bool ok() const { return conflicts.empty() && failed.empty() && unknown.empty(); }
};

class RollBacker {
 public:
  RollBacker(const config::TaskConfig& cfg, Journal& j) : cfg_(cfg), j_(j) {}

  // `touched`: objects and names of the real tree that changed (for the
  // view's caches: View::stage_changed).
  Result<RollbackReport> rollback(const RollbackSelection& sel, bool force, bool dry_run,
                                  const CallerInfo& who, Touched& touched);

 private:
  const config::TaskConfig& cfg_;
  Journal& j_;
};

// True for the ops a record of state "applied" can be rolled back from.
bool rollbackable_op(const std::string& op);

}  // namespace scopefs::journal
