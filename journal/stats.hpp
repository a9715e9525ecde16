// Journal KPIs (`scopefs stats`): what ops leaders track for a pilot.
//
// One scan of the journal counts, for the records a filter selects:
//   - records by operation × state (the outcome);
//   - held changes: every record that was held (state held, approved or
//     rejected), pending (still held), approved, rejected;
//   - decision latency: from a held change's record to the approve/reject
//     record that decided it (its `ref`; journal/record.hpp), for applied
//     decisions, as p50/p95/max and sum;
//   - rollbacks: applied and failed "rollback" records, and changes in state
//     rolled_back; denied attempts (also by errno); failed; interrupted;
//   - before-images: the `before` and `victim` states with a blob still kept
//     (gc clears the flag), their bytes, and the same counted once per
//     content hash (the store deduplicates);
// and, from the state directory, the blob store's files, bytes and the
// bytes allocated on disk, and the journal's size.
//
// The filter selects by time (--since) and run; a decision's latency counts
// when the decision is selected, wherever its held change is.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fs/result.hpp"
#include "journal/journal.hpp"

namespace scopefs::journal {

struct StatsFilter {
  std::optional<int64_t> since_ns;  // inclusive
  std::string run;                  // empty: every run
};

struct LatencySummary {
  uint64_t count = 0;
  double sum_s = 0;
  double p50_s = 0;
  double p95_s = 0;
  double max_s = 0;
};

struct JournalStats {
  std::string task;  // the task named by the last record counted
  uint64_t records = 0;
  uint64_t unreadable = 0;
  int64_t first_ns = 0;  // time of the first and last record counted (0: none)
  int64_t last_ns = 0;
  std::map<std::string, std::map<std::string, uint64_t>> operations;  // op → state → records
  std::map<std::string, uint64_t> states;                             // state → records

  uint64_t held_total = 0;
  uint64_t pending = 0;
  uint64_t approved = 0;
  uint64_t rejected = 0;
  LatencySummary approve_latency;
  LatencySummary reject_latency;

  uint64_t rollbacks = 0;         // applied "rollback" records
  uint64_t rollbacks_failed = 0;  // failed "rollback" records
  uint64_t rolled_back = 0;       // changes in state rolled_back
  uint64_t denied = 0;
  std::map<std::string, uint64_t> denied_by_errno;  // "EROFS" → attempts
  uint64_t failed = 0;
  uint64_t interrupted = 0;
  uint64_t expired = 0;  // records whose before-images gc collected

  uint64_t before_images = 0;
  uint64_t before_image_bytes = 0;
  uint64_t before_image_distinct = 0;
  uint64_t before_image_distinct_bytes = 0;

  // From the state directory (add_disk_usage).
  uint64_t journal_bytes = 0;
  uint64_t blob_files = 0;
  uint64_t blob_bytes = 0;       // sum of the blob files' sizes
  uint64_t blob_disk_bytes = 0;  // blocks allocated to them
};

// Nearest-rank quantile (q in (0, 1]) of `sorted` (ascending, non-empty).
double quantile(const std::vector<double>& sorted, double q);

// One scan of the journal.
Result<JournalStats> compute_stats(Journal& j, const StatsFilter& f);
// The journal's size and the blob store under STATE_DIR/blobs (tmp/ left out).
void add_disk_usage(JournalStats& s, Journal& j, const std::string& state_dir);

nlohmann::json stats_json(const JournalStats& s);
// Node-exporter textfile format: # HELP / # TYPE, then the samples, every
// sample labelled task="…"; ends with a newline.
std::string stats_prometheus(const JournalStats& s, std::string_view task);

}  // namespace scopefs::journal
