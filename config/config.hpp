// The task config (TOML): one view, its binds and rules.
//
//   [task]     name, mountpoint, state_dir, agent_user (optional),
//              admin_group (optional)
//   [[bind]]   path (in the view, "" = root), source (a real directory),
//              access (optional, default "stage": held changes)
//   [[rule]]   match (glob on the view path), access
//   [approval] hold (journal op names held even under "write"),
//              max_deletes (optional) -- the whole table is optional
//
// load_config() never returns a half-valid config: it collects every problem
// it finds, each with file, line and column, and throws ConfigError.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "config/policy.hpp"

namespace scopefs::config {

struct Diagnostic {
  std::string file;
  unsigned line = 0;
  unsigned column = 0;
  std::string message;
  std::string str() const;
};

class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<Diagnostic> diags);
  const std::vector<Diagnostic>& diagnostics() const { return diags_; }

 private:
  std::vector<Diagnostic> diags_;
};

struct BindConfig {
  std::string path;    // view path, normalised, no leading '/'; "" = root
  std::string source;  // canonical absolute path of the real directory
  Access access = Access::Stage;
};

// The operation names `[approval] hold` accepts: the journal's op names
// (fs::op_name), spelled out here because config is below fs.
inline constexpr std::array<std::string_view, 17> kHoldableOps = {
    "create", "mknod",     "mkdir",           "symlink",  "link",       "unlink",
    "rmdir",  "rename",    "chmod",           "chown",    "truncate",   "utimens",
    "write",  "fallocate", "copy_file_range", "setxattr", "removexattr"};

// [approval]: which changes are held for an admin even where the level is
// `write`. Empty (the default) holds nothing beyond `stage` paths.
struct ApprovalConfig {
  std::vector<std::string> hold;  // op names from kHoldableOps, as written (duplicates kept)
  // After this many deletes (unlink + rmdir) in one run, further deletes are
  // held. nullopt: no limit.
  std::optional<uint64_t> max_deletes;
  bool holds(std::string_view op) const;
};

// [audit]: where the live audit stream goes (docs/audit-schema.md). Every
// sink is optional; none configured means the journal alone.
struct AuditConfig {
  std::optional<std::string> file;   // JSON lines appended to this file
  std::string file_fsync = "batch";  // always (each line) | batch (each delivery) | never
  // RFC 5424 over a Unix datagram socket ("/dev/log") or UDP ("udp:HOST:PORT")
  std::optional<std::string> syslog;
  std::string syslog_facility = "auth";  // auth, authpriv, daemon, user, local0..local7
  bool journald = false;                 // sd_journal_send with structured fields
  bool include_intents = false;          // also stream write-ahead intents
  bool any() const { return file || syslog || journald; }
};

struct TaskConfig {
  std::string file;  // the config file this came from
  std::string name;
  std::string mountpoint;
  std::string state_dir;
  std::optional<std::string> agent_user;
  std::optional<uid_t> agent_uid;
  std::optional<std::string> admin_group;  // [task] admin_group, as written
  std::optional<gid_t> admin_gid;          // resolved with getgrnam_r at load time
  // [task] retention: how long before-images are kept for rollback (`scopefs
  // gc` collects older ones); "90s", "30m", "12h", "7d". Default 7 days.
  int64_t retention_s = 7 * 86400;
  std::vector<BindConfig> binds;
  Policy policy;
  ApprovalConfig approval;
  AuditConfig audit;
};

// Parses and validates; throws ConfigError (with every problem) on failure.
TaskConfig load_config(const std::string& path);
TaskConfig parse_config(const std::string& text, const std::string& file_name,
                        const std::string& base_dir);

// A task argument is a config file path, or a task name resolving to
// /etc/scopefs/tasks/NAME.toml.
std::string resolve_task_arg(const std::string& arg);

}  // namespace scopefs::config
