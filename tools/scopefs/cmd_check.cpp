// scopefs check CONFIG [--explain VIEW_PATH...] [--json]
// Exit 0: valid; 2: invalid (every problem printed, file:line:column).
#include <iostream>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "tools/scopefs/commands.hpp"

namespace scopefs::cli {
namespace {

struct CheckArgs {
  std::string task;
  std::vector<std::string> explain;
  bool json = false;
};

config::Access bind_default_for(const config::TaskConfig& cfg, const std::string& path,
                                bool& in_bind) {
  in_bind = false;
  size_t best = 0;
  config::Access a = config::Access::Read;
  for (const auto& b : cfg.binds) {
    bool inside = b.path.empty() || path == b.path ||
                  (path.size() > b.path.size() && path.compare(0, b.path.size(), b.path) == 0 &&
                   path[b.path.size()] == '/');
    if (inside && (!in_bind || b.path.size() >= best)) {
      in_bind = true;
      best = b.path.size();
      a = b.access;
    }
  }
  return a;
}

void run_check(const CheckArgs& args) {
  std::string file = config::resolve_task_arg(args.task);
  nlohmann::json out = {{"file", file}};
  try {
    auto cfg = config::load_config(file);
    out["ok"] = true;
    out["task"] = cfg.name;
    out["mountpoint"] = cfg.mountpoint;
    out["state_dir"] = cfg.state_dir;
    out["rules"] = cfg.policy.rules().size();
    out["retention_s"] = cfg.retention_s;
    out["binds"] = nlohmann::json::array();
    for (const auto& b : cfg.binds)
      out["binds"].push_back(
          {{"path", b.path}, {"source", b.source}, {"access", config::access_name(b.access)}});
    if (!args.json) {
      std::cout << file << ": ok: task '" << cfg.name << "', " << cfg.binds.size() << " bind(s), "
                << cfg.policy.rules().size() << " rule(s)\n";
      for (const auto& b : cfg.binds)
        std::cout << "  /" << b.path << " <- " << b.source << " (" << config::access_name(b.access)
                  << ")\n";
    }
    out["explain"] = nlohmann::json::array();
    for (const auto& p : args.explain) {
      std::string path = p;
      while (!path.empty() && path.front() == '/') path.erase(0, 1);
      bool in_bind = false;
      auto def = bind_default_for(cfg, path, in_bind);
      std::string level =
          in_bind ? std::string(config::access_name(cfg.policy.access(path, def))) : "";
      out["explain"].push_back(
          {{"path", p}, {"access", in_bind ? nlohmann::json(level) : nlohmann::json(nullptr)}});
      if (args.json) continue;
      if (!in_bind) std::cout << "  " << p << ": not inside any bind\n";
      else std::cout << "  " << p << ": " << level << "\n";
    }
    if (args.json) std::cout << out.dump(2) << "\n";
  } catch (const config::ConfigError& e) {
    if (args.json) {
      out["ok"] = false;
      out["diagnostics"] = nlohmann::json::array();
      for (const auto& d : e.diagnostics())
        out["diagnostics"].push_back(
            {{"file", d.file}, {"line", d.line}, {"column", d.column}, {"message", d.message}});
      std::cout << out.dump(2) << "\n";
    }
    for (const auto& d : e.diagnostics()) std::cerr << d.str() << "\n";
    throw Exit{kExitUsage};
  }
}

}  // namespace

void setup_check(CLI::App& app) {
  auto args = std::make_shared<CheckArgs>();
  auto* sub = app.add_subcommand("check", "Validate a task config; errors name file:line:column");
  sub->add_option("task", args->task, "Config file, or task name (/etc/scopefs/tasks/NAME.toml)")
      ->required();
  sub->add_option("--explain", args->explain, "Print the access level of these view paths");
  sub->add_flag("--json", args->json,
                "One JSON object (also for an invalid config: its diagnostics)");
  sub->callback([args] { run_check(*args); });
}

}  // namespace scopefs::cli
