// Subcommands of the scopefs CLI: each cmd_<sub>.cpp has setup_<sub>, which
// declares its options and registers run_<sub> as the callback (STYLE rule 30).
#pragma once

#include <CLI/CLI.hpp>

namespace scopefs::cli {

// Exit codes, the same for every subcommand.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;  // the operation failed
constexpr int kExitUsage = 2;    // bad arguments or an invalid config

// Thrown by run_* to leave with a code (after printing its own message).
struct Exit {
  int code;
};

void setup_check(CLI::App& app);
void setup_mount(CLI::App& app);
void setup_unmount(CLI::App& app);

}  // namespace scopefs::cli
