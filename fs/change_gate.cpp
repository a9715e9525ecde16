#include "fs/change_gate.hpp"

#include <spdlog/spdlog.h>

#include <cstring>

namespace scopefs::fs {

std::string_view op_name(OpKind op) {
  switch (op) {
    case OpKind::Create: return "create";
    case OpKind::Mknod: return "mknod";
    case OpKind::Mkdir: return "mkdir";
    case OpKind::Symlink: return "symlink";
    case OpKind::Link: return "link";
    case OpKind::Unlink: return "unlink";
    case OpKind::Rmdir: return "rmdir";
    case OpKind::Rename: return "rename";
    case OpKind::Chmod: return "chmod";
    case OpKind::Chown: return "chown";
    case OpKind::Truncate: return "truncate";
    case OpKind::Utimens: return "utimens";
    case OpKind::Write: return "write";
    case OpKind::Fallocate: return "fallocate";
    case OpKind::CopyRange: return "copy_file_range";
    case OpKind::Setxattr: return "setxattr";
    case OpKind::Removexattr: return "removexattr";
  }
  return "?";
}

Result<void> LoggingGate::begin(Change& c) {
  SPDLOG_DEBUG("begin op={} path={} pid={} uid={}", op_name(c.op), c.path, c.caller.pid,
               c.caller.uid);
  (void)c;
  return {};
}

void LoggingGate::end(Change& c, int err) {
  SPDLOG_DEBUG("end op={} path={} err={}", op_name(c.op), c.path, err);
  (void)c;
  (void)err;
}

void LoggingGate::denied(Change& c, int err) {
  spdlog::info("denied op={} path={}{}{} err={} pid={} uid={}", op_name(c.op), c.path,
               c.path2.empty() ? "" : " -> ", c.path2, std::strerror(err), c.caller.pid,
               c.caller.uid);
}

}  // namespace scopefs::fs
