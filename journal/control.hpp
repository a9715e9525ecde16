// The admin control channel: a Unix stream socket in the state directory
// through which `scopefs approve/reject/rollback/...` reach a running daemon
// (DESIGN.md "Control"). Control never goes through the mount, where the agent
// could reach it.
//
// Protocol: newline-delimited JSON, one request and one response per
// connection. The client sends one JSON line; the server answers with one JSON
// line and closes. The server refuses (answers {"ok":false,"error":...} and
// closes) a line over 1 MiB, JSON nested more than 64 levels or invalid JSON;
// a handler that throws yields {"ok":false,"error":what()}. The peer's
// credentials come from SO_PEERCRED (pid, effective uid and gid at connect()).
//
// Who may decide: refuse_reason() below. The handler applies it to the
// commands that need it; read-only commands (status, log) may be open to
// anyone who can reach the socket, which its mode limits to root and the admin
// group anyway.
//
// Concurrency: the Server serves on one background thread, one connection at
// a time. A client must deliver its whole request line within 5 s of being
// accepted and take the response within 5 s, or it is dropped, so a stuck or
// malicious client holds the server for at most that long. The handler runs
// on the server thread. An eventfd polled alongside every wait lets the
// destructor stop the thread promptly (it still waits for a running handler).
//
// Lifecycle: Server() replaces a stale socket file, binds, sets the socket's
// mode and group, listens (so no client can connect before the permissions
// hold); start() starts the thread; ~Server() stops it, closes the socket and
// unlinks the file if it is still the one it bound.
//
// Paths longer than sun_path (107 bytes) work: the socket is then bound and
// connected through /proc/self/fd/N/<name> of its directory.
#pragma once

#include <sys/types.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "fs/result.hpp"
#include "fs/sys/unique_fd.hpp"

namespace scopefs::control {

inline constexpr size_t kMaxRequestBytes = size_t{1} << 20;    // one request line
inline constexpr size_t kMaxResponseBytes = size_t{64} << 20;  // what call() accepts
inline constexpr int kMaxRequestDepth = 64;                    // JSON nesting
inline constexpr int kClientTimeoutMs = 5000;                  // server side, per direction

struct Peer {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

// This process (pid, effective uid and gid, as SO_PEERCRED reports them).
Peer self_peer();

// Empty if `peer` may make admin decisions (approve, reject, rollback); else a
// one-line reason to print. In this order: the agent's uid never may (nor a
// live peer whose real or saved uid is the agent's, e.g. a setuid helper it
// ran); root may; a member of admin_gid may (primary gid, or supplementary
// groups: for a live peer those of /proc/PID/status when that process still
// has peer.uid as its effective uid, else getgrouplist of the uid's passwd
// entry); everyone else is refused.
std::optional<std::string> refuse_reason(const Peer& peer, std::optional<uid_t> agent_uid,
                                         std::optional<gid_t> admin_gid);

class Server {
 public:
  using Handler = std::function<nlohmann::json(const nlohmann::json& request, const Peer& peer)>;

  // Listens at `path` (a stale socket file is replaced; a live one, or a
  // non-socket file there, is an error). The socket is 0660 root:admin_gid
  // when admin_gid is set, else 0600. Throws std::runtime_error on failure.
  Server(std::string path, std::optional<gid_t> admin_gid, Handler handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Starts the serving thread (once; later calls do nothing).
  void start();
  const std::string& path() const { return path_; }

 private:
  void serve();
  void serve_one(int conn_fd);

  std::string path_;
  Handler handler_;
  sys::UniqueFd listen_fd_;
  sys::UniqueFd stop_fd_;  // eventfd: readable once the destructor asks to stop
  dev_t dev_ = 0;          // the socket file we bound, unlinked only if still there
  ino_t ino_ = 0;
  std::thread thread_;
};

// One request/response. Errno{ENOENT} or Errno{ECONNREFUSED} when no daemon
// listens, EACCES when the caller may not reach the socket, ETIMEDOUT after
// timeout_ms (negative: no limit), EPROTO when the answer is not one JSON
// line, EMSGSIZE when it is over kMaxResponseBytes.
Result<nlohmann::json> call(const std::string& path, const nlohmann::json& request, int timeout_ms);

// Makes the state directory reachable by the admin group: group admin_gid,
// mode 0750 (root-only 0700 when admin_gid is unset). Does not touch its
// contents (they stay root-only; only the socket is group-accessible). The
// directories above it must be searchable by the group too.
Result<void> share_state_dir(const std::string& state_dir, std::optional<gid_t> admin_gid);

}  // namespace scopefs::control
