#include "journal/audit_json.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>

namespace scopefs::journal {
namespace {

using nlohmann::json;

std::string iso_time(int64_t ns) { return utc_time(ns, 9); }

// ECS event.category / event.type for an operation.
void classify(const Record& r, json& event) {
  static const char* kCreate[] = {"create", "mknod", "mkdir", "symlink", "link"};
  static const char* kDelete[] = {"unlink", "rmdir"};
  static const char* kAdmin[] = {"approve", "reject", "rollback", "gc"};
  auto in = [&](const auto& list) {
    for (const char* x : list)
      if (r.op == x) return true;
    return false;
  };
  json type = json::array();
  if (r.op == "mount" || r.op == "unmount") {
    event["category"] = {"process"};
    type.push_back(r.op == "mount" ? "start" : "end");
  } else if (in(kAdmin)) {
    event["category"] = {"configuration", "file"};
    type.push_back("admin");
    type.push_back("change");
  } else {
    event["category"] = {"file"};
    type.push_back(in(kCreate) ? "creation" : in(kDelete) ? "deletion" : "change");
  }
  if (r.state == RecordState::Denied) type.push_back("denied");
  event["type"] = std::move(type);
}

json object_json(const ObjectState& o) {
  json j = {{"exists", o.exists}};
  if (!o.exists) return j;
  j["type"] = o.type;
  j["size"] = o.size;
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", o.mode);
  j["mode"] = mode;
  j["uid"] = std::to_string(o.uid);
  j["gid"] = std::to_string(o.gid);
  j["mtime"] = iso_time(o.mtime_ns);
  if (o.hash) j["hash"] = {{"xxh3_128", o.hash->hex()}};
  if (!o.target.empty()) j["target"] = o.target;
  j["before_image"] = o.blob;
  return j;
}

}  // namespace

const char* ecs_outcome(RecordState s) {
  switch (s) {
    case RecordState::Applied:
    case RecordState::Approved:
    case RecordState::RolledBack:
    case RecordState::Rejected: return "success";
    case RecordState::Failed:
    case RecordState::Denied: return "failure";
    default: return "unknown";
  }
}

std::string utc_time(int64_t ns, int frac_digits) {
  // Floor division, so times before 1970 keep a non-negative fraction.
  int64_t secs = ns / 1000000000;
  int64_t frac = ns % 1000000000;
  if (frac < 0) {
    frac += 1000000000;
    --secs;
  }
  time_t s = static_cast<time_t>(secs);
  struct tm tm {};
  ::gmtime_r(&s, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out = buf;
  int digits = std::clamp(frac_digits, 0, 9);
  if (digits > 0) {
    char nine[10];
    std::snprintf(nine, sizeof nine, "%09u", static_cast<unsigned>(frac));
    out += '.';
    out.append(nine, static_cast<size_t>(digits));
  }
  out += 'Z';
  return out;
}

std::string local_host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

std::string audit_json(const Record& r, const ChainEvent& chain, const std::string& host) {
  json event = {{"kind", "event"},
                {"action", r.op},
                {"outcome", ecs_outcome(r.state)},
                {"module", "scopefs"},
                {"dataset", "scopefs.audit"},
                {"sequence", chain.eseq},
                {"id", r.task + ":" + std::to_string(chain.eseq)},
                {"created", iso_time(chain.time_ns ? chain.time_ns : r.time_ns)}};
  classify(r, event);
  json j = {{"@timestamp", iso_time(r.time_ns)},
            {"ecs", {{"version", "8.11.0"}}},
            {"event", std::move(event)},
            {"host", {{"name", host}}}};
  std::string view_path = r.path.empty() ? std::string() : "/" + r.path;
  if (r.op != "mount" && r.op != "unmount" && r.op != "gc" && !r.path.empty()) {
    json file = {{"path", view_path}};
    auto slash = view_path.rfind('/');
    file["name"] = view_path.substr(slash + 1);
    file["directory"] = slash == 0 ? "/" : view_path.substr(0, slash);
    const auto& now = r.after && r.after->exists ? r.after : r.before;
    if (now && now->exists) {
      file["type"] = now->type == "dir" ? "dir" : now->type == "symlink" ? "symlink" : "file";
      file["size"] = now->size;
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", now->mode);
      file["mode"] = mode;
      file["uid"] = std::to_string(now->uid);
      file["gid"] = std::to_string(now->gid);
      file["mtime"] = iso_time(now->mtime_ns);
      if (now->hash) file["hash"] = {{"xxh3_128", now->hash->hex()}};
    }
    if (!r.path2.empty()) {
      if (r.op == "rename" || r.op == "link") file["target_path"] = "/" + r.path2;
      else if (r.op == "symlink") file["target_path"] = r.path2;
      else if (r.op == "setxattr" || r.op == "removexattr") file["attributes"] = {r.path2};
    }
    j["file"] = std::move(file);
  }
  json process = {{"pid", r.caller.pid}, {"name", r.caller.comm}};
  if (!r.caller.args.empty()) {
    process["args"] = r.caller.args;
    std::string cmd;
    for (const auto& a : r.caller.args) cmd += (cmd.empty() ? "" : " ") + a;
    process["command_line"] = cmd;
  }
  if (!r.caller.exe.empty()) process["executable"] = r.caller.exe;
  j["process"] = std::move(process);
  j["user"] = {{"id", std::to_string(r.caller.uid)},
               {"group", {{"id", std::to_string(r.caller.gid)}}}};
  if (r.err) {
    const char* name = strerrorname_np(r.err);
    j["error"] = {{"code", name ? name : std::to_string(r.err)}, {"message", std::strerror(r.err)}};
  }
  json sc = {{"schema", kAuditSchemaVersion},
             {"task", r.task},
             {"run", r.run},
             {"seq", r.seq},
             {"state", std::string(state_name(r.state))},
             {"op", r.op},
             {"chain",
              {{"event", chain.eseq}, {"hash", to_hex(chain.hash)}, {"prev", to_hex(chain.prev)}}}};
  if (!r.path.empty()) sc["path"] = view_path;
  if (!r.path2.empty()) sc["path2"] = r.op == "rename" || r.op == "link" ? "/" + r.path2 : r.path2;
  if (r.flags) sc["flags"] = r.flags;
  if (r.before) sc["before"] = object_json(*r.before);
  if (r.after) sc["after"] = object_json(*r.after);
  if (r.victim) sc["victim"] = object_json(*r.victim);
  if (r.ref) sc["ref"] = r.ref;
  if (!r.note.empty()) sc["note"] = r.note;
  if (r.expired) sc["expired"] = true;
  j["scopefs"] = std::move(sc);
  j["labels"] = {{"scopefs_task", r.task}, {"scopefs_run", r.run}};
  std::string msg =
      r.op + (view_path.empty() ? "" : " " + view_path) + " " + std::string(state_name(r.state));
  if (r.err)
    msg += std::string(" (") + (strerrorname_np(r.err) ? strerrorname_np(r.err) : "?") + ")";
  msg += " by " + r.caller.comm + "[" + std::to_string(r.caller.pid) + "] uid " +
         std::to_string(r.caller.uid);
  j["message"] = msg;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace scopefs::journal
