// Which views are up on this host, for `scopefs status` without a task.
//
// A view is found three ways: the task configs in /etc/scopefs/tasks (what
// systemd mounts), the registry of running daemons (/run/scopefs/.views: one
// JSON file per daemon, written once its view answers and removed as it
// unmounts, so a view mounted from any config file is found with its config),
// and the kernel's mount table (fuse.scopefs entries in /proc/self/mountinfo),
// which catches what neither names. A registry entry whose daemon is gone (it
// was killed) is ignored.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace scopefs::cli {

inline constexpr const char* kViewsDir = "/run/scopefs/.views";

struct RegisteredView {
  std::string task;
  std::string config;  // absolute path of the config file
  std::string state_dir;
  std::string mountpoint;
  pid_t pid = 0;
  std::string run;
};

// The daemon's entry (best effort: a failure is logged, never fatal).
void register_view(const RegisteredView& v);
void unregister_view(const std::string& state_dir);
// Entries whose daemon still runs.
std::vector<RegisteredView> registered_views();

struct MountEntry {
  std::string mountpoint;
  std::string source;  // "scopefs:TASK"
};
// The fuse.scopefs mounts in this mount namespace.
std::vector<MountEntry> scopefs_mounts();

}  // namespace scopefs::cli
