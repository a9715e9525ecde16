#include "journal/record.hpp"

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include <limits>
#include <type_traits>

namespace scopefs::journal {

using nlohmann::json;

std::string_view state_name(RecordState s) {
  switch (s) {
    case RecordState::Intent: return "intent";
    case RecordState::Applied: return "applied";
    case RecordState::Failed: return "failed";
    case RecordState::Denied: return "denied";
    case RecordState::Interrupted: return "interrupted";
    case RecordState::Held: return "held";
    case RecordState::Approved: return "approved";
    case RecordState::Rejected: return "rejected";
    case RecordState::RolledBack: return "rolled_back";
  }
  return "?";
}

std::optional<RecordState> parse_state(std::string_view s) {
  for (auto st : {RecordState::Intent, RecordState::Applied, RecordState::Failed,
                  RecordState::Denied, RecordState::Interrupted, RecordState::Held,
                  RecordState::Approved, RecordState::Rejected, RecordState::RolledBack})
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

// Typed reads that refuse (throw, hence EBADMSG) values of the wrong kind or
// out of range, instead of converting them (a float into an integer field is
// undefined behaviour in the conversion).
template <typename T>
T int_field(const json& j, const char* key) {
  const json& v = j.at(key);
  if (!v.is_number_integer()) throw std::runtime_error("not an integer");
  if constexpr (std::is_unsigned_v<T>) {
    if (!v.is_number_unsigned()) throw std::runtime_error("negative");
    auto u = v.get<uint64_t>();
    if (u > std::numeric_limits<T>::max()) throw std::runtime_error("out of range");
    return static_cast<T>(u);
  } else {
    if (v.is_number_unsigned()) {
      auto u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<T>::max()))
        throw std::runtime_error("out of range");
      return static_cast<T>(u);
    }
    auto i = v.get<int64_t>();
    if (i < std::numeric_limits<T>::min() || i > std::numeric_limits<T>::max())
      throw std::runtime_error("out of range");
    return static_cast<T>(i);
  }
}

std::string str_field(const json& j, const char* key) {
  const json& v = j.at(key);
  if (!v.is_string()) throw std::runtime_error("not a string");
  return v.get<std::string>();
}

// Builds the DOM from CBOR, refusing nesting deeper than records ever have
// (the reader recurses once per level: unbounded depth would exhaust the stack).
class DepthLimitedSax {
 public:
  explicit DepthLimitedSax(json& out) : dom_(out, false) {}
  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const json::string_t& s) {
    return dom_.number_float(v, s);
  }
  bool string(json::string_t& v) { return dom_.string(v); }
  bool binary(json::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) { return ++depth_ <= kMaxDepth && dom_.start_object(n); }
  bool key(json::string_t& k) { return dom_.key(k); }
  bool end_object() {
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) { return ++depth_ <= kMaxDepth && dom_.start_array(n); }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) {
    return false;
  }

 private:
  static constexpr int kMaxDepth = 8;
  nlohmann::detail::json_sax_dom_parser<json> dom_;
  int depth_ = 0;
};

json bytes(const std::string& s) { return json::binary(std::vector<uint8_t>(s.begin(), s.end())); }

std::string bytes_field(const json& v) {
  if (!v.is_binary()) throw std::runtime_error("not bytes");
  const auto& b = v.get_binary();
  return std::string(b.begin(), b.end());
}

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
  if (o.rdev != 0) j["rdev"] = o.rdev;
  return j;
}

ObjectState state_from(const json& j) {
  ObjectState o;
  if (!j.is_object() || !j.at("exists").is_boolean()) throw std::runtime_error("bad state");
  o.exists = j.at("exists").get<bool>();
  if (!o.exists) return o;
  o.type = str_field(j, "type");
  o.size = int_field<uint64_t>(j, "size");
  o.mode = int_field<uint32_t>(j, "mode");
  o.uid = int_field<uint32_t>(j, "uid");
  o.gid = int_field<uint32_t>(j, "gid");
  o.mtime_ns = int_field<int64_t>(j, "mtime");
  if (j.contains("hash")) {
    Hash128 h;
    if (!Hash128::parse(str_field(j, "hash"), h)) throw std::runtime_error("bad hash");
    o.hash = h;
  }
  if (j.contains("blob")) {
    if (!j.at("blob").is_boolean()) throw std::runtime_error("bad blob flag");
    o.blob = j.at("blob").get<bool>();
  }
  if (j.contains("target")) o.target = str_field(j, "target");
  if (j.contains("rdev")) o.rdev = int_field<uint64_t>(j, "rdev");
  return o;
}

json to_json(const Record& r) {
  json j = {{"seq", r.seq},
            {"t", r.time_ns},
            {"task", r.task},
            {"run", r.run},
            {"op", r.op},
            {"path", r.path},
            {"flags", r.flags},
            {"state", std::string(state_name(r.state))},
            {"err", r.err},
            {"caller",
             {{"pid", r.caller.pid},
              {"uid", r.caller.uid},
              {"gid", r.caller.gid},
              {"comm", r.caller.comm}}}};
  if (!r.caller.args.empty()) j["caller"]["args"] = r.caller.args;
  if (!r.caller.exe.empty()) j["caller"]["exe"] = r.caller.exe;
  if (!r.path2.empty()) j["path2"] = r.path2;
  if (r.before) j["before"] = state_json(*r.before);
  if (r.after) j["after"] = state_json(*r.after);
  if (r.victim) j["victim"] = state_json(*r.victim);
  if (r.ref) j["ref"] = r.ref;
  if (!r.undo.empty()) {
    json u = json::array();
    for (const auto& [k, v] : r.undo)
      u.push_back(json::array({bytes(k), v ? bytes(*v) : json(nullptr)}));
    j["undo"] = std::move(u);
  }
  if (!r.touch.empty()) {
    json t = json::array();
    for (const auto& k : r.touch) t.push_back(bytes(k));
    j["touch"] = std::move(t);
  }
  if (r.xattr_value) j["xv"] = bytes(*r.xattr_value);
  if (r.xattr_before) j["xv0"] = bytes(*r.xattr_before);
  if (!r.note.empty()) j["note"] = r.note;
  if (r.expired) j["expired"] = true;
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
    json j;
    DepthLimitedSax sax(j);
    std::string_view body = value.substr(1);
    if (!json::sax_parse(body.begin(), body.end(), &sax, nlohmann::detail::input_format_t::cbor) ||
        !j.is_object())
      return Errno{EBADMSG};
    Record r;
    r.seq = int_field<uint64_t>(j, "seq");
    r.time_ns = int_field<int64_t>(j, "t");
    r.task = str_field(j, "task");
    r.run = str_field(j, "run");
    r.op = str_field(j, "op");
    r.path = str_field(j, "path");
    if (j.contains("path2")) r.path2 = str_field(j, "path2");
    r.flags = int_field<uint32_t>(j, "flags");
    auto st = parse_state(str_field(j, "state"));
    if (!st) return Errno{EBADMSG};
    r.state = *st;
    r.err = int_field<int32_t>(j, "err");
    const json& c = j.at("caller");
    if (!c.is_object()) return Errno{EBADMSG};
    r.caller = CallerInfo{int_field<int32_t>(c, "pid"),
                          int_field<uint32_t>(c, "uid"),
                          int_field<uint32_t>(c, "gid"),
                          str_field(c, "comm"),
                          {},
                          {}};
    if (c.contains("args")) {
      const json& args = c.at("args");
      if (!args.is_array()) return Errno{EBADMSG};
      for (const json& x : args) {
        if (!x.is_string()) return Errno{EBADMSG};
        r.caller.args.push_back(x.get<std::string>());
      }
    }
    if (c.contains("exe")) r.caller.exe = str_field(c, "exe");
    if (j.contains("before")) r.before = state_from(j.at("before"));
    if (j.contains("after")) r.after = state_from(j.at("after"));
    if (j.contains("victim")) r.victim = state_from(j.at("victim"));
    if (j.contains("ref")) r.ref = int_field<uint64_t>(j, "ref");
    if (j.contains("undo")) {
      const json& u = j.at("undo");
      if (!u.is_array()) return Errno{EBADMSG};
      for (const json& e : u) {
        if (!e.is_array() || e.size() != 2) return Errno{EBADMSG};
        std::optional<std::string> old;
        if (!e[1].is_null()) old = bytes_field(e[1]);
        r.undo.emplace_back(bytes_field(e[0]), std::move(old));
      }
    }
    if (j.contains("touch")) {
      const json& t = j.at("touch");
      if (!t.is_array()) return Errno{EBADMSG};
      for (const json& e : t) r.touch.push_back(bytes_field(e));
    }
    if (j.contains("xv")) r.xattr_value = bytes_field(j.at("xv"));
    if (j.contains("xv0")) r.xattr_before = bytes_field(j.at("xv0"));
    if (j.contains("note")) r.note = str_field(j, "note");
    if (j.contains("expired")) {
      if (!j.at("expired").is_boolean()) return Errno{EBADMSG};
      r.expired = j.at("expired").get<bool>();
    }
    return r;
  } catch (const std::exception&) {
    return Errno{EBADMSG};
  }
}

// File names need not be UTF-8: invalid bytes print as U+FFFD rather than
// making the whole line fail.
// Overlay bookkeeping (undo, touch) stays out; xattr values print as text.
std::string record_json(const Record& r) {
  json j = to_json(r);
  j.erase("undo");
  j.erase("touch");
  j.erase("xv");
  j.erase("xv0");
  if (r.xattr_value) j["xattr_value"] = *r.xattr_value;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

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
