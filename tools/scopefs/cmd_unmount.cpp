// scopefs unmount CONFIG|MOUNTPOINT [--lazy]
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>

#include "config/config.hpp"
#include "journal/state_dir.hpp"
#include "tools/scopefs/commands.hpp"

namespace scopefs::cli {
namespace {

struct UnmountArgs {
  std::string target;
  bool lazy = false;
  int wait_ms = 10000;
};

void run_unmount(const UnmountArgs& args) {
  std::string mp;
  std::optional<journal::StateDir> state;
  struct stat st {};
  bool is_dir = ::stat(args.target.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  if (is_dir || errno == ENOTCONN) {
    mp = args.target;
  } else {
    try {
      auto cfg = config::load_config(config::resolve_task_arg(args.target));
      mp = cfg.mountpoint;
      state.emplace(cfg.state_dir);
    } catch (const config::ConfigError& e) {
      for (const auto& d : e.diagnostics()) std::cerr << d.str() << "\n";
      throw Exit{kExitUsage};
    }
  }
  struct statfs sf {};
  errno = 0;
  bool mounted = ::statfs(mp.c_str(), &sf) == 0 && sf.f_type == 0x65735546;
  bool stale = errno == ENOTCONN;
  if (!mounted && !stale) {
    std::cout << mp << ": not mounted\n";
    return;
  }
  std::optional<pid_t> daemon_pid = state ? state->read_pid() : std::nullopt;
  if (::umount2(mp.c_str(), (args.lazy || stale) ? MNT_DETACH : 0) != 0) {
    int e = errno;
    std::cerr << "scopefs unmount: " << mp << ": " << std::strerror(e)
              << (e == EBUSY ? " (files are open in the view; close them or use --lazy)" : "")
              << "\n";
    throw Exit{kExitFailure};
  }
  if (state && !state->wait_unlocked(args.wait_ms)) {
    std::cerr << "scopefs unmount: " << mp << " unmounted, but the daemon has not exited after "
              << args.wait_ms << " ms\n";
    throw Exit{kExitFailure};
  }
  // The lock is released as the daemon exits; wait for the process itself too
  // (until it is gone or a zombie of someone else's).
  if (daemon_pid && !stale) {
    for (int waited = 0; waited < args.wait_ms; waited += 20) {
      std::ifstream proc_stat("/proc/" + std::to_string(*daemon_pid) + "/stat");
      std::string pid, comm, s_state;
      if (!proc_stat || !(proc_stat >> pid >> comm >> s_state) || s_state == "Z") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  std::cout << "unmounted " << mp << "\n";
}

}  // namespace

void setup_unmount(CLI::App& app) {
  auto args = std::make_shared<UnmountArgs>();
  auto* sub = app.add_subcommand("unmount", "Unmount a task's view and wait for its daemon");
  sub->add_option("target", args->target, "Config file, task name, or mountpoint")->required();
  sub->add_flag("-l,--lazy", args->lazy, "Detach now even if files are open (MNT_DETACH)");
  sub->add_option("--wait-ms", args->wait_ms, "How long to wait for the daemon to exit");
  sub->callback([args] { run_unmount(*args); });
}

}  // namespace scopefs::cli
