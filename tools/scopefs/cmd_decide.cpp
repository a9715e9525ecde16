// scopefs approve TASK [ID...] [--path GLOB]... [--all] [--force] [--with-deps] [--json]
// scopefs reject  TASK [ID...] [--path GLOB]... [--all] [--with-deps] [--json]
// Through the running daemon's control socket; with no daemon, on the state
// directly under its lock. docs/approvals.md.
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

struct DecideArgs {
  std::string task;
  std::vector<uint64_t> ids;
  std::vector<std::string> globs;
  bool all = false;
  bool force = false;
  bool with_deps = false;
  bool json_out = false;
};

void run(const DecideArgs& a, const std::string& cmd) {
  config::TaskConfig cfg;
  try {
    cfg = config::load_config(config::resolve_task_arg(a.task));
  } catch (const config::ConfigError& e) {
    for (const auto& d : e.diagnostics()) std::cerr << d.str() << "\n";
    throw Exit{kExitUsage};
  }
  if (a.ids.empty() && a.globs.empty() && !a.all) {
    std::cerr << "scopefs " << cmd << ": say what: IDs, --path GLOB or --all\n";
    throw Exit{kExitUsage};
  }
  json req = {{"cmd", cmd},   {"ids", a.ids},     {"globs", a.globs},
              {"all", a.all}, {"force", a.force}, {"with_deps", a.with_deps}};
  json resp = admin_request(cmd, req, cfg, a.json_out);
  const char* verb = cmd == "approve" ? "approved" : "rejected";
  if (!a.json_out) {
    for (const auto& id : resp.value("done", json::array())) std::cout << verb << " " << id << "\n";
    for (const auto& n : resp.value("notes", json::array()))
      std::cout << n.get<std::string>() << "\n";
  }
  for (const auto& c : resp.value("conflicts", json::array()))
    std::cerr << "conflict: change " << c[0] << ": " << c[1].get<std::string>() << "\n";
  for (const auto& c : resp.value("failed", json::array()))
    std::cerr << "failed: change " << c[0] << ": " << c[1].get<std::string>() << "\n";
  for (const auto& id : resp.value("unknown", json::array()))
    std::cerr << "no held change has id " << id << "\n";
  auto missing = resp.value("missing", json::array());
  if (!missing.empty()) {
    std::cerr << "refused: the selection depends on held changes it does not include:";
    for (const auto& id : missing) std::cerr << " " << id;
    std::cerr << "\n(select them too, or add --with-deps)\n";
  }
  if (!resp.value("ok", false)) throw Exit{kExitFailure};
}

void setup_one(CLI::App& app, const std::string& cmd, const std::string& help) {
  auto a = std::make_shared<DecideArgs>();
  auto* sub = app.add_subcommand(cmd, help);
  sub->add_option("task", a->task, "Task config file or task name")->required();
  sub->add_option("ids", a->ids, "Ids of held changes (see scopefs pending)");
  sub->add_option("--path", a->globs, "Held changes whose path matches this glob (repeatable)");
  sub->add_flag("--all", a->all, "Every held change");
  if (cmd == "approve")
    sub->add_flag("--force", a->force,
                  "Apply even where the real tree changed meanwhile (journaled)");
  sub->add_flag("--with-deps", a->with_deps,
                cmd == "approve"
                    ? "Also approve the earlier held changes the selection builds on"
                    : "Also reject the later held changes that build on the selection");
  sub->add_flag("--json", a->json_out, "Print the outcome as JSON");
  sub->callback([a, cmd] { run(*a, cmd); });
}

}  // namespace

void setup_decide(CLI::App& app) {
  setup_one(app, "approve", "Apply held changes to the real tree (root or the admin group)");
  setup_one(app, "reject", "Drop held changes from the view (root or the admin group)");
}

}  // namespace scopefs::cli
