// The FUSE session of one view: mount, serve with a multi-threaded loop,
// unmount. Every fallible setup step (config, bind fds, state-dir lock) happens
// before mount(), so a failure never strands a mount.
#pragma once

#include <string>

#include "fs/view.hpp"

struct fuse_session;

namespace scopefs::fs {

struct SessionOptions {
  double entry_timeout = 1.0;
  double attr_timeout = 1.0;
  double negative_timeout = 1.0;
  unsigned max_threads = 16;
  bool debug = false;
};

// Makes `path` usable as a mountpoint: creates it if missing and clears a stale
// FUSE mount left by a killed daemon (ENOTCONN). Throws with a clear message if
// something else is mounted there.
void prepare_mountpoint(const std::string& path);

// Detaches the FUSE mount at `path` if its connection is gone (stat answers
// ENOTCONN or ECONNABORTED). Returns whether it did; throws if umount2 fails.
bool detach_dead_mount(const std::string& path);

class Session {
 public:
  Session(View& view, std::string mountpoint, std::string fsname, SessionOptions opts);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void mount();  // throws std::runtime_error
  int loop();    // until unmounted or SIGTERM/SIGINT/SIGHUP; returns 0 or an error
  void unmount();

 private:
  View& view_;
  std::string mountpoint_;
  std::string fsname_;
  SessionOptions opts_;
  void* ctx_ = nullptr;
  fuse_session* se_ = nullptr;
  bool mounted_ = false;
  bool signals_ = false;
};

}  // namespace scopefs::fs
