// scopefs pending TASK [--json]      held changes, grouped by path
// scopefs diff TASK [ID|PATH...]     what each held change does
// Both read the journal read-only: they work beside a running daemon and without one.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>

#include "config/config.hpp"
#include "config/glob.hpp"
#include "journal/journal.hpp"
#include "tools/scopefs/commands.hpp"

namespace scopefs::cli {
namespace {

using nlohmann::json;

std::vector<journal::Record> load_held(const std::string& task_arg, config::TaskConfig& cfg) {
  try {
    cfg = config::load_config(config::resolve_task_arg(task_arg));
  } catch (const config::ConfigError& e) {
    for (const auto& d : e.diagnostics()) std::cerr << d.str() << "\n";
    throw Exit{kExitUsage};
  }
  std::unique_ptr<journal::Journal> j;
  try {
    j = journal::Journal::open_read_only(cfg.state_dir);
  } catch (const std::exception& e) {
    // No journal yet: nothing was ever held.
    return {};
  }
  auto held = j->held();
  if (!held) {
    std::cerr << "scopefs: cannot read the held changes: " << std::strerror(held.error()) << "\n";
    throw Exit{kExitFailure};
  }
  std::stable_sort(held->begin(), held->end(),
                   [](const journal::Record& a, const journal::Record& b) {
                     return a.path < b.path;
                   });
  return std::move(held).value();
}

std::string describe(const journal::Record& r) {
  auto mode = [](uint32_t m) {
    char b[8];
    std::snprintf(b, sizeof b, "%04o", m);
    return std::string(b);
  };
  const auto& b = r.before;
  const auto& a = r.after;
  std::string s;
  if (r.op == "rename") return "rename " + r.path + " -> " + r.path2;
  if (r.op == "link") return "hard link " + r.path2 + " -> " + r.path;
  if (r.op == "symlink") return "symlink " + r.path + " -> " + r.path2;
  if (r.op == "mkdir") return "mkdir " + r.path + (a ? " (" + mode(a->mode) + ")" : "");
  if (r.op == "mknod")
    return "mknod " + r.path + (a ? " (" + a->type + ", " + mode(a->mode) + ")" : "");
  if (r.op == "unlink" || r.op == "rmdir")
    return "delete " + r.path +
           (b && b->exists ? " (" + b->type + ", " + std::to_string(b->size) + " bytes)" : "");
  if (r.op == "chmod" && b && a)
    return "chmod " + r.path + ": " + mode(b->mode) + " -> " + mode(a->mode);
  if (r.op == "chown" && b && a)
    return "chown " + r.path + ": " + std::to_string(b->uid) + ":" + std::to_string(b->gid) +
           " -> " + std::to_string(a->uid) + ":" + std::to_string(a->gid);
  if (r.op == "utimens" && a) return "set times of " + r.path + ": mtime " + fmt_time(a->mtime_ns);
  if (r.op == "setxattr") return "set xattr " + r.path2 + " on " + r.path;
  if (r.op == "removexattr") return "remove xattr " + r.path2 + " from " + r.path;
  s = r.op + " " + r.path;
  if (a && a->exists && a->type == "file") {
    s += ": " + (b && b->exists ? std::to_string(b->size) : std::string("new")) + " -> " +
         std::to_string(a->size) + " bytes";
  }
  return s;
}

void setup_pending_cmd(CLI::App& app) {
  struct Args {
    std::string task;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("pending", "List held changes, grouped by path");
  sub->add_option("task", a->task, "Task config file or task name")->required();
  sub->add_flag("--json", a->json, "One JSON document");
  sub->callback([a] {
    config::TaskConfig cfg;
    auto held = load_held(a->task, cfg);
    if (a->json) {
      json out = {{"task", cfg.name}, {"pending", json::array()}};
      for (const auto& r : held) {
        json j = json::parse(journal::record_json(r));
        j["id"] = r.seq;
        j["time"] = fmt_time(r.time_ns);
        if (!j.contains("path2")) j["path2"] = "";
        out["pending"].push_back(std::move(j));
      }
      std::cout << out.dump(2) << "\n";
      return;
    }
    if (held.empty()) {
      std::cout << "no held changes for task " << cfg.name << "\n";
      return;
    }
    std::string last;
    for (const auto& r : held) {
      if (r.path != last || &r == &held.front()) std::cout << "/" << r.path << "\n";
      last = r.path;
      std::cout << "  " << std::left << std::setw(7) << r.seq << std::setw(25)
                << fmt_time(r.time_ns) << std::setw(20)
                << (r.caller.comm + "[" + std::to_string(r.caller.pid) + "]") << describe(r)
                << "\n";
    }
    std::cout << held.size() << " held change(s); scopefs diff " << a->task
              << " to see them, scopefs approve|reject " << a->task << " ID...|--all to decide\n";
  });
}

// Runs diff -u between two files (paths), labelled; returns its exit code.
int run_diff(const std::string& from, const std::string& to, const std::string& label) {
  std::string la = "a/" + label, lb = "b/" + label;
  std::vector<char*> argv = {const_cast<char*>("diff"),
                             const_cast<char*>("-u"),
                             const_cast<char*>("--label"),
                             la.data(),
                             const_cast<char*>("--label"),
                             lb.data(),
                             const_cast<char*>(from.c_str()),
                             const_cast<char*>(to.c_str()),
                             nullptr};
  std::cout.flush();
  pid_t pid;
  if (posix_spawnp(&pid, "diff", nullptr, nullptr, argv.data(), environ) != 0) return -1;
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

bool looks_binary(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[8192];
  ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  return n > 0 && std::memchr(buf, 0, static_cast<size_t>(n)) != nullptr;
}

// The real file a view path stands for (read-only display: a plain path is fine here).
std::string real_path(const config::TaskConfig& cfg, const std::string& path) {
  const config::BindConfig* best = nullptr;
  for (const auto& b : cfg.binds) {
    bool match = b.path.empty() || path == b.path ||
                 (path.size() > b.path.size() && path.compare(0, b.path.size(), b.path) == 0 &&
                  path[b.path.size()] == '/');
    if (match && (!best || b.path.size() > best->path.size())) best = &b;
  }
  if (!best) return "";
  std::string rel =
      best->path.empty() ? path : path.substr(std::min(path.size(), best->path.size() + 1));
  return best->source + "/" + rel;
}

void setup_diff_cmd(CLI::App& app) {
  struct Args {
    std::string task;
    std::vector<std::string> what;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("diff", "Show what held changes do (unified diff for text)");
  sub->add_option("task", a->task, "Task config file or task name")->required();
  sub->add_option("what", a->what, "Ids of held changes or view paths (globs); default: all");
  sub->callback([a] {
    config::TaskConfig cfg;
    auto held = load_held(a->task, cfg);
    std::vector<uint64_t> ids;
    std::vector<config::Glob> globs;
    for (const auto& w : a->what) {
      if (!w.empty() && w.find_first_not_of("0123456789") == std::string::npos) {
        ids.push_back(std::stoull(w));
        continue;
      }
      std::string p = w;
      while (!p.empty() && p.front() == '/') p.erase(0, 1);
      config::Glob g;
      std::string err;
      size_t pos = 0;
      if (!config::Glob::compile(p, g, err, pos)) {
        std::cerr << "scopefs diff: bad path " << w << ": " << err << "\n";
        throw Exit{kExitUsage};
      }
      globs.push_back(std::move(g));
    }
    std::sort(held.begin(), held.end(), [](const auto& x, const auto& y) { return x.seq < y.seq; });
    auto blobs_dir = cfg.state_dir + "/blobs/";
    auto blob_path = [&](const journal::Hash128& h) {
      std::string hex = h.hex();
      return blobs_dir + hex.substr(0, 2) + "/" + hex.substr(2);
    };
    for (size_t i = 0; i < held.size(); ++i) {
      const auto& r = held[i];
      bool pick = a->what.empty() || std::find(ids.begin(), ids.end(), r.seq) != ids.end();
      for (const auto& g : globs)
        pick = pick || g.matches(r.path) || (!r.path2.empty() && g.matches(r.path2));
      if (!pick) continue;
      std::cout << "# " << r.seq << " " << describe(r) << "\n";
      if (r.op == "rename" && r.after && r.after->type == "file") {
        // A file renamed over another (an atomic save): the net change of
        // the target's content.
        std::string to;
        for (size_t k = i; k-- > 0 && to.empty();) {
          const auto& p = held[k];
          if (p.path == r.path && p.after && p.after->blob && p.after->hash && r.after->hash &&
              *p.after->hash == *r.after->hash)
            to = blob_path(*p.after->hash);
        }
        std::string from = "/dev/null";
        if (r.victim && r.victim->exists && r.victim->type == "file")
          from = real_path(cfg, r.path2);
        if (!to.empty() && !looks_binary(from) && !looks_binary(to)) run_diff(from, to, r.path2);
        continue;
      }
      bool content = r.after && r.after->exists && r.after->type == "file" && r.after->hash &&
                     (r.op == "create" || r.op == "write" || r.op == "truncate" ||
                      r.op == "fallocate" || r.op == "copy_file_range");
      if (!content) continue;
      std::string to =
          r.after->size == 0 ? "/dev/null" : (r.after->blob ? blob_path(*r.after->hash) : "");
      std::string from = "/dev/null";
      if (r.before && r.before->exists && r.before->size > 0) {
        from.clear();
        if (r.before->blob && r.before->hash) from = blob_path(*r.before->hash);
        for (size_t k = i; k-- > 0 && from.empty();) {
          const auto& p = held[k];
          if (p.after && p.after->blob && p.after->hash && r.before->hash &&
              *p.after->hash == *r.before->hash)
            from = blob_path(*p.after->hash);
        }
        if (from.empty()) from = real_path(cfg, r.path);
      }
      if (to.empty()) {
        std::cout << "(content not kept)\n";
        continue;
      }
      if (looks_binary(from) || looks_binary(to)) {
        std::cout << "binary file " << r.path << ": "
                  << (r.before && r.before->exists ? std::to_string(r.before->size) + " bytes"
                                                   : "new")
                  << " (" << (r.before && r.before->hash ? r.before->hash->hex() : "-") << ") -> "
                  << r.after->size << " bytes (" << r.after->hash->hex() << ")\n";
        continue;
      }
      if (run_diff(from, to, r.path) < 0) std::cout << "(diff is not installed)\n";
    }
  });
}

}  // namespace

void setup_pending(CLI::App& app) { setup_pending_cmd(app); }
void setup_diff(CLI::App& app) { setup_diff_cmd(app); }

}  // namespace scopefs::cli
