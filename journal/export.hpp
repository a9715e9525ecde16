// Export bundles: what an auditor takes away and checks offline.
//
// A bundle is a POSIX tar archive (readable with `tar -xf`) of:
//   manifest.json      format, version, task, range asked for, chain segment
//                      (first/last event, the hash before the first, the hash
//                      of the last), counts, each other file's size and
//                      BLAKE2b-256, and the signing key (Ed25519 public key,
//                      fingerprint)
//   manifest.sig       Ed25519 signature of manifest.json's exact bytes (hex)
//   events.jsonl       the chain segment: every event in the range, in order:
//                      {"event","seq","time_ns","prev","hash", "value" (the
//                      record's bytes, base64) or "value_digest" (when the
//                      record is outside the selection, e.g. another run)}
//   records.jsonl      for each event with a value, the record as of that
//                      event in the audit schema (docs/audit-schema.md)
//   checkpoints.jsonl  the signed checkpoints inside the segment and the first
//                      one after it
//
// verify_bundle() checks the signature (against a pinned key if given),
// every file's digest, the chain link by link, each JSON line against the
// chained bytes it claims to render, and the checkpoints' signatures.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "journal/chain.hpp"
#include "journal/kv.hpp"

namespace scopefs::journal {

struct ExportOptions {
  int64_t since_ns = 0;
  int64_t until_ns = INT64_MAX;
  std::string run;  // only this run's records carry their values
  std::string out;  // the bundle's path (written through a temp file)
};

struct ExportSummary {
  uint64_t events = 0;
  uint64_t records = 0;  // events whose values are included
  uint64_t first_event = 0;
  uint64_t last_event = 0;
  uint64_t checkpoints = 0;
  std::string fingerprint;
};

// Throws std::runtime_error with a clear message on failure.
ExportSummary export_bundle(KvStore& kv, const SigningKey& key, const std::string& task,
                            const ExportOptions& opts);

bool looks_like_bundle(const std::string& path);
// Throws std::runtime_error when the file is not a readable bundle at all.
VerifyReport verify_bundle(const std::string& path, const std::optional<PublicKey>& pinned);

}  // namespace scopefs::journal
