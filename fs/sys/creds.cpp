#include "fs/sys/creds.hpp"

#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace scopefs::sys {

CredGuard::CredGuard(uid_t uid, gid_t gid, const std::vector<gid_t>* groups) {
  if (uid == 0 && gid == 0) return;
  if (groups) {
    groups_set_ = ::syscall(SYS_setgroups, groups->size(), groups->data()) == 0;
  } else {
    groups_set_ = ::syscall(SYS_setgroups, 0, nullptr) == 0;
  }
  ::setfsgid(gid);
  ::setfsuid(uid);
  switched_ = true;
}

CredGuard::~CredGuard() {
  if (!switched_) return;
  ::setfsuid(0);
  ::setfsgid(0);
  if (groups_set_) ::syscall(SYS_setgroups, 0, nullptr);
}

}  // namespace scopefs::sys
