// Subcommands of the scopefs CLI: each cmd_<sub>.cpp has setup_<sub>, which
// declares its options and registers run_<sub> as the callback (STYLE rule 30).
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace scopefs::cli {

// Exit codes, the same for every subcommand (scopefs(1) EXIT STATUS,
// docs/operations.md): 0 done; 1 the operation failed, was refused, or left
// conflicts; 2 bad arguments or an invalid config.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// Thrown by run_* to leave with a code (after printing its own message).
struct Exit {
  int code;
};

void setup_check(CLI::App& app);
void setup_mount(CLI::App& app);
void setup_unmount(CLI::App& app);
void setup_log(CLI::App& app);
void setup_status(CLI::App& app);

// A config file, task name or state directory → the state directory.
std::string state_dir_of(const std::string& arg);
// --since/--until values → ns since the epoch.
int64_t parse_time_arg(const std::string& s);
// ns since the epoch → 2026-11-25T04:50:16.487Z
std::string fmt_time(int64_t ns);

void setup_pending(CLI::App& app);
void setup_diff(CLI::App& app);
void setup_decide(CLI::App& app);  // approve and reject
void setup_rollback(CLI::App& app);
void setup_gc(CLI::App& app);
void setup_verify(CLI::App& app);
void setup_key(CLI::App& app);
void setup_export(CLI::App& app);
void setup_stats(CLI::App& app);
void setup_init(CLI::App& app);
// `scopefs completion bash`: a bash completion script generated, when run, from
// the parser itself, so every registered subcommand and option is in it.
void setup_completion(CLI::App& app);

}  // namespace scopefs::cli
