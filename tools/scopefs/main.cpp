// scopefs: the admin CLI and the daemon (`scopefs mount`). Thin: every
// subcommand lives in cmd_<sub>.cpp over the core library.
#include <spdlog/cfg/env.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <iostream>

#include "tools/scopefs/commands.hpp"

int main(int argc, char** argv) {
  using namespace scopefs::cli;
  spdlog::set_default_logger(spdlog::stderr_color_mt("scopefs"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::cfg::load_env_levels();  // SPDLOG_LEVEL=debug|info|warn|error
  CLI::App app{"scopefs: scoped, policy-filtered, journaled views of real directories"};
  app.set_version_flag("--version", std::string("scopefs ") + SCOPEFS_VERSION);
  app.require_subcommand(1);
  setup_check(app);
  setup_mount(app);
  setup_unmount(app);
  setup_log(app);
  setup_status(app);
  setup_pending(app);
  setup_diff(app);
  setup_decide(app);
  setup_rollback(app);
  setup_gc(app);
  setup_verify(app);
  setup_key(app);
  setup_export(app);
  setup_stats(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  } catch (const Exit& e) {
    return e.code;
  }
  return kExitOk;
}
