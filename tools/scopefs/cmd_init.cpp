// scopefs init TASK [VIEW=]SOURCE... [--output FILE] [--force] [--mountpoint DIR]
//                   [--state-dir DIR] [--agent-user USER] [--admin-group GROUP]
//
// Writes a commented task config with safe defaults: every bind "stage" (a dry
// run: the agent's changes wait for an admin), secrets hidden, before-images
// kept 7 days. The text is validated exactly as `scopefs check` would before it
// is put in place (temp file + rename), so what init writes always checks.
// Default output: /etc/scopefs/tasks/TASK.toml ("-": standard output).
// Exit 0: written; 1: the file exists (without --force) or cannot be written;
// 2: bad arguments, or sources that do not make a valid config.
#include <grp.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "config/config.hpp"
#include "tools/scopefs/commands.hpp"

namespace scopefs::cli {
namespace {

namespace stdfs = std::filesystem;

struct InitArgs {
  std::string task;
  std::vector<std::string> sources;
  std::string output;
  bool force = false;
  std::string mountpoint;
  std::string state_dir;
  std::string agent_user;
  std::string admin_group;
};

constexpr const char* kDefaultAdminGroup = "scopefs-admin";

// A TOML basic string.
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

struct Bind {
  std::string path, source;
};

// "SOURCE" (shown at its base name) or "VIEW=SOURCE".
std::vector<Bind> parse_binds(const std::vector<std::string>& args) {
  std::vector<Bind> out;
  std::set<std::string> seen;
  for (const auto& a : args) {
    Bind b;
    auto eq = a.find('=');
    std::string src = eq == std::string::npos ? a : a.substr(eq + 1);
    std::error_code ec;
    stdfs::path abs = stdfs::absolute(src, ec).lexically_normal();
    b.source = abs.string();
    if (b.source.size() > 1 && b.source.back() == '/') b.source.pop_back();
    if (eq != std::string::npos) {
      b.path = a.substr(0, eq);
    } else {
      b.path = stdfs::path(b.source).filename().string();
      if (b.path.empty()) b.path = "root";
    }
    if (!seen.insert(b.path).second) {
      std::cerr << "scopefs init: two sources would appear at /" << b.path
                << " in the view; name one: VIEW=SOURCE\n";
      throw Exit{kExitUsage};
    }
    out.push_back(std::move(b));
  }
  return out;
}

std::string today() {
  time_t t = ::time(nullptr);
  struct tm tm {};
  ::gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

std::string render(const InitArgs& a, const std::vector<Bind>& binds) {
  const std::string& n = a.task;
  std::string mp =
      a.mountpoint.empty() ? "/run/scopefs/" + n : stdfs::absolute(a.mountpoint).string();
  std::string sd =
      a.state_dir.empty() ? "/var/lib/scopefs/" + n : stdfs::absolute(a.state_dir).string();
  std::string group = a.admin_group.empty() ? kDefaultAdminGroup : a.admin_group;
  bool group_known = ::getgrnam(group.c_str()) != nullptr;
  std::ostringstream o;
  o << "# scopefs task \"" << n << "\", written by `scopefs init` on " << today() << ".\n"
    << "#\n"
    << "# Safe defaults: every bind is \"stage\", a dry run (the agent's changes are\n"
    << "# held, the real directories untouched, until an admin approves them);\n"
    << "# secrets are hidden; before-images are kept 7 days for rollback. Then:\n"
    << "#\n"
    << "#   scopefs check " << n << "                 # validate (also: --explain PATH)\n"
    << "#   systemctl start scopefs@" << n << "       # mount the view (or: scopefs mount " << n
    << ")\n"
    << "#   scopefs pending " << n << "               # review what the agent did\n"
    << "#   scopefs approve " << n << " --all         # apply it (or: reject, diff, rollback)\n"
    << "#\n"
    << "# Every key: scopefs.toml(5); a worked example of the rules:\n"
    << "# /usr/share/doc/scopefs/examples/annotated.toml.\n"
    << "\n"
    << "[task]\n"
    << "name = " << quoted(n) << "\n"
    << "# Where the agent works: the view.\n"
    << "mountpoint = " << quoted(mp) << "\n"
    << "# The journal, held changes and before-images (created 0700). Back it up.\n"
    << "state_dir = " << quoted(sd) << "\n"
    << "# How long before-images are kept for `scopefs rollback` (`scopefs gc`,\n"
    << "# the scopefs-gc@" << n << ".timer, removes older ones): s, m, h or d.\n"
    << "retention = \"7d\"\n"
    << "# The user the agent runs as: it may never approve its own changes.\n";
  if (a.agent_user.empty()) o << "# agent_user = \"svc-" << n << "\"\n";
  else o << "agent_user = " << quoted(a.agent_user) << "\n";
  o << "# Who may approve, reject and roll back, besides root.\n";
  if (group_known || !a.admin_group.empty()) o << "admin_group = " << quoted(group) << "\n";
  else
    o << "# admin_group = " << quoted(group) << "   # the group does not exist on this host yet\n";
  o << "\n"
    << "# What the agent sees. access: hide | read | stage | write.\n"
    << "#   read   inputs the agent must not change (changes refused, EROFS)\n"
    << "#   stage  changes held for approval (the default)\n"
    << "#   write  changes applied at once, before-images kept for rollback\n";
  for (const auto& b : binds)
    o << "\n[[bind]]\n"
      << "path = " << quoted(b.path) << "\n"
      << "source = " << quoted(b.source) << "\n"
      << "access = \"stage\"\n";
  o << "\n"
    << "# Secrets: hidden wherever they are, whatever a bind or rule allows (a hide\n"
    << "# rule always wins). Below a hidden directory everything is hidden.\n";
  for (const char* g : {"**/*.pem", "**/*.key", "**/*.p12", "**/*.pfx", "**/*.kdbx", "**/.env",
                        "**/.env.*", "**/id_*", "**/.ssh", "**/.gnupg", "**/.aws", "**/.netrc",
                        "**/.pgpass", "**/.git-credentials"})
    o << "\n[[rule]]\nmatch = " << quoted(g) << "\naccess = \"hide\"\n";
  o << "\n"
    << "# More rules: the deepest, most literal match wins. For example, inputs:\n"
    << "# [[rule]]\n"
    << "# match = \"" << (binds.empty() ? "data" : binds.front().path) << "/**/*.csv\"\n"
    << "# access = \"read\"\n"
    << "\n"
    << "# Once the pilot trusts the agent, a bind may become \"write\" with the\n"
    << "# destructive operations still held for a person:\n"
    << "# [approval]\n"
    << "# hold = [\"unlink\", \"rmdir\", \"rename\", \"chmod\", \"chown\"]\n"
    << "# max_deletes = 20\n";
  return o.str();
}

void run_init(const InitArgs& a) {
  auto binds = parse_binds(a.sources);
  std::string text = render(a, binds);
  bool to_stdout = a.output == "-";
  std::string out = a.output.empty() ? config::resolve_task_arg(a.task) : a.output;
  if (!a.output.empty() && !to_stdout) out = stdfs::absolute(out).string();
  std::error_code ec;
  if (!to_stdout && stdfs::exists(out, ec) && !a.force) {
    std::cerr << "scopefs init: " << out << " exists (--force replaces it)\n";
    throw Exit{kExitFailure};
  }
  // Validate what we are about to write, exactly as `scopefs check` reads it.
  std::string dir =
      to_stdout ? stdfs::current_path().string() : stdfs::path(out).parent_path().string();
  try {
    config::parse_config(text, to_stdout ? "<stdout>" : out, dir);
  } catch (const config::ConfigError& e) {
    for (const auto& d : e.diagnostics()) std::cerr << d.str() << "\n";
    std::cerr << "scopefs init: no config written\n";
    throw Exit{kExitUsage};
  }
  if (to_stdout) {
    std::cout << text;
    return;
  }
  stdfs::create_directories(dir, ec);
  std::string tmp = out + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << text;
    f.flush();
    if (!f) {
      std::cerr << "scopefs init: cannot write " << tmp << "\n";
      stdfs::remove(tmp, ec);
      throw Exit{kExitFailure};
    }
  }
  stdfs::permissions(tmp,
                     stdfs::perms::owner_read | stdfs::perms::owner_write |
                         stdfs::perms::group_read | stdfs::perms::others_read,
                     ec);
  stdfs::rename(tmp, out, ec);
  if (ec) {
    std::cerr << "scopefs init: cannot write " << out << ": " << ec.message() << "\n";
    stdfs::remove(tmp, ec);
    throw Exit{kExitFailure};
  }
  std::cout << "wrote " << out << "\n";
}

}  // namespace

void setup_init(CLI::App& app) {
  auto a = std::make_shared<InitArgs>();
  auto* sub = app.add_subcommand(
      "init",
      "Write a commented task config with safe defaults (stage, secrets hidden, 7-day retention)");
  sub->add_option("task", a->task, "The task's name ([A-Za-z0-9_.-]+)")->required();
  sub->add_option("sources", a->sources,
                  "Directories the agent works on: SOURCE (shown at its name) or VIEW=SOURCE")
      ->required();
  sub->add_option(
      "-o,--output", a->output,
      "Where to write it (default /etc/scopefs/tasks/TASK.toml; - for standard output)");
  sub->add_flag("--force", a->force, "Replace an existing file");
  sub->add_option("--mountpoint", a->mountpoint,
                  "The view's mountpoint (default /run/scopefs/TASK)");
  sub->add_option("--state-dir", a->state_dir, "The task's state (default /var/lib/scopefs/TASK)");
  sub->add_option("--agent-user", a->agent_user, "The user the agent runs as");
  sub->add_option("--admin-group", a->admin_group,
                  "Who may approve besides root (default scopefs-admin, if it exists)");
  sub->callback([a] { run_init(*a); });
}

}  // namespace scopefs::cli
