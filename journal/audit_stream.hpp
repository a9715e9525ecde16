// The live audit stream: every chain event (every write of a record, in
// commit order) is rendered as one JSON line (journal/audit_json.hpp) and
// delivered to the task's sinks: an append-only file, syslog (RFC 5424) and
// journald.
//
// Reliability: the stream is read back from the journal, never fed from the
// request path, so a sink that is slow or down never blocks or loses a
// change. Each sink has a cursor in the journal ("m/stream/<sink>" = the last
// event delivered); after a restart delivery resumes after it — no gap, and
// duplicates only for a batch whose delivery was cut short (at-least-once;
// `event.sequence` deduplicates). A failing sink is retried with backoff and
// its failure logged once per outage.
//
// Threads: one streamer thread per daemon; start() after the journal is open,
// stop() (which delivers what is left) before it closes.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "fs/result.hpp"
#include "journal/journal.hpp"

namespace scopefs::journal {

struct StreamLine {
  uint64_t eseq = 0;
  std::string json;
  Record rec;
};

class AuditSink {
 public:
  virtual ~AuditSink() = default;
  // Stable name: keys the sink's cursor.
  virtual std::string name() const = 0;
  // Delivers every line, in order, or fails (errno) having delivered a prefix.
  virtual Result<void> deliver(const std::vector<StreamLine>& lines) = 0;
};

std::unique_ptr<AuditSink> make_file_sink(const std::string& path, const std::string& fsync_policy);
std::unique_ptr<AuditSink> make_syslog_sink(const std::string& target, const std::string& facility);
std::unique_ptr<AuditSink> make_journald_sink();

// The sinks an [audit] table asks for.
std::vector<std::unique_ptr<AuditSink>> make_sinks(const config::AuditConfig& cfg);

class AuditStreamer {
 public:
  AuditStreamer(Journal& journal, std::vector<std::unique_ptr<AuditSink>> sinks,
                bool include_intents);
  ~AuditStreamer();
  AuditStreamer(const AuditStreamer&) = delete;
  AuditStreamer& operator=(const AuditStreamer&) = delete;

  void start();
  // Delivers everything written so far (bounded by `timeout_ms` for sinks
  // that are down), then stops the thread.
  void stop(int timeout_ms = 3000);
  // One delivery round for every sink; false if some sink failed.
  bool pump();

 private:
  void run();

  Journal& journal_;
  std::vector<std::unique_ptr<AuditSink>> sinks_;
  bool include_intents_;
  std::string host_;
  std::vector<uint64_t> cursors_;     // per sink; touched by the pumping thread only
  std::vector<int64_t> retry_at_ms_;  // per sink
  std::vector<bool> failing_;         // per sink
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace scopefs::journal
