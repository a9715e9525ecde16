// Per-thread filesystem credentials (STYLE rule 15).
//
// Objects created through the view must belong to the calling user and group,
// as on a native filesystem. The daemon runs as root; for the duration of one
// create-type syscall a CredGuard switches *this thread's* fsuid/fsgid (and,
// when given, its supplementary groups) to the caller's, then restores root.
// setfsuid/setfsgid and the raw setgroups syscall act per thread on Linux
// (glibc's setgroups() would broadcast to every thread, so it is not used).
#pragma once

#include <sys/types.h>

#include <vector>

namespace scopefs::sys {

class CredGuard {
 public:
  CredGuard(uid_t uid, gid_t gid, const std::vector<gid_t>* groups = nullptr);
  ~CredGuard();
  CredGuard(const CredGuard&) = delete;
  CredGuard& operator=(const CredGuard&) = delete;

 private:
  bool switched_ = false;
  bool groups_set_ = false;
};

}  // namespace scopefs::sys
