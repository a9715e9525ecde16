#include "tools/scopefs/decide_service.hpp"

#include <spdlog/spdlog.h>

#include <cstring>
#include <iostream>

#include "journal/decide.hpp"
#include "journal/gc.hpp"
#include "journal/journal_gate.hpp"
#include "journal/rollback.hpp"
#include "journal/state_dir.hpp"
#include "tools/scopefs/commands.hpp"

namespace scopefs::cli {

using nlohmann::json;

namespace {

// {"cmd": "rollback", "ids", "globs", "run", "since_ns", "to"?, "all", "force",
// "dry_run"} (authorised by the caller) → the report, plus "plan" (dry run).
json run_rollback(const json& req, const control::Peer& peer, const config::TaskConfig& cfg,
                  journal::Journal& j, fs::View* view) {
  journal::RollbackSelection sel;
  try {
    for (const auto& id : req.value("ids", json::array())) sel.ids.push_back(id.get<uint64_t>());
    for (const auto& g : req.value("globs", json::array()))
      sel.globs.push_back(g.get<std::string>());
    sel.run = req.value("run", "");
    sel.since_ns = req.value("since_ns", int64_t{0});
    if (req.contains("to")) {
      sel.after_seq = req.at("to").get<uint64_t>();
      sel.has_after = true;
    }
    sel.all = req.value("all", false);
  } catch (const std::exception& e) {
    return {{"ok", false}, {"error", std::string("bad request: ") + e.what()}};
  }
  if (sel.empty()) return {{"ok", false}, {"error", "nothing selected"}};
  const bool force = req.value("force", false);
  const bool dry_run = req.value("dry_run", false);
  journal::CallerInfo who = journal::caller_info(fs::Caller{peer.pid, peer.uid, peer.gid});
  journal::RollBacker rb(cfg, j);
  journal::Touched touched;
  auto rep = rb.rollback(sel, force, dry_run, who, touched);
  // The real tree changed under the view: drop what the view and the kernel cache.
  if (view && !touched.objs.empty()) view->stage_changed(touched.objs, touched.names);
  if (auto s = j.sync(); !s)
    spdlog::warn("task {}: journal sync after rollback: {}", cfg.name, std::strerror(s.error()));
  if (!rep)
    return {{"ok", false},
            {"error", std::string("rollback failed: ") + std::strerror(rep.error())}};
  json out = {{"ok", rep->ok()}, {"done", rep->done}, {"notes", rep->notes}, {"dry_run", dry_run}};
  json conflicts = json::array(), failed = json::array(), unknown = json::array(),
       plan = json::array();
  for (const auto& [id, t] : rep->conflicts) conflicts.push_back(json::array({id, t}));
  for (const auto& [id, t] : rep->failed) failed.push_back(json::array({id, t}));
  for (const auto& [id, t] : rep->unknown) unknown.push_back(json::array({id, t}));
  for (const auto& s : rep->plan)
    plan.push_back(
        {{"seq", s.seq}, {"op", s.op}, {"path", s.path}, {"becomes", s.becomes}, {"blob", s.blob}});
  out["conflicts"] = conflicts;
  out["failed"] = failed;
  out["unknown"] = unknown;
  out["plan"] = plan;
  spdlog::info("task {}: rollback{} by uid {}: {} done, {} planned, {} conflicts, {} failed",
               cfg.name, dry_run ? " --dry-run" : "", peer.uid, rep->done.size(), rep->plan.size(),
               rep->conflicts.size(), rep->failed.size());
  return out;
}

// {"cmd": "gc", "dry_run"} (authorised by the caller) → the GcReport.
json run_gc(const json& req, const control::Peer& peer, const config::TaskConfig& cfg,
            journal::Journal& j) {
  journal::GcOptions o;
  o.retention_s = cfg.retention_s;
  o.dry_run = req.value("dry_run", false);
  journal::CallerInfo who = journal::caller_info(fs::Caller{peer.pid, peer.uid, peer.gid});
  auto rep = journal::collect_garbage(j, o, who);
  if (!rep)
    return {{"ok", false}, {"error", std::string("gc failed: ") + std::strerror(rep.error())}};
  spdlog::info("task {}: gc{} by uid {}: {}", cfg.name, o.dry_run ? " --dry-run" : "", peer.uid,
               rep->summary());
  return {{"ok", true},
          {"dry_run", o.dry_run},
          {"retention_s", cfg.retention_s},
          {"cutoff_ns", rep->cutoff_ns},
          {"records", rep->records},
          {"expired", rep->expired},
          {"blobs", rep->blobs},
          {"bytes", rep->bytes},
          {"orphans", rep->orphans},
          {"kept_shared", rep->kept_shared},
          {"tmp_files", rep->tmp_files},
          {"seq", rep->seq},
          {"summary", rep->summary()}};
}

}  // namespace

json run_decision(const json& req, const control::Peer& peer, const config::TaskConfig& cfg,
                  journal::Journal& j, fs::StageLayer& stage, fs::View* view) {
  const std::string cmd = req.value("cmd", "");
  if (cmd != "approve" && cmd != "reject" && cmd != "rollback" && cmd != "gc")
    return {{"ok", false}, {"error", "unknown command " + cmd}};
  if (auto why = control::refuse_reason(peer, cfg.agent_uid, cfg.admin_gid)) {
    spdlog::warn("task {}: {} by uid {} (pid {}) {}", cfg.name, cmd, peer.uid, peer.pid, *why);
    // A refused decision is journaled like any refused change.
    journal::Record r;
    r.op = cmd;
    r.state = journal::RecordState::Denied;
    r.err = EPERM;
    r.note = *why;
    r.caller = journal::caller_info(fs::Caller{peer.pid, peer.uid, peer.gid});
    if (auto w = j.append(r); !w)
      spdlog::warn("task {}: cannot journal the refused {}: {}", cfg.name, cmd,
                   std::strerror(w.error()));
    return {{"ok", false}, {"refused", true}, {"error", *why}};
  }
  if (cmd == "rollback") return run_rollback(req, peer, cfg, j, view);
  if (cmd == "gc") return run_gc(req, peer, cfg, j);
  journal::Selection sel;
  try {
    for (const auto& id : req.value("ids", json::array())) sel.ids.push_back(id.get<uint64_t>());
    for (const auto& g : req.value("globs", json::array()))
      sel.globs.push_back(g.get<std::string>());
    sel.all = req.value("all", false);
  } catch (const std::exception& e) {
    return {{"ok", false}, {"error", std::string("bad request: ") + e.what()}};
  }
  if (sel.empty()) return {{"ok", false}, {"error", "nothing selected"}};
  const bool force = req.value("force", false);
  const bool with_deps = req.value("with_deps", false);
  journal::CallerInfo who = journal::caller_info(fs::Caller{peer.pid, peer.uid, peer.gid});
  journal::Decider d(cfg, j, stage);
  if (view) d.busy = [view](const fs::ObjId& id) { return view->obj_busy(id); };
  journal::Touched touched;
  auto rep = cmd == "approve" ? d.approve(sel, force, with_deps, who, touched)
                              : d.reject(sel, with_deps, who, touched);
  if (view) view->stage_changed(touched.objs, touched.names);
  if (auto s = j.sync(); !s)
    spdlog::warn("task {}: journal sync after {}: {}", cfg.name, cmd, std::strerror(s.error()));
  if (!rep)
    return {{"ok", false}, {"error", std::string(cmd) + " failed: " + std::strerror(rep.error())}};
  json out = {{"ok", rep->ok()},
              {"done", rep->done},
              {"missing", rep->missing},
              {"unknown", rep->unknown},
              {"notes", rep->notes}};
  json conflicts = json::array(), failed = json::array();
  for (const auto& [id, t] : rep->conflicts) conflicts.push_back(json::array({id, t}));
  for (const auto& [id, t] : rep->failed) failed.push_back(json::array({id, t}));
  out["conflicts"] = conflicts;
  out["failed"] = failed;
  spdlog::info("task {}: {} by uid {}: {} done, {} conflicts, {} failed", cfg.name, cmd, peer.uid,
               rep->done.size(), rep->conflicts.size(), rep->failed.size());
  return out;
}

namespace {

json run_offline(const json& req, const config::TaskConfig& cfg) {
  control::Peer me = control::self_peer();
  if (auto why = control::refuse_reason(me, cfg.agent_uid, cfg.admin_gid))
    return {{"ok", false}, {"refused", true}, {"error", *why}};
  journal::StateDir state(cfg.state_dir);
  if (!state.try_lock())
    return {{"ok", false},
            {"error",
             "the task's state is in use (a daemon starting or stopping, or another "
             "admin command); try again"}};
  journal::JournalOptions jo;
  jo.task = cfg.name;
  jo.run = "admin";
  auto j = journal::Journal::open(cfg.state_dir, jo);
  fs::StageLayer stage(cfg.state_dir + "/stage");
  if (auto r = j->kv().scan("s/", "",
                            [&](std::string_view k, std::string_view v) {
                              stage.load_key(k, v);
                              return true;
                            });
      !r)
    return {{"ok", false}, {"error", "cannot read the held changes"}};
  return run_decision(req, me, cfg, *j, stage, nullptr);
}

}  // namespace

json admin_request(const std::string& cmd, const json& req, const config::TaskConfig& cfg,
                   bool json_out) {
  json resp;
  auto r = control::call(cfg.state_dir + "/control.sock", req, 10 * 60 * 1000);
  if (r) {
    resp = *r;
  } else if (r.error() == ENOENT || r.error() == ECONNREFUSED) {
    try {
      resp = run_offline(req, cfg);
    } catch (const std::exception& e) {
      std::cerr << "scopefs " << cmd << ": " << e.what() << "\n";
      throw Exit{kExitFailure};
    }
  } else if (r.error() == EACCES) {
    std::cerr << "scopefs " << cmd << ": refused: cannot reach the control socket of task "
              << cfg.name << " (only root and the admin group may run " << cmd << ")\n";
    throw Exit{kExitFailure};
  } else {
    std::cerr << "scopefs " << cmd << ": cannot reach the daemon: " << std::strerror(r.error())
              << "\n";
    throw Exit{kExitFailure};
  }
  if (json_out) std::cout << resp.dump(2) << "\n";
  if (resp.contains("error")) {
    std::cerr << "scopefs " << cmd << ": " << resp["error"].get<std::string>() << "\n";
    throw Exit{kExitFailure};
  }
  return resp;
}

}  // namespace scopefs::cli
