// The task's state directory: created 0700, locked by the one process that
// owns the task (the daemon, or the CLI when no daemon runs), with the owner's
// pid recorded for `scopefs unmount` and status.
//
//   STATE_DIR/lock        flock(LOCK_EX) held for the owner's lifetime
//   STATE_DIR/daemon.pid  pid of the mounted daemon
//   STATE_DIR/daemon.log  the daemon's log when it runs in the background
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "fs/sys/unique_fd.hpp"

namespace scopefs::journal {

class StateDir {
 public:
  // Creates the directory if needed; throws std::runtime_error on failure.
  explicit StateDir(std::string path);

  // Takes the exclusive lock without waiting. False if another process has it.
  bool try_lock();
  // Blocks until the lock is free (or `timeout_ms` passes); then releases it.
  bool wait_unlocked(int timeout_ms) const;

  void write_pid(pid_t pid) const;
  void remove_pid() const;
  std::optional<pid_t> read_pid() const;

  const std::string& path() const { return path_; }
  std::string file(const char* name) const { return path_ + "/" + name; }

 private:
  std::string path_;
  sys::UniqueFd lock_fd_;
};

}  // namespace scopefs::journal
