// scopefs status [CONFIG|TASK|STATE_DIR] [--json]
// What an operator asks first: is the view mounted, by which daemon and run,
// how many changes wait for approval, how big are the journal and the blob
// store, how far back rollback reaches. Without a task: one line per view on
// this host (tools/scopefs/views.hpp says how they are found).
// Exit 0: reported; 1: a journal cannot be read; 2: an invalid config.
#include <sys/stat.h>
#include <sys/statfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "journal/journal.hpp"
#include "journal/rollback.hpp"
#include "journal/state_dir.hpp"
#include "tools/scopefs/commands.hpp"
#include "tools/scopefs/views.hpp"

namespace scopefs::cli {
namespace {

struct StatusArgs {
  std::string task;
  bool json = false;
};

// A failure to report on one task (the message is printed by the caller).
struct StatusError {
  std::string message;
};

bool is_mounted(const std::string& mp) {
  struct statfs sf {};
  return ::statfs(mp.c_str(), &sf) == 0 && sf.f_type == 0x65735546;
}

uint64_t tree_bytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  }
  return total;
}

uint64_t tree_files(const std::string& dir) {
  uint64_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec) && it->path().parent_path().filename() != "tmp") ++n;
  }
  return n;
}

// The status of one task as JSON; throws StatusError.
nlohmann::json collect(const std::optional<config::TaskConfig>& cfg, const std::string& state) {
  nlohmann::json out;
  if (cfg) {
    out["task"] = cfg->name;
    out["config"] = cfg->file;
    out["mountpoint"] = cfg->mountpoint;
  }
  out["state_dir"] = state;
  if (!std::filesystem::exists(state + "/journal"))
    throw StatusError{state + " holds no journal yet (never mounted)"};
  journal::StateDir sd(state);
  bool locked_by_daemon = !sd.wait_unlocked(0);
  auto pid = sd.read_pid();
  bool mounted = cfg && is_mounted(cfg->mountpoint);
  out["mounted"] = cfg ? nlohmann::json(mounted) : nlohmann::json(nullptr);
  out["daemon_pid"] = (locked_by_daemon && pid) ? nlohmann::json(*pid) : nlohmann::json(nullptr);

  std::map<std::string, uint64_t> by_state;
  uint64_t records = 0;
  int64_t last_t = 0;
  std::string run;
  int corrupt = 0;
  // The oldest change rollback can still undo: applied, of a rollback-able
  // op, its before-images not collected by gc.
  std::optional<std::pair<uint64_t, int64_t>> oldest;
  uint64_t expired = 0;
  try {
    auto j = journal::Journal::open_read_only(state);
    auto r = j->scan(1, [&](const journal::Record& rec, int err) {
      ++records;
      if (err) {
        ++corrupt;
        return true;
      }
      ++by_state[std::string(journal::state_name(rec.state))];
      if (rec.expired) ++expired;
      if (!oldest && !rec.expired && rec.state == journal::RecordState::Applied &&
          (journal::rollbackable_op(rec.op) || rec.op == "approve" || rec.op == "rollback"))
        oldest = {rec.seq, rec.time_ns};
      if (rec.op == "mount") run = rec.run;
      if (rec.op != "mount" && rec.op != "unmount") last_t = std::max(last_t, rec.time_ns);
      return true;
    });
    if (!r) throw std::runtime_error(std::strerror(r.error()));
    out["journal_bytes"] = j->kv().disk_bytes();
  } catch (const std::exception& e) {
    throw StatusError{state + ": " + e.what()};
  }
  out["records"] = records;
  out["records_by_state"] = by_state;
  out["pending"] = by_state.count("held") ? by_state["held"] : 0;
  out["unreadable_records"] = corrupt;
  out["last_run"] = run;
  out["last_change_ns"] = last_t;
  out["blob_bytes"] = tree_bytes(state + "/blobs");
  out["blobs"] = tree_files(state + "/blobs");
  out["expired_records"] = expired;
  out["retention_s"] = cfg ? nlohmann::json(cfg->retention_s) : nlohmann::json(nullptr);
  out["oldest_rollbackable"] = oldest ? nlohmann::json{{"seq", oldest->first},
                                                       {"t", oldest->second},
                                                       {"time", fmt_time(oldest->second)}}
                                      : nlohmann::json(nullptr);
  return out;
}

void print_one(const nlohmann::json& out) {
  bool has_cfg = out.contains("task");
  const auto& pid = out["daemon_pid"];
  if (has_cfg) std::cout << "task        " << out["task"].get<std::string>() << "\n";
  std::cout << "state_dir   " << out["state_dir"].get<std::string>() << "\n";
  if (has_cfg)
    std::cout << "mount       " << out["mountpoint"].get<std::string>() << ": "
              << (out["mounted"].get<bool>() ? "mounted" : "not mounted")
              << (pid.is_null() ? "" : " (daemon pid " + std::to_string(pid.get<int>()) + ")")
              << "\n";
  std::string run = out["last_run"].get<std::string>();
  std::cout << "last run    " << (run.empty() ? "-" : run) << "\n";
  std::cout << "pending     " << out["pending"].get<uint64_t>() << " held change(s)\n";
  std::cout << "journal     " << out["records"].get<uint64_t>() << " records, "
            << out["journal_bytes"].get<uint64_t>() << " bytes";
  for (auto& [k, v] : out["records_by_state"].items())
    std::cout << "; " << k << " " << v.get<uint64_t>();
  std::cout << "\n";
  std::cout << "blob store  " << out["blobs"].get<uint64_t>() << " before-images, "
            << out["blob_bytes"].get<uint64_t>() << " bytes\n";
  const auto& oldest = out["oldest_rollbackable"];
  std::cout << "rollback    "
            << (oldest.is_null() ? std::string("no rollback-able change")
                                 : "oldest rollback-able change " +
                                       std::to_string(oldest["seq"].get<uint64_t>()) + " at " +
                                       oldest["time"].get<std::string>());
  if (!out["retention_s"].is_null())
    std::cout << "; retention " << out["retention_s"].get<int64_t>() << " s";
  if (uint64_t expired = out["expired_records"].get<uint64_t>())
    std::cout << "; " << expired << " change(s) past retention (collected by gc)";
  std::cout << "\n";
  if (int corrupt = out["unreadable_records"].get<int>())
    std::cout << "WARNING     " << corrupt << " record(s) cannot be read\n";
}

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

// Every view on this host: task configs, running daemons, fuse.scopefs mounts.
void run_list(const StatusArgs& a) {
  struct Entry {
    std::optional<config::TaskConfig> cfg;
    std::string file;
    std::string error;
  };
  std::vector<Entry> entries;
  std::map<std::string, size_t> by_state_dir;  // state_dir → index in entries
  auto add = [&](const std::string& file) {
    Entry e;
    e.file = file;
    try {
      e.cfg = config::load_config(file);
      if (by_state_dir.count(e.cfg->state_dir)) return;
      by_state_dir[e.cfg->state_dir] = entries.size();
    } catch (const config::ConfigError& err) {
      e.error = err.diagnostics().empty() ? "invalid config" : err.diagnostics().front().str();
    }
    entries.push_back(std::move(e));
  };
  std::vector<std::string> files;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/etc/scopefs/tasks", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    if (it->path().extension() == ".toml") files.push_back(it->path().string());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) add(f);
  for (const auto& v : registered_views())
    if (!by_state_dir.count(v.state_dir) && !v.config.empty()) add(v.config);
  nlohmann::json views = nlohmann::json::array();
  bool failed = false;
  std::map<std::string, bool> seen_mp;
  for (const auto& e : entries) {
    nlohmann::json j;
    if (!e.cfg) {
      j = {{"config", e.file}, {"error", e.error}};
    } else {
      seen_mp[e.cfg->mountpoint] = true;
      try {
        j = collect(e.cfg, e.cfg->state_dir);
      } catch (const StatusError& err) {
        j = {{"task", e.cfg->name},
             {"config", e.file},
             {"mountpoint", e.cfg->mountpoint},
             {"state_dir", e.cfg->state_dir},
             {"mounted", is_mounted(e.cfg->mountpoint)},
             {"error", err.message}};
      }
      if (j.value("unreadable_records", 0) > 0) failed = true;
    }
    views.push_back(std::move(j));
  }
  // Mounts no config or running daemon accounts for.
  for (const auto& m : scopefs_mounts()) {
    if (seen_mp.count(m.mountpoint)) continue;
    seen_mp[m.mountpoint] = true;
    std::string name = m.source.rfind("scopefs:", 0) == 0 ? m.source.substr(8) : m.source;
    views.push_back(
        {{"task", name},
         {"mountpoint", m.mountpoint},
         {"mounted", true},
         {"error", "config unknown: not in /etc/scopefs/tasks, daemon not registered"}});
  }
  if (a.json) {
    std::cout << nlohmann::json{{"views", views}}.dump(2) << "\n";
  } else if (views.empty()) {
    std::cout << "no scopefs views (no task in /etc/scopefs/tasks, nothing mounted)\n";
  } else {
    auto str = [](const nlohmann::json& v, const char* k) {
      return v.contains(k) && v[k].is_string() ? v[k].get<std::string>() : std::string("-");
    };
    size_t w = 6;
    for (const auto& v : views)
      w = std::max(w, str(v, v.contains("task") ? "task" : "config").size() + 2);
    std::cout << std::left << std::setw(static_cast<int>(w)) << "TASK" << std::setw(9) << "MOUNTED"
              << std::setw(9) << "PENDING" << std::setw(11) << "JOURNAL" << std::setw(26)
              << "OLDEST ROLLBACK" << std::setw(38) << "RUN"
              << "MOUNTPOINT\n";
    for (const auto& v : views) {
      std::string mounted = v.contains("mounted") && v["mounted"].is_boolean()
                                ? (v["mounted"].get<bool>() ? "yes" : "no")
                                : "-";
      std::string pending =
          v.contains("pending") ? std::to_string(v["pending"].get<uint64_t>()) : "-";
      std::string journal =
          v.contains("journal_bytes") ? human_bytes(v["journal_bytes"].get<uint64_t>()) : "-";
      std::string oldest = v.contains("oldest_rollbackable") && !v["oldest_rollbackable"].is_null()
                               ? v["oldest_rollbackable"]["time"].get<std::string>()
                               : "-";
      std::string run =
          v.contains("last_run") && v.value("mounted", false) ? str(v, "last_run") : "-";
      std::cout << std::setw(static_cast<int>(w)) << str(v, v.contains("task") ? "task" : "config")
                << std::setw(9) << mounted << std::setw(9) << pending << std::setw(11) << journal
                << std::setw(26) << oldest << std::setw(38) << (run.empty() ? "-" : run)
                << str(v, "mountpoint") << "\n";
      if (v.contains("error")) std::cout << "  (" << str(v, "error") << ")\n";
    }
  }
  if (failed) throw Exit{kExitFailure};
}

void run_status(const StatusArgs& a) {
  if (a.task.empty()) return run_list(a);
  std::optional<config::TaskConfig> cfg;
  std::string state;
  struct stat st {};
  if (::stat(a.task.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    state = a.task;
  } else {
    try {
      cfg = config::load_config(config::resolve_task_arg(a.task));
      state = cfg->state_dir;
    } catch (const config::ConfigError& e) {
      for (const auto& d : e.diagnostics()) std::cerr << d.str() << "\n";
      throw Exit{kExitUsage};
    }
  }
  nlohmann::json out;
  try {
    out = collect(cfg, state);
  } catch (const StatusError& e) {
    std::cerr << "scopefs status: " << e.message << "\n";
    throw Exit{kExitFailure};
  }
  if (a.json) std::cout << out.dump() << "\n";
  else print_one(out);
  if (out["unreadable_records"].get<int>()) throw Exit{kExitFailure};
}

}  // namespace

void setup_status(CLI::App& app) {
  auto a = std::make_shared<StatusArgs>();
  auto* sub = app.add_subcommand(
      "status",
      "Show a task's mount, run, pending changes, journal and rollback reach; without a task, every view");
  sub->add_option("task", a->task,
                  "Config file, task name, or state directory (default: every view)");
  sub->add_flag("--json", a->json, "One JSON object");
  sub->callback([a] { run_status(*a); });
}

}  // namespace scopefs::cli
