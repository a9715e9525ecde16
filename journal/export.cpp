#include "journal/export.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "journal/audit_json.hpp"
#include "journal/record.hpp"

namespace scopefs::journal {
namespace {

using nlohmann::json;

constexpr const char* kFormat = "scopefs-export";
constexpr int kFormatVersion = 1;
constexpr size_t kMaxMember = size_t{1} << 32;  // 4 GiB: refuse anything larger

std::string b64(std::string_view s) {
  std::string out(sodium_base64_encoded_len(s.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(s.data()),
                    s.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

std::optional<std::string> unb64(const std::string& s) {
  std::string out(s.size(), '\0');
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), s.data(),
                        s.size(), nullptr, &len, nullptr, sodium_base64_VARIANT_ORIGINAL) != 0)
    return std::nullopt;
  out.resize(len);
  return out;
}

std::string digest_hex(std::string_view s) { return to_hex(blake2b(s)); }

// --- a minimal ustar writer and reader (regular files only) ---------------

void octal(char* field, size_t width, uint64_t v) {
  std::snprintf(field, width, "%0*llo", static_cast<int>(width - 1),
                static_cast<unsigned long long>(v));
}

// A fixed-width ustar text field of a zeroed header. The fields need no NUL
// of their own (version "00" fills its two bytes; a 100-byte name is legal):
// the zeroed rest terminates the shorter ones. A value that does not fit is
// an error, not a silently truncated member name.
void put_field(char* field, size_t width, std::string_view s) {
  if (s.size() > width) throw std::runtime_error("tar: field too long: " + std::string(s));
  std::copy(s.begin(), s.end(), field);
}

void tar_add(std::string& tar, const std::string& name, const std::string& data, int64_t mtime) {
  char h[512] = {};
  put_field(h, 100, name);
  octal(h + 100, 8, 0644);
  octal(h + 108, 8, 0);
  octal(h + 116, 8, 0);
  octal(h + 124, 12, data.size());
  octal(h + 136, 12, static_cast<uint64_t>(mtime));
  std::memset(h + 148, ' ', 8);
  h[156] = '0';
  put_field(h + 257, 6, "ustar");  // magic "ustar\0"
  put_field(h + 263, 2, "00");
  put_field(h + 265, 32, "root");
  put_field(h + 297, 32, "root");
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(h + 148, 8, "%06o", sum);
  h[155] = ' ';
  tar.append(h, 512);
  tar += data;
  tar.append((512 - data.size() % 512) % 512, '\0');
}

uint64_t parse_octal(const char* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n && p[i]; ++i) {
    if (p[i] == ' ') continue;
    if (p[i] < '0' || p[i] > '7') throw std::runtime_error("not a tar archive (bad number field)");
    v = v * 8 + static_cast<uint64_t>(p[i] - '0');
  }
  return v;
}

std::map<std::string, std::string> tar_read(const std::string& tar) {
  std::map<std::string, std::string> files;
  size_t at = 0;
  while (at + 512 <= tar.size()) {
    const char* h = tar.data() + at;
    bool zero = true;
    for (size_t i = 0; i < 512 && zero; ++i) zero = h[i] == 0;
    if (zero) break;
    unsigned sum = 0;
    for (size_t i = 0; i < 512; ++i)
      sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
    if (parse_octal(h + 148, 8) != sum)
      throw std::runtime_error("not a tar archive (header checksum)");
    std::string name(h, strnlen(h, 100));
    uint64_t size = parse_octal(h + 124, 12);
    if (size > kMaxMember || at + 512 + size > tar.size())
      throw std::runtime_error("the bundle is truncated (member " + name + ")");
    if (h[156] == '0' || h[156] == '\0') {
      if (files.count(name)) throw std::runtime_error("the bundle holds " + name + " twice");
      files[name] = tar.substr(at + 512, size);
    }
    at += 512 + (size + 511) / 512 * 512;
  }
  return files;
}

std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int64_t now_ns() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

ExportSummary export_bundle(KvStore& kv, const SigningKey& key, const std::string& task,
                            const ExportOptions& opts) {
  ExportSummary sum;
  std::string events, records, checkpoints;
  Digest first_prev{}, last_hash{};
  std::string host = local_host_name();
  bool failed = false;
  auto r = kv.scan("a/", "", [&](std::string_view, std::string_view v) {
    auto e = decode_event(v);
    if (!e) {
      failed = true;
      return false;
    }
    if (e->time_ns < opts.since_ns) return true;
    if (e->time_ns > opts.until_ns) return false;
    if (sum.events == 0) {
      first_prev = e->prev;
      sum.first_event = e->eseq;
    }
    ++sum.events;
    sum.last_event = e->eseq;
    last_hash = e->hash;
    json line = {{"event", e->eseq},
                 {"seq", e->rseq},
                 {"time_ns", e->time_ns},
                 {"prev", to_hex(e->prev)},
                 {"hash", to_hex(e->hash)}};
    auto rec = decode_record(e->value);
    bool include = rec && (opts.run.empty() || rec->run == opts.run);
    if (include) {
      line["value"] = b64(e->value);
      records += audit_json(*rec, *e, host) + "\n";
      ++sum.records;
    } else {
      line["value_digest"] = to_hex(blake2b(e->value));
    }
    events += line.dump() + "\n";
    return true;
  });
  if (!r || failed)
    throw std::runtime_error("the journal's chain cannot be read: run scopefs verify");
  if (sum.events == 0) throw std::runtime_error("no journal events in the range asked for");
  r = kv.scan("k/", "", [&](std::string_view, std::string_view v) {
    auto c = decode_checkpoint(v);
    if (!c || c->eseq < sum.first_event) return true;
    checkpoints += json{{"event", c->eseq},
                        {"time_ns", c->time_ns},
                        {"head", to_hex(c->head)},
                        {"public_key", to_hex(c->key)},
                        {"signature", to_hex(c->sig)}}
                       .dump() +
                   "\n";
    ++sum.checkpoints;
    return c->eseq <= sum.last_event;  // the first one past the segment anchors its tail
  });
  if (!r) throw std::runtime_error("the journal's checkpoints cannot be read");
  sum.fingerprint = fingerprint(key.public_key());
  std::map<std::string, const std::string*> members = {{"events.jsonl", &events},
                                                       {"records.jsonl", &records},
                                                       {"checkpoints.jsonl", &checkpoints}};
  json files = json::object();
  for (const auto& [name, data] : members)
    files[name] = {{"size", data->size()}, {"blake2b", digest_hex(*data)}};
  json manifest = {{"format", kFormat},
                   {"version", kFormatVersion},
                   {"task", task},
                   {"created_ns", now_ns()},
                   {"host", host},
                   {"selection",
                    {{"since_ns", opts.since_ns}, {"until_ns", opts.until_ns}, {"run", opts.run}}},
                   {"chain",
                    {{"first_event", sum.first_event},
                     {"last_event", sum.last_event},
                     {"events", sum.events},
                     {"prev_of_first", to_hex(first_prev)},
                     {"hash_of_last", to_hex(last_hash)}}},
                   {"records", sum.records},
                   {"checkpoints", sum.checkpoints},
                   {"audit_schema", kAuditSchemaVersion},
                   {"files", files},
                   {"key",
                    {{"algorithm", "ed25519"},
                     {"public_key", to_hex(key.public_key())},
                     {"fingerprint", sum.fingerprint}}}};
  std::string mtext = manifest.dump(2) + "\n";
  std::string sig = to_hex(key.sign(mtext)) + "\n";
  std::string tar;
  int64_t mtime = now_ns() / 1000000000;
  tar_add(tar, "manifest.json", mtext, mtime);
  tar_add(tar, "manifest.sig", sig, mtime);
  for (const auto& [name, data] : members) tar_add(tar, name, *data, mtime);
  tar.append(1024, '\0');
  // Through a temp file beside the target, so a failed export leaves no half bundle.
  std::string tmp = opts.out + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot create " + tmp + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < tar.size()) {
    ssize_t n = ::write(fd, tar.data() + done, tar.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  int err = errno;
  bool ok = done == tar.size() && ::fsync(fd) == 0;
  if (ok) err = 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), opts.out.c_str()) != 0) {
    if (ok) err = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot write " + opts.out + ": " + std::strerror(err));
  }
  return sum;
}

bool looks_like_bundle(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char h[512];
  if (!in.read(h, sizeof h)) return false;
  return std::memcmp(h + 257, "ustar", 5) == 0;
}

VerifyReport verify_bundle(const std::string& path, const std::optional<PublicKey>& pinned) {
  VerifyReport rep;
  auto problem = [&](uint64_t rseq, uint64_t eseq, std::string what) {
    rep.problems.push_back({rseq, eseq, std::move(what)});
  };
  auto files = tar_read(read_whole(path));
  if (!files.count("manifest.json") || !files.count("manifest.sig"))
    throw std::runtime_error(path +
                             " is not a scopefs export bundle (no manifest.json / manifest.sig)");
  const std::string& mtext = files["manifest.json"];
  json manifest;
  try {
    manifest = json::parse(mtext);
  } catch (const std::exception&) {
    problem(0, 0, "manifest.json is not valid JSON (edited)");
    return rep;
  }
  // The signature first: nothing else in the bundle is trusted before it.
  PublicKey pk{};
  std::string pk_hex = manifest.value(json::json_pointer("/key/public_key"), std::string());
  if (!from_hex(pk_hex, pk)) {
    problem(0, 0, "manifest.json names no valid public key");
    return rep;
  }
  rep.key_fingerprint = fingerprint(pk);
  if (pinned && *pinned != pk)
    problem(0, 0,
            "signed by another key (" + fingerprint(pk) + ") than the pinned one (" +
                fingerprint(*pinned) + ")");
  if (!pinned)
    rep.notes.push_back("no --pubkey given: the bundle's own key " + rep.key_fingerprint +
                        " was used; compare it with the task's `scopefs key` fingerprint");
  Signature sig{};
  std::string sig_hex = files["manifest.sig"];
  while (!sig_hex.empty() && std::isspace(static_cast<unsigned char>(sig_hex.back())))
    sig_hex.pop_back();
  if (!from_hex(sig_hex, sig) || !verify_signature(pk, mtext, sig)) {
    problem(
        0, 0,
        "the manifest's signature does not verify: the manifest was changed or signed by another key");
    return rep;
  }
  if (manifest.value("format", "") != kFormat || manifest.value("version", 0) != kFormatVersion) {
    problem(0, 0, "unknown bundle format or version");
    return rep;
  }
  // Every member the manifest lists, exactly.
  const json& listed = manifest["files"];
  for (const auto& [name, data] : files) {
    if (name == "manifest.json" || name == "manifest.sig") continue;
    if (!listed.contains(name)) problem(0, 0, name + " is not in the manifest (added)");
  }
  for (const auto& [name, meta] : listed.items()) {
    auto it = files.find(name);
    if (it == files.end()) {
      problem(0, 0, name + " is missing from the bundle");
      continue;
    }
    if (meta.value("size", uint64_t{0}) != it->second.size() ||
        meta.value("blake2b", "") != digest_hex(it->second))
      problem(0, 0, name + " was changed (its digest differs from the signed manifest's)");
  }
  if (!rep.ok()) return rep;
  // The chain segment, link by link.
  const json& ch = manifest["chain"];
  Digest prev{};
  if (!from_hex(ch.value("prev_of_first", ""), prev)) problem(0, 0, "manifest: bad prev_of_first");
  uint64_t expect = ch.value("first_event", uint64_t{0});
  std::map<uint64_t, Digest> hash_at;
  std::istringstream ev(files["events.jsonl"]), recs(files["records.jsonl"]);
  std::string line, rline;
  std::string host = manifest.value("host", "");
  while (std::getline(ev, line)) {
    ++rep.events;
    json e;
    try {
      e = json::parse(line);
    } catch (const std::exception&) {
      problem(0, expect, "events.jsonl line " + std::to_string(rep.events) + " is not JSON");
      return rep;
    }
    ChainEvent ce;
    ce.eseq = e.value("event", uint64_t{0});
    ce.rseq = e.value("seq", uint64_t{0});
    ce.time_ns = e.value("time_ns", int64_t{0});
    Digest stated{}, vdigest{}, p{};
    from_hex(e.value("hash", ""), stated);
    from_hex(e.value("prev", ""), p);
    ce.prev = p;
    if (ce.eseq != expect)
      problem(ce.rseq, ce.eseq, "event " + std::to_string(ce.eseq) + " is out of sequence");
    if (ce.prev != prev)
      problem(ce.rseq, ce.eseq,
              "event " + std::to_string(ce.eseq) + " does not link to the one before it");
    std::optional<std::string> value;
    if (e.contains("value")) {
      value = unb64(e.value("value", ""));
      if (!value) {
        problem(ce.rseq, ce.eseq, "event " + std::to_string(ce.eseq) + ": bad value encoding");
        return rep;
      }
      vdigest = blake2b(*value);
    } else if (!from_hex(e.value("value_digest", ""), vdigest)) {
      problem(ce.rseq, ce.eseq,
              "event " + std::to_string(ce.eseq) + " has neither value nor digest");
    }
    if (event_hash_of(ce, vdigest) != stated)
      problem(ce.rseq, ce.eseq,
              "record " + std::to_string(ce.rseq) + " (event " + std::to_string(ce.eseq) +
                  ") does not hash to its chained hash");
    ce.hash = stated;
    if (value) {
      ++rep.records;
      auto rec = decode_record(*value);
      if (!rec || rec->seq != ce.rseq) {
        problem(ce.rseq, ce.eseq,
                "record " + std::to_string(ce.rseq) + ": its value is not that record");
      } else if (!std::getline(recs, rline) || rline != audit_json(*rec, ce, host)) {
        problem(ce.rseq, ce.eseq,
                "record " + std::to_string(ce.rseq) +
                    ": its line in records.jsonl differs from the chained record");
      }
    }
    hash_at[ce.eseq] = stated;
    prev = stated;
    expect = ce.eseq + 1;
    rep.head_eseq = ce.eseq;
  }
  if (std::getline(recs, rline)) problem(0, 0, "records.jsonl has lines no event accounts for");
  if (rep.events != ch.value("events", uint64_t{0}) || to_hex(prev) != ch.value("hash_of_last", ""))
    problem(0, rep.head_eseq, "the chain segment does not end where the manifest says");
  std::istringstream cps(files["checkpoints.jsonl"]);
  while (std::getline(cps, line)) {
    ++rep.checkpoints;
    json c = json::parse(line, nullptr, false);
    Checkpoint cp;
    cp.eseq = c.value("event", uint64_t{0});
    cp.time_ns = c.value("time_ns", int64_t{0});
    if (c.is_discarded() || !from_hex(c.value("head", ""), cp.head) ||
        !from_hex(c.value("public_key", ""), cp.key) ||
        !from_hex(c.value("signature", ""), cp.sig)) {
      problem(0, 0, "checkpoints.jsonl line " + std::to_string(rep.checkpoints) + " is malformed");
      continue;
    }
    if (!checkpoint_signed_by(cp, pk)) {
      problem(0, cp.eseq,
              "the checkpoint of event " + std::to_string(cp.eseq) +
                  " is not signed by the bundle's key");
      continue;
    }
    auto it = hash_at.find(cp.eseq);
    if (it != hash_at.end() && it->second != cp.head)
      problem(0, cp.eseq,
              "the checkpoint of event " + std::to_string(cp.eseq) + " does not match the chain");
    else if (it != hash_at.end() && cp.eseq > rep.anchored_eseq) rep.anchored_eseq = cp.eseq;
  }
  return rep;
}

}  // namespace scopefs::journal
