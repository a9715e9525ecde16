// scopefs: the admin CLI and the daemon (`scopefs mount`). Thin: every
// subcommand lives in cmd_<sub>.cpp over the core library.
#include <cstdio>
#include <exception>
#include <iostream>

#include "tools/scopefs/commands.hpp"
#include "tools/scopefs/logging.hpp"

namespace {

int run_cli(int argc, char** argv) {
  using namespace scopefs::cli;
  setup_logging();
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
  setup_init(app);
  setup_completion(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  } catch (const Exit& e) {
    return e.code;
  } catch (const std::exception& e) {
    std::cerr << "scopefs: " << e.what() << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

// Nothing escapes main(): an exception from setting up the logger or the
// command line (or from a handler above) is reported, not a terminate().
int main(int argc, char** argv) {
  try {
    return run_cli(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scopefs: %s\n", e.what());
  } catch (...) {
    std::fputs("scopefs: unknown internal error\n", stderr);
  }
  return scopefs::cli::kExitFailure;
}
