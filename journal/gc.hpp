// Retention: `scopefs gc` (docs/journal.md, "Retention and gc").
//
// Before-images are kept for `[task] retention` (default 7 days). A gc run:
//   1. scans every record; one older than now - retention that names a
//      before-image (before/victim/after with blob=true) and is in a state
//      whose blob references were counted (not intent, interrupted — their
//      images were never counted — nor held: a held change's images, its
//      after-content included, are needed to approve or reject it) is
//      rewritten with blob=false on those states and expired=true, and
//      "b/<hash>" is decremented once per state, in one transaction with the
//      rewrite (records are batched, each with its own decrements);
//   2. removes blob files that no record needs any more: count <= 0 (or no
//      count key), not named by any record left (intents of changes under
//      way and interrupted ones included), and whose ctime is older than
//      min(retention, 60 s) — a blob just published, or reused by a change
//      still under way (publishing an existing blob refreshes its ctime),
//      waits for a later run. A crash between 1 and 2 leaves unreferenced
//      files: the next run removes them the same way. Temporary files in
//      blobs/tmp older than an hour are removed too;
//   3. journals a record op "gc", state applied, whose note says what it did.
// Shared blobs (deduplication) survive while any record still counts them.
//
// Concurrency: one gc, rollback or decision at a time (the daemon's control
// thread, or the CLI under the state lock). The agent may work meanwhile: it
// only writes new records and bumps counts up; the one window left is a
// reused blob's ctime refresh landing between step 2's check and its unlink.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fs/result.hpp"
#include "journal/journal.hpp"

namespace scopefs::journal {

struct GcOptions {
  int64_t retention_s = 7 * 86400;
  int64_t now_ns = 0;  // 0: the clock
  bool dry_run = false;
  int64_t orphan_age_s = 60;  // unreferenced blob files younger than min(this, retention) stay
  int64_t tmp_age_s = 3600;   // blobs/tmp files younger than this stay
};

struct GcReport {
  uint64_t records = 0;      // records expired (their before-images released)
  uint64_t blobs = 0;        // blob files removed
  uint64_t bytes = 0;        // bytes of those files
  uint64_t orphans = 0;      // of them, files no record of this run released (crash leftovers)
  uint64_t tmp_files = 0;    // blobs/tmp leftovers removed
  uint64_t kept_shared = 0;  // released blobs still counted by other records
  uint64_t seq = 0;          // the gc record (0 in a dry run)
  int64_t cutoff_ns = 0;
  std::vector<uint64_t> expired;  // seqs of the records expired
  std::string summary() const;
};

Result<GcReport> collect_garbage(Journal& j, const GcOptions& opts, const CallerInfo& who);

}  // namespace scopefs::journal
