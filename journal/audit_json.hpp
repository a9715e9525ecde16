// The audit stream's JSON line: one record, as of one chain event, in the
// schema documented in docs/audit-schema.md (and docs/audit-schema.json):
// Elastic Common Schema field names (event.*, file.*, process.*, user.*,
// error.*) with scopefs' own details under `scopefs.*`. The schema is
// versioned by `scopefs.schema`; fields are only ever added within a version.
#pragma once

#include <cstdint>
#include <string>

#include "journal/chain.hpp"
#include "journal/record.hpp"

namespace scopefs::journal {

constexpr int kAuditSchemaVersion = 1;

// One JSON object, no newline. `chain` is the event the record was written
// in (its sequence numbers the line for deduplication); `host` is host.name.
std::string audit_json(const Record& r, const ChainEvent& chain, const std::string& host);

// ECS event.outcome of a record state: success, failure or unknown.
const char* ecs_outcome(RecordState s);

std::string local_host_name();
// "2026-11-30T10:12:03.511311402Z" for ns since the epoch, with `frac_digits`
// (0..9) digits of the second's fraction: the one UTC format of records'
// times (ECS JSON with 9 digits, the CLI's tables with 3).
std::string utc_time(int64_t ns, int frac_digits);

}  // namespace scopefs::journal
