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

void run(const GcArgs& a) {
  config::TaskConfig cfg;
  try {
    cfg = config::load_config(config::resolve_task_arg(a.task));
  } catch (const config::ConfigError& e) {
    for (const auto& d : e.diagnostics()) std::cerr << d.str() << "\n";
    throw Exit{kExitUsage};
  }
  json req = {{"cmd", "gc"}, {"dry_run", a.dry_run}};
  json resp = admin_request("gc", req, cfg, a.json_out);
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
      "gc",
      "Remove before-images older than the task's retention window (root or the admin group)");
  sub->add_option("task", a->task, "Task config file or task name")->required();
  sub->add_flag("--dry-run", a->dry_run, "Report what would be removed; change nothing");
  sub->add_flag("--json", a->json_out, "Print the outcome as JSON");
  sub->callback([a] { run(*a); });
}

}  // namespace scopefs::cli
