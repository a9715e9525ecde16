#include "journal/record.hpp"

#include <sys/stat.h>

#include <nlohmann/json.hpp>

namespace scopefs::journal {

using nlohmann::json;

std::string_view state_name(RecordState s) {
  switch (s) {
    case RecordState::Intent: return "intent";
    case RecordState::Applied: return "applied";
    case RecordState::Failed: return "failed";
    case RecordState::Denied: return "denied";
    case RecordState::Interrupted: return "interrupted";
  }
  return "?";
}

std::optional<RecordState> parse_state(std::string_view s) {
  for (auto st : {RecordState::Intent, RecordState::Applied, RecordState::Failed,
                  RecordState::Denied, RecordState::Interrupted})
    if (state_name(st) == s) return st;
  return std::nullopt;
}

std::string record_key(uint64_t seq) {
  std::string k = "r/";
  for (int i = 7; i >= 0; --i) k.push_back(static_cast<char>((seq >> (8 * i)) & 0xff));
  return k;
}

std::optional<uint64_t> seq_of_key(std::string_view key) {
  if (key.size() != 10 || key.substr(0, 2) != "r/") return std::nullopt;
  uint64_t v = 0;
  for (size_t i = 2; i < 10; ++i) v = (v << 8) | static_cast<unsigned char>(key[i]);
  return v;
}

namespace {

json state_json(const ObjectState& o) {
  json j = {{"exists", o.exists}};
  if (!o.exists) return j;
  j["type"] = o.type;
  j["size"] = o.size;
  j["mode"] = o.mode;
  j["uid"] = o.uid;
  j["gid"] = o.gid;
  j["mtime"] = o.mtime_ns;
  if (o.hash) j["hash"] = o.hash->hex();
  if (o.blob) j["blob"] = true;
  if (!o.target.empty() || o.type == "symlink") j["target"] = o.target;
  return j;
}

ObjectState state_from(const json& j) {
  ObjectState o;
  o.exists = j.at("exists").get<bool>();
  if (!o.exists) return o;
  o.type = j.at("type").get<std::string>();
  o.size = j.at("size").get<uint64_t>();
  o.mode = j.at("mode").get<uint32_t>();
  o.uid = j.at("uid").get<uint32_t>();
  o.gid = j.at("gid").get<uint32_t>();
  o.mtime_ns = j.at("mtime").get<int64_t>();
  if (j.contains("hash")) {
    Hash128 h;
    if (!Hash128::parse(j.at("hash").get<std::string>(), h)) throw std::runtime_error("bad hash");
    o.hash = h;
  }
  o.blob = j.value("blob", false);
  o.target = j.value("target", std::string());
  return o;
}

json to_json(const Record& r) {
  json j = {{"seq", r.seq},   {"t", r.time_ns},   {"task", r.task},
            {"run", r.run},   {"op", r.op},       {"path", r.path},
            {"flags", r.flags}, {"state", std::string(state_name(r.state))}, {"err", r.err},
            {"caller", {{"pid", r.caller.pid}, {"uid", r.caller.uid}, {"gid", r.caller.gid},
                        {"comm", r.caller.comm}}}};
  if (!r.path2.empty()) j["path2"] = r.path2;
  if (r.before) j["before"] = state_json(*r.before);
  if (r.after) j["after"] = state_json(*r.after);
  if (r.victim) j["victim"] = state_json(*r.victim);
  return j;
}

}  // namespace

std::string encode_record(const Record& r) {
  std::vector<uint8_t> cbor = json::to_cbor(to_json(r));
  std::string out;
  out.reserve(cbor.size() + 1);
  out.push_back(static_cast<char>(kSchemaVersion));
  out.append(reinterpret_cast<const char*>(cbor.data()), cbor.size());
  return out;
}

Result<Record> decode_record(std::string_view value) {
  if (value.empty()) return Errno{EBADMSG};
  if (static_cast<uint8_t>(value[0]) != kSchemaVersion) return Errno{EPROTO};
  try {
    json j = json::from_cbor(value.substr(1));
    Record r;
    r.seq = j.at("seq").get<uint64_t>();
    r.time_ns = j.at("t").get<int64_t>();
    r.task = j.at("task").get<std::string>();
    r.run = j.at("run").get<std::string>();
    r.op = j.at("op").get<std::string>();
    r.path = j.at("path").get<std::string>();
    r.path2 = j.value("path2", std::string());
    r.flags = j.at("flags").get<uint32_t>();
    auto st = parse_state(j.at("state").get<std::string>());
    if (!st) return Errno{EBADMSG};
    r.state = *st;
    r.err = j.at("err").get<int32_t>();
    const json& c = j.at("caller");
    r.caller = CallerInfo{c.at("pid").get<int32_t>(), c.at("uid").get<uint32_t>(),
                          c.at("gid").get<uint32_t>(), c.at("comm").get<std::string>()};
    if (j.contains("before")) r.before = state_from(j.at("before"));
    if (j.contains("after")) r.after = state_from(j.at("after"));
    if (j.contains("victim")) r.victim = state_from(j.at("victim"));
    return r;
  } catch (const std::exception&) {
    return Errno{EBADMSG};
  }
}

std::string record_json(const Record& r) { return to_json(r).dump(); }

ObjectState object_state(const struct stat& st) {
  ObjectState o;
  o.exists = true;
  switch (st.st_mode & S_IFMT) {
    case S_IFREG: o.type = "file"; break;
    case S_IFDIR: o.type = "dir"; break;
    case S_IFLNK: o.type = "symlink"; break;
    case S_IFIFO: o.type = "fifo"; break;
    case S_IFCHR: o.type = "chr"; break;
    case S_IFBLK: o.type = "blk"; break;
    default: o.type = "sock"; break;
  }
  o.size = static_cast<uint64_t>(st.st_size);
  o.mode = st.st_mode & 07777;
  o.uid = st.st_uid;
  o.gid = st.st_gid;
  o.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return o;
}

}  // namespace scopefs::journal
