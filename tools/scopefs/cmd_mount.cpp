// scopefs mount [--foreground] CONFIG
//
// Validates the config and takes the task's state lock in the calling
// process, then (unless --foreground) forks: the child sets up the view,
// mounts, and reports over a pipe; the parent returns only once the mount
// answers a stat, so `scopefs mount X && ls MOUNTPOINT` is safe. Every
// fallible step happens before fuse_session_mount.
#include <fcntl.h>
#include <grp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <spdlog/sinks/basic_file_sink.h>
#include <systemd/sd-daemon.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <thread>
#include <chrono>

#include "config/config.hpp"
#include "fs/session.hpp"
#include "fs/view.hpp"
#include "journal/audit_stream.hpp"
#include "journal/journal.hpp"
#include "journal/control.hpp"
#include "journal/journal_gate.hpp"
#include "tools/scopefs/decide_service.hpp"
#include "journal/state_dir.hpp"
#include "tools/scopefs/commands.hpp"

namespace scopefs::cli {
namespace {

struct MountArgs {
  std::string task;
  bool foreground = false;
  bool debug = false;
  double timeout = 1.0;
};

void raise_fd_limit() {
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// The run id correlating every record of this mount: SCOPEFS_RUN_ID, else
// systemd's INVOCATION_ID, else a fresh random UUID.
std::string make_run_id() {
  for (const char* var : {"SCOPEFS_RUN_ID", "INVOCATION_ID"})
    if (const char* v = std::getenv(var); v && *v) return v;
  unsigned char b[16];
  std::ifstream in("/dev/urandom", std::ios::binary);
  in.read(reinterpret_cast<char*>(b), sizeof b);
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  char out[37];
  std::snprintf(out, sizeof out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                b[13], b[14], b[15]);
  return out;
}

void report(int fd, const std::string& msg) {
  if (fd < 0) return;
  [[maybe_unused]] ssize_t n = ::write(fd, msg.data(), msg.size());
}

bool mount_answers(const std::string& mp) {
  struct statfs sf {};
  return ::statfs(mp.c_str(), &sf) == 0 && sf.f_type == 0x65735546;
}

// The daemon proper: returns the exit code. `ready_fd` gets "ok" once mounted,
// or "error: ..." on failure before that.
int serve(const config::TaskConfig& cfg, journal::StateDir& state, const MountArgs& args,
          int ready_fd) {
  raise_fd_limit();
  ::umask(0);              // modes come from the callers, already masked by the kernel
  ::setgroups(0, nullptr);  // per-thread credentials start from a clean set
  state.write_pid(::getpid());
  try {
    journal::JournalOptions jo;
    jo.task = cfg.name;
    jo.run = make_run_id();
    auto journal = journal::Journal::open(cfg.state_dir, jo);
    if (journal->recovered() > 0)
      spdlog::warn("task {}: {} change(s) interrupted by an earlier crash are marked in the journal",
                   cfg.name, journal->recovered());
    journal::JournalGate jgate(*journal);
    // The live audit stream to the [audit] sinks, resumed from their cursors.
    journal::AuditStreamer streamer(*journal, journal::make_sinks(cfg.audit), cfg.audit.include_intents);
    streamer.start();
    // Benchmark-only switch: measure the view without the journal's cost.
    fs::LoggingGate nogate;
    const char* bench = std::getenv("SCOPEFS_BENCH_JOURNAL");
    bool journal_off = bench && std::string(bench) == "off";
    if (journal_off) spdlog::warn("task {}: SCOPEFS_BENCH_JOURNAL=off: nothing is journaled", cfg.name);
    fs::ChangeGate& gate = journal_off ? static_cast<fs::ChangeGate&>(nogate) : jgate;
    // The overlay of held changes, as the journal left it.
    fs::StageLayer stage(cfg.state_dir + "/stage");
    if (auto r = journal->kv().scan("s/", "", [&](std::string_view k, std::string_view v) {
          stage.load_key(k, v);
          return true;
        });
        !r)
      throw std::runtime_error("cannot read the held changes from the journal");
    if (size_t n = stage.remove_orphans())
      spdlog::warn("task {}: removed {} upper cop(ies) of held changes a crash left unrecorded", cfg.name, n);
    fs::ViewOptions vo;
    vo.stage = &stage;
    fs::View view(cfg, gate, vo);
    view.open();
    // Admin decisions while mounted: the control socket (SO_PEERCRED checked per request).
    if (auto r = control::share_state_dir(cfg.state_dir, cfg.admin_gid); !r)
      spdlog::warn("task {}: cannot open the state directory to the admin group: {}", cfg.name,
                   std::strerror(r.error()));
    control::Server control_server(
        cfg.state_dir + "/control.sock", cfg.admin_gid,
        [&](const nlohmann::json& req, const control::Peer& peer) {
          return run_decision(req, peer, cfg, *journal, stage, &view);
        });
    control_server.start();
    fs::prepare_mountpoint(cfg.mountpoint);
    fs::SessionOptions so;
    so.entry_timeout = so.attr_timeout = so.negative_timeout = args.timeout;
    so.debug = args.debug;
    fs::Session session(view, cfg.mountpoint, "scopefs:" + cfg.name, so);
    session.mount();
    spdlog::info("task {}: mounted at {} (pid {})", cfg.name, cfg.mountpoint, ::getpid());
    jgate.lifecycle("mount", cfg.mountpoint);
    report(ready_fd, "ok");
    if (ready_fd >= 0) ::close(ready_fd);
    // systemd (Type=notify): READY=1 only once the view answers, which needs
    // the loop below to be running: a helper thread asks and then tells.
    std::thread notifier([&cfg] {
      for (int i = 0; i < 500 && !mount_answers(cfg.mountpoint); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      std::string msg = "READY=1\nSTATUS=serving task " + cfg.name + " at " + cfg.mountpoint;
      ::sd_notify(0, msg.c_str());
    });
    int r = session.loop();
    ::sd_notify(0, "STOPPING=1\nSTATUS=unmounting");
    notifier.join();
    session.unmount();
    jgate.lifecycle("unmount", cfg.mountpoint);
    streamer.stop();
    spdlog::info("task {}: unmounted from {} (run {})", cfg.name, cfg.mountpoint, jo.run);
    state.remove_pid();
    // libfuse reports the signal that ended the loop: a requested stop is clean.
    bool clean = r == 0 || r == SIGTERM || r == SIGINT || r == SIGHUP;
    if (!clean) spdlog::error("task {}: session loop ended with {}", cfg.name, r);
    return clean ? kExitOk : kExitFailure;
  } catch (const std::exception& e) {
    spdlog::error("task {}: {}", cfg.name, e.what());
    report(ready_fd, std::string("error: ") + e.what());
    state.remove_pid();
    return kExitFailure;
  }
}

void run_mount(const MountArgs& args) {
  std::string file = config::resolve_task_arg(args.task);
  config::TaskConfig cfg;
  try {
    cfg = config::load_config(file);
  } catch (const config::ConfigError& e) {
    for (const auto& d : e.diagnostics()) std::cerr << d.str() << "\n";
    throw Exit{kExitUsage};
  }
  if (::geteuid() != 0) {
    std::cerr << "scopefs mount: must run as root (it mounts with allow_other and acts for "
                 "every caller)\n";
    throw Exit{kExitFailure};
  }
  journal::StateDir state(cfg.state_dir);
  if (!state.try_lock()) {
    auto pid = state.read_pid();
    std::cerr << "scopefs mount: task '" << cfg.name << "' is already mounted"
              << (pid ? " by pid " + std::to_string(*pid) : std::string()) << " (state_dir "
              << cfg.state_dir << ")\n";
    throw Exit{kExitFailure};
  }
  if (args.foreground) throw Exit{serve(cfg, state, args, -1)};

  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::close(pipefd[0]);
    ::setsid();
    int devnull = ::open("/dev/null", O_RDWR);
    int log = ::open(state.file("daemon.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (devnull >= 0) {
      ::dup2(devnull, 0);
      ::dup2(devnull, 1);
    }
    if (log >= 0) ::dup2(log, 2);
    if (::chdir("/") != 0) {
    }
    ::_exit(serve(cfg, state, args, pipefd[1]));
  }
  ::close(pipefd[1]);
  std::string msg;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(pipefd[0], buf, sizeof buf);
    if (n > 0) {
      msg.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  ::close(pipefd[0]);
  if (msg != "ok" || !mount_answers(cfg.mountpoint)) {
    std::cerr << "scopefs mount: task '" << cfg.name << "': "
              << (msg.empty() ? "the daemon exited before mounting (see " + state.file("daemon.log") + ")"
                              : msg)
              << "\n";
    throw Exit{kExitFailure};
  }
  std::cout << "mounted task '" << cfg.name << "' at " << cfg.mountpoint << " (pid " << pid << ")\n";
}

}  // namespace

void setup_mount(CLI::App& app) {
  auto args = std::make_shared<MountArgs>();
  auto* sub = app.add_subcommand("mount", "Mount a task's view (daemonizes once the view answers)");
  sub->add_option("task", args->task, "Config file, or task name (/etc/scopefs/tasks/NAME.toml)")
      ->required();
  sub->add_flag("-f,--foreground", args->foreground, "Stay in the foreground (systemd, tests)");
  sub->add_flag("--debug", args->debug, "Log every FUSE request (libfuse -d)");
  sub->add_option("--cache-timeout", args->timeout,
                  "Seconds the kernel may cache entries and attributes")
      ->check(CLI::Range(0.0, 3600.0));
  sub->callback([args] { run_mount(*args); });
}

}  // namespace scopefs::cli
