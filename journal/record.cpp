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

// The stored form, written directly: the bytes nlohmann::json::to_cbor gives
// for to_json(r) (a map's keys in sorted order, every integer and length in
// its shortest form), without building the JSON tree first — that tree was
// most of the allocations of a journaled change. tests/unit/test_record_encoding.cpp
// holds it to the JSON path's bytes.
class CborWriter {
 public:
  explicit CborWriter(std::string& out) : out_(out) {}
  void uint(uint64_t v) { head(0x00, v); }
  void sint(int64_t v) {
    if (v >= 0) head(0x00, static_cast<uint64_t>(v));
    else head(0x20, static_cast<uint64_t>(-1 - v));
  }
  void text(std::string_view s) {
    head(0x60, s.size());
    out_.append(s);
  }
  void bytes(std::string_view s) {
    head(0x40, s.size());
    out_.append(s);
  }
  void boolean(bool b) { out_.push_back(static_cast<char>(b ? 0xf5 : 0xf4)); }
  void null() { out_.push_back(static_cast<char>(0xf6)); }
  void array(size_t n) { head(0x80, n); }
  void map(size_t n) { head(0xa0, n); }

 private:
  void head(unsigned major, uint64_t v) {
    if (v <= 0x17) {
      out_.push_back(static_cast<char>(major + v));
    } else if (v <= 0xff) {
      out_.push_back(static_cast<char>(major + 0x18));
      be(v, 1);
    } else if (v <= 0xffff) {
      out_.push_back(static_cast<char>(major + 0x19));
      be(v, 2);
    } else if (v <= 0xffffffffULL) {
      out_.push_back(static_cast<char>(major + 0x1a));
      be(v, 4);
    } else {
      out_.push_back(static_cast<char>(major + 0x1b));
      be(v, 8);
    }
  }
  void be(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  std::string& out_;
};

// Keys in sorted order, as in state_json.
void write_state(CborWriter& w, const ObjectState& o) {
  if (!o.exists) {
    w.map(1);
    w.text("exists");
    w.boolean(false);
    return;
  }
  const bool target = !o.target.empty() || o.type == "symlink";
  w.map(7 + (o.blob ? 1 : 0) + (o.hash ? 1 : 0) + (o.rdev != 0 ? 1 : 0) + (target ? 1 : 0));
  if (o.blob) {
    w.text("blob");
    w.boolean(true);
  }
  w.text("exists");
  w.boolean(true);
  w.text("gid");
  w.uint(o.gid);
  if (o.hash) {
    w.text("hash");
    w.text(o.hash->hex());
  }
  w.text("mode");
  w.uint(o.mode);
  w.text("mtime");
  w.sint(o.mtime_ns);
  if (o.rdev != 0) {
    w.text("rdev");
    w.uint(o.rdev);
  }
  w.text("size");
  w.uint(o.size);
  if (target) {
    w.text("target");
    w.text(o.target);
  }
  w.text("type");
  w.text(o.type);
  w.text("uid");
  w.uint(o.uid);
}

}  // namespace

std::string encode_record(const Record& r) {
  std::string out;
  out.reserve(256 + r.path.size() + r.path2.size());
  out.push_back(static_cast<char>(kSchemaVersion));
  CborWriter w(out);
  // Keys in sorted order, as in to_json.
  size_t n = 10;  // caller, err, flags, op, path, run, seq, state, t, task
  n += (r.after ? 1 : 0) + (r.before ? 1 : 0) + (r.expired ? 1 : 0) + (!r.note.empty() ? 1 : 0) +
       (!r.path2.empty() ? 1 : 0) + (r.ref ? 1 : 0) + (!r.touch.empty() ? 1 : 0) +
       (!r.undo.empty() ? 1 : 0) + (r.victim ? 1 : 0) + (r.xattr_value ? 1 : 0) +
       (r.xattr_before ? 1 : 0);
  w.map(n);
  if (r.after) {
    w.text("after");
    write_state(w, *r.after);
  }
  if (r.before) {
    w.text("before");
    write_state(w, *r.before);
  }
  w.text("caller");
  w.map(4 + (r.caller.args.empty() ? 0 : 1) + (r.caller.exe.empty() ? 0 : 1));
  if (!r.caller.args.empty()) {
    w.text("args");
    w.array(r.caller.args.size());
    for (const auto& a : r.caller.args) w.text(a);
  }
  w.text("comm");
  w.text(r.caller.comm);
  if (!r.caller.exe.empty()) {
    w.text("exe");
    w.text(r.caller.exe);
  }
  w.text("gid");
  w.uint(r.caller.gid);
  w.text("pid");
  w.sint(r.caller.pid);
  w.text("uid");
  w.uint(r.caller.uid);
  w.text("err");
  w.sint(r.err);
  if (r.expired) {
    w.text("expired");
    w.boolean(true);
  }
  w.text("flags");
  w.uint(r.flags);
  if (!r.note.empty()) {
    w.text("note");
    w.text(r.note);
  }
  w.text("op");
  w.text(r.op);
  w.text("path");
  w.text(r.path);
  if (!r.path2.empty()) {
    w.text("path2");
    w.text(r.path2);
  }
  if (r.ref) {
    w.text("ref");
    w.uint(r.ref);
  }
  w.text("run");
  w.text(r.run);
  w.text("seq");
  w.uint(r.seq);
  w.text("state");
  w.text(state_name(r.state));
  w.text("t");
  w.sint(r.time_ns);
  w.text("task");
  w.text(r.task);
  if (!r.touch.empty()) {
    w.text("touch");
    w.array(r.touch.size());
    for (const auto& k : r.touch) w.bytes(k);
  }
  if (!r.undo.empty()) {
    w.text("undo");
    w.array(r.undo.size());
    for (const auto& [k, v] : r.undo) {
      w.array(2);
      w.bytes(k);
      if (v) w.bytes(*v);
      else w.null();
    }
  }
  if (r.victim) {
    w.text("victim");
    write_state(w, *r.victim);
  }
  if (r.xattr_value) {
    w.text("xv");
    w.bytes(*r.xattr_value);
  }
  if (r.xattr_before) {
    w.text("xv0");
    w.bytes(*r.xattr_before);
  }
  return out;
}

std::string encode_record_via_json(const Record& r) {
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
