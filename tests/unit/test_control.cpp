// The admin control channel: Server/call round trips over a real Unix socket
// in a temp dir (peer credentials, stale and live sockets, refused requests,
// timeouts, prompt shutdown), who may decide (refuse_reason), and the state
// directory's sharing with the admin group.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "journal/control.hpp"
#include "test_util.hpp"

namespace {

using scopefs::control::call;
using scopefs::control::Peer;
using scopefs::control::refuse_reason;
using scopefs::control::Server;
using scopefs::control::share_state_dir;
using scopefs::test::TempDir;
using json = nlohmann::json;

constexpr uid_t kStranger = 4000001;  // no passwd entry
constexpr gid_t kAdminGid = 4000002;
constexpr gid_t kOtherGid = 4000003;

json echo(const json& request, const Peer& peer) {
  return json{
      {"ok", true}, {"request", request}, {"uid", peer.uid}, {"gid", peer.gid}, {"pid", peer.pid}};
}

// A raw client, for what call() never sends.
class RawClient {
 public:
  explicit RawClient(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof(a.sun_path));
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    REQUIRE(::connect(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) == 0);
  }
  ~RawClient() { ::close(fd_); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  void send(const std::string& data) {
    REQUIRE(::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(data.size()));
  }
  void end_writing() { REQUIRE(::shutdown(fd_, SHUT_WR) == 0); }
  // Everything until the server closes.
  std::string read_all() {
    std::string out;
    char buf[4096];
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  int fd_ = -1;
};

// Leaves a socket file with nobody listening, as a crashed daemon does.
void make_stale_socket(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) == 0);
  REQUIRE(::listen(fd, 1) == 0);
  ::close(fd);
  REQUIRE(S_ISSOCK(scopefs::test::mode_of(path)));
}

size_t open_fds() {
  return static_cast<size_t>(std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                                           std::filesystem::directory_iterator{}));
}

bool is_root() { return ::geteuid() == 0; }

// A child process with the given ids that waits to be killed.
class Child {
 public:
  Child(uid_t ruid, uid_t euid, gid_t gid, gid_t supplementary) {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::close(p[0]);
      if (::setgroups(1, &supplementary) != 0 || ::setresgid(gid, gid, gid) != 0 ||
          ::setresuid(ruid, euid, euid) != 0) {
        ::_exit(1);
      }
      char ok = 'k';
      (void)!::write(p[1], &ok, 1);
      for (;;) ::pause();
    }
    ::close(p[1]);
    char c = 0;
    bool ready = ::read(p[0], &c, 1) == 1;
    ::close(p[0]);
    REQUIRE(ready);
  }
  ~Child() {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

}  // namespace

TEST_CASE("control: round trip carries the peer's credentials") {
  TempDir dir;
  const std::string path = dir.at("control.sock");
  const size_t fds_before = open_fds();
  {
    Server server(path, std::nullopt, echo);
    server.start();
    CHECK((scopefs::test::mode_of(path) & 07777) == 0600);

    for (int i = 0; i < 3; ++i) {  // one connection per request, served in turn
      auto r = call(path, json{{"cmd", "ping"}, {"n", i}}, 2000);
      REQUIRE(r.ok());
      CHECK((*r)["ok"] == true);
      CHECK((*r)["request"] == json{{"cmd", "ping"}, {"n", i}});
      CHECK((*r)["uid"] == ::geteuid());
      CHECK((*r)["gid"] == ::getegid());
      CHECK((*r)["pid"] == ::getpid());
    }
  }
  CHECK(open_fds() == fds_before);  // no fd outlives the server or a call
  CHECK_FALSE(scopefs::test::exists_nofollow(path));
}

TEST_CASE("control: socket mode and group with an admin group") {
  if (!is_root()) return;
  TempDir dir;
  const std::string path = dir.at("control.sock");
  {
    Server server(path, kAdminGid, echo);
    server.start();
    struct stat st {};
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0660);
    CHECK(st.st_uid == 0);
    CHECK(st.st_gid == kAdminGid);
    CHECK(call(path, json{{"cmd", "ping"}}, 2000).ok());
  }
  CHECK_FALSE(scopefs::test::exists_nofollow(path));  // unlinked by the destructor
}

TEST_CASE("control: a stale socket file is replaced") {
  TempDir dir;
  const std::string path = dir.at("control.sock");
  make_stale_socket(path);
  auto before = call(path, json{{"cmd", "ping"}}, 1000);
  CHECK(before.error() == ECONNREFUSED);

  Server server(path, std::nullopt, echo);
  server.start();
  auto r = call(path, json{{"cmd", "ping"}}, 2000);
  REQUIRE(r.ok());
  CHECK((*r)["ok"] == true);
}

TEST_CASE("control: a live socket is not taken over") {
  TempDir dir;
  const std::string path = dir.at("control.sock");
  Server first(path, std::nullopt, echo);
  first.start();
  CHECK_THROWS_AS(Server(path, std::nullopt, echo), std::runtime_error);
  auto r = call(path, json{{"cmd", "ping"}}, 2000);  // the first one still answers
  REQUIRE(r.ok());
  CHECK((*r)["ok"] == true);
}

TEST_CASE("control: a non-socket file at the path is an error, left alone") {
  TempDir dir;
  const std::string path = dir.file("control.sock", "precious");
  CHECK_THROWS_AS(Server(path, std::nullopt, echo), std::runtime_error);
  CHECK(scopefs::test::read_file(path) == "precious");
}

TEST_CASE("control: refused requests get ok=false and the connection closes") {
  TempDir dir;
  const std::string path = dir.at("control.sock");
  std::atomic<int> handled = 0;
  Server server(path, std::nullopt, [&](const json& req, const Peer& peer) {
    ++handled;
    return echo(req, peer);
  });
  server.start();

  SUBCASE("oversized line") {
    auto r = call(path, json{{"cmd", "x"}, {"pad", std::string(size_t{2} << 20, 'a')}}, 5000);
    REQUIRE(r.ok());
    CHECK((*r)["ok"] == false);
    CHECK((*r)["error"].get<std::string>().find("1 MiB") != std::string::npos);
  }
  SUBCASE("oversized line, no newline, raw") {
    RawClient c(path);
    c.send(std::string((size_t{1} << 20) + 10, ' '));
    auto reply = json::parse(c.read_all());
    CHECK(reply["ok"] == false);
  }
  SUBCASE("invalid JSON") {
    RawClient c(path);
    c.send("{\"cmd\": nope}\n");
    std::string out = c.read_all();
    REQUIRE(!out.empty());
    CHECK(out.back() == '\n');
    auto reply = json::parse(out);
    CHECK(reply["ok"] == false);
    CHECK(reply["error"].get<std::string>().find("invalid JSON") != std::string::npos);
  }
  SUBCASE("empty line") {
    RawClient c(path);
    c.send("\n");
    CHECK(json::parse(c.read_all())["ok"] == false);
  }
  SUBCASE("nested too deeply") {
    RawClient c(path);
    c.send(std::string(100, '[') + std::string(100, ']') + "\n");
    auto reply = json::parse(c.read_all());
    CHECK(reply["ok"] == false);
    CHECK(reply["error"].get<std::string>().find("nested") != std::string::npos);
  }
  CHECK(handled == 0);
  CHECK(call(path, json{{"cmd", "after"}}, 2000).ok());  // the server lives on
  CHECK(handled == 1);
}

TEST_CASE("control: a last request without newline is served at end of stream") {
  TempDir dir;
  const std::string path = dir.at("control.sock");
  Server server(path, std::nullopt, echo);
  server.start();
  RawClient c(path);
  c.send("{\"cmd\":\"ping\"}");
  c.end_writing();
  auto reply = json::parse(c.read_all());
  CHECK(reply["ok"] == true);
  CHECK(reply["request"]["cmd"] == "ping");
}

TEST_CASE("control: a handler that throws answers with its message") {
  TempDir dir;
  const std::string path = dir.at("control.sock");
  Server server(path, std::nullopt, [](const json&, const Peer&) -> json {
    throw std::runtime_error("no such change 42");
  });
  server.start();
  auto r = call(path, json{{"cmd", "approve"}, {"seq", 42}}, 2000);
  REQUIRE(r.ok());
  CHECK((*r)["ok"] == false);
  CHECK((*r)["error"] == "no such change 42");
}

TEST_CASE("control: call() without a daemon") {
  TempDir dir;
  CHECK(call(dir.at("control.sock"), json{{"cmd", "ping"}}, 1000).error() == ENOENT);
  CHECK(call(dir.at("missing/control.sock"), json{{"cmd", "ping"}}, 1000).error() == ENOENT);
}

TEST_CASE("control: call() times out on a slow handler") {
  TempDir dir;
  const std::string path = dir.at("control.sock");
  Server server(path, std::nullopt, [](const json& req, const Peer& peer) {
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    return echo(req, peer);
  });
  server.start();
  CHECK(call(path, json{{"cmd", "ping"}}, 50).error() == ETIMEDOUT);
  CHECK(call(path, json{{"cmd", "ping"}}, 5000).ok());
}

TEST_CASE("control: a silent client is dropped, and does not delay shutdown") {
  TempDir dir;
  const std::string path = dir.at("control.sock");
  auto server = std::make_unique<Server>(path, std::nullopt, echo);
  server->start();
  {
    RawClient silent(path);
    auto t0 = std::chrono::steady_clock::now();
    auto r = call(path, json{{"cmd", "ping"}}, 10000);  // waits behind the silent one
    auto waited = std::chrono::steady_clock::now() - t0;
    REQUIRE(r.ok());
    CHECK(waited >= std::chrono::milliseconds(4000));
    CHECK(waited < std::chrono::milliseconds(8000));
    CHECK(silent.read_all().empty());  // closed without an answer
  }
  RawClient stuck(path);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let it be accepted
  auto t0 = std::chrono::steady_clock::now();
  server.reset();
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(1000));
  CHECK_FALSE(scopefs::test::exists_nofollow(path));
}

TEST_CASE("control: a socket path longer than sun_path") {
  TempDir dir;
  const std::string deep = dir.mkdir(std::string(60, 'd') + "/" + std::string(60, 'e'));
  const std::string path = deep + "/control.sock";
  REQUIRE(path.size() > 108);
  Server server(path, std::nullopt, echo);
  server.start();
  CHECK(S_ISSOCK(scopefs::test::mode_of(path)));
  auto r = call(path, json{{"cmd", "ping"}}, 2000);
  REQUIRE(r.ok());
  CHECK((*r)["pid"] == ::getpid());
}

TEST_CASE("control: refuse_reason") {
  SUBCASE("the agent never may, even as root or in the admin group") {
    auto root_agent = refuse_reason(Peer{0, 0, 0}, uid_t{0}, kAdminGid);
    REQUIRE(root_agent.has_value());
    CHECK(*root_agent ==
          "refused: uid 0 is the task's agent user; the agent cannot approve its own changes");
    auto member_agent = refuse_reason(Peer{0, kStranger, kAdminGid}, kStranger, kAdminGid);
    REQUIRE(member_agent.has_value());
    CHECK(member_agent->find("agent") != std::string::npos);
  }
  SUBCASE("root may when it is not the agent") {
    CHECK_FALSE(refuse_reason(Peer{0, 0, 0}, kStranger, std::nullopt).has_value());
    CHECK_FALSE(refuse_reason(Peer{0, 0, 0}, std::nullopt, kAdminGid).has_value());
    if (is_root()) {
      CHECK_FALSE(refuse_reason(scopefs::control::self_peer(), kStranger, kAdminGid).has_value());
    }
  }
  SUBCASE("a non-member is refused, naming the admin group") {
    auto r = refuse_reason(Peer{0, kStranger, kOtherGid}, std::nullopt, kAdminGid);
    REQUIRE(r.has_value());
    CHECK(r->find("uid 4000001") != std::string::npos);
    CHECK(r->find("4000002") != std::string::npos);
  }
  SUBCASE("without an admin group only root may") {
    auto r = refuse_reason(Peer{0, kStranger, kAdminGid}, std::nullopt, std::nullopt);
    REQUIRE(r.has_value());
    CHECK(r->find("no admin group") != std::string::npos);
  }
  SUBCASE("a member by primary gid may") {
    CHECK_FALSE(refuse_reason(Peer{0, kStranger, kAdminGid}, std::nullopt, kAdminGid).has_value());
    CHECK_FALSE(
        refuse_reason(Peer{0, kStranger, kAdminGid}, uid_t{4000009}, kAdminGid).has_value());
  }
}

TEST_CASE("control: refuse_reason reads a live peer's groups and uids") {
  if (!is_root()) return;
  SUBCASE("supplementary group from /proc/PID/status") {
    Child child(kStranger, kStranger, kOtherGid, kAdminGid);
    Peer peer{child.pid(), kStranger, kOtherGid};
    CHECK_FALSE(refuse_reason(peer, std::nullopt, kAdminGid).has_value());
    // A pid whose process has another uid is not trusted: back to passwd,
    // where 4000005 has no entry.
    Peer reused{child.pid(), 4000005, kOtherGid};
    CHECK(refuse_reason(reused, std::nullopt, kAdminGid).has_value());
  }
  SUBCASE("a setuid-root helper run by the agent is the agent") {
    Child child(kStranger, 0, 0, kAdminGid);
    CHECK(refuse_reason(Peer{child.pid(), 0, 0}, kStranger, kAdminGid).has_value());
    CHECK_FALSE(refuse_reason(Peer{child.pid(), 0, 0}, uid_t{4000009}, kAdminGid).has_value());
  }
}

TEST_CASE("control: share_state_dir") {
  TempDir dir;
  const std::string state = dir.mkdir("state");
  const std::string inner = dir.file("state/journal", "x", 0600);
  REQUIRE(share_state_dir(state, std::nullopt).ok());
  CHECK((scopefs::test::mode_of(state) & 07777) == 0700);
  if (is_root()) {
    REQUIRE(share_state_dir(state, kAdminGid).ok());
    struct stat st {};
    REQUIRE(::stat(state.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0750);
    CHECK(st.st_gid == kAdminGid);
    CHECK((scopefs::test::mode_of(inner) & 07777) == 0600);  // contents untouched
    REQUIRE(share_state_dir(state, std::nullopt).ok());
    CHECK((scopefs::test::mode_of(state) & 07777) == 0700);
  }
  CHECK(share_state_dir(dir.at("missing"), kAdminGid).error() == ENOENT);
  CHECK(share_state_dir(inner, kAdminGid).error() == ENOTDIR);
}
