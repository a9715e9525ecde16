#include "journal/audit_stream.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <systemd/sd-journal.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>

#include "fs/sys/unique_fd.hpp"
#include "journal/audit_json.hpp"

namespace scopefs::journal {
namespace {

int64_t mono_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Syslog severity of a record: denied attempts are warnings, failures
// errors, the rest notices.
int severity(const Record& r) {
  if (r.state == RecordState::Denied) return LOG_WARNING;
  if (r.state == RecordState::Failed || r.state == RecordState::Interrupted) return LOG_ERR;
  return LOG_NOTICE;
}

// ---------------------------------------------------------------------------

class FileSink final : public AuditSink {
 public:
  FileSink(std::string path, std::string policy)
      : path_(std::move(path)), policy_(std::move(policy)) {}
  std::string name() const override { return "file:" + path_; }

  Result<void> deliver(const std::vector<StreamLine>& lines) override {
    if (!fd_) {
      int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
      if (fd < 0) return Errno{errno};
      fd_ = sys::UniqueFd(fd);
    }
    std::string buf;
    for (const auto& l : lines) {
      buf += l.json;
      buf.push_back('\n');
      if (policy_ == "always") {
        if (auto r = write_all(buf); !r) return r;
        if (::fdatasync(fd_.get()) != 0) return fail(errno);
        buf.clear();
      }
    }
    if (auto r = write_all(buf); !r) return r;
    if (policy_ == "batch" && !lines.empty() && ::fdatasync(fd_.get()) != 0) return fail(errno);
    return {};
  }

 private:
  Result<void> write_all(const std::string& buf) {
    size_t done = 0;
    while (done < buf.size()) {
      ssize_t n = ::write(fd_.get(), buf.data() + done, buf.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return fail(errno);
      done += static_cast<size_t>(n);
    }
    return {};
  }
  // Reopened on the next delivery (the file may have been rotated or the
  // disk freed).
  Errno fail(int err) {
    fd_ = sys::UniqueFd();
    return Errno{err};
  }

  std::string path_, policy_;
  sys::UniqueFd fd_;
};

// ---------------------------------------------------------------------------

class SyslogSink final : public AuditSink {
 public:
  SyslogSink(std::string target, const std::string& facility) : target_(std::move(target)) {
    static const std::pair<const char*, int> kFacilities[] = {
        {"auth", LOG_AUTH},     {"authpriv", LOG_AUTHPRIV}, {"daemon", LOG_DAEMON},
        {"user", LOG_USER},     {"local0", LOG_LOCAL0},     {"local1", LOG_LOCAL1},
        {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3},     {"local4", LOG_LOCAL4},
        {"local5", LOG_LOCAL5}, {"local6", LOG_LOCAL6},     {"local7", LOG_LOCAL7}};
    for (const auto& [n, v] : kFacilities)
      if (facility == n) facility_ = v;
    host_ = local_host_name();
  }
  std::string name() const override { return "syslog:" + target_; }

  Result<void> deliver(const std::vector<StreamLine>& lines) override {
    if (!fd_) {
      if (auto r = connect_target(); !r) return r;
    }
    for (const auto& l : lines) {
      std::string msg = format(l);
      for (;;) {
        ssize_t n = ::send(fd_.get(), msg.data(), msg.size(), MSG_NOSIGNAL);
        if (n >= 0) break;
        if (errno == EINTR) continue;
        int err = errno;
        fd_ = sys::UniqueFd();
        return Errno{err};
      }
    }
    return {};
  }

 private:
  // RFC 5424: <PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG
  std::string format(const StreamLine& l) const {
    const Record& r = l.rec;
    int pri = (facility_ & LOG_FACMASK) | severity(r);
    time_t s = static_cast<time_t>(r.time_ns / 1000000000);
    struct tm tm {};
    ::gmtime_r(&s, &tm);
    char ts[64];
    char date[32];
    std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(ts, sizeof ts, "%s.%06lldZ", date,
                  static_cast<long long>((r.time_ns / 1000) % 1000000));
    auto sd_escape = [](const std::string& v) {
      std::string o;
      for (char c : v) {
        if (c == '"' || c == '\\' || c == ']') o.push_back('\\');
        o.push_back(c);
      }
      return o;
    };
    std::string out = "<" + std::to_string(pri) + ">1 " + ts + " " + (host_.empty() ? "-" : host_) +
                      " scopefs " + std::to_string(::getpid()) + " " + (r.op.empty() ? "-" : r.op) +
                      " [scopefs@32473 task=\"" + sd_escape(r.task) + "\" run=\"" +
                      sd_escape(r.run) + "\" seq=\"" + std::to_string(r.seq) + "\" event=\"" +
                      std::to_string(l.eseq) + "\" state=\"" + std::string(state_name(r.state)) +
                      "\"] ";
    out += l.json;
    return out;
  }

  Result<void> connect_target() {
    if (target_.rfind("udp:", 0) == 0) {
      std::string hp = target_.substr(4);
      auto colon = hp.rfind(':');
      std::string host = hp.substr(0, colon), port = hp.substr(colon + 1);
      if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
      struct addrinfo hints {};
      hints.ai_socktype = SOCK_DGRAM;
      struct addrinfo* res = nullptr;
      if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || !res)
        return Errno{EHOSTUNREACH};
      int fd = ::socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      int err = errno;
      if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        err = errno;
        ::close(fd);
        fd = -1;
      }
      ::freeaddrinfo(res);
      if (fd < 0) return Errno{err};
      fd_ = sys::UniqueFd(fd);
      return {};
    }
    struct sockaddr_un sa {};
    sa.sun_family = AF_UNIX;
    if (target_.size() >= sizeof sa.sun_path) return Errno{ENAMETOOLONG};
    std::memcpy(sa.sun_path, target_.c_str(), target_.size() + 1);
    int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Errno{errno};
    sys::UniqueFd guard(fd);
    if (::connect(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) != 0) return Errno{errno};
    fd_ = std::move(guard);
    return {};
  }

  std::string target_;
  int facility_ = LOG_AUTH;
  std::string host_;
  sys::UniqueFd fd_;
};

// ---------------------------------------------------------------------------

class JournaldSink final : public AuditSink {
 public:
  std::string name() const override { return "journald"; }

  Result<void> deliver(const std::vector<StreamLine>& lines) override {
    for (const auto& l : lines) {
      const Record& r = l.rec;
      std::vector<std::string> fields = {"MESSAGE=scopefs " + r.op +
                                             (r.path.empty() ? "" : " /" + r.path) + " " +
                                             std::string(state_name(r.state)),
                                         "PRIORITY=" + std::to_string(severity(r)),
                                         "SYSLOG_IDENTIFIER=scopefs",
                                         "SCOPEFS_TASK=" + r.task,
                                         "SCOPEFS_RUN=" + r.run,
                                         "SCOPEFS_SEQ=" + std::to_string(r.seq),
                                         "SCOPEFS_EVENT=" + std::to_string(l.eseq),
                                         "SCOPEFS_OP=" + r.op,
                                         "SCOPEFS_STATE=" + std::string(state_name(r.state)),
                                         "SCOPEFS_PATH=/" + r.path,
                                         "SCOPEFS_CALLER_PID=" + std::to_string(r.caller.pid),
                                         "SCOPEFS_CALLER_UID=" + std::to_string(r.caller.uid),
                                         "SCOPEFS_JSON=" + l.json};
      std::vector<struct iovec> iov;
      iov.reserve(fields.size());
      for (auto& f : fields) iov.push_back({f.data(), f.size()});
      int rc = sd_journal_sendv(iov.data(), static_cast<int>(iov.size()));
      if (rc < 0) return Errno{-rc};
    }
    return {};
  }
};

}  // namespace

std::unique_ptr<AuditSink> make_file_sink(const std::string& path,
                                          const std::string& fsync_policy) {
  return std::make_unique<FileSink>(path, fsync_policy);
}
std::unique_ptr<AuditSink> make_syslog_sink(const std::string& target,
                                            const std::string& facility) {
  return std::make_unique<SyslogSink>(target, facility);
}
std::unique_ptr<AuditSink> make_journald_sink() { return std::make_unique<JournaldSink>(); }

std::vector<std::unique_ptr<AuditSink>> make_sinks(const config::AuditConfig& cfg) {
  std::vector<std::unique_ptr<AuditSink>> out;
  if (cfg.file) out.push_back(make_file_sink(*cfg.file, cfg.file_fsync));
  if (cfg.syslog) out.push_back(make_syslog_sink(*cfg.syslog, cfg.syslog_facility));
  if (cfg.journald) out.push_back(make_journald_sink());
  return out;
}

// ---------------------------------------------------------------------------

AuditStreamer::AuditStreamer(Journal& journal, std::vector<std::unique_ptr<AuditSink>> sinks,
                             bool include_intents)
    : journal_(journal),
      sinks_(std::move(sinks)),
      include_intents_(include_intents),
      host_(local_host_name()),
      cursors_(sinks_.size(), 0),
      retry_at_ms_(sinks_.size(), 0),
      failing_(sinks_.size(), false) {
  for (size_t i = 0; i < sinks_.size(); ++i) {
    auto v = journal_.kv().get("m/stream/" + sinks_[i]->name());
    if (v && *v) cursors_[i] = std::strtoull((*v)->c_str(), nullptr, 10);
  }
}

AuditStreamer::~AuditStreamer() { stop(0); }

void AuditStreamer::start() {
  if (sinks_.empty() || thread_.joinable()) return;
  thread_ = std::thread([this] { run(); });
}

void AuditStreamer::stop(int timeout_ms) {
  if (thread_.joinable()) {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  // What is left, with the sinks' retry delays ignored but bounded in time.
  int64_t until = mono_ms() + timeout_ms;
  while (!sinks_.empty()) {
    std::fill(retry_at_ms_.begin(), retry_at_ms_.end(), 0);
    if (pump() || mono_ms() >= until) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void AuditStreamer::run() {
  std::unique_lock lk(mu_);
  while (!stop_) {
    lk.unlock();
    pump();
    lk.lock();
    cv_.wait_for(lk, std::chrono::milliseconds(100));
  }
}

bool AuditStreamer::pump() {
  constexpr size_t kBatch = 512;
  bool all_ok = true;
  for (size_t i = 0; i < sinks_.size(); ++i) {
    if (mono_ms() < retry_at_ms_[i]) {
      all_ok = false;
      continue;
    }
    for (;;) {
      std::vector<StreamLine> lines;
      uint64_t last = cursors_[i];
      auto r =
          journal_.kv().scan("a/", event_key(cursors_[i] + 1),
                             [&](std::string_view, std::string_view v) {
                               auto e = decode_event(v);
                               if (!e)
                                 return false;  // scopefs verify tells more; never skip silently
                               last = e->eseq;
                               auto rec = decode_record(e->value);
                               if (rec && (include_intents_ || rec->state != RecordState::Intent))
                                 lines.push_back({e->eseq, audit_json(*rec, *e, host_), *rec});
                               return lines.size() < kBatch;
                             });
      if (!r || last == cursors_[i]) break;
      if (auto d = sinks_[i]->deliver(lines); !d) {
        if (!failing_[i])
          spdlog::warn("audit: sink {} is failing ({}); retrying, nothing is lost",
                       sinks_[i]->name(), std::strerror(d.error()));
        failing_[i] = true;
        retry_at_ms_[i] = mono_ms() + 1000;
        all_ok = false;
        break;
      }
      if (failing_[i]) spdlog::info("audit: sink {} is delivering again", sinks_[i]->name());
      failing_[i] = false;
      cursors_[i] = last;
      KvTxn txn;
      txn.put("m/stream/" + sinks_[i]->name(), std::to_string(last));
      if (auto w = journal_.rewrite_keys(txn); !w)
        spdlog::warn("audit: cannot save the cursor of sink {}: {}", sinks_[i]->name(),
                     std::strerror(w.error()));
    }
  }
  return all_ok;
}

}  // namespace scopefs::journal
