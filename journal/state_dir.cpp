#include "journal/state_dir.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace scopefs::journal {

StateDir::StateDir(std::string path) : path_(std::move(path)) {
  std::error_code ec;
  std::filesystem::create_directories(path_, ec);
  if (ec) throw std::runtime_error("cannot create state_dir " + path_ + ": " + ec.message());
  ::chmod(path_.c_str(), 0700);
}

bool StateDir::try_lock() {
  if (lock_fd_) return true;
  int fd = ::open(file("lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot open " + file("lock") + ": " + std::strerror(errno));
  sys::UniqueFd owned(fd);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return false;
    throw std::runtime_error("cannot lock " + file("lock") + ": " + std::strerror(errno));
  }
  lock_fd_ = std::move(owned);
  return true;
}

bool StateDir::wait_unlocked(int timeout_ms) const {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  int fd = ::open(file("lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return true;
  sys::UniqueFd owned(fd);
  for (;;) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
      ::flock(fd, LOCK_UN);
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void StateDir::write_pid(pid_t pid) const {
  // 0644 whatever the umask (the daemon's is 0): only root may name the pid
  // that `scopefs unmount` waits for.
  int fd = ::open(file("daemon.pid").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                  0644);
  if (fd < 0) return;
  ::fchmod(fd, 0644);
  std::string s = std::to_string(pid) + "\n";
  [[maybe_unused]] ssize_t n = ::write(fd, s.data(), s.size());
  ::close(fd);
}

void StateDir::remove_pid() const { ::unlink(file("daemon.pid").c_str()); }

std::optional<pid_t> StateDir::read_pid() const {
  std::ifstream in(file("daemon.pid"));
  long pid = 0;
  if (in >> pid && pid > 0) return static_cast<pid_t>(pid);
  return std::nullopt;
}

}  // namespace scopefs::journal
