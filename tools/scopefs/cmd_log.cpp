// scopefs log CONFIG|STATE_DIR [--json] [--path GLOB] [--op OP] [--state STATE] [--uid N]
//                              [--run RUN] [--since T] [--until T] [--explain]
// Reads the journal read-only: works beside a running daemon and without one.
// The filters go to the query planner (journal/query.hpp), which answers a
// path, time, run or held-state filter from the journal's indexes.
#include <sys/stat.h>

#include <cstring>
#include <ctime>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>
#include <string_view>

#include "config/config.hpp"
#include "journal/audit_json.hpp"
#include "journal/journal.hpp"
#include "journal/query.hpp"
#include "tools/scopefs/commands.hpp"

namespace scopefs::cli {
namespace {

// Names and process names are the agent's to choose: control bytes (a
// newline would forge a line, ESC a terminal sequence) and the backslash
// print as C escapes, so every record is exactly one line.
std::string escape_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\x";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

struct LogArgs {
  std::string task;
  bool json = false;
  std::string path_glob;
  std::vector<std::string> ops;
  std::string since, until;
  std::vector<std::string> outcomes;
  std::optional<uint32_t> uid;
  std::string run;
  bool explain = false;
};

std::string short_hash(const std::optional<journal::ObjectState>& o) {
  if (!o || !o->exists) return "-";
  if (!o->hash) return o->type == "file" ? "?" : o->type;
  return o->hash->hex().substr(0, 12) + (o->blob ? "*" : "");
}

}  // namespace

std::string fmt_time(int64_t ns) { return journal::utc_time(ns, 3); }

// Also used by the tests' expectations of --since/--until: see docs/journal.md.
int64_t parse_time_arg(const std::string& s) {
  if (s.empty()) return 0;
  struct timespec now {};
  ::clock_gettime(CLOCK_REALTIME, &now);
  int64_t now_ns = static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
  // Relative: 30s, 10m, 2h, 7d (ago).
  char unit = s.back();
  std::string num = s.substr(0, s.size() - 1);
  if (!num.empty() && num.find_first_not_of("0123456789") == std::string::npos &&
      std::strchr("smhd", unit)) {
    int64_t n = std::stoll(num);
    int64_t mult = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 86400;
    return now_ns - n * mult * 1000000000;
  }
  if (s.find_first_not_of("0123456789") == std::string::npos) return std::stoll(s) * 1000000000;
  struct tm tm {};
  for (const char* f : {"%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
                        "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"}) {
    tm = {};
    const char* end = ::strptime(s.c_str(), f, &tm);
    if (end && *end == '\0') return static_cast<int64_t>(::timegm(&tm)) * 1000000000;
  }
  throw CLI::ValidationError("time '" + s +
                             "': expected 2026-11-25T10:00:00Z, 2026-11-25, epoch seconds, or "
                             "a relative age like 30m, 2h, 7d");
}

std::string state_dir_of(const std::string& arg) {
  struct stat st {};
  if (::stat(arg.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return arg;
  try {
    return config::load_config(config::resolve_task_arg(arg)).state_dir;
  } catch (const config::ConfigError& e) {
    for (const auto& d : e.diagnostics()) std::cerr << d.str() << "\n";
    throw Exit{kExitUsage};
  }
}

namespace {

void run_log(const LogArgs& a) {
  std::string state = state_dir_of(a.task);
  journal::QueryFilter f;
  f.path_glob = a.path_glob;
  f.ops = a.ops;
  for (const auto& o : a.outcomes)
    if (auto st = journal::parse_state(o)) f.states.push_back(*st);
  f.uid = a.uid;
  f.run = a.run;
  if (!a.since.empty()) f.since_ns = parse_time_arg(a.since);
  if (!a.until.empty()) f.until_ns = parse_time_arg(a.until);
  journal::Query query;
  if (std::string err; !journal::Query::compile(f, query, err))
    throw CLI::ValidationError("--path '" + a.path_glob + "': " + err);
  std::unique_ptr<journal::Journal> j;
  try {
    j = journal::Journal::open_read_only(state);
  } catch (const std::exception& e) {
    std::cerr << "scopefs log: " << e.what() << "\n";
    throw Exit{kExitFailure};
  }
  if (!a.json)
    std::cout << std::left << std::setw(7) << "SEQ" << std::setw(25) << "TIME" << std::setw(15)
              << "STATE" << std::setw(16) << "OP" << std::setw(44) << "PATH" << std::setw(24)
              << "CALLER"
              << "BEFORE -> AFTER\n";
  int corrupt = 0;
  auto r = query.run(*j, [&](const journal::Record& rec, int err) {
    if (err) {
      ++corrupt;
      std::cerr << "scopefs log: record " << rec.seq << " cannot be read: " << std::strerror(err)
                << "\n";
      return true;
    }
    if (a.json) {
      std::cout << journal::record_json(rec) << "\n";
      return true;
    }
    std::string path = "/" + escape_text(rec.path);
    if (!rec.path2.empty())
      path += (rec.op == "rename" || rec.op == "link" ? " -> /" : " -> ") + escape_text(rec.path2);
    std::string st(journal::state_name(rec.state));
    if (rec.err)
      st += "(" + std::string(strerrorname_np(rec.err) ? strerrorname_np(rec.err) : "?") + ")";
    std::ostringstream caller;
    caller << escape_text(rec.caller.comm) << "[" << rec.caller.pid << "] " << rec.caller.uid;
    std::cout << std::left << std::setw(7) << rec.seq << std::setw(25) << fmt_time(rec.time_ns)
              << std::setw(15) << st << std::setw(16) << rec.op << std::setw(44) << path + " "
              << std::setw(24) << caller.str() << short_hash(rec.before) << " -> "
              << short_hash(rec.after) << "\n";
    return true;
  });
  if (!r) {
    std::cerr << "scopefs log: reading the journal failed: " << std::strerror(r.error()) << "\n";
    throw Exit{kExitFailure};
  }
  if (a.explain)
    std::cerr << "plan: " << journal::access_name(r->access) << " (" << r->detail
              << "): " << r->index_entries
              << (r->index_entries == 1 ? " index entry, " : " index entries, ") << r->candidates
              << (r->candidates == 1 ? " record read, " : " records read, ") << r->matched
              << " matched\n";
  if (corrupt) throw Exit{kExitFailure};
}

}  // namespace

void setup_log(CLI::App& app) {
  auto a = std::make_shared<LogArgs>();
  auto* sub = app.add_subcommand("log", "Print the journal (works while mounted)");
  sub->add_option("task", a->task, "Config file, task name, or state directory")->required();
  sub->add_flag("--json", a->json, "One JSON object per line");
  sub->add_option("--path", a->path_glob,
                  "Only records whose view path (or rename/link target) matches this glob");
  sub->add_option("--op", a->ops, "Only these operations (create, write, unlink, rename, ...)");
  sub->add_option(
         "--state,--outcome", a->outcomes,
         "Only these states (applied, denied, failed, interrupted, intent, held, approved, "
         "rejected, rolled_back)")
      ->check(CLI::IsMember({"applied", "denied", "failed", "interrupted", "intent", "held",
                             "approved", "rejected", "rolled_back"}));
  sub->add_option("--uid", a->uid, "Only records of this caller uid");
  sub->add_option("--run", a->run, "Only records of this run id (see `scopefs status`)");
  sub->add_option("--since", a->since,
                  "From this time (ISO 8601, epoch seconds, or 30m/2h/7d ago)");
  sub->add_option("--until", a->until, "Up to this time");
  sub->add_flag("--explain", a->explain, "Say on stderr which index answered the query");
  sub->callback([a] { run_log(*a); });
}

}  // namespace scopefs::cli
