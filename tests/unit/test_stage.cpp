// Held changes without FUSE: the stage overlay (fs/stage.hpp: value and key
// codec, undo logs, pending copy-ups, orphans, content and xattr copies),
// the decisions on held changes (journal/decide.hpp: related(), selection
// closure) and the view's staged operations end to end: a View with a stage
// layer over a temp tree, journaled by a JournalGate over the in-memory
// store, then approved or rejected by a Decider as the control socket does.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "fs/stage.hpp"
#include "fs/view.hpp"
#include "journal/blob_store.hpp"
#include "journal/decide.hpp"
#include "journal/journal.hpp"
#include "journal/journal_gate.hpp"
#include "journal/kv.hpp"
#include "journal/record.hpp"
#include "test_util.hpp"

namespace {

using scopefs::fs::Caller;
using scopefs::fs::DirItem;
using scopefs::fs::Inode;
using scopefs::fs::ObjId;
using scopefs::fs::SetattrRequest;
using scopefs::fs::StageEntry;
using scopefs::fs::StageLayer;
using scopefs::fs::StageLog;
using scopefs::fs::StageObj;
using scopefs::fs::View;
using scopefs::journal::BlobStore;
using scopefs::journal::CallerInfo;
using scopefs::journal::Decider;
using scopefs::journal::DecisionReport;
using scopefs::journal::Journal;
using scopefs::journal::JournalGate;
using scopefs::journal::JournalOptions;
using scopefs::journal::KvTxn;
using scopefs::journal::Record;
using scopefs::journal::RecordState;
using scopefs::journal::related;
using scopefs::journal::Selection;
using scopefs::journal::Touched;
using scopefs::test::exists_nofollow;
using scopefs::test::join_lines;
using scopefs::test::read_file;
using scopefs::test::TempDir;
using scopefs::test::tstr;

using Undo = std::vector<std::pair<std::string, std::optional<std::string>>>;
using KeyMap = std::map<std::string, std::string>;

// Every key of the overlay with its encoded value.
KeyMap stage_state(const StageLayer& s) {
  KeyMap out;
  for (const auto& k : s.all_keys()) {
    auto v = s.value_of(k);
    INFO("all_keys lists a key without a value (", k.size(), " bytes)");
    REQUIRE(v.has_value());
    out[k] = *v;
  }
  return out;
}

// Applies a log's undo newest first, as reject does.
void undo_all(StageLayer& s, const Undo& undo) {
  for (auto it = undo.rbegin(); it != undo.rend(); ++it) CHECK(s.apply_raw(it->first, it->second));
}

std::vector<std::string> undo_keys(const Undo& undo) {
  std::vector<std::string> out;
  for (const auto& [k, v] : undo) out.push_back(k);
  return out;
}

// Names in a directory of the real tree, sorted ('.' and '..' left out).
std::vector<std::string> dir_names(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// One line per object: type, permission bits, link count, size, content
// (file bytes or symlink target).
std::string describe(const struct stat& st, const std::string& content) {
  char head[96];
  const char* type = S_ISREG(st.st_mode)   ? "file"
                     : S_ISDIR(st.st_mode) ? "dir"
                     : S_ISLNK(st.st_mode) ? "symlink"
                                           : "other";
  std::snprintf(head, sizeof head, "%s %04o nlink=%llu size=%lld ", type,
                static_cast<unsigned>(st.st_mode & 07777),
                static_cast<unsigned long long>(st.st_nlink),
                S_ISDIR(st.st_mode) ? 0LL : static_cast<long long>(st.st_size));
  return head + content;
}

// The key of `name` below the key `rel` ("." is the root).
std::string child_key(const std::string& rel, std::string_view name) {
  if (rel == ".") return std::string(name);
  std::string key = rel;
  key.append("/").append(name);
  return key;
}

// The real tree below `root`, keyed by relative path ("." is the root).
void real_walk(const std::string& root, const std::string& rel, KeyMap& out) {
  std::string p = rel == "." ? root : root + "/" + rel;
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  std::string content;
  if (S_ISREG(st.st_mode)) content = read_file(p);
  if (S_ISLNK(st.st_mode)) content = std::filesystem::read_symlink(p).string();
  out[rel] = describe(st, content);
  if (S_ISDIR(st.st_mode))
    for (const auto& n : dir_names(p)) real_walk(root, child_key(rel, n), out);
}
KeyMap real_tree(const std::string& root) {
  KeyMap out;
  real_walk(root, ".", out);
  return out;
}

std::string read_all(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, static_cast<off_t>(out.size()));
    REQUIRE(n >= 0);
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

SetattrRequest chmod_req(mode_t mode) {
  SetattrRequest r;
  r.to_set = SetattrRequest::kMode;
  r.mode = mode;
  return r;
}

// ---------------------------------------------------------------------------
// A View with a stage layer over tmp/src (bind "data", access stage), a
// journal over the in-memory store with blobs in tmp/state/blobs.
//
// The tree:
//   f.txt "0123456789\n"   keep.txt "keep"     mode.txt "mode" (0644)
//   gone.txt "gone"        hl.txt "hl"         pa.txt == pb.txt (one inode)
//   dir/inner.txt "inner"
struct StageView {
  TempDir tmp;
  scopefs::config::TaskConfig cfg;
  std::unique_ptr<StageLayer> stage;
  std::unique_ptr<Journal> journal;
  std::unique_ptr<JournalGate> gate;
  std::unique_ptr<View> view;
  Caller me{::getpid(), 0, 0};

  StageView() {
    tmp.file("src/f.txt", "0123456789\n");
    tmp.file("src/keep.txt", "keep");
    tmp.file("src/mode.txt", "mode", 0644);
    tmp.file("src/gone.txt", "gone");
    tmp.file("src/hl.txt", "hl");
    tmp.file("src/pa.txt", "pair");
    REQUIRE(::link(tmp.at("src/pa.txt").c_str(), tmp.at("src/pb.txt").c_str()) == 0);
    tmp.file("src/dir/inner.txt", "inner");
    tmp.mkdir("state");
    cfg = scopefs::config::parse_config(
        join_lines({"[task]", "name = \"t\"", "mountpoint = " + tstr(tmp.at("mnt")),
                    "state_dir = " + tstr(tmp.at("state")), "[[bind]]", "path = \"data\"",
                    "source = " + tstr(tmp.at("src")), "access = \"stage\""}),
        "task.toml", tmp.path());
    stage = std::make_unique<StageLayer>(tmp.at("state/stage"));
    journal = std::make_unique<Journal>(scopefs::journal::make_memory_store(),
                                        std::make_unique<BlobStore>(tmp.at("state/blobs")),
                                        JournalOptions{"t", "run1", false, 20}, false);
    gate = std::make_unique<JournalGate>(*journal);
    scopefs::fs::ViewOptions vo;
    vo.stage = stage.get();
    view = std::make_unique<View>(cfg, *gate, vo);
    view->open();
  }

  std::string src() const { return tmp.at("src"); }

  Inode* lookup(Inode* parent, std::string_view name) {
    auto r = view->lookup(parent, name);
    INFO("lookup '", std::string(name), "': errno ", r.error());
    REQUIRE(r.ok());
    return r->node;
  }
  Inode* walk(std::string_view path) {
    Inode* n = view->root();
    for (auto seg : scopefs::config::split_path(path)) n = lookup(n, seg);
    return n;
  }
  int lookup_err(Inode* parent, std::string_view name) {
    auto r = view->lookup(parent, name);
    if (r.ok()) {
      view->forget(r->node, 1);
      return 0;
    }
    return r.error();
  }
  struct stat attr(Inode* node) {
    auto st = view->getattr(node, nullptr);
    INFO("getattr errno ", st.error());
    REQUIRE(st.ok());
    return *st;
  }
  // The content of a view file, through View::open and pread on its fd.
  std::string read(Inode* node) {
    bool keep = false;
    auto fh = view->open(node, O_RDONLY, me, keep);
    INFO("open errno ", fh.error());
    REQUIRE(fh.ok());
    std::string s = read_all((*fh)->fd.get());
    view->release(std::move(*fh));
    return s;
  }
  std::string read(std::string_view path) { return read(walk(path)); }
  void write(Inode* node, const std::string& data, off_t off, int flags = O_WRONLY) {
    bool keep = false;
    auto fh = view->open(node, flags, me, keep);
    INFO("open for writing errno ", fh.error());
    REQUIRE(fh.ok());
    auto w = view->write(**fh, data.data(), data.size(), off, me);
    INFO("write errno ", w.error());
    REQUIRE(w.ok());
    CHECK(*w == data.size());
    view->release(std::move(*fh));
  }
  void create(Inode* dir, std::string_view name, const std::string& data, mode_t mode = 0640) {
    auto c = view->create(dir, name, mode, O_CREAT | O_EXCL | O_WRONLY, me);
    INFO("create errno ", c.error());
    REQUIRE(c.ok());
    if (!data.empty()) {
      auto w = view->write(*c->second, data.data(), data.size(), 0, me);
      REQUIRE(w.ok());
    }
    view->release(std::move(c->second));
  }

  // Readdir of a view directory: name → reported inode number.
  std::map<std::string, uint64_t> listing(Inode* dir) {
    auto dh = view->opendir(dir);
    INFO("opendir errno ", dh.error());
    REQUIRE(dh.ok());
    std::map<std::string, uint64_t> out;
    auto r = view->readdir(**dh, 0, false, [&](const DirItem& it) {
      if (it.name != "." && it.name != "..") {
        CHECK(out.count(std::string(it.name)) == 0);  // each name once
        out[std::string(it.name)] = it.attr.st_ino;
      }
      return true;
    });
    REQUIRE(r.ok());
    return out;
  }
  std::string names(Inode* dir) {
    std::string s;
    for (const auto& [n, ino] : listing(dir)) s += (s.empty() ? "" : ",") + n;
    return s;
  }

  // The view below `dir`, described like real_tree().
  void view_walk(Inode* dir, const std::string& rel, KeyMap& out) {
    out[rel] = describe(attr(dir), "");
    for (const auto& [name, ino] : listing(dir)) {
      std::string p = child_key(rel, name);
      CAPTURE(p);
      auto e = view->lookup(dir, name);
      INFO("lookup errno ", e.error());
      REQUIRE(e.ok());
      CHECK(e->attr.st_ino == ino);  // readdir and lookup agree
      std::string content;
      if (S_ISREG(e->attr.st_mode)) content = read(e->node);
      if (S_ISLNK(e->attr.st_mode)) {
        auto t = view->readlink(e->node);
        REQUIRE(t.ok());
        content = *t;
      }
      if (S_ISDIR(e->attr.st_mode)) view_walk(e->node, p, out);
      else out[p] = describe(attr(e->node), content);
      view->forget(e->node, 1);
    }
  }
  KeyMap view_tree() {
    KeyMap out;
    view_walk(walk("data"), ".", out);
    return out;
  }

  std::vector<Record> held() {
    auto h = journal->held();
    INFO("held errno ", h.error());
    REQUIRE(h.ok());
    for (const auto& r : *h) CHECK(r.state == RecordState::Held);
    return *h;
  }
  uint64_t held_seq(const std::string& op, const std::string& path) {
    for (const auto& r : held())
      if (r.op == op && r.path == path) return r.seq;
    FAIL("no held " << op << " of " << path);
    return 0;
  }

  // A decision as the control socket makes it (decide_service.cpp).
  DecisionReport decide(bool approve, const Selection& sel, bool with_deps = false,
                        bool force = false) {
    Decider d(cfg, *journal, *stage);
    d.busy = [this](const ObjId& id) { return view->obj_busy(id); };
    Touched touched;
    auto rep = approve
                   ? d.approve(sel, force, with_deps, CallerInfo{1, 0, 0, "admin", {}, {}}, touched)
                   : d.reject(sel, with_deps, CallerInfo{1, 0, 0, "admin", {}, {}}, touched);
    INFO("decision errno ", rep.error());
    REQUIRE(rep.ok());
    view->stage_changed(touched.objs, touched.names);
    return *rep;
  }

  // What the journal persisted of the overlay, loaded as at mount.
  KeyMap persisted_stage() {
    StageLayer fresh(tmp.at("state/stage"));
    auto r = journal->kv().scan("s/", "", [&](std::string_view k, std::string_view v) {
      fresh.load_key(k, v);
      return true;
    });
    REQUIRE(r.ok());
    return stage_state(fresh);
  }

  // Names in STATE/stage/obj (upper objects).
  std::vector<std::string> upper_files() const { return dir_names(tmp.at("state/stage/obj")); }

  // The standard set of held changes: a write to a real file, a created and
  // written file, mkdir, a directory renamed, an unlink, a hard link, one
  // name of a real hard-linked pair unlinked, chmod.
  void make_changes() {
    Inode* data = walk("data");
    write(lookup(data, "f.txt"), "ab", 0);
    create(data, "new.txt", "fresh\n");
    REQUIRE(view->mkdir(data, "newdir", 0755, me).ok());
    REQUIRE(view->rename(data, "dir", data, "moved", 0, me).ok());
    REQUIRE(view->unlink(data, "gone.txt", me).ok());
    REQUIRE(view->link(lookup(data, "hl.txt"), data, "hl2.txt", me).ok());
    REQUIRE(view->unlink(data, "pb.txt", me).ok());
    REQUIRE(view->setattr(lookup(data, "mode.txt"), chmod_req(0600), nullptr, me).ok());
  }
};

}  // namespace

TEST_SUITE_BEGIN("stage");

// ---------------------------------------------------------------------------
// Codec

TEST_CASE("stage: entries and objects round-trip through their value codec") {
  const std::vector<StageEntry> entries = {
      StageEntry{},
      StageEntry{true, {}, 0},
      StageEntry{false, ObjId{0, 1}, S_IFREG},
      StageEntry{false, ObjId{1, 0x0102030405060708ULL}, S_IFDIR},
      StageEntry{false, ObjId{0xffffffffU, 0xffffffffffffffffULL}, S_IFLNK},
      StageEntry{true, ObjId{7, 42}, S_IFIFO},  // a whiteout keeps what it was given
  };
  for (const auto& e : entries) {
    std::string v = scopefs::fs::encode_entry(e);
    CAPTURE(v.size());
    auto d = scopefs::fs::decode_entry(v);
    REQUIRE(d.has_value());
    CHECK(*d == e);
  }
  std::string binary_handle;
  for (int i = 0; i < 256; ++i) binary_handle.push_back(static_cast<char>(i));  // '\0' included
  const std::vector<StageObj> objs = {
      StageObj{},
      StageObj{5, 1, false, S_IFREG, ""},
      StageObj{0, -1, true, S_IFDIR, std::string("\x00\x00\x00\x01handle", 10)},
      StageObj{0xffffffffffffffffULL, 0x7fffffffffffffffLL, true, S_IFLNK, binary_handle},
      StageObj{3, 0, false, S_IFREG, std::string(1, '\0')},
      StageObj{1, -5, false, S_IFCHR, "x"},
  };
  for (const auto& o : objs) {
    std::string v = scopefs::fs::encode_obj(o);
    CAPTURE(v.size());
    auto d = scopefs::fs::decode_obj(v);
    REQUIRE(d.has_value());
    CHECK(*d == o);
  }
  // Distinct values encode differently.
  CHECK(scopefs::fs::encode_entry(entries[2]) != scopefs::fs::encode_entry(entries[3]));
  CHECK(scopefs::fs::encode_obj(objs[1]) != scopefs::fs::encode_obj(objs[4]));
}

TEST_CASE("stage: a truncated value does not decode") {
  std::string e = scopefs::fs::encode_entry(StageEntry{false, ObjId{3, 99}, S_IFREG});
  for (size_t n = 0; n < e.size(); ++n) {
    CAPTURE(n);
    CHECK_FALSE(scopefs::fs::decode_entry(std::string_view(e).substr(0, n)).has_value());
  }
  CHECK_FALSE(scopefs::fs::decode_entry(e + "x").has_value());  // too long is not an entry either
  std::string o = scopefs::fs::encode_obj(StageObj{9, 2, true, S_IFREG, "handle"});
  size_t fixed = scopefs::fs::encode_obj(StageObj{}).size();
  for (size_t n = 0; n < fixed; ++n) {
    CAPTURE(n);
    CHECK_FALSE(scopefs::fs::decode_obj(std::string_view(o).substr(0, n)).has_value());
  }
  // Past the fixed part the rest is the handle: a shorter handle, not garbage.
  auto shorter = scopefs::fs::decode_obj(std::string_view(o).substr(0, fixed + 3));
  REQUIRE(shorter.has_value());
  CHECK(shorter->handle == "han");
  CHECK(shorter->upper == 9);
}

TEST_CASE("stage: entry and object keys parse back, with any name bytes") {
  std::string every;  // every byte but '\0' and '/'
  for (int i = 1; i < 256; ++i)
    if (i != '/') every.push_back(static_cast<char>(i));
  const std::vector<std::string> names = {
      "a", "file.txt", "\xff\xfe\x80", every, std::string(255, '\x01'), "s/o/", "with space"};
  const std::vector<ObjId> dirs = {ObjId{0, 1}, ObjId{1, 2},
                                   ObjId{0xffffffffU, 0xffffffffffffffffULL},
                                   ObjId{2, 0x2f2f2f2f2f2f2f2fULL}};  // '/' bytes in the id
  for (const auto& dir : dirs) {
    for (const auto& name : names) {
      std::string k = StageLayer::entry_key(dir, name);
      CAPTURE(k.size());
      ObjId d2{};
      std::string n2;
      REQUIRE(StageLayer::parse_entry_key(k, d2, n2));
      CHECK(d2 == dir);
      CHECK(n2 == name);
      ObjId o2{};
      CHECK_FALSE(StageLayer::parse_obj_key(k, o2));
    }
    std::string ok = StageLayer::obj_key(dir);
    ObjId id{};
    REQUIRE(StageLayer::parse_obj_key(ok, id));
    CHECK(id == dir);
    ObjId d2{};
    std::string n2;
    CHECK_FALSE(StageLayer::parse_entry_key(ok, d2, n2));
    // Truncated keys are neither.
    for (size_t n = 0; n < ok.size(); ++n) {
      ObjId x{};
      std::string nx;
      CHECK_FALSE(StageLayer::parse_obj_key(std::string_view(ok).substr(0, n), x));
      CHECK_FALSE(StageLayer::parse_entry_key(
          std::string_view(StageLayer::entry_key(dir, "n")).substr(0, n), x, nx));
    }
  }
  // Keys of one directory share its prefix, so a scan finds them together.
  std::string k1 = StageLayer::entry_key(ObjId{1, 5}, "a");
  std::string k2 = StageLayer::entry_key(ObjId{1, 5}, "zzz");
  std::string k3 = StageLayer::entry_key(ObjId{1, 6}, "a");
  CHECK(k1.compare(0, 16, k2, 0, 16) == 0);
  CHECK(k1.compare(0, 16, k3, 0, 16) != 0);
  // Neither the next-number key nor journal keys are the stage's entries.
  ObjId x{};
  std::string nx;
  CHECK_FALSE(StageLayer::parse_entry_key(StageLayer::kNextKey, x, nx));
  CHECK_FALSE(StageLayer::parse_obj_key(StageLayer::kNextKey, x));
  CHECK_FALSE(StageLayer::parse_entry_key(std::string("r/") + std::string(20, 'x'), x, nx));
}

// ---------------------------------------------------------------------------
// Undo logs

TEST_CASE(
    "stage: set_entry and set_obj keep each key's first old value; the undo restores the state") {
  TempDir tmp;
  StageLayer s(tmp.at("stage"));
  CHECK(s.empty());
  CHECK_FALSE(s.active());
  const ObjId dir{1, 100};
  const ObjId lower{1, 200};
  const ObjId up{0, 3};
  // A state the overlay had before: one entry, one object.
  const StageEntry old_e{false, lower, S_IFREG};
  const StageObj old_o{0, 2, false, S_IFREG, "h"};
  REQUIRE(s.apply_raw(StageLayer::entry_key(dir, "a"), scopefs::fs::encode_entry(old_e)));
  REQUIRE(s.apply_raw(StageLayer::obj_key(lower), scopefs::fs::encode_obj(old_o)));
  CHECK(s.active());
  const KeyMap before = stage_state(s);
  REQUIRE(before.size() == 2);

  StageLog log;
  s.set_entry(dir, "a", StageEntry{true, {}, 0}, log);         // existed: whiteout
  s.set_entry(dir, "a", StageEntry{false, up, S_IFREG}, log);  // again: undo unchanged
  s.set_entry(dir, "b", StageEntry{false, up, S_IFREG}, log);  // new
  s.set_obj(up, StageObj{3, 1, false, S_IFREG, ""}, log);      // new
  s.set_obj(up, StageObj{3, 2, false, S_IFREG, ""}, log);      // again
  s.set_obj(lower, std::nullopt, log);                         // existed: removed
  s.set_entry(dir, "c", std::nullopt, log);                    // absent, stays absent

  const std::string ka = StageLayer::entry_key(dir, "a");
  const std::string kb = StageLayer::entry_key(dir, "b");
  const std::string kc = StageLayer::entry_key(dir, "c");
  const std::string ku = StageLayer::obj_key(up);
  const std::string kl = StageLayer::obj_key(lower);
  REQUIRE(log.undo.size() == 5);
  CHECK(undo_keys(log.undo) == std::vector<std::string>{ka, kb, ku, kl, kc});
  CHECK(log.undo[0].second == scopefs::fs::encode_entry(old_e));
  CHECK_FALSE(log.undo[1].second.has_value());
  CHECK_FALSE(log.undo[2].second.has_value());
  CHECK(log.undo[3].second == scopefs::fs::encode_obj(old_o));
  CHECK_FALSE(log.undo[4].second.has_value());
  CHECK(log.touched == std::set<std::string>{ka, kb, kc, ku, kl});

  // The new state, through the queries and value_of/all_keys.
  REQUIRE(s.entry(dir, "a") != nullptr);
  CHECK(*s.entry(dir, "a") == StageEntry{false, up, S_IFREG});
  CHECK(s.entry(dir, "c") == nullptr);
  CHECK(s.obj(lower) == nullptr);
  REQUIRE(s.obj(up) != nullptr);
  CHECK(s.obj(up)->nlink == 2);
  CHECK(s.entry_count() == 2);
  REQUIRE(s.entries(dir) != nullptr);
  CHECK(s.entries(dir)->size() == 2);
  auto names = s.names_of(up);
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::pair<ObjId, std::string>>{{dir, "a"}, {dir, "b"}});
  const KeyMap after = stage_state(s);
  CHECK(after == KeyMap{{ka, scopefs::fs::encode_entry(StageEntry{false, up, S_IFREG})},
                        {kb, scopefs::fs::encode_entry(StageEntry{false, up, S_IFREG})},
                        {ku, scopefs::fs::encode_obj(StageObj{3, 2, false, S_IFREG, ""})}});
  CHECK_FALSE(s.value_of(kl).has_value());
  CHECK_FALSE(s.value_of(kc).has_value());

  // Reject: the undo newest first restores exactly what was there.
  undo_all(s, log.undo);
  CHECK(stage_state(s) == before);
  for (const auto& [k, v] : before) CHECK(s.value_of(k) == v);
  CHECK_FALSE(s.value_of(kb).has_value());
  CHECK_FALSE(s.value_of(ku).has_value());
  CHECK(s.entry_count() == 1);

  // Undoing everything from empty leaves the overlay empty (no empty directory maps).
  StageLog all;
  for (const auto& k : s.all_keys()) {
    ObjId id{};
    std::string n;
    if (StageLayer::parse_entry_key(k, id, n)) s.set_entry(id, n, std::nullopt, all);
    else if (StageLayer::parse_obj_key(k, id)) s.set_obj(id, std::nullopt, all);
  }
  CHECK(s.empty());
  CHECK_FALSE(s.has_entries(dir));
  CHECK(s.entries(dir) == nullptr);
  undo_all(s, all.undo);
  CHECK(stage_state(s) == before);
}

TEST_CASE("stage: apply_raw and load_key: foreign keys, next upper numbers") {
  TempDir tmp;
  StageLayer s(tmp.at("stage"));
  CHECK_FALSE(s.apply_raw("r/12345678", std::string("x")));
  CHECK_FALSE(s.apply_raw(StageLayer::kNextKey, std::string(8, '\0')));
  CHECK(s.empty());
  uint64_t first = s.new_upper();
  CHECK(s.new_upper() == first + 1);
  // An object with upper copy 40 moves the next number past it.
  REQUIRE(s.apply_raw(StageLayer::obj_key(ObjId{1, 9}),
                      scopefs::fs::encode_obj(StageObj{40, 1, false, S_IFREG, ""})));
  CHECK(s.new_upper() == 41);
  // The persisted next number, loaded back, is where a fresh layer continues.
  std::string next = s.next_value();
  StageLayer t(tmp.at("stage"));
  t.load_key(StageLayer::kNextKey, next);
  CHECK(t.new_upper() == 42);
  CHECK(t.empty());
  // load_key of ordinary keys fills the maps.
  t.load_key(StageLayer::entry_key(ObjId{1, 1}, "n"),
             scopefs::fs::encode_entry(StageEntry{true, {}, 0}));
  REQUIRE(t.entry(ObjId{1, 1}, "n") != nullptr);
  CHECK(t.entry(ObjId{1, 1}, "n")->whiteout);
  CHECK(t.active());
}

TEST_CASE(
    "stage: claim_pending moves a pending copy-up's undo into the first log that touches it") {
  TempDir tmp;
  StageLayer s(tmp.at("stage"));
  const ObjId obj{1, 500};
  const ObjId other{1, 501};
  const ObjId dir{1, 2};
  const std::string ko = StageLayer::obj_key(obj);

  // Open for writing: the copy-up is made now, recorded by no change yet.
  StageLog copyup;
  s.set_obj(obj, StageObj{s.new_upper(), 1, false, S_IFREG, ""}, copyup);
  s.add_pending(copyup);
  CHECK(s.pending(obj));
  CHECK_FALSE(s.pending(other));

  // A change that does not touch the object leaves it pending.
  StageLog unrelated;
  s.set_entry(dir, "x", StageEntry{true, {}, 0}, unrelated);
  s.touch(other, unrelated);
  s.claim_pending(unrelated);
  CHECK(undo_keys(unrelated.undo) == std::vector<std::string>{StageLayer::entry_key(dir, "x")});
  CHECK(s.pending(obj));

  // The write session that touches it claims the copy-up's undo, first.
  StageLog session;
  s.set_entry(dir, "y", StageEntry{true, {}, 0}, session);
  s.touch(obj, session);
  s.claim_pending(session);
  CHECK_FALSE(s.pending(obj));
  REQUIRE(session.undo.size() == 2);
  CHECK(session.undo[0].first == ko);
  CHECK_FALSE(session.undo[0].second.has_value());
  CHECK(session.seen.count(ko) == 1);

  // Claimed once: a later change gets nothing of it.
  StageLog later;
  s.touch(obj, later);
  s.claim_pending(later);
  CHECK(later.undo.empty());

  // Rejecting the session (newest first, after `unrelated`) removes the copy-up.
  undo_all(s, session.undo);
  undo_all(s, unrelated.undo);
  CHECK(s.empty());
}

TEST_CASE(
    "stage: claim_pending keeps the value from before the copy-up when the log changed the key too") {
  // A file open for writing (pending copy-up) gets a second name or loses
  // one: link/unlink change the object's key (link count) in their own log,
  // whose undo then holds the value *after* the copy-up. Claiming the copy-up
  // must leave the older value (before the copy-up) in the undo, else reject
  // keeps an upper copy that no change accounts for.
  TempDir tmp;
  StageLayer s(tmp.at("stage"));
  const ObjId obj{1, 600};
  const ObjId dir{1, 2};
  const KeyMap before = stage_state(s);

  StageLog copyup;
  s.set_obj(obj, StageObj{s.new_upper(), 1, false, S_IFREG, ""}, copyup);
  s.add_pending(copyup);

  StageLog unlink;  // as View::stage_remove: whiteout, link count - 1, touch
  s.set_entry(dir, "f", StageEntry{true, {}, 0}, unlink);
  StageObj o = *s.obj(obj);
  o.nlink = 0;
  s.set_obj(obj, o, unlink);
  s.touch(obj, unlink);
  s.claim_pending(unlink);
  CHECK_FALSE(s.pending(obj));
  auto it = std::find_if(unlink.undo.begin(), unlink.undo.end(),
                         [&](const auto& u) { return u.first == StageLayer::obj_key(obj); });
  REQUIRE(it != unlink.undo.end());
  CHECK_FALSE(it->second.has_value());  // absent before the copy-up
  undo_all(s, unlink.undo);
  CHECK(stage_state(s) == before);
}

// ---------------------------------------------------------------------------
// Orphans

TEST_CASE("stage: orphans lists upper files no object state refers to") {
  TempDir tmp;
  StageLayer s(tmp.at("stage"));
  const int od = s.obj_dirfd();
  auto make_file = [&](uint64_t n) {
    int fd = ::openat(od, StageLayer::upper_name(n).c_str(),
                      O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    ::close(fd);
  };
  CHECK(StageLayer::upper_name(1) == "0000000000000001");
  CHECK(StageLayer::upper_name(0xabcdef) == "0000000000abcdef");
  CHECK(s.orphans().empty());
  make_file(1);
  make_file(2);
  make_file(0x1f);
  REQUIRE(::mkdirat(od, StageLayer::upper_name(4).c_str(), 0700) == 0);  // an upper directory
  // Not upper objects: other names are never reported.
  REQUIRE(::mkdirat(od, "tmp", 0700) == 0);
  int fd = ::openat(od, "000000000000000g", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  ::close(fd);

  StageLog log;
  s.set_obj(ObjId{0, 1}, StageObj{1, 1, false, S_IFREG, ""}, log);      // an upper object
  s.set_obj(ObjId{1, 77}, StageObj{0x1f, 1, false, S_IFREG, ""}, log);  // a lower one's copy
  s.set_obj(ObjId{1, 78}, StageObj{0, 0, false, S_IFREG, "h"}, log);    // no copy
  // An entry alone does not keep an upper file.
  s.set_entry(ObjId{1, 5}, "x", StageEntry{false, ObjId{0, 2}, S_IFREG}, log);
  auto o = s.orphans();
  std::sort(o.begin(), o.end());
  CHECK(o == std::vector<uint64_t>{2, 4});
  s.set_obj(ObjId{0, 1}, std::nullopt, log);
  o = s.orphans();
  std::sort(o.begin(), o.end());
  CHECK(o == std::vector<uint64_t>{1, 2, 4});
}

// ---------------------------------------------------------------------------
// Content and xattrs

TEST_CASE("stage: copy_content copies a sparse 3 MiB file exactly") {
  TempDir tmp;
  const size_t kMiB = 1 << 20;
  std::string a(kMiB, '\0'), c(kMiB / 2, '\0');
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<char>((i * 131 + 7) & 0xff);
  for (size_t i = 0; i < c.size(); ++i) c[i] = static_cast<char>((i * 17 + 3) & 0xff);
  // [0, 1 MiB) data, [1, 2 MiB) hole, [2, 2.5 MiB) data, then a hole to 3 MiB.
  std::string src_path = tmp.at("src");
  {
    int fd = ::open(src_path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::pwrite(fd, a.data(), a.size(), 0) == static_cast<ssize_t>(a.size()));
    REQUIRE(::pwrite(fd, c.data(), c.size(), static_cast<off_t>(2 * kMiB)) ==
            static_cast<ssize_t>(c.size()));
    REQUIRE(::ftruncate(fd, static_cast<off_t>(3 * kMiB)) == 0);
    ::close(fd);
  }
  std::string expect = a + std::string(kMiB, '\0') + c + std::string(kMiB / 2, '\0');
  REQUIRE(read_file(src_path) == expect);

  std::string dst_dir = tmp.path();
  SUBCASE("on the same filesystem") {}
  SUBCASE("onto another filesystem (copy_file_range may refuse: plain copy)") {
    struct stat a_st {
    }, b_st{};
    if (::stat("/dev/shm", &b_st) != 0 || ::stat(tmp.path().c_str(), &a_st) != 0 ||
        a_st.st_dev == b_st.st_dev || ::access("/dev/shm", W_OK) != 0) {
      MESSAGE("no writable /dev/shm on another filesystem: same filesystem only");
    } else {
      dst_dir = "/dev/shm";
    }
  }
  std::string dst_path = dst_dir + "/scopefs-unit-copy-" + std::to_string(::getpid());
  int in = ::open(src_path.c_str(), O_RDONLY | O_CLOEXEC);
  int out = ::open(dst_path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  REQUIRE(in >= 0);
  REQUIRE(out >= 0);
  auto r = scopefs::fs::copy_content(in, out);
  ::close(in);
  ::close(out);
  std::string got = read_file(dst_path);
  ::unlink(dst_path.c_str());
  INFO("copy_content errno ", r.error());
  REQUIRE(r.ok());
  CHECK(got.size() == expect.size());
  CHECK(got == expect);

  // An empty source gives an empty copy.
  std::string empty = tmp.file("empty", "");
  in = ::open(empty.c_str(), O_RDONLY | O_CLOEXEC);
  out = ::open(tmp.at("empty.copy").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  REQUIRE(in >= 0);
  REQUIRE(out >= 0);
  CHECK(scopefs::fs::copy_content(in, out).ok());
  ::close(in);
  ::close(out);
  CHECK(read_file(tmp.at("empty.copy")).empty());
}

TEST_CASE("stage: copy_xattrs copies user xattrs, values of any bytes and size") {
  TempDir tmp;
  std::string dir = tmp.path();
  SUBCASE("on the temp filesystem") {}
  SUBCASE("on /dev/shm (takes large values and long name lists)") {
    if (::access("/dev/shm", W_OK) != 0) {
      MESSAGE("no writable /dev/shm");
      return;
    }
    dir = "/dev/shm";
  }
  const std::string src = dir + "/scopefs-unit-xsrc-" + std::to_string(::getpid());
  const std::string dst = dir + "/scopefs-unit-xdst-" + std::to_string(::getpid());
  int sfd = ::open(src.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
  int dfd = ::open(dst.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
  struct Cleanup {
    std::string a, b;
    int fa, fb;
    ~Cleanup() {
      ::close(fa);
      ::close(fb);
      ::unlink(a.c_str());
      ::unlink(b.c_str());
    }
  } cleanup{src, dst, sfd, dfd};
  REQUIRE(sfd >= 0);
  REQUIRE(dfd >= 0);
  // No xattrs: nothing to do, success.
  CHECK(scopefs::fs::copy_xattrs(sfd, dfd).ok());
  if (::fsetxattr(sfd, "user.probe", "1", 1, 0) != 0) {
    MESSAGE("this filesystem refuses user xattrs (errno " << errno << "): xattr copy not tested");
    return;
  }
  REQUIRE(::fremovexattr(sfd, "user.probe") == 0);
  std::map<std::string, std::string> want = {
      {"user.plain", "value"},
      {"user.empty", ""},
      {"user.binary", std::string("a\0b\xff\x01", 5)},
  };
  for (const auto& [k, v] : want) REQUIRE(::fsetxattr(sfd, k.c_str(), v.data(), v.size(), 0) == 0);
  // A value longer than the first read buffer (4096), and a name list longer
  // than the first list buffer (4096), where the filesystem takes them.
  std::string big(6000, 'z');
  for (size_t i = 0; i < big.size(); i += 7) big[i] = static_cast<char>(i & 0xff);
  if (::fsetxattr(sfd, "user.big", big.data(), big.size(), 0) == 0) want["user.big"] = big;
  else MESSAGE("a 6000-byte xattr value is refused here (errno " << errno << ")");
  std::vector<std::string> many;
  for (int i = 0; i < 300; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "user.a_rather_long_attribute_name_%03d", i);
    if (::fsetxattr(sfd, name, name, std::strlen(name), 0) != 0) {
      // Not room for them all (ext4: one block): leave the list short.
      MESSAGE("a long list of xattr names is refused here (errno " << errno << " at " << i << ")");
      for (const auto& n : many) REQUIRE(::fremovexattr(sfd, n.c_str()) == 0);
      many.clear();
      break;
    }
    many.emplace_back(name);
  }
  for (const auto& n : many) want[n] = n;
  // The destination's own xattr of the same name is overwritten; others stay.
  REQUIRE(::fsetxattr(dfd, "user.plain", "old", 3, 0) == 0);
  REQUIRE(::fsetxattr(dfd, "user.dst_only", "d", 1, 0) == 0);

  auto r = scopefs::fs::copy_xattrs(sfd, dfd);
  INFO("copy_xattrs errno ", r.error());
  REQUIRE(r.ok());
  for (const auto& kv : want) {
    const std::string& name = kv.first;
    CAPTURE(name);
    std::string buf(8192, '\0');
    ssize_t n = ::fgetxattr(dfd, name.c_str(), buf.data(), buf.size());
    REQUIRE(n >= 0);
    CHECK(buf.substr(0, static_cast<size_t>(n)) == kv.second);
  }
  char b[4];
  CHECK(::fgetxattr(dfd, "user.dst_only", b, sizeof b) == 1);
}

// ---------------------------------------------------------------------------
// related()

namespace {
Record rec(const std::string& op, const std::string& path, const std::string& path2 = "") {
  Record r;
  r.op = op;
  r.path = path;
  r.path2 = path2;
  r.state = RecordState::Held;
  return r;
}
}  // namespace

TEST_CASE("stage: related() — shared overlay keys") {
  const std::string k1 = StageLayer::obj_key(ObjId{1, 10});
  const std::string k2 = StageLayer::entry_key(ObjId{1, 2}, "n");
  Record a = rec("chmod", "data/x");
  Record b = rec("write", "data/far/away");
  CHECK_FALSE(related(a, b));
  SUBCASE("a touched key") {
    a.touch = {k1};
    b.touch = {StageLayer::obj_key(ObjId{1, 11}), k1};
    CHECK(related(a, b));
    CHECK(related(b, a));
  }
  SUBCASE("an undo key (set by both)") {
    a.undo = {{k2, std::nullopt}};
    a.touch = {k2};
    b.undo = {{k2, std::string("old")}};
    b.touch = {k2};
    CHECK(related(a, b));
    CHECK(related(b, a));
  }
  SUBCASE("an undo key, without touch lists") {
    a.undo = {{k2, std::nullopt}};
    b.undo = {{k2, std::string("old")}};
    CHECK(related(a, b));
  }
  SUBCASE("different keys") {
    a.touch = {k1};
    a.undo = {{k2, std::nullopt}};
    b.touch = {StageLayer::obj_key(ObjId{1, 11})};
    b.undo = {{StageLayer::entry_key(ObjId{1, 2}, "m"), std::nullopt}};
    CHECK_FALSE(related(a, b));
  }
}

TEST_CASE("stage: related() — paths equal, above or below; not siblings or name prefixes") {
  struct Case {
    Record a, b;
    bool rel;
    const char* why;
  };
  const std::vector<Case> cases = {
      {rec("write", "d/f"), rec("chmod", "d/f"), true, "same path"},
      {rec("mkdir", "d"), rec("create", "d/sub/f"), true, "ancestor"},
      {rec("create", "d/sub/f"), rec("rmdir", "d"), true, "descendant"},
      {rec("rename", "old/x", "new/x"), rec("write", "new/x"), true, "rename target"},
      {rec("rename", "a", "b"), rec("create", "b/inside"), true, "below a rename target"},
      {rec("write", "new/x"), rec("rename", "old/x", "new/x"), true, "rename target (other side)"},
      {rec("link", "d/f", "e/g"), rec("unlink", "e/g"), true, "link target"},
      {rec("chmod", ""), rec("write", "a/b"), true, "the root is above everything"},
      {rec("write", "d/x"), rec("write", "d/y"), false, "siblings"},
      {rec("write", "a"), rec("write", "ab"), false, "name prefix"},
      {rec("mkdir", "a"), rec("create", "ab/c"), false, "name prefix of a parent"},
      {rec("write", "a/b"), rec("write", "a/bc"), false, "name prefix below"},
      {rec("write", "a/b"), rec("write", "a/b.txt"), false, "name prefix with a dot"},
      {rec("symlink", "d/ln", "x"), rec("write", "x"), false, "a symlink target is not a path"},
      {rec("setxattr", "d/f", "user.x"), rec("write", "user.x"), false,
       "an xattr name is not a path"},
      {rec("rename", "a", "b"), rec("write", "c"), false, "rename elsewhere"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.why);
    CHECK(related(c.a, c.b) == c.rel);
    CHECK(related(c.b, c.a) == c.rel);
  }
}

// ---------------------------------------------------------------------------
// Selection closure over held records alone (no real tree needed)

TEST_CASE("stage: a selection must include what it builds on; unknown ids are reported") {
  TempDir tmp;
  tmp.mkdir("src");
  auto cfg = scopefs::config::parse_config(
      join_lines({"[task]", "name = \"t\"", "mountpoint = " + tstr(tmp.at("mnt")),
                  "state_dir = " + tstr(tmp.at("state")), "[[bind]]", "path = \"data\"",
                  "source = " + tstr(tmp.at("src")), "access = \"stage\""}),
      "task.toml", tmp.path());
  Journal j(scopefs::journal::make_memory_store(), std::make_unique<BlobStore>(tmp.at("blobs")),
            JournalOptions{"t", "r", false, 20}, false);
  StageLayer stage(tmp.at("stage"));
  auto add = [&](Record r) {
    REQUIRE(j.append_with(r, KvTxn{}).ok());
    return r.seq;
  };
  uint64_t mk = add(rec("mkdir", "data/d"));
  uint64_t other = add(rec("mkdir", "data/other"));
  uint64_t cr = add(rec("create", "data/d/x"));
  uint64_t ch = add(rec("chmod", "data/d/x"));
  auto held = j.held();
  REQUIRE(held.ok());
  REQUIRE(held->size() == 4);
  Decider d(cfg, j, stage);
  CallerInfo who{1, 0, 0, "admin", {}, {}};
  Touched t;

  // Approve needs the earlier related changes.
  auto r1 = d.approve(Selection{{cr}, {}, false}, false, false, who, t);
  REQUIRE(r1.ok());
  CHECK(r1->missing == std::vector<uint64_t>{mk});
  CHECK(r1->done.empty());
  CHECK_FALSE(r1->ok());
  auto r2 = d.approve(Selection{{ch}, {}, false}, false, false, who, t);
  REQUIRE(r2.ok());
  CHECK(r2->missing == std::vector<uint64_t>{mk, cr});
  // Reject needs the later ones.
  auto r3 = d.reject(Selection{{mk}, {}, false}, false, who, t);
  REQUIRE(r3.ok());
  CHECK(r3->missing == std::vector<uint64_t>{cr, ch});
  CHECK(r3->done.empty());
  // A glob selects by path, with the same closure.
  auto r4 = d.reject(Selection{{}, {"data/d/x"}, false}, false, who, t);
  REQUIRE(r4.ok());
  CHECK(r4->missing.empty());
  CHECK(r4->done == std::vector<uint64_t>{ch, cr});  // newest first
  // Unknown ids.
  auto r5 = d.reject(Selection{{999}, {}, false}, false, who, t);
  REQUIRE(r5.ok());
  CHECK(r5->unknown == std::vector<uint64_t>{999});
  CHECK(r5->done.empty());
  // Nothing was decided but r4's two.
  held = j.held();
  REQUIRE(held.ok());
  std::vector<uint64_t> left;
  for (const auto& r : *held) left.push_back(r.seq);
  CHECK(left == std::vector<uint64_t>{mk, other});
  // With dependencies: reject of mkdir alone is fine now.
  auto r6 = d.reject(Selection{{mk}, {}, false}, true, who, t);
  REQUIRE(r6.ok());
  CHECK(r6->ok());
  CHECK(r6->done == std::vector<uint64_t>{mk});
}

// ---------------------------------------------------------------------------
// The view with a stage layer

TEST_CASE_FIXTURE(
    StageView,
    "stage: held changes show in the view and leave the real tree alone; approve --all applies them") {
  const KeyMap real_before = real_tree(src());
  Inode* data = walk("data");
  // The real file's inode number as the view reports it, before its copy-up.
  auto fe = view->lookup(data, "f.txt");
  REQUIRE(fe.ok());
  const ino_t f_ino = fe->attr.st_ino;
  CHECK(listing(data).at("f.txt") == f_ino);
  const ino_t hl_ino = attr(lookup(data, "hl.txt")).st_ino;
  CHECK(attr(lookup(data, "pa.txt")).st_nlink == 2);

  make_changes();

  // The real tree did not change at all.
  CHECK(real_tree(src()) == real_before);
  CHECK(dir_names(src()) == std::vector<std::string>{"dir", "f.txt", "gone.txt", "hl.txt",
                                                     "keep.txt", "mode.txt", "pa.txt", "pb.txt"});

  // The view shows the changes.
  CHECK(names(data) == "f.txt,hl.txt,hl2.txt,keep.txt,mode.txt,moved,new.txt,newdir,pa.txt");
  CHECK(lookup_err(data, "dir") == ENOENT);
  CHECK(lookup_err(data, "gone.txt") == ENOENT);
  CHECK(lookup_err(data, "pb.txt") == ENOENT);
  CHECK(read("data/f.txt") == "ab23456789\n");
  CHECK(read("data/new.txt") == "fresh\n");
  CHECK(read("data/moved/inner.txt") == "inner");
  CHECK(read("data/keep.txt") == "keep");
  CHECK(names(walk("data/moved")) == "inner.txt");
  CHECK(names(walk("data/newdir")).empty());
  CHECK(S_ISDIR(attr(walk("data/newdir")).st_mode));
  CHECK((attr(walk("data/newdir")).st_mode & 07777) == 0755);
  CHECK((attr(walk("data/new.txt")).st_mode & 07777) == 0640);
  CHECK((attr(walk("data/mode.txt")).st_mode & 07777) == 0600);
  // The copied-up file keeps its inode number (getattr, lookup, readdir).
  CHECK(attr(fe->node).st_ino == f_ino);
  CHECK(attr(walk("data/f.txt")).st_ino == f_ino);
  CHECK(listing(data).at("f.txt") == f_ino);
  CHECK(attr(fe->node).st_size == 11);
  // A hard link in the view: one object, two names, link count 2.
  CHECK(attr(walk("data/hl2.txt")).st_ino == hl_ino);
  CHECK(attr(walk("data/hl.txt")).st_nlink == 2);
  CHECK(read("data/hl2.txt") == "hl");
  // One name of a real pair unlinked in the view: the other has one link.
  CHECK(attr(walk("data/pa.txt")).st_nlink == 1);
  CHECK(read("data/pa.txt") == "pair");
  // The bind root gained a subdirectory (the renamed one stays).
  CHECK(attr(data).st_nlink == 4);

  // The journal holds one record per change, oldest first.
  auto h = held();
  std::vector<std::pair<std::string, std::string>> ops;
  ops.reserve(h.size());
  for (const auto& r : h) ops.emplace_back(r.op, r.path);
  for (const auto& want :
       std::vector<std::pair<std::string, std::string>>{{"write", "data/f.txt"},
                                                        {"create", "data/new.txt"},
                                                        {"write", "data/new.txt"},
                                                        {"mkdir", "data/newdir"},
                                                        {"rename", "data/dir"},
                                                        {"unlink", "data/gone.txt"},
                                                        {"link", "data/hl.txt"},
                                                        {"unlink", "data/pb.txt"},
                                                        {"chmod", "data/mode.txt"}}) {
    CAPTURE(want.first);
    CAPTURE(want.second);
    CHECK(std::find(ops.begin(), ops.end(), want) != ops.end());
  }
  CHECK(ops.size() == 9);
  for (size_t i = 1; i < h.size(); ++i) CHECK(h[i - 1].seq < h[i].seq);
  for (const auto& r : h)
    if (r.op == "rename") CHECK(r.path2 == "data/moved");
  // What the journal persisted of the overlay is the overlay.
  CHECK(persisted_stage() == stage_state(*stage));

  // Approve everything: the real tree becomes what the view showed.
  const KeyMap shown = view_tree();
  CHECK(shown.at("f.txt").find("ab23456789") != std::string::npos);
  DecisionReport rep = decide(true, Selection{{}, {}, true});
  CAPTURE(rep.notes.size());
  for (const auto& [id, why] : rep.conflicts) MESSAGE("conflict " << id << ": " << why);
  for (const auto& [id, why] : rep.failed) MESSAGE("failed " << id << ": " << why);
  CHECK(rep.ok());
  CHECK(rep.done.size() == 9);
  CHECK(real_tree(src()) == shown);
  CHECK(view_tree() == shown);
  CHECK(held().empty());
  // The overlay let go of everything, and its upper files are gone.
  CHECK(stage_state(*stage).empty());
  CHECK(upper_files().empty());
  CHECK(persisted_stage().empty());
  // The real tree: hl.txt and hl2.txt are one inode; pb.txt is gone.
  struct stat a {
  }, b{};
  REQUIRE(::lstat(tmp.at("src/hl.txt").c_str(), &a) == 0);
  REQUIRE(::lstat(tmp.at("src/hl2.txt").c_str(), &b) == 0);
  CHECK(a.st_ino == b.st_ino);
  CHECK_FALSE(exists_nofollow(tmp.at("src/pb.txt")));
  CHECK(read_file(tmp.at("src/moved/inner.txt")) == "inner");
}

TEST_CASE_FIXTURE(
    StageView, "stage: after a remount the overlay loaded from the journal shows the same view") {
  const KeyMap real_before = real_tree(src());
  make_changes();
  const KeyMap shown = view_tree();
  const KeyMap keys = stage_state(*stage);
  // Remount: a new overlay loaded from the journal's "s/" keys, a new view.
  view.reset();
  stage.reset();
  stage = std::make_unique<StageLayer>(tmp.at("state/stage"));
  auto r = journal->kv().scan("s/", "", [&](std::string_view k, std::string_view v) {
    stage->load_key(k, v);
    return true;
  });
  REQUIRE(r.ok());
  CHECK(stage_state(*stage) == keys);
  scopefs::fs::ViewOptions vo;
  vo.stage = stage.get();
  view = std::make_unique<View>(cfg, *gate, vo);
  view->open();
  // The moved directory is found again through its file handle.
  CHECK(read("data/moved/inner.txt") == "inner");
  CHECK(view_tree() == shown);
  CHECK(real_tree(src()) == real_before);
  // New upper numbers do not reuse the ones the overlay holds.
  Inode* data = walk("data");
  create(data, "after.txt", "after");
  CHECK(read("data/new.txt") == "fresh\n");
  CHECK(read("data/after.txt") == "after");
  DecisionReport rep = decide(true, Selection{{}, {}, true});
  for (const auto& [id, why] : rep.conflicts) MESSAGE("conflict " << id << ": " << why);
  for (const auto& [id, why] : rep.failed) MESSAGE("failed " << id << ": " << why);
  CHECK(rep.ok());
  KeyMap now = shown;
  now["after.txt"] = describe(attr(walk("data/after.txt")), "after");
  now["."] = describe(attr(data), "");
  CHECK(real_tree(src()) == now);
  CHECK(view_tree() == now);
  CHECK(upper_files().empty());
}

TEST_CASE_FIXTURE(
    StageView,
    "stage: real hard links share one copied-up object; approve rewrites the inode in place") {
  Inode* data = walk("data");
  struct stat real_pa {};
  REQUIRE(::lstat(tmp.at("src/pa.txt").c_str(), &real_pa) == 0);
  const ino_t ino = attr(lookup(data, "pa.txt")).st_ino;
  write(lookup(data, "pa.txt"), "PAIR", 0);
  REQUIRE(view->setattr(lookup(data, "pb.txt"), chmod_req(0600), nullptr, me).ok());
  // Both names show the held content and mode; one inode, two links.
  CHECK(read("data/pa.txt") == "PAIR");
  CHECK(read("data/pb.txt") == "PAIR");
  for (const char* n : {"data/pa.txt", "data/pb.txt"}) {
    CAPTURE(n);
    struct stat st = attr(walk(n));
    CHECK(st.st_ino == ino);
    CHECK(st.st_nlink == 2);
    CHECK((st.st_mode & 07777) == 0600);
  }
  CHECK(read_file(tmp.at("src/pa.txt")) == "pair");
  CHECK((scopefs::test::mode_of(tmp.at("src/pb.txt")) & 07777) == 0644);

  const KeyMap shown = view_tree();
  DecisionReport rep = decide(true, Selection{{}, {}, true});
  for (const auto& [id, why] : rep.conflicts) MESSAGE("conflict " << id << ": " << why);
  for (const auto& [id, why] : rep.failed) MESSAGE("failed " << id << ": " << why);
  CHECK(rep.ok());
  CHECK(real_tree(src()) == shown);
  struct stat a {
  }, b{};
  REQUIRE(::lstat(tmp.at("src/pa.txt").c_str(), &a) == 0);
  REQUIRE(::lstat(tmp.at("src/pb.txt").c_str(), &b) == 0);
  CHECK(a.st_ino == real_pa.st_ino);  // rewritten in place: still the same inode
  CHECK(b.st_ino == real_pa.st_ino);
  CHECK(read_file(tmp.at("src/pb.txt")) == "PAIR");
  CHECK(view_tree() == shown);
}

TEST_CASE_FIXTURE(StageView,
                  "stage: rejecting the newest change on a copied-up file keeps the older one") {
  Inode* data = walk("data");
  Inode* f = lookup(data, "f.txt");
  write(f, "ab", 0);
  REQUIRE(view->setattr(f, chmod_req(0600), nullptr, me).ok());
  write(f, "XY", 4);
  const uint64_t ch = held_seq("chmod", "data/f.txt");
  std::vector<uint64_t> writes;
  for (const auto& r : held())
    if (r.op == "write") writes.push_back(r.seq);
  REQUIRE(writes.size() == 2);
  CHECK(read(f) == "ab23XY6789\n");
  // The chmod alone cannot go: the later write builds on it.
  DecisionReport r1 = decide(false, Selection{{ch}, {}, false});
  CHECK(r1.missing == std::vector<uint64_t>{writes[1]});
  // The last write, then the chmod: content and mode step back.
  DecisionReport r2 = decide(false, Selection{{writes[1]}, {}, false});
  CHECK(r2.ok());
  CHECK(read(f) == "ab23456789\n");
  CHECK((attr(f).st_mode & 07777) == 0600);
  DecisionReport r3 = decide(false, Selection{{ch}, {}, false});
  CHECK(r3.ok());
  CHECK(read(f) == "ab23456789\n");
  CHECK((attr(f).st_mode & 07777) == 0644);
  CHECK(held().size() == 1);
  CHECK(read_file(tmp.at("src/f.txt")) == "0123456789\n");
  // What is left is approved as it shows.
  DecisionReport r4 = decide(true, Selection{{}, {}, true});
  CHECK(r4.ok());
  CHECK(read_file(tmp.at("src/f.txt")) == "ab23456789\n");
  CHECK((scopefs::test::mode_of(tmp.at("src/f.txt")) & 07777) == 0644);
  CHECK(upper_files().empty());
}

TEST_CASE_FIXTURE(StageView, "stage: reject --all brings the view back to the real tree") {
  const KeyMap real_before = real_tree(src());
  const KeyMap view_before = view_tree();
  CHECK(view_before == real_before);
  make_changes();
  CHECK(real_tree(src()) == real_before);
  CHECK(view_tree() != real_before);
  CHECK_FALSE(upper_files().empty());

  DecisionReport rep = decide(false, Selection{{}, {}, true});
  for (const auto& [id, why] : rep.failed) MESSAGE("failed " << id << ": " << why);
  CHECK(rep.ok());
  CHECK(rep.done.size() == 9);
  // Newest first.
  for (size_t i = 1; i < rep.done.size(); ++i) CHECK(rep.done[i - 1] > rep.done[i]);
  CHECK(real_tree(src()) == real_before);
  CHECK(view_tree() == real_before);
  CHECK(held().empty());
  CHECK(stage_state(*stage).empty());
  CHECK(persisted_stage().empty());
  CHECK(upper_files().empty());
  // Changes after the reject are held again as usual.
  Inode* data = walk("data");
  CHECK(names(data) == "dir,f.txt,gone.txt,hl.txt,keep.txt,mode.txt,pa.txt,pb.txt");
  REQUIRE(view->unlink(data, "keep.txt", me).ok());
  CHECK(lookup_err(data, "keep.txt") == ENOENT);
  CHECK(exists_nofollow(tmp.at("src/keep.txt")));
}

TEST_CASE_FIXTURE(
    StageView, "stage: a real file changed after a held write is a conflict and nothing changes") {
  Inode* data = walk("data");
  write(lookup(data, "f.txt"), "HELD", 0);
  REQUIRE(view->rename(data, "f.txt", data, "g.txt", 0, me).ok());  // builds on the write
  create(data, "unrelated.txt", "u");
  const uint64_t w = held_seq("write", "data/f.txt");
  const uint64_t rn = held_seq("rename", "data/f.txt");
  // Someone changes the real file meanwhile.
  { std::ofstream(tmp.at("src/f.txt"), std::ios::binary | std::ios::trunc) << "EXTERNAL"; }
  const KeyMap real_before = real_tree(src());
  const KeyMap stage_before = stage_state(*stage);
  const auto held_before = held();

  DecisionReport rep = decide(true, Selection{{w, rn}, {}, false});
  CHECK_FALSE(rep.ok());
  CHECK(rep.done.empty());
  CHECK(rep.failed.empty());
  REQUIRE(rep.conflicts.size() == 2);
  CHECK(rep.conflicts[0].first == w);
  CHECK(rep.conflicts[0].second.find("data/f.txt") != std::string::npos);
  CHECK(rep.conflicts[1].first == rn);
  // Nothing changed: not the real tree, not the overlay, not the view.
  CHECK(real_tree(src()) == real_before);
  CHECK(read_file(tmp.at("src/f.txt")) == "EXTERNAL");
  CHECK(stage_state(*stage) == stage_before);
  CHECK(held() == held_before);
  CHECK(read("data/g.txt") == "HELD456789\n");
  CHECK(lookup_err(data, "f.txt") == ENOENT);
  CHECK_FALSE(exists_nofollow(tmp.at("src/g.txt")));
}

TEST_CASE_FIXTURE(StageView, "stage: a selection without its dependencies reports them missing") {
  Inode* data = walk("data");
  auto mk = view->mkdir(data, "d", 0755, me);
  REQUIRE(mk.ok());
  create(mk->node, "x.txt", "x");
  const uint64_t m = held_seq("mkdir", "data/d");
  const uint64_t c = held_seq("create", "data/d/x.txt");
  const uint64_t wx = held_seq("write", "data/d/x.txt");  // the created handle's write session
  const KeyMap real_before = real_tree(src());
  const KeyMap stage_before = stage_state(*stage);

  DecisionReport r1 = decide(true, Selection{{c}, {}, false});
  CHECK(r1.missing == std::vector<uint64_t>{m});
  CHECK(r1.done.empty());
  DecisionReport r2 = decide(false, Selection{{m}, {}, false});
  CHECK(r2.missing == std::vector<uint64_t>{c, wx});
  CHECK(r2.done.empty());
  CHECK(real_tree(src()) == real_before);
  CHECK(stage_state(*stage) == stage_before);
  CHECK(held().size() == 3);  // mkdir, create, the write session of x.txt
  CHECK(read("data/d/x.txt") == "x");

  // With its dependencies the same selection goes through.
  DecisionReport r3 = decide(true, Selection{{c}, {}, false}, true);
  CHECK(r3.ok());
  CHECK_FALSE(r3.notes.empty());
  CHECK(std::find(r3.done.begin(), r3.done.end(), m) != r3.done.end());
  CHECK(std::find(r3.done.begin(), r3.done.end(), c) != r3.done.end());
  CHECK(std::find(r3.done.begin(), r3.done.end(), wx) ==
        r3.done.end());  // not needed, not selected
  CHECK(held().size() == 1);
  CHECK(exists_nofollow(tmp.at("src/d/x.txt")));
  CHECK(real_tree(src()).count("d") == 1);
}

TEST_CASE_FIXTURE(
    StageView,
    "stage: reject of an unlink made while the file was open for writing restores the view") {
  // The open's copy-up is pending when the unlink changes the object's link
  // count (fs/stage.cpp claim_pending).
  const KeyMap real_before = real_tree(src());
  Inode* data = walk("data");
  Inode* f = lookup(data, "f.txt");
  bool keep = false;
  auto fh = view->open(f, O_WRONLY, me, keep);
  REQUIRE(fh.ok());
  REQUIRE(view->unlink(data, "f.txt", me).ok());
  auto w = view->write(**fh, "zz", 2, 0, me);
  REQUIRE(w.ok());
  view->release(std::move(*fh));
  CHECK(lookup_err(data, "f.txt") == ENOENT);
  CHECK(real_tree(src()) == real_before);

  DecisionReport rep = decide(false, Selection{{}, {}, true});
  CHECK(rep.ok());
  CHECK(held().empty());
  CHECK(view_tree() == real_before);
  CHECK(read("data/f.txt") == "0123456789\n");
  CHECK(stage_state(*stage).empty());
  CHECK(upper_files().empty());
  // The view follows the real file again.
  { std::ofstream(tmp.at("src/f.txt"), std::ios::binary | std::ios::trunc) << "NEW"; }
  CHECK(read("data/f.txt") == "NEW");
}

TEST_SUITE_END();
