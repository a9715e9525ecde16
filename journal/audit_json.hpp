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

}  // namespace scopefs::journal
