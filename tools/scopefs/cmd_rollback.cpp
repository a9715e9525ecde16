// scopefs rollback TASK [ID...] [--path GLOB]... [--run RUN] [--since T] [--to SEQ] [--all]
//                       [--dry-run] [--force] [--json]
// Undoes applied changes, newest first (journal/rollback.hpp). Through the
// running daemon's control socket; with no daemon, on the state directly
// under its lock. Exit 0: all selected undone (or planned); 1: conflicts,
// failures or unknown ids; 2: usage.
#include <spdlog/spdlog.h>

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

struct RollbackArgs {
  std::string task;
  std::vector<uint64_t> ids;
  std::vector<std::string> globs;
  std::string run;
  std::string since;
  int64_t to = -1;
  bool all = false;
  bool dry_run = false;
  bool force = false;
  bool json_out = false;
};

void run(const RollbackArgs& a) {
  config::TaskConfig cfg;
  try {
    cfg = config::load_config(config::resolve_task_arg(a.task));
  } catch (const config::ConfigError& e) {
    for (const auto& d : e.diagnostics()) std::cerr << d.str() << "\n";
    throw Exit{kExitUsage};
  }
  if (a.ids.empty() && a.globs.empty() && !a.all && a.run.empty() && a.since.empty() && a.to < 0) {
    std::cerr
        << "scopefs rollback: say what: IDs, --path GLOB, --run RUN, --since T, --to SEQ or --all\n";
    throw Exit{kExitUsage};
  }
  json req = {{"cmd", "rollback"}, {"ids", a.ids},     {"globs", a.globs},    {"run", a.run},
              {"all", a.all},      {"force", a.force}, {"dry_run", a.dry_run}};
  if (!a.since.empty()) {
    try {
      req["since_ns"] = parse_time_arg(a.since);
    } catch (const std::exception& e) {
      std::cerr << "scopefs rollback: " << e.what() << "\n";
      throw Exit{kExitUsage};
    }
  }
  if (a.to >= 0) req["to"] = static_cast<uint64_t>(a.to);
  json resp = admin_request("rollback", req, cfg, a.json_out);
  if (!a.json_out) {
    for (const auto& s : resp.value("plan", json::array())) {
      std::cout << "would undo " << s.value("seq", uint64_t{0}) << " (" << s.value("op", "")
                << "): " << s.value("path", "") << " becomes " << s.value("becomes", "");
      std::string blob = s.value("blob", "");
      if (!blob.empty()) std::cout << " from before-image " << blob;
      std::cout << "\n";
    }
    for (const auto& id : resp.value("done", json::array()))
      std::cout << "rolled back " << id << "\n";
    for (const auto& n : resp.value("notes", json::array()))
      std::cout << n.get<std::string>() << "\n";
  }
  for (const auto& c : resp.value("conflicts", json::array()))
    std::cerr << "conflict: change " << c[0] << ": " << c[1].get<std::string>() << "\n";
  for (const auto& c : resp.value("failed", json::array()))
    std::cerr << "failed: change " << c[0] << ": " << c[1].get<std::string>() << "\n";
  for (const auto& c : resp.value("unknown", json::array()))
    std::cerr << "change " << c[0] << " cannot be rolled back: " << c[1].get<std::string>() << "\n";
  if (!resp.value("ok", false)) throw Exit{kExitFailure};
}

}  // namespace

void setup_rollback(CLI::App& app) {
  auto a = std::make_shared<RollbackArgs>();
  auto* sub = app.add_subcommand("rollback",
                                 "Undo applied changes, newest first (root or the admin group)");
  sub->add_option("task", a->task, "Task config file or task name")->required();
  sub->add_option("ids", a->ids, "Ids of applied changes (see scopefs log); rollbacks too");
  sub->add_option("--path", a->globs, "Changes whose path matches this glob (repeatable)");
  sub->add_option("--run", a->run, "Changes of this run (the \"run\" of scopefs log --json)");
  sub->add_option("--since", a->since,
                  "Changes from this time on (ISO 8601, epoch seconds, 30m/2h/7d ago)");
  sub->add_option("--to", a->to, "Changes after this sequence number (back to the state at SEQ)")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--all", a->all, "Every applied change");
  sub->add_flag("--dry-run", a->dry_run, "Print the plan; change nothing");
  sub->add_flag(
      "--force", a->force,
      "Roll back even where the path changed since (what is replaced is kept as a before-image)");
  sub->add_flag("--json", a->json_out, "Print the outcome as JSON");
  sub->callback([a] { run(*a); });
}

}  // namespace scopefs::cli
