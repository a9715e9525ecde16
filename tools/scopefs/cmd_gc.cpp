// scopefs gc TASK [--dry-run] [--json]
// Collects before-images past the task's retention window (journal/gc.hpp).
// Through the running daemon's control socket; with no daemon, on the state
// directly under its lock. Exit 0: done; 1: refused or failed; 2: usage.
#include <cstring>
#include <iostream>
#include <memory>

#include "config/config.hpp"
#include "journal/control.hpp"
#include "journal/journal.hpp"
#include "journal/state_dir.hpp"
#include "tools/scopefs/commands.hpp"
#include "tools/scopefs/decide_service.hpp"

namespace scopefs::cli {
namespace {

using nlohmann::json;

struct GcArgs {
  std::string task;
  bool dry_run = false;
  bool json_out = false;
};

json offline(const json& req, const config::TaskConfig& cfg) {
  control::Peer me = control::self_peer();
  if (auto why = control::refuse_reason(me, cfg.agent_uid, cfg.admin_gid))
    return {{"ok", false}, {"refused", true}, {"error", *why}};
  journal::StateDir state(cfg.state_dir);
  if (!state.try_lock())
    return {{"ok", false},
            {"error", "the task's state is in use (a daemon starting or stopping, or another "
                      "admin command); try again"}};
  journal::JournalOptions jo;
  jo.task = cfg.name;
  jo.run = "admin";
  auto j = journal::Journal::open(cfg.state_dir, jo);
  // gc does not use the overlay; run_decision wants one.
  fs::StageLayer stage(cfg.state_dir + "/stage");
  return run_decision(req, me, cfg, *j, stage, nullptr);
}

void run(const GcArgs& a) {
  config::TaskConfig cfg;
  try {
    cfg = config::load_config(config::resolve_task_arg(a.task));
  } catch (const config::ConfigError& e) {
    for (const auto& d : e.diagnostics()) std::cerr << d.str() << "\n";
    throw Exit{kExitUsage};
  }
  json req = {{"cmd", "gc"}, {"dry_run", a.dry_run}};
  json resp;
  auto r = control::call(cfg.state_dir + "/control.sock", req, 10 * 60 * 1000);
  if (r) {
    resp = *r;
  } else if (r.error() == ENOENT || r.error() == ECONNREFUSED) {
    try {
      resp = offline(req, cfg);
    } catch (const std::exception& e) {
      std::cerr << "scopefs gc: " << e.what() << "\n";
      throw Exit{kExitFailure};
    }
  } else if (r.error() == EACCES) {
    std::cerr << "scopefs gc: refused: cannot reach the control socket of task " << cfg.name
              << " (only root and the admin group may collect)\n";
    throw Exit{kExitFailure};
  } else {
    std::cerr << "scopefs gc: cannot reach the daemon: " << std::strerror(r.error()) << "\n";
    throw Exit{kExitFailure};
  }
  if (a.json_out) std::cout << resp.dump(2) << "\n";
  if (resp.contains("error")) {
    std::cerr << "scopefs gc: " << resp["error"].get<std::string>() << "\n";
    throw Exit{kExitFailure};
  }
  if (!a.json_out) {
    std::cout << (resp.value("dry_run", false) ? "would have " : "") << resp.value("summary", "")
              << " (retention " << resp.value("retention_s", int64_t{0}) << " s, before "
              << fmt_time(resp.value("cutoff_ns", int64_t{0})) << ")\n";
    if (resp.value("seq", uint64_t{0}) != 0)
      std::cout << "journaled as record " << resp.value("seq", uint64_t{0}) << "\n";
  }
  if (!resp.value("ok", false)) throw Exit{kExitFailure};
}

}  // namespace

void setup_gc(CLI::App& app) {
  auto a = std::make_shared<GcArgs>();
  auto* sub = app.add_subcommand(
      "gc", "Remove before-images older than the task's retention window (root or the admin group)");
  sub->add_option("task", a->task, "Task config file or task name")->required();
  sub->add_flag("--dry-run", a->dry_run, "Report what would be removed; change nothing");
  sub->add_flag("--json", a->json_out, "Print the outcome as JSON");
  sub->callback([a] { run(*a); });
}

}  // namespace scopefs::cli
