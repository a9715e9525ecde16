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
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "config/config.hpp"
#include "fs/session.hpp"
#include "fs/view.hpp"
#include "journal/audit_stream.hpp"
#include "journal/control.hpp"
#include "journal/journal.hpp"
#include "journal/journal_gate.hpp"
#include "journal/state_dir.hpp"
#include "tools/scopefs/commands.hpp"
#include "tools/scopefs/decide_service.hpp"
#include "tools/scopefs/logging.hpp"
#include "tools/scopefs/views.hpp"

namespace scopefs::cli {
namespace {

struct MountArgs {
  std::string task;
  bool foreground = false;
  bool debug = false;
  double timeout = 1.0;
  std::string log_level;
  std::string expect_mountpoint;
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
  std::snprintf(out, sizeof out,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
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

// Held changes not yet decided: the journal's "h/" index.
uint64_t pending_count(journal::Journal& j) {
  uint64_t n = 0;
  auto r = j.kv().scan("h/", "", [&n](std::string_view, std::string_view) {
    ++n;
    return true;
  });
  return r ? n : 0;
}

// systemd's notify protocol (Type=notify), a no-op without NOTIFY_SOCKET.
// READY=1 only once the view answers a statfs, which needs the session loop
// to be running: a helper thread asks, then tells. After that it keeps STATUS=
// current with the number of held changes, at most once a second and only
// when the journal moved (a cheap atomic read; the count is a scan of the
// held index). stop() sends nothing: the caller sends STOPPING=1.
class Notifier {
 public:
  Notifier(const config::TaskConfig& cfg, journal::Journal& j) : cfg_(cfg), journal_(j) {}
  ~Notifier() { stop(); }
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  void start() {
    thread_ = std::thread([this] { run(); });
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  bool wait_ms(int ms) {  // false once stopped
    std::unique_lock<std::mutex> lk(mu_);
    return !cv_.wait_for(lk, std::chrono::milliseconds(ms), [this] { return stop_; });
  }
  std::string status(uint64_t pending) const {
    return "STATUS=serving task " + cfg_.name + " at " + cfg_.mountpoint + "; " +
           std::to_string(pending) + " change(s) pending approval";
  }
  void run() {
    for (int i = 0; i < 500 && !mount_answers(cfg_.mountpoint); ++i)
      if (!wait_ms(10)) return;
    uint64_t pending = pending_count(journal_);
    ::sd_notify(0, ("READY=1\n" + status(pending)).c_str());
    if (!std::getenv("NOTIFY_SOCKET")) return;  // nobody listens to STATUS=
    uint64_t seen = journal_.last_seq();
    while (wait_ms(1000)) {
      uint64_t now = journal_.last_seq();
      if (now == seen) continue;
      seen = now;
      uint64_t n = pending_count(journal_);
      if (n == pending) continue;
      pending = n;
      ::sd_notify(0, status(pending).c_str());
    }
  }

  const config::TaskConfig& cfg_;
  journal::Journal& journal_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

// The daemon proper: returns the exit code. `ready_fd` gets "ok" once mounted,
// or "error: ..." on failure before that.
int serve(const config::TaskConfig& cfg, journal::StateDir& state, const MountArgs& args,
          int ready_fd) {
  raise_fd_limit();
  ::umask(0);               // modes come from the callers, already masked by the kernel
  ::setgroups(0, nullptr);  // per-thread credentials start from a clean set
  state.write_pid(::getpid());
  try {
    journal::JournalOptions jo;
    jo.task = cfg.name;
    jo.run = make_run_id();
    auto journal = journal::Journal::open(cfg.state_dir, jo);
    if (journal->recovered() > 0)
      spdlog::warn(
          "task {}: {} change(s) interrupted by an earlier crash are marked in the journal",
          cfg.name, journal->recovered());
    journal::JournalGate jgate(*journal);
    // The live audit stream to the [audit] sinks, resumed from their cursors.
    journal::AuditStreamer streamer(*journal, journal::make_sinks(cfg.audit),
                                    cfg.audit.include_intents);
    streamer.start();
    // Benchmark-only switch: measure the view without the journal's cost.
    fs::LoggingGate nogate;
    const char* bench = std::getenv("SCOPEFS_BENCH_JOURNAL");
    bool journal_off = bench && std::string(bench) == "off";
    if (journal_off)
      spdlog::warn("task {}: SCOPEFS_BENCH_JOURNAL=off: nothing is journaled", cfg.name);
    fs::ChangeGate& gate = journal_off ? static_cast<fs::ChangeGate&>(nogate) : jgate;
    // The overlay of held changes, as the journal left it.
    fs::StageLayer stage(cfg.state_dir + "/stage");
    if (auto r = journal->kv().scan("s/", "",
                                    [&](std::string_view k, std::string_view v) {
                                      stage.load_key(k, v);
                                      return true;
                                    });
        !r)
      throw std::runtime_error("cannot read the held changes from the journal");
    if (size_t n = stage.remove_orphans())
      spdlog::warn("task {}: removed {} upper cop(ies) of held changes a crash left unrecorded",
                   cfg.name, n);
    fs::ViewOptions vo;
    vo.stage = &stage;
    fs::View view(cfg, gate, vo);
    view.open();
    // Admin decisions while mounted: the control socket (SO_PEERCRED checked per request).
    if (auto r = control::share_state_dir(cfg.state_dir, cfg.admin_gid); !r)
      spdlog::warn("task {}: cannot open the state directory to the admin group: {}", cfg.name,
                   std::strerror(r.error()));
    control::Server control_server(cfg.state_dir + "/control.sock", cfg.admin_gid,
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
    register_view({cfg.name, cfg.file, cfg.state_dir, cfg.mountpoint, ::getpid(), jo.run});
    Notifier notifier(cfg, *journal);
    notifier.start();
    int r = session.loop();
    notifier.stop();  // no STATUS= after STOPPING=1
    ::sd_notify(0, "STOPPING=1\nSTATUS=unmounting");
    session.unmount();
    view.release_all();  // handles the kernel never released: their sessions end now
    unregister_view(cfg.state_dir);
    jgate.lifecycle("unmount", cfg.mountpoint);
    streamer.stop();
    spdlog::info("task {}: unmounted from {} (run {})", cfg.name, cfg.mountpoint, jo.run);
    state.remove_pid();
    // libfuse reports the signal that ended the loop: a requested stop is clean.
    // ECONNABORTED from /dev/fuse: the kernel ended the connection, which
    // recent kernels do when `fusermount3 -u` races requests in flight, and
    // fusectl's abort does on an admin's order. libfuse 3.14 treats only
    // ENODEV as the end of a mount; the view has ended the same way.
    if (r == -ECONNABORTED) {
      spdlog::warn("task {}: the kernel aborted the FUSE connection; the view has ended", cfg.name);
      r = 0;
    }
    bool clean = r == 0 || r == SIGTERM || r == SIGINT || r == SIGHUP;
    if (!clean) spdlog::error("task {}: session loop ended with {}", cfg.name, r);
    return clean ? kExitOk : kExitFailure;
  } catch (const std::exception& e) {
    spdlog::error("task {}: {}", cfg.name, e.what());
    report(ready_fd, std::string("error: ") + e.what());
    unregister_view(cfg.state_dir);
    state.remove_pid();
    return kExitFailure;
  }
}

void run_mount(const MountArgs& args) {
  if (!args.log_level.empty() && !set_log_level(args.log_level)) {
    std::cerr << "scopefs mount: --log-level " << args.log_level
              << ": not a level (trace, debug, info, warn, error, critical, off)\n";
    throw Exit{kExitUsage};
  }
  std::string file = config::resolve_task_arg(args.task);
  config::TaskConfig cfg;
  try {
    cfg = config::load_config(file);
  } catch (const config::ConfigError& e) {
    for (const auto& d : e.diagnostics()) std::cerr << d.str() << "\n";
    throw Exit{kExitUsage};
  }
  std::error_code ec;
  if (auto abs = std::filesystem::absolute(cfg.file, ec); !ec)
    cfg.file = abs.lexically_normal().string();
  if (!args.expect_mountpoint.empty()) {
    auto want = std::filesystem::weakly_canonical(args.expect_mountpoint, ec);
    auto have = std::filesystem::weakly_canonical(cfg.mountpoint, ec);
    if (want != have) {
      std::cerr << "scopefs mount: task '" << cfg.name << "' mounts at " << cfg.mountpoint
                << ", not at " << args.expect_mountpoint << "\n";
      throw Exit{kExitUsage};
    }
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
  // The mountpoint's missing parents get this process's umask (the daemon
  // runs with 0): a world-writable /run/scopefs would let anyone plant a
  // symlink where another task's view is to be mounted.
  std::filesystem::create_directories(cfg.mountpoint, ec);
  if (args.foreground) throw Exit{serve(cfg, state, args, -1)};

  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::close(pipefd[0]);
    ::setsid();
    int devnull = ::open("/dev/null", O_RDWR);
    int log =
        ::open(state.file("daemon.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
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
              << (msg.empty()
                      ? "the daemon exited before mounting (see " + state.file("daemon.log") + ")"
                      : msg)
              << "\n";
    throw Exit{kExitFailure};
  }
  std::cout << "mounted task '" << cfg.name << "' at " << cfg.mountpoint << " (pid " << pid
            << ")\n";
}

}  // namespace

void setup_mount(CLI::App& app) {
  auto args = std::make_shared<MountArgs>();
  auto* sub = app.add_subcommand("mount", "Mount a task's view (daemonizes once the view answers)");
  sub->add_option("task", args->task, "Config file, or task name (/etc/scopefs/tasks/NAME.toml)")
      ->required();
  sub->add_flag("-f,--foreground", args->foreground, "Stay in the foreground (systemd, tests)");
  sub->add_flag("--debug", args->debug, "Log every FUSE request (libfuse -d)");
  sub->add_option("--expect-mountpoint", args->expect_mountpoint,
                  "Refuse unless the config mounts at this directory (mount.fuse.scopefs)");
  sub->add_option(
      "--log-level", args->log_level,
      "trace, debug, info (default), warn, error, critical or off; also SCOPEFS_LOG_LEVEL");
  sub->add_option("--cache-timeout", args->timeout,
                  "Seconds the kernel may cache entries and attributes")
      ->check(CLI::Range(0.0, 3600.0));
  sub->callback([args] { run_mount(*args); });
}

}  // namespace scopefs::cli
