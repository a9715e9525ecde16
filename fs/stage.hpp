// The stage: the overlay that holds changes (docs/approvals.md).
//
// Under `stage` access a mutation never reaches the real tree: it changes
// the overlay, and the agent's view is the real tree plus the overlay. The
// overlay is keyed by object *identity*, not by path, so renaming a
// directory is one entry move whatever lies below it, and hard links keep
// sharing one object across copy-up:
//
//   ObjId       an object of the view: a lower object (bind b, inode number
//               in the bind's filesystem) or an upper object (a number of the
//               overlay's own store).
//   entries     (directory ObjId, name) → whiteout, or the ObjId the name
//               now refers to. A name with no entry falls through to the
//               lower directory (if the directory has one and is not opaque).
//   times       ObjId → the times a held name change gave the object in the
//               view (a directory's mtime and ctime when a name in it is
//               created, removed or renamed; a file's ctime when it gains or
//               loses a link). The view shows the later of these and the
//               object's own. Not part of any change's undo, so they never
//               make two held changes depend on each other.
//   objects     ObjId → its upper copy (number of a file, directory,
//               symlink or node in STATE/stage/obj/, holding content,
//               mode, owner, times and xattrs), the view's link count, and
//               for lower objects reached through an entry, a file handle to
//               reopen them after a remount.
//
// Persistence: every key lives in the journal's store under "s/"; a held
// change's record and the keys it set are written in one transaction, and
// the record keeps the keys' old values (undo) for `scopefs reject`.
//
// Concurrency: one mutex (mu()) guards the maps; the view holds it for the
// whole of a staged mutation (lookups take it shortly).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <compare>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "fs/result.hpp"
#include "fs/sys/unique_fd.hpp"

namespace scopefs::fs {

struct ObjId {
  uint32_t bind1 = 0;  // 0: upper object; b + 1: a lower object of bind b
  uint64_t ino = 0;    // lower: inode number; upper: object number
  bool upper() const { return bind1 == 0; }
  // Ordered by (bind1, ino). Spelled out rather than `= default`: clang-tidy 14
  // flags the implicit `0` of a defaulted <=> as modernize-use-nullptr and
  // ignores NOLINT there (llvm-project#53961).
  bool operator==(const ObjId&) const = default;
  std::strong_ordering operator<=>(const ObjId& o) const {
    return std::tie(bind1, ino) <=> std::tie(o.bind1, o.ino);
  }
};

struct StageEntry {
  bool whiteout = false;
  ObjId target;
  uint32_t type = 0;  // S_IFMT bits of the target
  bool operator==(const StageEntry&) const = default;
};

struct StageObj {
  uint64_t upper = 0;   // 0: no upper copy (the lower object as it is)
  int64_t nlink = -1;   // the view's link count; -1: the object's own
  bool opaque = false;  // directories: the lower directory's names are hidden
  uint32_t type = 0;
  std::string handle;  // lower objects: encoded file handle (reopen after remount)
  bool operator==(const StageObj&) const = default;
};

struct StageTimes {
  int64_t mtime_ns = -1;  // -1: none
  int64_t ctime_ns = -1;
  bool operator==(const StageTimes&) const = default;
};

// The overlay keys one change set, with their values before it.
struct StageLog {
  std::vector<std::pair<std::string, std::optional<std::string>>> undo;
  std::set<std::string> touched;  // keys of the objects the change depends on
  std::set<std::string> seen;     // keys already in undo
  // Time keys the change set: written with its record, put back only if
  // the change fails (they are in no undo).
  std::vector<std::pair<std::string, std::optional<std::string>>> side;
};

class StageLayer {
 public:
  // Creates STATE/stage/obj if needed; throws std::runtime_error on failure.
  explicit StageLayer(const std::string& stage_dir);

  // Loads the persisted keys (prefix "s/").
  void load_key(std::string_view key, std::string_view value);

  std::recursive_mutex& mu() { return mu_; }

  // --- Queries (caller holds mu) ---------------------------------------
  const StageEntry* entry(const ObjId& dir, std::string_view name) const;
  const std::map<std::string, StageEntry, std::less<>>* entries(const ObjId& dir) const;
  const StageObj* obj(const ObjId& id) const;
  const StageTimes* times(const ObjId& id) const;
  bool has_entries(const ObjId& dir) const;
  bool empty() const { return entries_.empty() && objs_.empty(); }  // holds mu
  // False while the overlay has never held anything (no lock: the view's fast path).
  bool active() const { return active_.load(std::memory_order_acquire); }
  size_t entry_count() const;
  // Every (directory, name) with an entry that targets `id`.
  std::vector<std::pair<ObjId, std::string>> names_of(const ObjId& id) const;

  // --- Mutations (caller holds mu) -------------------------------------
  void set_entry(const ObjId& dir, const std::string& name, std::optional<StageEntry> e,
                 StageLog& log);
  void set_obj(const ObjId& id, std::optional<StageObj> o, StageLog& log);
  // A held name change at `ns`: the object's ctime (and with `mtime`, its
  // mtime) as the view shows it is at least `ns`.
  void stamp(const ObjId& id, bool mtime, int64_t ns, StageLog& log);
  // The object's mtime was set explicitly: the view shows its own again.
  void clear_mtime(const ObjId& id, StageLog& log);
  void touch(const ObjId& id, StageLog& log) { log.touched.insert(obj_key(id)); }
  // A copy-up made when a file was opened for writing belongs to the first
  // held change that touches the object (its record carries the undo).
  void add_pending(const StageLog& log);
  bool pending(const ObjId& id) const { return pending_.count(obj_key(id)) != 0; }
  // Moves pending undo entries of the keys `log` touched into `log`.
  void claim_pending(StageLog& log);
  uint64_t new_upper();

  // The current encoded value of a key (nullopt: absent).
  std::optional<std::string> value_of(const std::string& key) const;
  // Sets a key from its encoded value (reject, normalisation); returns false
  // for a key that is not the stage's.
  bool apply_raw(const std::string& key, const std::optional<std::string>& value);
  // The persisted next upper number, for the record's transaction.
  static constexpr const char* kNextKey = "s/n";
  std::string next_value() const;

  static std::string entry_key(const ObjId& dir, std::string_view name);
  static std::string obj_key(const ObjId& id);
  static std::string times_key(const ObjId& id);
  // Parses an entry or object key.
  static bool parse_entry_key(std::string_view key, ObjId& dir, std::string& name);
  static bool parse_obj_key(std::string_view key, ObjId& id);
  static bool parse_times_key(std::string_view key, ObjId& id);

  // The upper objects' directory and names.
  int obj_dirfd() const { return obj_dir_.get(); }
  static std::string upper_name(uint64_t n);
  const std::string& dir() const { return dir_; }
  dev_t obj_dev() const { return obj_dev_; }

  // Every key the overlay has now.
  std::vector<std::string> all_keys() const;
  // Every upper object number that nothing refers to any more (no entry, no
  // object state), for removal once no held change needs it.
  std::vector<uint64_t> orphans() const;
  // Removes them (at mount: copies a crash left before their record; after
  // decisions). Caller holds mu or is alone. Returns how many.
  size_t remove_orphans();

 private:
  std::string dir_;
  sys::UniqueFd obj_dir_;
  dev_t obj_dev_ = 0;
  mutable std::recursive_mutex mu_;
  std::map<ObjId, std::map<std::string, StageEntry, std::less<>>> entries_;
  std::map<ObjId, StageObj> objs_;
  std::map<ObjId, StageTimes> times_;
  uint64_t next_upper_ = 1;
  std::atomic<bool> active_{false};
  std::map<std::string, std::optional<std::string>> pending_;
};

std::string encode_entry(const StageEntry& e);
std::optional<StageEntry> decode_entry(std::string_view v);
std::string encode_obj(const StageObj& o);
std::optional<StageObj> decode_obj(std::string_view v);
std::string encode_times(const StageTimes& t);
std::optional<StageTimes> decode_times(std::string_view v);

// Copies a regular file's content: FICLONE, else copy_file_range, else read/write.
Result<void> copy_content(int src, int dst);
// Copies xattrs of `src` onto `dst` (both open fds; skips none: the view hides
// nothing of its own in xattrs).
Result<void> copy_xattrs(int src, int dst);

}  // namespace scopefs::fs
