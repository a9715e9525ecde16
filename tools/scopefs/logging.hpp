// Logging of the daemon and the CLI: spdlog to stderr, one line per event.
//
// Under systemd, stderr is a stream to journald (systemd sets JOURNAL_STREAM to
// its device:inode). Each line then starts with its syslog priority, "<3>" for
// an error, "<4>" a warning, "<6>" info, "<7>" debug, which journald strips and
// keeps as the entry's PRIORITY (`journalctl -p warning -u scopefs@recon`), and
// carries no timestamp of its own (journald stamps every entry). Anywhere else a
// line is "2026-11-25T04:50:16.487 warning message".
//
// The level: `scopefs mount --log-level LEVEL`, else the environment's
// SCOPEFS_LOG_LEVEL, else SPDLOG_LEVEL, else info. Levels: trace, debug, info,
// warn, error, critical, off. Release builds compile debug and trace lines out
// (SPDLOG_ACTIVE_LEVEL, STYLE rule 25), so only Debug builds print them.
#pragma once

#include <string>

namespace scopefs::cli {

// Installs the stderr logger; call once, first thing in main().
void setup_logging();

// Sets the level by name; false (and nothing changed) for an unknown name.
bool set_log_level(const std::string& name);

// True when stderr is the journald stream systemd gave us.
bool logging_to_journald();

}  // namespace scopefs::cli
