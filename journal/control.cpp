#include "journal/control.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

#include "fs/sys/sys.hpp"

namespace scopefs::control {

namespace {

using Clock = std::chrono::steady_clock;
using Deadline = std::optional<Clock::time_point>;  // nullopt: no limit

// ---------------------------------------------------------------------------
// Socket syscalls. fs/sys has no socket family yet, so the thin wrappers live
// here, under the same rules (STYLE rule 2, 10): errno is saved at once,
// EINTR retried where the call restarts, a positive errno comes back in a
// Result, and nothing below this block reads errno.

Errno last_errno() { return Errno{errno}; }

template <typename F>
auto retry(F f) {
  decltype(f()) r;
  do {
    r = f();
  } while (r == -1 && errno == EINTR);
  return r;
}

Result<void> void_result(long r) {
  if (r == -1) return last_errno();
  return {};
}

// A sockaddr_un for `path`. A path too long for sun_path is reached through
// /proc/self/fd/N/<name> of its directory, which stays open as long as this.
class SockAddr {
 public:
  static Result<SockAddr> make(const std::string& path) {
    SockAddr a;
    if (path.empty() || path.find('\0') != std::string::npos) return Errno{EINVAL};
    std::string target = path;
    if (path.size() >= sizeof(a.addr_.sun_path)) {
      auto slash = path.rfind('/');
      std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
      std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
      auto fd = sys::open_at(AT_FDCWD, dir.c_str(), O_PATH | O_DIRECTORY);
      if (!fd) return Errno{fd.error()};
      a.dir_ = std::move(*fd);
      target = "/proc/self/fd/" + std::to_string(a.dir_.get()) + "/" + name;
      if (target.size() >= sizeof(a.addr_.sun_path)) return Errno{ENAMETOOLONG};
    }
    a.addr_.sun_family = AF_UNIX;
    std::memcpy(a.addr_.sun_path, target.data(), target.size());
    a.len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + target.size() + 1);
    return a;
  }

  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockets API
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&addr_); }
  socklen_t len() const { return len_; }

 private:
  sockaddr_un addr_{};
  socklen_t len_ = 0;
  sys::UniqueFd dir_;
};

Result<sys::UniqueFd> make_socket() {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd == -1) return last_errno();
  return sys::UniqueFd(fd);
}

// Non-blocking connect. A Unix socket either connects at once or fails
// (EAGAIN when the listener's backlog is full); EISCONN after an interrupted
// attempt means it did connect.
Result<void> connect_to(int fd, const SockAddr& a) {
  if (::connect(fd, a.get(), a.len()) == 0) return {};
  Errno e = last_errno();
  if (e.value == EINTR || e.value == EISCONN) {
    if (::connect(fd, a.get(), a.len()) == 0) return {};
    e = last_errno();
    if (e.value == EISCONN) return {};
  }
  return e;
}

Result<void> bind_to(int fd, const SockAddr& a) {
  return void_result(::bind(fd, a.get(), a.len()));
}
Result<void> listen_on(int fd, int backlog) { return void_result(::listen(fd, backlog)); }

Result<sys::UniqueFd> accept_one(int fd) {
  int c = retry([&] { return ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK); });
  if (c == -1) return last_errno();
  return sys::UniqueFd(c);
}

Result<Peer> peer_of(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) return last_errno();
  return Peer{cred.pid, cred.uid, cred.gid};
}

Result<size_t> recv_some(int fd, char* buf, size_t n) {
  ssize_t r = retry([&] { return ::recv(fd, buf, n, 0); });
  if (r == -1) return last_errno();
  return static_cast<size_t>(r);
}

Result<size_t> send_some(int fd, const char* buf, size_t n) {
  ssize_t r = retry([&] { return ::send(fd, buf, n, MSG_NOSIGNAL); });
  if (r == -1) return last_errno();
  return static_cast<size_t>(r);
}

Result<struct stat> lstat_path(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == -1) return last_errno();
  return st;
}

Result<void> unlink_path(const std::string& path) { return void_result(::unlink(path.c_str())); }
Result<void> chmod_path(const std::string& path, mode_t mode) {
  return void_result(::chmod(path.c_str(), mode));
}
Result<void> chgrp_path(const std::string& path, gid_t gid) {
  return void_result(::lchown(path.c_str(), static_cast<uid_t>(-1), gid));
}

Result<sys::UniqueFd> make_eventfd() {
  int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd == -1) return last_errno();
  return sys::UniqueFd(fd);
}

Result<void> signal_eventfd(int fd) {
  uint64_t one = 1;
  return void_result(retry([&] { return ::write(fd, &one, sizeof(one)); }));
}

int ms_until(const Deadline& d) {
  if (!d) return -1;
  auto left = std::chrono::ceil<std::chrono::milliseconds>(*d - Clock::now()).count();
  return static_cast<int>(std::clamp<decltype(left)>(left, 0, 1 << 30));
}

// Waits until `fd` has `events`. ETIMEDOUT at the deadline, ECANCELED once
// `stop_fd` (may be -1) is readable. EINTR restarts with the time left.
Result<short> wait_for(int fd, short events, int stop_fd, const Deadline& deadline) {
  for (;;) {
    pollfd p[2] = {{fd, events, 0}, {stop_fd, POLLIN, 0}};
    int n = ::poll(p, stop_fd >= 0 ? 2 : 1, ms_until(deadline));
    if (n == -1) {
      Errno e = last_errno();
      if (e.value == EINTR) continue;
      return e;
    }
    if (stop_fd >= 0 && p[1].revents != 0) return Errno{ECANCELED};
    if (n == 0) return Errno{ETIMEDOUT};
    if (p[0].revents != 0) return p[0].revents;
  }
}

void sleep_ms(int stop_fd, int ms) {
  pollfd p{stop_fd, POLLIN, 0};
  (void)::poll(&p, 1, ms);  // the caller re-checks stop_fd
}

// ---------------------------------------------------------------------------
// Line I/O over a non-blocking socket.

Result<void> send_all(int fd, std::string_view data, int stop_fd, const Deadline& deadline) {
  while (!data.empty()) {
    auto n = send_some(fd, data.data(), data.size());
    if (n) {
      data.remove_prefix(*n);
      continue;
    }
    if (n.error() != EAGAIN && n.error() != EWOULDBLOCK) return Errno{n.error()};
    if (auto w = wait_for(fd, POLLOUT, stop_fd, deadline); !w) return Errno{w.error()};
  }
  return {};
}

// Reads up to the first '\n' (not included; anything after it is ignored).
// At end of stream, what came so far is the line; ENODATA if nothing came.
// EMSGSIZE when more than `max` bytes arrive without a newline.
Result<std::string> read_line(int fd, int stop_fd, const Deadline& deadline, size_t max) {
  std::string buf;
  constexpr size_t kChunk = 64 * 1024;
  for (;;) {
    size_t old = buf.size();
    buf.resize(old + kChunk);
    auto n = recv_some(fd, buf.data() + old, kChunk);
    buf.resize(old + (n ? *n : 0));
    if (n && *n == 0) {
      if (buf.empty()) return Errno{ENODATA};
      if (buf.size() > max) return Errno{EMSGSIZE};
      return buf;
    }
    if (n) {
      if (auto nl = buf.find('\n', old); nl != std::string::npos) {
        if (nl > max) return Errno{EMSGSIZE};
        buf.resize(nl);
        return buf;
      }
      if (buf.size() > max) return Errno{EMSGSIZE};
      continue;
    }
    if (n.error() != EAGAIN && n.error() != EWOULDBLOCK) return Errno{n.error()};
    if (auto w = wait_for(fd, POLLIN, stop_fd, deadline); !w) return Errno{w.error()};
  }
}

// Nesting depth of a JSON text, stopping early past `limit` (nlohmann's
// parser is iterative, but code that walks the value afterwards may not be).
int json_depth(std::string_view s, int limit) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) break;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

// One line of JSON; names that are not UTF-8 come out with U+FFFD instead of
// throwing.
std::string to_line(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

nlohmann::json error_response(const std::string& message) {
  return nlohmann::json{{"ok", false}, {"error", message}};
}

std::string errno_text(int e) { return std::strerror(e); }

std::runtime_error failure(const std::string& what, const std::string& path, int e) {
  return std::runtime_error("control socket " + path + ": " + what + ": " + errno_text(e));
}

// ---------------------------------------------------------------------------
// Credentials.

struct ProcIds {
  std::vector<uid_t> uids;  // real, effective, saved, filesystem
  std::vector<gid_t> groups;
};

std::optional<ProcIds> read_proc_ids(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  if (!in) return std::nullopt;
  ProcIds ids;
  bool have_uid = false;
  bool have_groups = false;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Uid:", 0) == 0) {
      std::istringstream ss(line.substr(4));
      unsigned long v = 0;
      while (ss >> v) ids.uids.push_back(static_cast<uid_t>(v));
      have_uid = ids.uids.size() == 4;
    } else if (line.rfind("Groups:", 0) == 0) {
      std::istringstream ss(line.substr(7));
      unsigned long v = 0;
      while (ss >> v) ids.groups.push_back(static_cast<gid_t>(v));
      have_groups = true;
    }
  }
  if (!have_uid || !have_groups) return std::nullopt;
  return ids;
}

// Supplementary groups of the uid's passwd entry (with its primary group);
// empty when the uid has no entry.
std::vector<gid_t> passwd_groups(uid_t uid) {
  std::vector<char> buf(4096);
  passwd pw{};
  passwd* found = nullptr;
  for (int i = 0; i < 8; ++i) {
    int rc = ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found);
    if (rc != ERANGE) break;
    buf.resize(buf.size() * 4);
  }
  if (found == nullptr) return {};
  std::vector<gid_t> groups(64);
  for (int i = 0; i < 8; ++i) {
    int n = static_cast<int>(groups.size());
    if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) != -1) {
      groups.resize(static_cast<size_t>(n));
      return groups;
    }
    groups.resize(std::max(static_cast<size_t>(n), groups.size() * 2));
  }
  return {pw.pw_gid};
}

std::string group_label(gid_t gid) {
  std::vector<char> buf(4096);
  group gr{};
  group* found = nullptr;
  for (int i = 0; i < 8; ++i) {
    int rc = ::getgrgid_r(gid, &gr, buf.data(), buf.size(), &found);
    if (rc != ERANGE) break;
    buf.resize(buf.size() * 4);
  }
  if (found == nullptr) return "gid " + std::to_string(gid);
  return std::string(gr.gr_name) + " (gid " + std::to_string(gid) + ")";
}

// Replaces a socket file nobody answers on; throws if one does, or if `path`
// is something else than a socket.
void remove_stale(const std::string& path, const SockAddr& addr) {
  auto st = lstat_path(path);
  if (!st) {
    if (st.error() == ENOENT) return;
    throw failure("cannot stat", path, st.error());
  }
  if (!S_ISSOCK(st->st_mode)) {
    throw std::runtime_error("control socket " + path + ": exists and is not a socket");
  }
  auto probe = make_socket();
  if (!probe) throw failure("cannot create a socket", path, probe.error());
  auto c = connect_to(probe->get(), addr);
  if (c || c.error() == EAGAIN) {
    throw std::runtime_error("control socket " + path +
                             ": another scopefs daemon is listening on it");
  }
  if (c.error() == ENOENT) return;
  if (c.error() != ECONNREFUSED) throw failure("cannot probe", path, c.error());
  spdlog::info("control: replacing stale socket {}", path);
  if (auto u = unlink_path(path); !u && u.error() != ENOENT) {
    throw failure("cannot remove the stale socket", path, u.error());
  }
}

}  // namespace

Peer self_peer() { return Peer{::getpid(), ::geteuid(), ::getegid()}; }

std::optional<std::string> refuse_reason(const Peer& peer, std::optional<uid_t> agent_uid,
                                         std::optional<gid_t> admin_gid) {
  auto agent_refusal = [&] {
    return "refused: uid " + std::to_string(*agent_uid) +
           " is the task's agent user; the agent cannot approve its own changes";
  };
  if (agent_uid && peer.uid == *agent_uid) return agent_refusal();

  // A live peer is trusted for its ids only while it still has the effective
  // uid it connected with (else the pid may have been reused).
  std::optional<ProcIds> live;
  if (peer.pid > 0) {
    live = read_proc_ids(peer.pid);
    if (live && live->uids[1] != peer.uid) live.reset();
  }
  if (live && agent_uid &&
      std::find(live->uids.begin(), live->uids.end(), *agent_uid) != live->uids.end()) {
    return agent_refusal();
  }

  if (peer.uid == 0) return std::nullopt;
  if (!admin_gid) {
    return "refused: uid " + std::to_string(peer.uid) +
           " is not root and no admin group is configured, so only root may approve, reject"
           " or roll back";
  }
  if (peer.gid == *admin_gid) return std::nullopt;
  std::vector<gid_t> groups = live ? live->groups : passwd_groups(peer.uid);
  if (std::find(groups.begin(), groups.end(), *admin_gid) != groups.end()) return std::nullopt;
  return "refused: uid " + std::to_string(peer.uid) + " is neither root nor in the admin group " +
         group_label(*admin_gid);
}

Server::Server(std::string path, std::optional<gid_t> admin_gid, Handler handler)
    : path_(std::move(path)), handler_(std::move(handler)) {
  auto addr = SockAddr::make(path_);
  if (!addr) throw failure("unusable path", path_, addr.error());
  remove_stale(path_, *addr);

  auto sock = make_socket();
  if (!sock) throw failure("cannot create a socket", path_, sock.error());
  if (auto b = bind_to(sock->get(), *addr); !b) throw failure("cannot bind", path_, b.error());

  // The file is ours from here: remove it if a later step fails. Nobody can
  // connect before listen(), so the permissions hold before anyone gets in.
  try {
    auto st = lstat_path(path_);
    if (!st) throw failure("cannot stat", path_, st.error());
    dev_ = st->st_dev;
    ino_ = st->st_ino;
    if (admin_gid) {
      if (auto r = chgrp_path(path_, *admin_gid); !r) {
        throw failure("cannot give it to gid " + std::to_string(*admin_gid), path_, r.error());
      }
    }
    if (auto r = chmod_path(path_, admin_gid ? 0660 : 0600); !r) {
      throw failure("cannot chmod", path_, r.error());
    }
    if (auto r = listen_on(sock->get(), 16); !r) throw failure("cannot listen", path_, r.error());
    auto ev = make_eventfd();
    if (!ev) throw failure("cannot create an eventfd", path_, ev.error());
    stop_fd_ = std::move(*ev);
  } catch (...) {
    (void)unlink_path(path_);
    throw;
  }
  listen_fd_ = std::move(*sock);
}

Server::~Server() {
  // Nothing may leave a destructor. What can throw below: the log line
  // (formatting), and Result's accessors (std::get; not after the checks
  // made here, but that is not visible to the compiler). The thread is
  // joined and the socket closed whatever happens.
  if (thread_.joinable()) {
    if (auto r = signal_eventfd(stop_fd_.get()); !r) {
      try {
        spdlog::error("control: cannot stop the server thread: {}", errno_text(r.error()));
      } catch (...) {
        // Nowhere left to report it.
      }
    }
    thread_.join();
  }
  listen_fd_.reset();
  try {
    // Unlink only the file we bound (not one a successor put there).
    if (auto st = lstat_path(path_); st && st->st_dev == dev_ && st->st_ino == ino_) {
      (void)unlink_path(path_);
    }
  } catch (...) {
    // Leaves a stale socket file; the next daemon replaces it.
  }
}

void Server::start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { serve(); });
}

void Server::serve() {
  const int stop = stop_fd_.get();
  for (;;) {
    auto w = wait_for(listen_fd_.get(), POLLIN, stop, std::nullopt);
    if (!w) {
      if (w.error() == ECANCELED) return;
      spdlog::error("control: poll failed: {}", errno_text(w.error()));
      sleep_ms(stop, 100);
      continue;
    }
    if ((*w & POLLIN) == 0) {
      spdlog::error("control: listening socket {} failed (revents {:#x})", path_, *w);
      sleep_ms(stop, 100);
      continue;
    }
    auto conn = accept_one(listen_fd_.get());
    if (!conn) {
      int e = conn.error();
      if (e == EAGAIN || e == EWOULDBLOCK || e == ECONNABORTED || e == EPROTO) continue;
      if (e == EMFILE || e == ENFILE) {
        spdlog::error("control: out of file descriptors ({}); cannot accept an admin connection",
                      errno_text(e));
      } else {
        spdlog::error("control: accept failed: {}", errno_text(e));
      }
      sleep_ms(stop, 100);
      continue;
    }
    try {
      serve_one(conn->get());
    } catch (const std::exception& e) {
      spdlog::error("control: dropping a connection: {}", e.what());
    } catch (...) {
      spdlog::error("control: dropping a connection: unknown exception");
    }
  }
}

void Server::serve_one(int conn_fd) {
  const int stop = stop_fd_.get();
  auto peer = peer_of(conn_fd);
  if (!peer) {
    spdlog::warn("control: cannot read the peer's credentials: {}", errno_text(peer.error()));
    return;
  }
  auto line = read_line(conn_fd, stop, Clock::now() + std::chrono::milliseconds(kClientTimeoutMs),
                        kMaxRequestBytes);
  nlohmann::json response;
  if (!line) {
    if (line.error() != EMSGSIZE) {
      if (line.error() == ETIMEDOUT) {
        spdlog::warn("control: dropped pid={} uid={}: no request within {} ms", peer->pid,
                     peer->uid, kClientTimeoutMs);
      } else if (line.error() != ENODATA && line.error() != ECANCELED) {
        SPDLOG_DEBUG("control: reading from pid={} uid={} failed: {}", peer->pid, peer->uid,
                     errno_text(line.error()));
      }
      return;
    }
    response =
        error_response("request line over " + std::to_string(kMaxRequestBytes >> 20) + " MiB");
  } else if (json_depth(*line, kMaxRequestDepth) > kMaxRequestDepth) {
    response = error_response("request nested deeper than " + std::to_string(kMaxRequestDepth) +
                              " levels");
  } else {
    nlohmann::json request;
    try {
      request = nlohmann::json::parse(*line);
    } catch (const nlohmann::json::parse_error& e) {
      response = error_response(std::string("invalid JSON request: ") + e.what());
    }
    if (response.is_null()) {
      SPDLOG_DEBUG("control: op={} pid={} uid={} gid={}",
                   request.is_object() && request.contains("cmd") ? request.at("cmd").dump() : "?",
                   peer->pid, peer->uid, peer->gid);
      try {
        response = handler_(request, *peer);
      } catch (const std::exception& e) {
        response = error_response(e.what());
      } catch (...) {
        response = error_response("internal error");
      }
    }
  }
  auto sent = send_all(conn_fd, to_line(response), stop,
                       Clock::now() + std::chrono::milliseconds(kClientTimeoutMs));
  if (!sent && (sent.error() == EPIPE || sent.error() == ECONNRESET)) {
    SPDLOG_DEBUG("control: pid={} uid={} left before the answer", peer->pid, peer->uid);
  } else if (!sent && sent.error() != ECANCELED) {
    spdlog::warn("control: cannot answer pid={} uid={}: {}", peer->pid, peer->uid,
                 errno_text(sent.error()));
  }
}

Result<nlohmann::json> call(const std::string& path, const nlohmann::json& request,
                            int timeout_ms) {
  Deadline deadline;
  if (timeout_ms >= 0) deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  auto addr = SockAddr::make(path);
  if (!addr) return Errno{addr.error()};
  auto sock = make_socket();
  if (!sock) return Errno{sock.error()};
  for (;;) {
    auto c = connect_to(sock->get(), *addr);
    if (c) break;
    if (c.error() != EAGAIN) return Errno{c.error()};
    // The backlog is full: the server is busy with other clients.
    int left = ms_until(deadline);
    if (left == 0) return Errno{ETIMEDOUT};
    sleep_ms(-1, left < 0 ? 10 : std::min(left, 10));
  }
  // A server that refuses a request (too long) answers and closes before
  // reading it all: after EPIPE or ECONNRESET, its answer may still be there.
  auto sent = send_all(sock->get(), to_line(request), -1, deadline);
  if (!sent && sent.error() != EPIPE && sent.error() != ECONNRESET) return Errno{sent.error()};
  auto line = read_line(sock->get(), -1, deadline, kMaxResponseBytes);
  if (!line) {
    if (!sent) return Errno{sent.error()};
    return Errno{line.error() == ENODATA ? EPROTO : line.error()};
  }
  try {
    return nlohmann::json::parse(*line);
  } catch (const nlohmann::json::parse_error&) {
    return Errno{EPROTO};
  }
}

Result<void> share_state_dir(const std::string& state_dir, std::optional<gid_t> admin_gid) {
  auto fd = sys::open_at(AT_FDCWD, state_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!fd) return Errno{fd.error()};
  if (!admin_gid) return sys::chmod_fd(fd->get(), 0700);
  // Group first, then mode: the group bits never apply to a previous group.
  if (auto r = sys::chown_fd(fd->get(), static_cast<uid_t>(-1), *admin_gid); !r) return r;
  return sys::chmod_fd(fd->get(), 0750);
}

}  // namespace scopefs::control
