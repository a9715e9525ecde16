// Approve/reject requests, shared by the daemon (control socket) and the CLI
// (no daemon: the state opened directly under its lock). The request is the
// control protocol's JSON: {"cmd": "approve"|"reject", "ids": [..],
// "globs": [..], "all": bool, "force": bool, "with_deps": bool}; also
// "rollback" (cmd_rollback.cpp) and "gc" ({"cmd": "gc", "dry_run": bool},
// cmd_gc.cpp), with the same authorization.
#pragma once

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "fs/stage.hpp"
#include "fs/view.hpp"
#include "journal/control.hpp"
#include "journal/journal.hpp"

namespace scopefs::cli {

// Checks the peer's authority, decides, refreshes the view (if mounted) and
// answers {"ok": bool, "refused"?: bool, "error"?: str, "done": [...],
// "conflicts": [[id, text]...], "failed": [...], "missing": [...], "unknown": [...],
// "notes": [...]}.
nlohmann::json run_decision(const nlohmann::json& req, const control::Peer& peer,
                            const config::TaskConfig& cfg, journal::Journal& j,
                            fs::StageLayer& stage, fs::View* view);

// The CLI side of an admin command: through the running daemon's control
// socket, else (no daemon) on the state directly under its lock. Prints the
// answer as JSON if asked; prints an error and throws Exit on failure.
nlohmann::json admin_request(const std::string& cmd, const nlohmann::json& req,
                             const config::TaskConfig& cfg, bool json_out);

}  // namespace scopefs::cli
