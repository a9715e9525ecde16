#include "config/config.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

namespace scopefs::config {
namespace {

namespace stdfs = std::filesystem;

constexpr const char* kTasksDir = "/etc/scopefs/tasks";

class Checker {
 public:
  explicit Checker(std::string file) : file_(std::move(file)) {}

  void error(const toml::source_region& where, std::string msg) {
    diags_.push_back(Diagnostic{file_, where.begin.line, where.begin.column, std::move(msg)});
  }
  void error_at(unsigned line, unsigned col, std::string msg) {
    diags_.push_back(Diagnostic{file_, line, col, std::move(msg)});
  }
  bool failed() const { return !diags_.empty(); }
  std::vector<Diagnostic> take() { return std::move(diags_); }

  // Reports keys of `t` outside `allowed`.
  void only_keys(const toml::table& t, std::initializer_list<std::string_view> allowed,
                 std::string_view where) {
    for (auto&& [k, v] : t) {
      bool known = false;
      for (auto a : allowed) known = known || k.str() == a;
      if (known) continue;
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      error(k.source(), "unknown key '" + std::string(k.str()) + "' in " + std::string(where) +
                            " (expected one of: " + list + ")");
    }
  }

  // A required or optional string value.
  std::optional<std::string> string_key(const toml::table& t, std::string_view key,
                                        const toml::source_region& table_src, bool required,
                                        std::string_view where) {
    const toml::node* n = t.get(key);
    if (!n) {
      if (required)
        error(table_src, "missing key '" + std::string(key) + "' in " + std::string(where));
      return std::nullopt;
    }
    if (!n->is_string()) {
      error(n->source(), "'" + std::string(key) + "' must be a string");
      return std::nullopt;
    }
    return n->value<std::string>();
  }

 private:
  std::string file_;
  std::vector<Diagnostic> diags_;
};

bool is_inside_or_equal(const std::string& child, const std::string& parent) {
  if (parent == "/") return true;
  return child == parent ||
         (child.size() > parent.size() && child.compare(0, parent.size(), parent) == 0 &&
          child[parent.size()] == '/');
}

// Lexically normalises an absolute path and resolves symlinks of the part that exists.
std::string canonical_lenient(const std::string& p) {
  std::error_code ec;
  auto c = stdfs::weakly_canonical(stdfs::path(p), ec);
  if (ec) return stdfs::path(p).lexically_normal().string();
  std::string s = c.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

std::string absolute_from(const std::string& p, const std::string& base_dir) {
  if (!p.empty() && p.front() == '/') return p;
  return (stdfs::path(base_dir) / p).string();
}

// Column of a string value's content: TOML++ points at the opening quote.
unsigned value_column(const toml::node& n) { return n.source().begin.column + 1; }

// "90s", "30m", "12h", "7d" → seconds; nullopt for anything else (zero,
// signs, spaces, fractions, a missing or unknown unit, overflow).
std::optional<int64_t> parse_retention(const std::string& s) {
  if (s.size() < 2) return std::nullopt;
  const char unit = s.back();
  const int64_t mult = unit == 's'   ? 1
                       : unit == 'm' ? 60
                       : unit == 'h' ? 3600
                       : unit == 'd' ? 86400
                                     : 0;
  if (mult == 0) return std::nullopt;
  std::string_view num(s.data(), s.size() - 1);
  if (num.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  int64_t n = 0;
  auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), n);
  if (ec != std::errc() || ptr != num.data() + num.size() || n <= 0 ||
      n > std::numeric_limits<int64_t>::max() / mult / 1000000000)
    return std::nullopt;
  return n * mult;
}

size_t utf8_len(unsigned char c) {
  return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
}

// Column (in characters, as TOML++ counts) of byte `pos` of a string value's
// *decoded* content, walking the source text so that escapes and non-ASCII
// characters are counted as written.
unsigned content_column(const std::string& text, const toml::node& n, size_t pos) {
  const unsigned line_no = n.source().begin.line, col0 = n.source().begin.column;
  const unsigned fallback = value_column(n) + static_cast<unsigned>(pos);
  size_t at = 0;
  for (unsigned l = 1; l < line_no; ++l) {
    at = text.find('\n', at);
    if (at == std::string::npos) return fallback;
    ++at;
  }
  size_t end = text.find('\n', at);
  std::string_view line(text.data() + at, (end == std::string::npos ? text.size() : end) - at);
  size_t i = 0;
  for (unsigned c = 1; c < col0 && i < line.size(); ++c)
    i += utf8_len(static_cast<unsigned char>(line[i]));
  if (i >= line.size()) return fallback;
  const char quote = line[i];
  if ((quote != '"' && quote != '\'') || line.substr(i, 3) == R"(""")" ||
      line.substr(i, 3) == "'''")
    return fallback;
  ++i;
  unsigned col = col0 + 1;
  size_t decoded = 0;
  while (decoded < pos && i < line.size()) {
    if (quote == '"' && line[i] == '\\' && i + 1 < line.size()) {
      const char e = line[i + 1];
      size_t src = 2, out = 1;
      if (e == 'u' || e == 'U') {
        src = e == 'u' ? 6 : 10;
        unsigned long cp =
            std::strtoul(std::string(line.substr(i + 2, src - 2)).c_str(), nullptr, 16);
        out = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
      }
      i += src;
      col += static_cast<unsigned>(src);
      decoded += out;
    } else {
      const size_t k = utf8_len(static_cast<unsigned char>(line[i]));
      i += k;
      decoded += k;
      ++col;
    }
  }
  return col;
}

// The gid of group `name`, or nullopt (errno-style code in `err`: 0 when the
// group does not exist, else what getgrnam_r failed with).
std::optional<gid_t> lookup_group(const std::string& name, int& err) {
  const long hint = ::sysconf(_SC_GETGR_R_SIZE_MAX);
  std::vector<char> buf(hint > 0 ? static_cast<size_t>(hint) : 1024);
  for (;;) {
    struct group gr {};
    struct group* found = nullptr;
    const int rc = ::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found);
    if (rc == EINTR) continue;
    if (rc == ERANGE && buf.size() < (size_t{1} << 24)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    // glibc reports "no such group" as 0 + NULL; other libcs use ENOENT,
    // ESRCH, EBADF or EPERM for it.
    err = (rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM) ? 0 : rc;
    if (rc == 0 && found) return found->gr_gid;
    return std::nullopt;
  }
}

constexpr std::string_view kAccessChoices = "hide, read, stage, write";

std::string holdable_ops_list() {
  std::string list;
  for (auto op : kHoldableOps) list += (list.empty() ? "" : ", ") + std::string(op);
  return list;
}

}  // namespace

bool ApprovalConfig::holds(std::string_view op) const {
  return std::find(hold.begin(), hold.end(), op) != hold.end();
}

std::string Diagnostic::str() const {
  std::ostringstream o;
  o << file << ":" << line << ":" << column << ": " << message;
  return o.str();
}

ConfigError::ConfigError(std::vector<Diagnostic> diags)
    : std::runtime_error([&] {
        std::string s;
        for (auto& d : diags) s += (s.empty() ? "" : "\n") + d.str();
        return s;
      }()),
      diags_(std::move(diags)) {}

TaskConfig parse_config(const std::string& text, const std::string& file_name,
                        const std::string& base_dir) {
  Checker ck(file_name);
  toml::table root;
  try {
    root = toml::parse(text, file_name);
  } catch (const toml::parse_error& e) {
    ck.error(e.source(), "TOML syntax error: " + std::string(e.description()));
    throw ConfigError(ck.take());
  }

  TaskConfig cfg;
  cfg.file = file_name;
  const toml::source_region top{{1, 1}, {1, 1}, nullptr};
  ck.only_keys(root, {"task", "bind", "rule", "approval", "audit"}, "the top level");

  // [task]
  const toml::table* task = root["task"].as_table();
  if (!task) {
    if (root.contains("task"))
      ck.error(root.get("task")->source(), "'task' must be a table ([task])");
    else ck.error(top, "missing [task] table");
  } else {
    ck.only_keys(*task,
                 {"name", "mountpoint", "state_dir", "agent_user", "admin_group", "retention"},
                 "[task]");
    if (auto name = ck.string_key(*task, "name", task->source(), true, "[task]")) {
      static constexpr std::string_view kNameChars =
          "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";
      if (name->empty() || name->find_first_not_of(kNameChars) != std::string::npos ||
          *name == "." || *name == "..")
        ck.error(task->get("name")->source(),
                 "task name '" + *name + "' must match [A-Za-z0-9_.-]+ (and not be '.' or '..')");
      cfg.name = *name;
    }
    for (auto key : {"mountpoint", "state_dir"}) {
      auto v = ck.string_key(*task, key, task->source(), true, "[task]");
      if (!v) continue;
      if (v->empty()) {
        ck.error(task->get(key)->source(), std::string(key) + " must not be empty");
        continue;
      }
      std::string abs = canonical_lenient(absolute_from(*v, base_dir));
      (std::string_view(key) == "mountpoint" ? cfg.mountpoint : cfg.state_dir) = abs;
    }
    if (auto user = ck.string_key(*task, "agent_user", task->source(), false, "[task]")) {
      cfg.agent_user = *user;
      bool numeric = !user->empty() && user->find_first_not_of("0123456789") == std::string::npos;
      uint64_t n = 0;
      if (numeric) {
        auto [ptr, ec] = std::from_chars(user->data(), user->data() + user->size(), n);
        if (ec != std::errc() || n > 4294967294ULL) {
          ck.error(task->get("agent_user")->source(),
                   "agent_user '" + *user + "' is out of the uid range (0..4294967294)");
        } else {
          cfg.agent_uid = static_cast<uid_t>(n);
        }
      } else if (struct passwd* pw = ::getpwnam(user->c_str())) {
        cfg.agent_uid = pw->pw_uid;
      } else {
        ck.error(task->get("agent_user")->source(),
                 "agent_user '" + *user + "' is not a known user name or a numeric uid");
      }
    }
    if (auto ret = ck.string_key(*task, "retention", task->source(), false, "[task]")) {
      if (auto secs = parse_retention(*ret)) cfg.retention_s = *secs;
      else
        ck.error_at(task->get("retention")->source().begin.line,
                    value_column(*task->get("retention")),
                    "retention '" + *ret +
                        "' must be a positive whole number with a unit s, m, h or d (\"90s\", "
                        "\"12h\", \"7d\")");
    }
    if (auto group = ck.string_key(*task, "admin_group", task->source(), false, "[task]")) {
      cfg.admin_group = *group;
      int err = 0;
      if (auto gid = group->empty() ? std::nullopt : lookup_group(*group, err)) {
        cfg.admin_gid = *gid;
      } else if (err != 0) {
        ck.error(task->get("admin_group")->source(),
                 "admin_group '" + *group + "' could not be looked up: " + std::strerror(err));
      } else {
        ck.error(task->get("admin_group")->source(),
                 "admin_group '" + *group + "' is not a known group name");
      }
    }
  }

  // [[bind]]
  struct BindSeen {
    BindConfig cfg;
    toml::source_region path_src, source_src;
  };
  std::vector<BindSeen> binds;
  if (const toml::node* bn = root.get("bind")) {
    const toml::array* arr = bn->as_array();
    if (!arr || !arr->is_array_of_tables()) {
      ck.error(bn->source(), "'bind' must be an array of tables ([[bind]])");
    } else {
      for (const toml::node& el : *arr) {
        const toml::table& b = *el.as_table();
        ck.only_keys(b, {"path", "source", "access"}, "[[bind]]");
        BindSeen seen;
        bool good = true;
        auto path = ck.string_key(b, "path", b.source(), true, "[[bind]]");
        if (path) {
          seen.path_src = b.get("path")->source();
          std::string p = *path;
          bool leading_slash = !p.empty() && p.front() == '/';
          while (!p.empty() && p.back() == '/') p.pop_back();
          if (leading_slash) {
            ck.error(seen.path_src, "bind path '" + *path +
                                        "' must be relative to the view's root (no leading '/')");
            good = false;
          }
          for (auto seg : split_path(p)) {
            if (seg == ".." || seg == ".") {
              ck.error(seen.path_src, "bind path '" + *path +
                                          "' escapes or is not normalised ('.'/'..' segments)");
              good = false;
              break;
            }
          }
          if (p.find("//") != std::string::npos) {
            ck.error(seen.path_src, "bind path '" + *path + "' has an empty segment ('//')");
            good = false;
          }
          seen.cfg.path = p;
        } else {
          good = false;
        }
        auto source = ck.string_key(b, "source", b.source(), true, "[[bind]]");
        if (source) {
          seen.source_src = b.get("source")->source();
          std::string abs = absolute_from(*source, base_dir);
          struct stat st {};
          if (::stat(abs.c_str(), &st) != 0) {
            ck.error(seen.source_src, "bind source '" + *source + "' does not exist");
            good = false;
          } else if (!S_ISDIR(st.st_mode)) {
            ck.error(seen.source_src, "bind source '" + *source + "' is not a directory");
            good = false;
          } else {
            seen.cfg.source = canonical_lenient(abs);
          }
        } else {
          good = false;
        }
        if (const toml::node* an = b.get("access")) {
          auto s = an->value<std::string>();
          auto a = s ? parse_access(*s) : std::nullopt;
          if (!a) {
            ck.error(an->source(), "access must be one of " + std::string(kAccessChoices) +
                                       " (got " +
                                       (s ? "'" + *s + "'" : std::string("a non-string")) + ")");
            good = false;
          } else {
            seen.cfg.access = *a;
          }
        } else {
          seen.cfg.access = Access::Stage;  // the default: held changes (dry-run)
        }
        if (good) binds.push_back(std::move(seen));
      }
    }
  } else {
    ck.error(top, "no [[bind]]: a view needs at least one bind");
  }

  // Overlaps between binds, and the mountpoint/state_dir against sources.
  for (size_t i = 0; i < binds.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      const auto& a = binds[j].cfg;
      const auto& b = binds[i].cfg;
      auto nested = [](const std::string& x, const std::string& y) {
        return x == y || y.empty() || x.empty() ||
               (x.size() > y.size() && x.compare(0, y.size(), y) == 0 && x[y.size()] == '/');
      };
      if (nested(a.path, b.path) || nested(b.path, a.path)) {
        ck.error(binds[i].path_src, "bind path '" + b.path + "' overlaps bind path '" + a.path +
                                        "' (line " + std::to_string(binds[j].path_src.begin.line) +
                                        "); bind paths must not contain one another");
      }
      if (is_inside_or_equal(a.source, b.source) || is_inside_or_equal(b.source, a.source)) {
        ck.error(binds[i].source_src, "bind source '" + b.source + "' overlaps bind source '" +
                                          a.source + "' (line " +
                                          std::to_string(binds[j].source_src.begin.line) + ")");
      }
    }
  }
  if (task) {
    for (auto key : {"mountpoint", "state_dir"}) {
      const std::string& p = std::string_view(key) == "mountpoint" ? cfg.mountpoint : cfg.state_dir;
      if (p.empty()) continue;
      for (const auto& b : binds) {
        if (is_inside_or_equal(p, b.cfg.source))
          ck.error(task->get(key)->source(),
                   std::string(key) + " '" + p + "' is inside bind source '" + b.cfg.source + "'");
        if (is_inside_or_equal(b.cfg.source, p))
          ck.error(b.source_src,
                   "bind source '" + b.cfg.source + "' is inside the " +
                       (std::string_view(key) == "mountpoint" ? "mountpoint" : "state_dir"));
      }
    }
    if (!cfg.mountpoint.empty() && !cfg.state_dir.empty() &&
        is_inside_or_equal(cfg.state_dir, cfg.mountpoint))
      ck.error(task->get("state_dir")->source(), "state_dir is inside the mountpoint");
  }

  // [[rule]]
  std::vector<Rule> rules;
  if (const toml::node* rn = root.get("rule")) {
    const toml::array* arr = rn->as_array();
    if (!arr || !arr->is_array_of_tables()) {
      ck.error(rn->source(), "'rule' must be an array of tables ([[rule]])");
    } else {
      for (const toml::node& el : *arr) {
        const toml::table& r = *el.as_table();
        ck.only_keys(r, {"match", "access"}, "[[rule]]");
        Rule rule{};
        bool good = true;
        if (auto m = ck.string_key(r, "match", r.source(), true, "[[rule]]")) {
          std::string err;
          size_t pos = 0;
          if (!Glob::compile(*m, rule.glob, err, pos)) {
            const toml::node* mn = r.get("match");
            ck.error_at(mn->source().begin.line, content_column(text, *mn, pos),
                        "bad glob '" + *m + "': " + err);
            good = false;
          }
        } else {
          good = false;
        }
        if (const toml::node* an = r.get("access")) {
          auto s = an->value<std::string>();
          auto a = s ? parse_access(*s) : std::nullopt;
          if (!a) {
            ck.error(an->source(), "access must be one of " + std::string(kAccessChoices) +
                                       " (got " +
                                       (s ? "'" + *s + "'" : std::string("a non-string")) + ")");
            good = false;
          } else {
            rule.access = *a;
          }
        } else {
          ck.error(r.source(), "missing key 'access' in [[rule]]");
          good = false;
        }
        if (good) rules.push_back(std::move(rule));
      }
    }
  }

  // [approval]
  if (const toml::node* an = root.get("approval")) {
    const toml::table* ap = an->as_table();
    if (!ap) {
      ck.error(an->source(), "'approval' must be a table ([approval])");
    } else {
      ck.only_keys(*ap, {"hold", "max_deletes"}, "[approval]");
      if (const toml::node* hn = ap->get("hold")) {
        if (const toml::array* ops = hn->as_array()) {
          for (const toml::node& el : *ops) {
            auto op = el.value<std::string>();
            if (op &&
                std::find(kHoldableOps.begin(), kHoldableOps.end(), *op) != kHoldableOps.end()) {
              cfg.approval.hold.push_back(*op);
            } else {
              ck.error(el.source(),
                       "unknown operation " +
                           (op ? "'" + *op + "'" : std::string("(not a string)")) +
                           " in [approval] hold (expected one of: " + holdable_ops_list() + ")");
            }
          }
        } else {
          ck.error(hn->source(),
                   "'hold' must be an array of operation names, e.g. [\"unlink\", \"rmdir\"]");
        }
      }
      if (const toml::node* mn = ap->get("max_deletes")) {
        const auto* n = mn->as_integer();
        if (!n || n->get() < 0) ck.error(mn->source(), "'max_deletes' must be an integer >= 0");
        else cfg.approval.max_deletes = static_cast<uint64_t>(n->get());
      }
    }
  }

  // [audit]
  if (const toml::node* an = root.get("audit")) {
    const toml::table* au = an->as_table();
    if (!au) {
      ck.error(an->source(), "'audit' must be a table ([audit])");
    } else {
      ck.only_keys(*au,
                   {"file", "file_fsync", "syslog", "syslog_facility", "journald",
                    "include_intents"},
                   "[audit]");
      if (auto f = ck.string_key(*au, "file", au->source(), false, "[audit]")) {
        if (f->empty()) ck.error(au->get("file")->source(), "[audit] file must not be empty");
        else cfg.audit.file = absolute_from(*f, base_dir);
      }
      if (auto f = ck.string_key(*au, "file_fsync", au->source(), false, "[audit]")) {
        if (*f != "always" && *f != "batch" && *f != "never")
          ck.error(au->get("file_fsync")->source(),
                   "file_fsync '" + *f + "' must be one of: always, batch, never");
        else cfg.audit.file_fsync = *f;
      }
      if (auto sl = ck.string_key(*au, "syslog", au->source(), false, "[audit]")) {
        bool udp = sl->rfind("udp:", 0) == 0 && sl->rfind(':') > 4;
        if (!udp && (sl->empty() || sl->front() != '/'))
          ck.error(au->get("syslog")->source(),
                   "syslog '" + *sl + "' must be a socket path (\"/dev/log\") or udp:HOST:PORT");
        else cfg.audit.syslog = *sl;
      }
      if (auto fac = ck.string_key(*au, "syslog_facility", au->source(), false, "[audit]")) {
        static const std::set<std::string> kFacilities = {"auth",   "authpriv", "daemon", "user",
                                                          "local0", "local1",   "local2", "local3",
                                                          "local4", "local5",   "local6", "local7"};
        if (!kFacilities.count(*fac))
          ck.error(au->get("syslog_facility")->source(),
                   "syslog_facility '" + *fac +
                       "' must be one of: auth, authpriv, daemon, user, local0..local7");
        else cfg.audit.syslog_facility = *fac;
      }
      for (auto key : {"journald", "include_intents"}) {
        if (const toml::node* n = au->get(key)) {
          if (const auto* b = n->as_boolean())
            (std::string_view(key) == "journald" ? cfg.audit.journald : cfg.audit.include_intents) =
                b->get();
          else ck.error(n->source(), std::string("[audit] ") + key + " must be true or false");
        }
      }
    }
  }

  if (ck.failed()) throw ConfigError(ck.take());
  for (auto& b : binds) cfg.binds.push_back(std::move(b.cfg));
  cfg.policy = Policy(std::move(rules));
  return cfg;
}

TaskConfig load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw ConfigError({Diagnostic{path, 0, 0, "cannot read the config file"}});
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::error_code ec;
  auto abs = stdfs::absolute(path, ec);
  std::string base = (ec ? stdfs::path(path) : abs).parent_path().string();
  if (base.empty()) base = ".";
  return parse_config(ss.str(), path, base);
}

std::string resolve_task_arg(const std::string& arg) {
  if (arg.find('/') != std::string::npos || arg.ends_with(".toml")) return arg;
  std::error_code ec;
  if (stdfs::exists(arg, ec) && stdfs::is_regular_file(arg, ec)) return arg;
  return std::string(kTasksDir) + "/" + arg + ".toml";
}

}  // namespace scopefs::config
