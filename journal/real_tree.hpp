// The real tree as approve and rollback see it: a view path resolved to its
// parent directory (openat, one segment at a time, O_NOFOLLOW, from the
// bind's source) and name; an object's state with its content hash; the
// comparison that decides a conflict; metadata set from a recorded state.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "fs/result.hpp"
#include "fs/sys/unique_fd.hpp"
#include "journal/record.hpp"

namespace scopefs::journal {

struct RealLoc {
  sys::UniqueFd dir;
  std::string name;
  uint32_t bind1 = 0;  // the bind's index + 1 (fs::ObjId)
};

// EINVAL for a bind's own root (it cannot be created or removed).
Result<RealLoc> locate(const config::TaskConfig& cfg, const std::string& path);
// The object's state (content hash for files, target for symlinks); a
// missing object is exists = false.
Result<ObjectState> real_state(int dir, const std::string& name, struct stat* st_out = nullptr);
// Empty if `real` is what `want` says (type, content hash, symlink target;
// no `want` or !exists: absent); else what differs, in words.
std::string mismatch(const ObjectState& real, const std::optional<ObjectState>& want);
// Owner, mode (not for symlinks) and, with `times`, the mtime of `a`.
Result<void> set_meta(int dir, const std::string& name, const ObjectState& a, bool times);
mode_t type_bits(const std::string& type);
struct timespec ts_of(int64_t ns);
// Paths equal, or one above the other.
bool path_related(const std::string& a, const std::string& b);
// A fresh hidden name for a temp file beside a target (".scopefs-WHAT-SEQ-PID-N").
std::string temp_name(const char* what, uint64_t seq);

}  // namespace scopefs::journal
