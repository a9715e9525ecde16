// Journal queries (`scopefs log`): filters, and a planner that answers them
// from the journal's indexes instead of reading every record.
//
// Indexes (journal/journal.hpp): "p/" path, "t/" time, "n/" run, "h/" held
// changes not yet decided. A filter can use one when it constrains that key:
//
//   path glob  → the "p/" keys under the glob's literal prefix (the part before
//                its first wildcard; an exact path is one prefix), the glob
//                matched on each key's path before any record is read;
//   time range → the "t/" keys from --since to --until;
//   run        → the "n/" keys of that run;
//   state held → the "h/" keys.
//
// The planner walks the usable indexes from the likely narrowest (exact path,
// held, run, path glob, time), each walk stopping as soon as it has more
// entries than the best so far; the smallest complete candidate list wins,
// intersected with the other complete ones. When no index applies, when the
// journal's indexes are not complete (a journal not yet reopened by a daemon
// of this version: "m/index"), or when the best list holds more than an
// eighth of the journal (reading records one by one would then cost more
// than a scan), the records are scanned in order. Either way every filter is
// then checked on each record read, and results come in sequence order,
// each record once (a rename is indexed under both its paths).
//
// Match rules: --path matches a record's path, or the second path of a
// rename or link (its target); records without a path (mount, unmount, gc)
// never match a --path filter. Times are inclusive at both ends.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/glob.hpp"
#include "fs/result.hpp"
#include "journal/journal.hpp"
#include "journal/record.hpp"

namespace scopefs::journal {

// What a query asks for; empty or absent members match everything.
struct QueryFilter {
  std::string path_glob;  // view path glob (config/glob.hpp); a leading '/' is ignored
  std::vector<std::string> ops;
  std::vector<RecordState> states;
  std::optional<uint32_t> uid;  // the caller's uid
  std::string run;
  std::optional<int64_t> since_ns;  // inclusive
  std::optional<int64_t> until_ns;  // inclusive
};

// How a query reads the journal.
enum class Access : uint8_t { Scan, Path, Time, Run, Held };
std::string_view access_name(Access a);

struct QueryPlan {
  Access access = Access::Scan;
  std::string detail;          // e.g. the index prefix walked, or why a scan
  uint64_t candidates = 0;     // records read (Scan: every record)
  uint64_t index_entries = 0;  // index keys visited while planning
  uint64_t matched = 0;        // records passed to the visitor
};

// The literal start of a glob: every path the glob matches begins with it
// (escapes resolved). `exact` is set when the glob has no wildcard at all.
std::string glob_literal_prefix(std::string_view pattern, bool& exact);

class Query {
 public:
  // Compiles the filter; false with `error` for a bad glob.
  static bool compile(QueryFilter f, Query& out, std::string& error);

  const QueryFilter& filter() const { return f_; }
  // Every filter, on one record.
  bool matches(const Record& r) const;
  // Visits the matching records in sequence order until `fn` returns false.
  // Unreadable records met on the way (every one for a scan, the candidates
  // for an index) are passed with their errno, seq set, unfiltered.
  Result<QueryPlan> run(Journal& j, const std::function<bool(const Record&, int err)>& fn) const;

 private:
  QueryFilter f_;
  config::Glob glob_;
  bool has_glob_ = false;
  std::string literal_;  // glob_literal_prefix of the glob
  bool exact_ = false;
};

}  // namespace scopefs::journal
