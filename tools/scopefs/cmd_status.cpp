// scopefs status CONFIG|STATE_DIR [--json]
// What an operator asks first: is the view mounted, by which daemon and run,
// how big are the journal and the blob store, what happened lately.
#include <sys/stat.h>
#include <sys/statfs.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "journal/journal.hpp"
#include "journal/rollback.hpp"
#include "journal/state_dir.hpp"
#include "tools/scopefs/commands.hpp"

namespace scopefs::cli {
namespace {

struct StatusArgs {
  std::string task;
  bool json = false;
};

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

void run_status(const StatusArgs& a) {
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
  if (cfg) {
    out["task"] = cfg->name;
    out["mountpoint"] = cfg->mountpoint;
  }
  out["state_dir"] = state;
  if (!std::filesystem::exists(state + "/journal")) {
    std::cerr << "scopefs status: " << state << " holds no journal yet (never mounted)\n";
    throw Exit{kExitFailure};
  }
  journal::StateDir sd(state);
  bool locked_by_daemon = !sd.wait_unlocked(0);
  auto pid = sd.read_pid();
  bool mounted = false;
  if (cfg) {
    struct statfs sf {};
    mounted = ::statfs(cfg->mountpoint.c_str(), &sf) == 0 && sf.f_type == 0x65735546;
  }
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
    std::cerr << "scopefs status: " << e.what() << "\n";
    throw Exit{kExitFailure};
  }
  out["records"] = records;
  out["records_by_state"] = by_state;
  out["unreadable_records"] = corrupt;
  out["last_run"] = run;
  out["last_change_ns"] = last_t;
  out["blob_bytes"] = tree_bytes(state + "/blobs");
  out["blobs"] = tree_files(state + "/blobs");
  out["expired_records"] = expired;
  out["retention_s"] = cfg ? nlohmann::json(cfg->retention_s) : nlohmann::json(nullptr);
  out["oldest_rollbackable"] =
      oldest ? nlohmann::json{{"seq", oldest->first}, {"t", oldest->second}, {"time", fmt_time(oldest->second)}}
             : nlohmann::json(nullptr);
  if (a.json) {
    std::cout << out.dump() << "\n";
  } else {
    if (cfg) std::cout << "task        " << cfg->name << "\n";
    std::cout << "state_dir   " << state << "\n";
    if (cfg)
      std::cout << "mount       " << cfg->mountpoint << ": "
                << (mounted ? "mounted" : "not mounted")
                << (locked_by_daemon && pid ? " (daemon pid " + std::to_string(*pid) + ")" : "")
                << "\n";
    std::cout << "last run    " << (run.empty() ? "-" : run) << "\n";
    std::cout << "journal     " << records << " records, " << out["journal_bytes"].get<uint64_t>()
              << " bytes";
    for (auto& [k, v] : by_state) std::cout << "; " << k << " " << v;
    std::cout << "\n";
    std::cout << "blob store  " << out["blobs"].get<uint64_t>() << " before-images, "
              << out["blob_bytes"].get<uint64_t>() << " bytes\n";
    std::cout << "rollback    "
              << (oldest ? "oldest rollback-able change " + std::to_string(oldest->first) + " at " +
                               fmt_time(oldest->second)
                         : std::string("no rollback-able change"));
    if (cfg) std::cout << "; retention " << cfg->retention_s << " s";
    if (expired) std::cout << "; " << expired << " change(s) past retention (collected by gc)";
    std::cout << "\n";
    if (corrupt) std::cout << "WARNING     " << corrupt << " record(s) cannot be read\n";
  }
  if (corrupt) throw Exit{kExitFailure};
}

}  // namespace

void setup_status(CLI::App& app) {
  auto a = std::make_shared<StatusArgs>();
  auto* sub = app.add_subcommand("status", "Show a task's mount, run, journal and blob store");
  sub->add_option("task", a->task, "Config file, task name, or state directory")->required();
  sub->add_flag("--json", a->json, "One JSON object");
  sub->callback([a] { run_status(*a); });
}

}  // namespace scopefs::cli
