// The task config (TOML): one view, its binds and rules.
//
//   [task]   name, mountpoint, state_dir, agent_user (optional)
//   [[bind]] path (in the view, "" = root), source (a real directory), access
//   [[rule]] match (glob on the view path), access
//
// load_config() never returns a half-valid config: it collects every problem
// it finds, each with file, line and column, and throws ConfigError.
#pragma once

#include <sys/types.h>

#include <optional>
#include <stdexcept>
#include <string>
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

struct TaskConfig {
  std::string file;  // the config file this came from
  std::string name;
  std::string mountpoint;
  std::string state_dir;
  std::optional<std::string> agent_user;
  std::optional<uid_t> agent_uid;
  std::vector<BindConfig> binds;
  Policy policy;
};

// Parses and validates; throws ConfigError (with every problem) on failure.
TaskConfig load_config(const std::string& path);
TaskConfig parse_config(const std::string& text, const std::string& file_name,
                        const std::string& base_dir);

// A task argument is a config file path, or a task name resolving to
// /etc/scopefs/tasks/NAME.toml.
std::string resolve_task_arg(const std::string& arg);

}  // namespace scopefs::config
