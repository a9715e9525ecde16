// scopefs stats CONFIG|STATE_DIR [--json | --prometheus] [--since T] [--run RUN] [--out FILE]
// The pilot's KPIs from the journal (journal/stats.hpp): operations by type
// and outcome, held/approved/rejected, decision latency, rollbacks, denied
// attempts, before-image bytes. Reads the journal read-only (works while
// mounted). --out writes the output atomically (temp file + rename in the
// same directory), as node-exporter's textfile collector needs.
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <iomanip>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>

#include "config/config.hpp"
#include "fs/sys/sys.hpp"
#include "journal/journal.hpp"
#include "journal/stats.hpp"
#include "tools/scopefs/commands.hpp"

namespace scopefs::cli {
namespace {

struct StatsArgs {
  std::string task;
  bool json = false;
  bool prometheus = false;
  std::string since;
  std::string run;
  std::string out;
};

std::string secs(double s) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(s < 10 ? 2 : 0) << s << " s";
  return o.str();
}

std::string latency_line(const journal::LatencySummary& l) {
  if (!l.count) return "none";
  return std::to_string(l.count) + ", p50 " + secs(l.p50_s) + ", p95 " + secs(l.p95_s) + ", max " +
         secs(l.max_s);
}

std::string text(const journal::JournalStats& s, const std::string& task) {
  std::ostringstream o;
  o << "task          " << task << "\n";
  o << "records       " << s.records;
  if (s.records) o << " (" << fmt_time(s.first_ns) << " .. " << fmt_time(s.last_ns) << ")";
  if (s.unreadable) o << "; " << s.unreadable << " UNREADABLE";
  o << "\n";
  // Operations × states, the states that occur as columns.
  std::set<std::string> cols;
  for (const auto& [op, by] : s.operations)
    for (const auto& [st, n] : by) cols.insert(st);
  if (!s.operations.empty()) {
    o << "operations    " << std::left << std::setw(16) << "OP";
    for (const auto& c : cols) o << std::right << std::setw(12) << c;
    o << "\n";
    for (const auto& [op, by] : s.operations) {
      o << "              " << std::left << std::setw(16) << op;
      for (const auto& c : cols) {
        auto it = by.find(c);
        o << std::right << std::setw(12) << (it == by.end() ? 0 : it->second);
      }
      o << "\n";
    }
  }
  o << "held          " << s.held_total << " change(s): " << s.pending << " pending, " << s.approved
    << " approved, " << s.rejected << " rejected\n";
  o << "to approve    " << latency_line(s.approve_latency) << "\n";
  o << "to reject     " << latency_line(s.reject_latency) << "\n";
  o << "rollbacks     " << s.rollbacks << " (" << s.rollbacks_failed << " failed); "
    << s.rolled_back << " change(s) rolled back\n";
  o << "denied        " << s.denied;
  if (!s.denied_by_errno.empty()) {
    o << " (";
    bool first = true;
    for (const auto& [e, n] : s.denied_by_errno) {
      o << (first ? "" : ", ") << e << " " << n;
      first = false;
    }
    o << ")";
  }
  o << "\n";
  o << "failed        " << s.failed << "; interrupted " << s.interrupted << "\n";
  o << "before-images " << s.before_images << " (" << s.before_image_bytes << " bytes); "
    << s.before_image_distinct << " distinct (" << s.before_image_distinct_bytes << " bytes)";
  if (s.expired) o << "; " << s.expired << " record(s) collected by gc";
  o << "\n";
  o << "blob store    " << s.blob_files << " file(s), " << s.blob_bytes << " bytes ("
    << s.blob_disk_bytes << " on disk)\n";
  o << "journal       " << s.journal_bytes << " bytes on disk\n";
  return o.str();
}

// Replaces FILE by `data` atomically: a temp file beside it, fsync'd, renamed over it.
void write_atomically(const std::string& file, const std::string& data) {
  std::string tmp = file + ".tmp." + std::to_string(::getpid());
  auto fail = [&](const char* what, int err) {
    (void)sys::unlink_at(AT_FDCWD, tmp.c_str(), 0);
    std::cerr << "scopefs stats: " << what << " " << file << ": " << std::strerror(err) << "\n";
    throw Exit{kExitFailure};
  };
  auto fd = sys::open_at(AT_FDCWD, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (!fd) fail("cannot write", fd.error());
  // Readable by the collector whatever the umask.
  if (auto c = sys::chmod_fd(fd->get(), 0644); !c) fail("cannot write", c.error());
  size_t off = 0;
  while (off < data.size()) {
    auto n =
        sys::pwrite_fd(fd->get(), data.data() + off, data.size() - off, static_cast<off_t>(off));
    if (!n) fail("cannot write", n.error());
    off += *n;
  }
  if (auto s = sys::fsync_fd(fd->get(), false); !s) fail("cannot write", s.error());
  if (auto r = sys::rename_at2(AT_FDCWD, tmp.c_str(), AT_FDCWD, file.c_str(), 0); !r)
    fail("cannot replace", r.error());
}

void run_stats(const StatsArgs& a) {
  std::string state;
  std::string task;
  struct stat st {};
  if (::stat(a.task.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    state = a.task;
  } else {
    try {
      auto cfg = config::load_config(config::resolve_task_arg(a.task));
      state = cfg.state_dir;
      task = cfg.name;
    } catch (const config::ConfigError& e) {
      for (const auto& d : e.diagnostics()) std::cerr << d.str() << "\n";
      throw Exit{kExitUsage};
    }
  }
  journal::StatsFilter f;
  if (!a.since.empty()) f.since_ns = parse_time_arg(a.since);
  f.run = a.run;
  journal::JournalStats s;
  try {
    auto j = journal::Journal::open_read_only(state);
    auto r = journal::compute_stats(*j, f);
    if (!r)
      throw std::runtime_error(std::string("reading the journal failed: ") +
                               std::strerror(r.error()));
    s = std::move(r).value();
    journal::add_disk_usage(s, *j, state);
  } catch (const std::exception& e) {
    std::cerr << "scopefs stats: " << e.what() << "\n";
    throw Exit{kExitFailure};
  }
  if (task.empty()) task = s.task;
  std::string out;
  if (a.prometheus) {
    out = journal::stats_prometheus(s, task);
  } else if (a.json) {
    auto js = journal::stats_json(s);
    js["task"] = task;
    js["state_dir"] = state;
    out = js.dump() + "\n";
  } else {
    out = text(s, task);
  }
  if (a.out.empty()) std::cout << out;
  else write_atomically(a.out, out);
  if (s.unreadable) {
    std::cerr << "scopefs stats: " << s.unreadable << " record(s) cannot be read\n";
    throw Exit{kExitFailure};
  }
}

}  // namespace

void setup_stats(CLI::App& app) {
  auto a = std::make_shared<StatsArgs>();
  auto* sub =
      app.add_subcommand("stats",
                         "KPIs from the journal: operations, approvals, rollbacks, denials");
  sub->add_option("task", a->task, "Config file, task name, or state directory")->required();
  auto* json = sub->add_flag("--json", a->json, "One JSON object");
  auto* prom = sub->add_flag("--prometheus", a->prometheus, "Node-exporter textfile format");
  json->excludes(prom);
  sub->add_option("--since", a->since,
                  "Only records from this time (ISO 8601, epoch seconds, or 30m/2h/7d ago)");
  sub->add_option("--run", a->run, "Only records of this run id");
  sub->add_option("--out", a->out,
                  "Write to FILE atomically (temp file + rename) instead of stdout");
  sub->callback([a] { run_stats(*a); });
}

}  // namespace scopefs::cli
