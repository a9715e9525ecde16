// Path resolution and mutations through the core View, without FUSE
// (STYLE rule 26: path resolution, inode refcounts). Each test builds a real
// tree in a temp dir, a TaskConfig over it, and a View with a gate that
// records every begin/end/denied.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "fs/view.hpp"
#include "test_util.hpp"

namespace {

using scopefs::Errno;
using scopefs::Result;
using scopefs::fs::Caller;
using scopefs::fs::Change;
using scopefs::fs::DirItem;
using scopefs::fs::Inode;
using scopefs::fs::OpKind;
using scopefs::fs::SetattrRequest;
using scopefs::fs::View;
using scopefs::test::exists_nofollow;
using scopefs::test::join_lines;
using scopefs::test::mode_of;
using scopefs::test::read_file;
using scopefs::test::TempDir;
using scopefs::test::tstr;

// A gate that records every call; begin() can be made to fail.
class RecordingGate final : public scopefs::fs::ChangeGate {
 public:
  struct Record {
    OpKind op;
    std::string path;
    std::string path2;
    int err;
  };
  std::vector<Record> begun;
  std::vector<Record> ended;
  std::vector<Record> denials;
  int fail_begin = 0;

  Result<void> begin(Change& c) override {
    begun.push_back({c.op, c.path, c.path2, 0});
    if (fail_begin) return Errno{fail_begin};
    return {};
  }
  void end(Change& c, int err) override { ended.push_back({c.op, c.path, c.path2, err}); }
  void denied(Change& c, int err) override { denials.push_back({c.op, c.path, c.path2, err}); }
};

struct BindSpec {
  std::string path;
  std::string source;  // relative to the temp dir
  std::string access;
};
struct RuleSpec {
  std::string match;
  std::string access;
};

struct ViewFixture {
  TempDir tmp;
  RecordingGate gate;
  scopefs::config::TaskConfig cfg;
  std::unique_ptr<View> view;
  Caller me{::getpid(), 0, 0};

  void start(const std::vector<BindSpec>& binds, const std::vector<RuleSpec>& rules,
             scopefs::fs::ViewOptions opts = {}) {
    std::vector<std::string> l{"[task]", "name = \"t\"", "mountpoint = " + tstr(tmp.at("mnt")),
                               "state_dir = " + tstr(tmp.at("state"))};
    for (const auto& b : binds) {
      l.insert(l.end(), {"[[bind]]", "path = " + tstr(b.path), "source = " + tstr(tmp.at(b.source)),
                         "access = " + tstr(b.access)});
    }
    for (const auto& r : rules)
      l.insert(l.end(), {"[[rule]]", "match = " + tstr(r.match), "access = " + tstr(r.access)});
    cfg = scopefs::config::parse_config(join_lines(l), "task.toml", tmp.path());
    view = std::make_unique<View>(cfg, gate, opts);
    view->open();
  }

  Inode* root() const { return view->root(); }

  Inode* lookup(Inode* parent, std::string_view name) {
    auto r = view->lookup(parent, name);
    INFO("lookup '", std::string(name), "': errno ", r.error());
    REQUIRE(r.ok());
    return r->node;
  }
  // Looks up each segment of a view path from the root.
  Inode* walk(std::string_view path) {
    Inode* n = root();
    for (auto seg : scopefs::config::split_path(path)) n = lookup(n, seg);
    return n;
  }
  // The errno of a lookup (0 on success, after undoing its count).
  int lookup_err(Inode* parent, std::string_view name) {
    auto r = view->lookup(parent, name);
    if (r.ok()) {
      view->forget(r->node, 1);
      return 0;
    }
    return r.error();
  }

  // Sorted, comma-separated names of a directory ('.' and '..' left out).
  // With plus, the entries' lookups are undone unless keep_nodes is given.
  std::string list(Inode* dir, bool plus, std::vector<Inode*>* keep_nodes = nullptr) {
    auto dh = view->opendir(dir);
    INFO("opendir errno ", dh.error());
    REQUIRE(dh.ok());
    std::vector<std::string> names;
    std::vector<Inode*> nodes;
    auto r = view->readdir(**dh, 0, plus, [&](const DirItem& it) {
      if (it.name != "." && it.name != "..") {
        names.emplace_back(it.name);
        if (plus && it.node) nodes.push_back(it.node);
      }
      return true;
    });
    REQUIRE(r.ok());
    if (keep_nodes) {
      *keep_nodes = nodes;
    } else {
      for (Inode* n : nodes) view->forget(n, 1);
    }
    std::sort(names.begin(), names.end());
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ",") + n;
    return out;
  }

  // The gate saw exactly one refusal, of `op` (when given) at `path`, with
  // `err`, and nothing began.
  void check_denied(std::optional<OpKind> op, const std::string& path, int err) const {
    CHECK(gate.begun.empty());
    CHECK(gate.ended.empty());
    REQUIRE(gate.denials.size() == 1);
    if (op) CHECK(gate.denials[0].op == *op);
    CHECK(gate.denials[0].path == path);
    CHECK(gate.denials[0].err == err);
  }
  // The gate saw one change of `op` at `path`, begun and ended with success.
  void check_applied(OpKind op, const std::string& path) const {
    CHECK(gate.denials.empty());
    REQUIRE(gate.begun.size() == 1);
    CHECK(gate.begun[0].op == op);
    CHECK(gate.begun[0].path == path);
    REQUIRE(gate.ended.size() == 1);
    CHECK(gate.ended[0].op == op);
    CHECK(gate.ended[0].err == 0);
  }
  // Every change begun on `path` was ended successfully, and there was at
  // least one (whatever the op: an open for writing may be recorded at the
  // open or as a write session ending at release).
  void check_session(const std::string& path) const {
    CHECK(gate.denials.empty());
    REQUIRE_FALSE(gate.begun.empty());
    for (const auto& b : gate.begun) CHECK(b.path == path);
    CHECK(gate.ended.size() == gate.begun.size());
    for (const auto& e : gate.ended) CHECK(e.err == 0);
  }
};

// The common tree:
//   ro/   (bind "ro", read)   file.txt, dir/inner.txt
//   rw/   (bind "rw", write)  file.txt, key.pem, secrets/s.txt, sub/{deep.pem,note.txt},
//                             frozen/old.txt, locked.txt, emptydir/, out -> /etc,
//                             escape -> <tmp>/outside/target.txt
//   rw2/  (bind "rw2", write) other.txt
//   outside/target.txt (not in any bind)
// Rules: **/*.pem hide; rw/secrets hide; rw/secrets/s.txt write (still hidden);
// rw/frozen read; rw/locked.txt read.
struct StdView : ViewFixture {
  StdView() {
    tmp.file("ro/file.txt", "read only");
    tmp.file("ro/dir/inner.txt", "inner");
    tmp.file("rw/file.txt", "hello");
    tmp.file("rw/key.pem", "KEY");
    tmp.file("rw/secrets/s.txt", "s");
    tmp.file("rw/sub/deep.pem", "DEEP");
    tmp.file("rw/sub/note.txt", "note");
    tmp.file("rw/frozen/old.txt", "old");
    tmp.file("rw/locked.txt", "locked");
    tmp.mkdir("rw/emptydir");
    tmp.symlink("/etc", "rw/out");
    tmp.file("outside/target.txt", "outside", 0644);
    tmp.symlink(tmp.at("outside/target.txt"), "rw/escape");
    tmp.file("rw2/other.txt", "other");
    start({{"ro", "ro", "read"}, {"rw", "rw", "write"}, {"rw2", "rw2", "write"}},
          {{"**/*.pem", "hide"},
           {"rw/secrets", "hide"},
           {"rw/secrets/s.txt", "write"},
           {"rw/frozen", "read"},
           {"rw/locked.txt", "read"}});
  }
  std::string real(const std::string& rel) const { return tmp.at(rel); }
};

SetattrRequest chmod_req(mode_t mode) {
  SetattrRequest r;
  r.to_set = SetattrRequest::kMode;
  r.mode = mode;
  return r;
}
SetattrRequest truncate_req(off_t size) {
  SetattrRequest r;
  r.to_set = SetattrRequest::kSize;
  r.size = size;
  return r;
}

}  // namespace

TEST_SUITE_BEGIN("view");

// ---------------------------------------------------------------------------
// Hidden names

TEST_CASE_FIXTURE(StdView, "lookup of a name hidden by a rule is ENOENT") {
  Inode* rw = walk("rw");
  CHECK(lookup_err(rw, "key.pem") == ENOENT);
  Inode* sub = lookup(rw, "sub");
  CHECK(lookup_err(sub, "deep.pem") == ENOENT);
  // The files are there; the view just does not show them.
  CHECK(exists_nofollow(real("rw/key.pem")));
  CHECK(exists_nofollow(real("rw/sub/deep.pem")));
  // Visible neighbours resolve, with their real attributes.
  auto e = view->lookup(rw, "file.txt");
  REQUIRE(e.ok());
  CHECK(S_ISREG(e->attr.st_mode));
  CHECK(e->attr.st_size == 5);
}

TEST_CASE_FIXTURE(StdView, "lookup of a hidden directory is ENOENT, whatever rules say below it") {
  Inode* rw = walk("rw");
  CHECK(lookup_err(rw, "secrets") == ENOENT);
  CHECK(exists_nofollow(real("rw/secrets/s.txt")));
}

TEST_CASE_FIXTURE(StdView, "readdir omits hidden names") {
  bool plus = false;
  SUBCASE("readdir") { plus = false; }
  SUBCASE("readdirplus") { plus = true; }
  CHECK(list(root(), plus) == "ro,rw,rw2");
  CHECK(list(walk("rw"), plus) == "emptydir,escape,file.txt,frozen,locked.txt,out,sub");
  CHECK(list(walk("rw/sub"), plus) == "note.txt");
  CHECK(list(walk("ro"), plus) == "dir,file.txt");
}

TEST_CASE_FIXTURE(StdView, "readdirplus entries carry the same node and attributes as lookup") {
  Inode* rw = walk("rw");
  size_t base = view->inode_count();
  auto dh = view->opendir(rw);
  REQUIRE(dh.ok());
  std::vector<std::pair<std::string, DirItem>> items;
  auto r = view->readdir(**dh, 0, true, [&](const DirItem& it) {
    if (it.name != "." && it.name != "..") items.emplace_back(std::string(it.name), it);
    return true;
  });
  REQUIRE(r.ok());
  REQUIRE(items.size() == 7);
  for (const auto& item : items) {
    const std::string& name = item.first;
    const DirItem& it = item.second;
    CAPTURE(name);
    REQUIRE(it.node != nullptr);
    auto e = view->lookup(rw, name);
    REQUIRE(e.ok());
    CHECK(e->node == it.node);
    CHECK(e->attr.st_ino == it.attr.st_ino);
    CHECK((e->attr.st_mode & S_IFMT) == (it.attr.st_mode & S_IFMT));
    if (name == "out" || name == "escape") CHECK(S_ISLNK(it.attr.st_mode));
    if (name == "sub") CHECK(S_ISDIR(it.attr.st_mode));
    view->forget(it.node, 2);
  }
  CHECK(view->inode_count() == base);
}

TEST_CASE_FIXTURE(StdView, "readdir resumes after the last entry the caller accepted") {
  Inode* rw = walk("rw");
  auto dh = view->opendir(rw);
  REQUIRE(dh.ok());
  std::vector<std::string> names;
  int64_t last_off = 0;
  // First call: accept three entries, refuse the fourth (it "did not fit").
  auto r1 = view->readdir(**dh, 0, false, [&](const DirItem& it) {
    if (names.size() == 3) return false;
    names.emplace_back(it.name);
    last_off = it.next_off;
    return true;
  });
  REQUIRE(r1.ok());
  REQUIRE(names.size() == 3);
  auto r2 = view->readdir(**dh, last_off, false, [&](const DirItem& it) {
    names.emplace_back(it.name);
    return true;
  });
  REQUIRE(r2.ok());
  std::vector<std::string> visible;
  for (const auto& n : names)
    if (n != "." && n != "..") visible.push_back(n);
  std::sort(visible.begin(), visible.end());
  CHECK(std::adjacent_find(visible.begin(), visible.end()) == visible.end());  // no repeats
  CHECK(visible.size() == 7);
  CHECK(names.size() == 9);  // with '.' and '..', each once

  // Offset 0 again starts over.
  size_t again = 0;
  auto r3 = view->readdir(**dh, 0, false, [&](const DirItem&) {
    ++again;
    return true;
  });
  REQUIRE(r3.ok());
  CHECK(again == 9);
}

// ---------------------------------------------------------------------------
// Read binds

TEST_CASE_FIXTURE(StdView, "a read bind refuses every mutation with EROFS and reports it") {
  Inode* ro = walk("ro");
  Inode* file = lookup(ro, "file.txt");
  bool keep = false;
  SUBCASE("create") {
    auto r = view->create(ro, "new.txt", 0644, O_CREAT | O_WRONLY, me);
    CHECK(r.error() == EROFS);
    CHECK_FALSE(exists_nofollow(real("ro/new.txt")));
    check_denied(OpKind::Create, "ro/new.txt", EROFS);
  }
  SUBCASE("mkdir") {
    auto r = view->mkdir(ro, "d", 0755, me);
    CHECK(r.error() == EROFS);
    CHECK_FALSE(exists_nofollow(real("ro/d")));
    check_denied(OpKind::Mkdir, "ro/d", EROFS);
  }
  SUBCASE("mknod") {
    auto r = view->mknod(ro, "fifo", S_IFIFO | 0644, 0, me);
    CHECK(r.error() == EROFS);
    CHECK_FALSE(exists_nofollow(real("ro/fifo")));
    check_denied(OpKind::Mknod, "ro/fifo", EROFS);
  }
  SUBCASE("symlink") {
    auto r = view->symlink("file.txt", ro, "ln", me);
    CHECK(r.error() == EROFS);
    CHECK_FALSE(exists_nofollow(real("ro/ln")));
    check_denied(OpKind::Symlink, "ro/ln", EROFS);
  }
  SUBCASE("link") {
    auto r = view->link(file, ro, "hard", me);
    CHECK(r.error() == EROFS);
    CHECK_FALSE(exists_nofollow(real("ro/hard")));
    check_denied(OpKind::Link, "ro/file.txt", EROFS);
  }
  SUBCASE("unlink") {
    CHECK(view->unlink(ro, "file.txt", me).error() == EROFS);
    CHECK(exists_nofollow(real("ro/file.txt")));
    check_denied(OpKind::Unlink, "ro/file.txt", EROFS);
  }
  SUBCASE("rmdir") {
    CHECK(view->rmdir(ro, "dir", me).error() == EROFS);
    CHECK(exists_nofollow(real("ro/dir")));
    check_denied(OpKind::Rmdir, "ro/dir", EROFS);
  }
  SUBCASE("rename") {
    CHECK(view->rename(ro, "file.txt", ro, "moved.txt", 0, me).error() == EROFS);
    CHECK(exists_nofollow(real("ro/file.txt")));
    CHECK_FALSE(exists_nofollow(real("ro/moved.txt")));
    check_denied(OpKind::Rename, "ro/file.txt", EROFS);
    CHECK(gate.denials[0].path2 == "ro/moved.txt");
  }
  SUBCASE("setattr chmod") {
    auto r = view->setattr(file, chmod_req(0600), nullptr, me);
    CHECK(r.error() == EROFS);
    CHECK((mode_of(real("ro/file.txt")) & 07777) == 0644);
    check_denied(OpKind::Chmod, "ro/file.txt", EROFS);
  }
  SUBCASE("setattr chown") {
    SetattrRequest req;
    req.to_set = SetattrRequest::kUid;
    req.uid = 1;
    CHECK(view->setattr(file, req, nullptr, me).error() == EROFS);
    check_denied(OpKind::Chown, "ro/file.txt", EROFS);
  }
  SUBCASE("setattr truncate") {
    CHECK(view->setattr(file, truncate_req(0), nullptr, me).error() == EROFS);
    CHECK(read_file(real("ro/file.txt")) == "read only");
    check_denied(OpKind::Truncate, "ro/file.txt", EROFS);
  }
  SUBCASE("setattr utimens") {
    SetattrRequest req;
    req.to_set = SetattrRequest::kMtimeNow;
    CHECK(view->setattr(file, req, nullptr, me).error() == EROFS);
    check_denied(OpKind::Utimens, "ro/file.txt", EROFS);
  }
  SUBCASE("open for writing") {
    CHECK(view->open(file, O_WRONLY, me, keep).error() == EROFS);
    check_denied(std::nullopt, "ro/file.txt", EROFS);
  }
  SUBCASE("open for reading and writing") {
    CHECK(view->open(file, O_RDWR, me, keep).error() == EROFS);
    check_denied(std::nullopt, "ro/file.txt", EROFS);
  }
  SUBCASE("open read-only with O_TRUNC") {
    CHECK(view->open(file, O_RDONLY | O_TRUNC, me, keep).error() == EROFS);
    CHECK(read_file(real("ro/file.txt")) == "read only");
    check_denied(std::nullopt, "ro/file.txt", EROFS);
  }
  SUBCASE("setxattr") {
    CHECK(view->setxattr(file, "user.scopefs", "v", 1, 0, me).error() == EROFS);
    check_denied(OpKind::Setxattr, "ro/file.txt", EROFS);
  }
}

TEST_CASE_FIXTURE(StdView, "a read bind serves lookups, reads and getattr") {
  Inode* file = walk("ro/file.txt");
  bool keep = false;
  auto fh = view->open(file, O_RDONLY, me, keep);
  REQUIRE(fh.ok());
  char buf[32] = {};
  ssize_t n = ::pread((*fh)->fd.get(), buf, sizeof buf, 0);
  CHECK(std::string(buf, static_cast<size_t>(std::max<ssize_t>(n, 0))) == "read only");
  view->release(std::move(*fh));
  auto st = view->getattr(file, nullptr);
  REQUIRE(st.ok());
  CHECK(st->st_size == 9);
  CHECK(view->access(file, R_OK).ok());
  CHECK(view->access(file, W_OK).error() == EROFS);
  CHECK(gate.begun.empty());
  CHECK(gate.denials.empty());
}

TEST_CASE_FIXTURE(StdView, "a read-only rule inside a write bind refuses changes with EROFS") {
  Inode* rw = walk("rw");
  Inode* locked = lookup(rw, "locked.txt");
  Inode* frozen = lookup(rw, "frozen");
  Inode* old = lookup(frozen, "old.txt");
  bool keep = false;
  CHECK(view->open(locked, O_WRONLY, me, keep).error() == EROFS);
  CHECK(view->open(old, O_RDWR, me, keep).error() == EROFS);
  CHECK(view->create(frozen, "new.txt", 0644, O_CREAT | O_WRONLY, me).error() == EROFS);
  CHECK(view->unlink(frozen, "old.txt", me).error() == EROFS);
  CHECK(view->unlink(rw, "locked.txt", me).error() == EROFS);
  CHECK(view->create(rw, "locked.txt", 0644, O_CREAT | O_WRONLY | O_TRUNC, me).error() == EROFS);
  CHECK(read_file(real("rw/locked.txt")) == "locked");
  CHECK(exists_nofollow(real("rw/locked.txt")));
  CHECK(exists_nofollow(real("rw/frozen/old.txt")));
  CHECK_FALSE(exists_nofollow(real("rw/frozen/new.txt")));
  CHECK(gate.begun.empty());
  CHECK(gate.denials.size() == 6);
}

TEST_CASE("a rule can open a writable subtree inside a read bind") {
  ViewFixture f;
  f.tmp.file("src/top.txt", "t");
  f.tmp.mkdir("src/out");
  f.start({{"data", "src", "read"}}, {{"data/out/**", "write"}});
  Inode* data = f.walk("data");
  Inode* out = f.lookup(data, "out");
  auto c = f.view->create(out, "result.csv", 0644, O_CREAT | O_WRONLY, f.me);
  REQUIRE(c.ok());
  f.view->release(std::move(c->second));
  CHECK(exists_nofollow(f.tmp.at("src/out/result.csv")));
  CHECK(f.view->create(data, "x.csv", 0644, O_CREAT | O_WRONLY, f.me).error() == EROFS);
  CHECK_FALSE(exists_nofollow(f.tmp.at("src/x.csv")));
}

// ---------------------------------------------------------------------------
// Write binds

TEST_CASE_FIXTURE(StdView, "create in a write bind reaches the real tree between begin and end") {
  Inode* rw = walk("rw");
  size_t base = view->inode_count();
  auto r = view->create(rw, "new.txt", 0640, O_CREAT | O_WRONLY | O_EXCL, me);
  REQUIRE(r.ok());
  CHECK(S_ISREG(r->first.attr.st_mode));
  auto w = view->write(*r->second, "abc", 3, 0, me);
  REQUIRE(w.ok());
  CHECK(*w == 3);
  view->release(std::move(r->second));
  CHECK(read_file(real("rw/new.txt")) == "abc");
  CHECK((mode_of(real("rw/new.txt")) & 0777) == 0640);
  REQUIRE_FALSE(gate.begun.empty());
  CHECK(gate.begun[0].op == OpKind::Create);
  check_session("rw/new.txt");
  CHECK(view->inode_count() == base + 1);
  view->forget(r->first.node, 1);
  CHECK(view->inode_count() == base);
}

TEST_CASE_FIXTURE(StdView, "mutations in a write bind apply to the real tree and are recorded") {
  Inode* rw = walk("rw");
  Inode* sub = lookup(rw, "sub");
  Inode* file = lookup(rw, "file.txt");
  bool keep = false;
  SUBCASE("mkdir") {
    auto r = view->mkdir(rw, "d", 0755, me);
    REQUIRE(r.ok());
    CHECK(S_ISDIR(mode_of(real("rw/d"))));
    CHECK(S_ISDIR(r->attr.st_mode));
    check_applied(OpKind::Mkdir, "rw/d");
  }
  SUBCASE("mknod") {
    auto r = view->mknod(rw, "fifo", S_IFIFO | 0600, 0, me);
    REQUIRE(r.ok());
    CHECK(S_ISFIFO(mode_of(real("rw/fifo"))));
    check_applied(OpKind::Mknod, "rw/fifo");
  }
  SUBCASE("symlink") {
    auto r = view->symlink("../outside/target.txt", rw, "ln", me);
    REQUIRE(r.ok());
    CHECK(S_ISLNK(r->attr.st_mode));
    CHECK(std::filesystem::read_symlink(real("rw/ln")) == "../outside/target.txt");
    check_applied(OpKind::Symlink, "rw/ln");
  }
  SUBCASE("link") {
    auto r = view->link(file, sub, "hard", me);
    REQUIRE(r.ok());
    CHECK(r->node == file);
    struct stat a {
    }, b{};
    REQUIRE(::lstat(real("rw/file.txt").c_str(), &a) == 0);
    REQUIRE(::lstat(real("rw/sub/hard").c_str(), &b) == 0);
    CHECK(a.st_ino == b.st_ino);
    check_applied(OpKind::Link, "rw/file.txt");
    CHECK(gate.begun[0].path2 == "rw/sub/hard");
  }
  SUBCASE("unlink") {
    REQUIRE(view->unlink(rw, "file.txt", me).ok());
    CHECK_FALSE(exists_nofollow(real("rw/file.txt")));
    check_applied(OpKind::Unlink, "rw/file.txt");
  }
  SUBCASE("rmdir") {
    REQUIRE(view->rmdir(rw, "emptydir", me).ok());
    CHECK_FALSE(exists_nofollow(real("rw/emptydir")));
    check_applied(OpKind::Rmdir, "rw/emptydir");
  }
  SUBCASE("rename, and the node follows its new name") {
    REQUIRE(view->rename(rw, "file.txt", sub, "renamed.txt", 0, me).ok());
    CHECK_FALSE(exists_nofollow(real("rw/file.txt")));
    CHECK(read_file(real("rw/sub/renamed.txt")) == "hello");
    check_applied(OpKind::Rename, "rw/file.txt");
    CHECK(gate.begun[0].path2 == "rw/sub/renamed.txt");
    CHECK(lookup(sub, "renamed.txt") == file);
    CHECK(lookup_err(rw, "file.txt") == ENOENT);
  }
  SUBCASE("setattr chmod") {
    auto r = view->setattr(file, chmod_req(0600), nullptr, me);
    REQUIRE(r.ok());
    CHECK((r->st_mode & 07777) == 0600);
    CHECK((mode_of(real("rw/file.txt")) & 07777) == 0600);
    check_applied(OpKind::Chmod, "rw/file.txt");
  }
  SUBCASE("setattr truncate") {
    auto r = view->setattr(file, truncate_req(2), nullptr, me);
    REQUIRE(r.ok());
    CHECK(r->st_size == 2);
    CHECK(read_file(real("rw/file.txt")) == "he");
    check_applied(OpKind::Truncate, "rw/file.txt");
  }
  SUBCASE("open with O_TRUNC") {
    auto r = view->open(file, O_WRONLY | O_TRUNC, me, keep);
    REQUIRE(r.ok());
    view->release(std::move(*r));
    CHECK(read_file(real("rw/file.txt")).empty());
    check_session("rw/file.txt");
  }
  SUBCASE("open for writing") {
    auto r = view->open(file, O_RDWR, me, keep);
    REQUIRE(r.ok());
    REQUIRE(view->write(**r, "J", 1, 0, me).ok());
    view->release(std::move(*r));
    CHECK(read_file(real("rw/file.txt")) == "Jello");
    check_session("rw/file.txt");
  }
}

TEST_CASE_FIXTURE(StdView, "creating a hidden name gives EACCES and leaves the real tree alone") {
  Inode* rw = walk("rw");
  Inode* sub = lookup(rw, "sub");
  SUBCASE("create") {
    CHECK(view->create(rw, "new.pem", 0600, O_CREAT | O_WRONLY, me).error() == EACCES);
    CHECK_FALSE(exists_nofollow(real("rw/new.pem")));
    check_denied(OpKind::Create, "rw/new.pem", EACCES);
  }
  SUBCASE("create in a subdirectory") {
    CHECK(view->create(sub, "z.pem", 0600, O_CREAT | O_WRONLY, me).error() == EACCES);
    CHECK_FALSE(exists_nofollow(real("rw/sub/z.pem")));
    check_denied(OpKind::Create, "rw/sub/z.pem", EACCES);
  }
  SUBCASE("create over an existing hidden file") {
    CHECK(view->create(rw, "key.pem", 0600, O_CREAT | O_WRONLY | O_TRUNC, me).error() == EACCES);
    CHECK(read_file(real("rw/key.pem")) == "KEY");
  }
  SUBCASE("mkdir") {
    CHECK(view->mkdir(rw, "d.pem", 0700, me).error() == EACCES);
    CHECK_FALSE(exists_nofollow(real("rw/d.pem")));
    check_denied(OpKind::Mkdir, "rw/d.pem", EACCES);
  }
  SUBCASE("mkdir of an existing hidden directory is EACCES, not EEXIST") {
    CHECK(view->mkdir(rw, "secrets", 0700, me).error() == EACCES);
  }
  SUBCASE("symlink") {
    CHECK(view->symlink("file.txt", rw, "l.pem", me).error() == EACCES);
    CHECK_FALSE(exists_nofollow(real("rw/l.pem")));
    check_denied(OpKind::Symlink, "rw/l.pem", EACCES);
  }
  SUBCASE("mknod") {
    CHECK(view->mknod(rw, "f.pem", S_IFIFO | 0600, 0, me).error() == EACCES);
    CHECK_FALSE(exists_nofollow(real("rw/f.pem")));
  }
}

// ---------------------------------------------------------------------------
// Rename and link across levels

TEST_CASE_FIXTURE(StdView, "rename into or out of a read-only place is refused with EROFS") {
  Inode* rw = walk("rw");
  Inode* frozen = lookup(rw, "frozen");
  SUBCASE("into a read-only directory of the same bind") {
    CHECK(view->rename(rw, "file.txt", frozen, "file.txt", 0, me).error() == EROFS);
    CHECK(exists_nofollow(real("rw/file.txt")));
    CHECK_FALSE(exists_nofollow(real("rw/frozen/file.txt")));
    check_denied(OpKind::Rename, "rw/file.txt", EROFS);
  }
  SUBCASE("into a read bind") {
    Inode* ro = walk("ro");
    CHECK(view->rename(rw, "file.txt", ro, "file2.txt", 0, me).error() == EROFS);
    CHECK(exists_nofollow(real("rw/file.txt")));
    CHECK_FALSE(exists_nofollow(real("ro/file2.txt")));
    check_denied(OpKind::Rename, "rw/file.txt", EROFS);
  }
  SUBCASE("out of a read-only directory") {
    CHECK(view->rename(frozen, "old.txt", rw, "old.txt", 0, me).error() == EROFS);
    CHECK(exists_nofollow(real("rw/frozen/old.txt")));
    CHECK_FALSE(exists_nofollow(real("rw/old.txt")));
  }
  SUBCASE("onto a read-only file") {
    CHECK(view->rename(rw, "file.txt", rw, "locked.txt", 0, me).error() == EROFS);
    CHECK(read_file(real("rw/locked.txt")) == "locked");
  }
  SUBCASE("a read-only directory itself") {
    CHECK(view->rename(rw, "frozen", rw, "thawed", 0, me).error() == EROFS);
    CHECK(exists_nofollow(real("rw/frozen")));
  }
}

TEST_CASE_FIXTURE(StdView, "rename onto a hidden name is refused with EACCES") {
  Inode* rw = walk("rw");
  Inode* sub = lookup(rw, "sub");
  SUBCASE("a new hidden name") {
    CHECK(view->rename(rw, "file.txt", rw, "file.pem", 0, me).error() == EACCES);
    CHECK(exists_nofollow(real("rw/file.txt")));
    CHECK_FALSE(exists_nofollow(real("rw/file.pem")));
    check_denied(OpKind::Rename, "rw/file.txt", EACCES);
  }
  SUBCASE("replacing an existing hidden file") {
    CHECK(view->rename(rw, "file.txt", rw, "key.pem", 0, me).error() == EACCES);
    CHECK(read_file(real("rw/key.pem")) == "KEY");
    CHECK(exists_nofollow(real("rw/file.txt")));
  }
  SUBCASE("into a hidden directory's name") {
    CHECK(view->rename(sub, "note.txt", rw, "secrets", 0, me).error() == EACCES);
    CHECK(exists_nofollow(real("rw/secrets/s.txt")));
  }
}

TEST_CASE_FIXTURE(StdView, "rename across two write binds gives EXDEV") {
  Inode* rw = walk("rw");
  Inode* rw2 = walk("rw2");
  CHECK(view->rename(rw, "file.txt", rw2, "file.txt", 0, me).error() == EXDEV);
  CHECK(exists_nofollow(real("rw/file.txt")));
  CHECK_FALSE(exists_nofollow(real("rw2/file.txt")));
  CHECK(gate.begun.empty());
}

TEST_CASE_FIXTURE(StdView, "link of a read-only or hidden-target name is refused") {
  Inode* rw = walk("rw");
  Inode* sub = lookup(rw, "sub");
  Inode* file = lookup(rw, "file.txt");
  SUBCASE("a read-only file into a write directory") {
    Inode* locked = lookup(rw, "locked.txt");
    CHECK(view->link(locked, sub, "l2", me).error() == EROFS);
    CHECK_FALSE(exists_nofollow(real("rw/sub/l2")));
    check_denied(OpKind::Link, "rw/locked.txt", EROFS);
    CHECK(gate.denials[0].path2 == "rw/sub/l2");
  }
  SUBCASE("a file of a read bind into a write bind") {
    Inode* rofile = walk("ro/file.txt");
    CHECK(view->link(rofile, rw, "l3", me).error() == EROFS);
    CHECK_FALSE(exists_nofollow(real("rw/l3")));
  }
  SUBCASE("a writable file into a read-only directory") {
    Inode* frozen = lookup(rw, "frozen");
    CHECK(view->link(file, frozen, "x", me).error() == EROFS);
    CHECK_FALSE(exists_nofollow(real("rw/frozen/x")));
  }
  SUBCASE("a writable file to a hidden name") {
    CHECK(view->link(file, rw, "x.pem", me).error() == EACCES);
    CHECK_FALSE(exists_nofollow(real("rw/x.pem")));
  }
  SUBCASE("across write binds") {
    Inode* rw2 = walk("rw2");
    CHECK(view->link(file, rw2, "x", me).error() == EXDEV);
    CHECK_FALSE(exists_nofollow(real("rw2/x")));
  }
}

// ---------------------------------------------------------------------------
// Directory renames that would change levels below them

namespace {

// A root bind (read) over root/, with work/** writable except work/a/keep:
//   root/readme, root/work/a/{keep,free.txt}, root/work/c/plain.txt
struct LevelsView : ViewFixture {
  LevelsView() {
    tmp.file("root/readme", "r");
    tmp.file("root/work/a/keep", "k");
    tmp.file("root/work/a/free.txt", "f");
    tmp.file("root/work/c/plain.txt", "p");
    start({{"", "root", "read"}}, {{"work/**", "write"}, {"work/a/keep", "read"}});
  }
};

}  // namespace

TEST_CASE_FIXTURE(LevelsView, "a root bind gives levels by rule to its top-level names") {
  Inode* work = lookup(root(), "work");
  CHECK(view->access(work, W_OK).ok());
  Inode* a = lookup(work, "a");
  Inode* keep = lookup(a, "keep");
  Inode* readme = lookup(root(), "readme");
  CHECK(view->access(keep, W_OK).error() == EROFS);
  CHECK(view->access(readme, W_OK).error() == EROFS);
  CHECK(view->access(lookup(a, "free.txt"), W_OK).ok());
}

TEST_CASE_FIXTURE(LevelsView, "a directory rename that would change a level below it gives EXDEV") {
  Inode* work = lookup(root(), "work");
  // work/a/keep is read; as work/b/keep it would be write.
  CHECK(view->rename(work, "a", work, "b", 0, me).error() == EXDEV);
  CHECK(exists_nofollow(tmp.at("root/work/a/keep")));
  CHECK_FALSE(exists_nofollow(tmp.at("root/work/b")));
  CHECK(gate.begun.empty());
}

TEST_CASE_FIXTURE(LevelsView, "a directory rename that keeps every level below it is applied") {
  Inode* work = lookup(root(), "work");
  REQUIRE(view->rename(work, "c", work, "d", 0, me).ok());
  CHECK(read_file(tmp.at("root/work/d/plain.txt")) == "p");
  CHECK_FALSE(exists_nofollow(tmp.at("root/work/c")));
  Inode* d = lookup(work, "d");
  Inode* plain = lookup(d, "plain.txt");
  CHECK(view->access(plain, W_OK).ok());
}

TEST_CASE_FIXTURE(LevelsView, "a directory rename out of the writable subtree gives EROFS") {
  Inode* work = lookup(root(), "work");
  CHECK(view->rename(work, "c", root(), "c", 0, me).error() == EROFS);
  CHECK(exists_nofollow(tmp.at("root/work/c/plain.txt")));
}

TEST_CASE("a directory rename that would reveal a hidden file gives EXDEV") {
  ViewFixture f;
  f.tmp.file("rw/proj/.env", "SECRET=1");
  f.tmp.file("rw/proj/main.c", "int main;");
  f.tmp.mkdir("rw/empty");
  f.start({{"rw", "rw", "write"}}, {{"rw/proj/.env", "hide"}});
  Inode* rw = f.walk("rw");
  Inode* proj = f.lookup(rw, "proj");
  CHECK(f.lookup_err(proj, ".env") == ENOENT);
  SUBCASE("rename") { CHECK(f.view->rename(rw, "proj", rw, "proj2", 0, f.me).error() == EXDEV); }
  SUBCASE("rename deeper") {
    Inode* empty = f.lookup(rw, "empty");
    CHECK(f.view->rename(rw, "proj", empty, "proj", 0, f.me).error() == EXDEV);
  }
  SUBCASE("exchange") {
    CHECK(f.view->rename(rw, "empty", rw, "proj", RENAME_EXCHANGE, f.me).error() == EXDEV);
  }
  CHECK(read_file(f.tmp.at("rw/proj/.env")) == "SECRET=1");
  CHECK(f.lookup_err(proj, ".env") == ENOENT);
  CHECK(f.gate.begun.empty());
}

TEST_CASE("a directory rename under name-based rules only keeps hidden names hidden") {
  ViewFixture f;
  f.tmp.file("rw/sub/deep.pem", "D");
  f.tmp.file("rw/sub/note.txt", "n");
  f.start({{"rw", "rw", "write"}}, {{"**/*.pem", "hide"}});
  Inode* rw = f.walk("rw");
  REQUIRE(f.view->rename(rw, "sub", rw, "moved", 0, f.me).ok());
  Inode* moved = f.lookup(rw, "moved");
  CHECK(f.lookup_err(moved, "deep.pem") == ENOENT);
  CHECK(f.list(moved, false) == "note.txt");
  CHECK(exists_nofollow(f.tmp.at("rw/moved/deep.pem")));
}

// ---------------------------------------------------------------------------
// Synthetic directories

TEST_CASE("synthetic intermediate directories are listed and read-only") {
  ViewFixture f;
  f.tmp.file("b/f.txt", "f");
  f.tmp.mkdir("c");
  f.start({{"a/b", "b", "write"}, {"a/c", "c", "read"}}, {});
  Inode* root = f.root();
  CHECK(root->synthetic());
  CHECK(f.list(root, false) == "a");
  CHECK(f.list(root, true) == "a");
  Inode* a = f.lookup(root, "a");
  CHECK(a->synthetic());
  CHECK(f.list(a, false) == "b,c");
  CHECK(f.list(a, true) == "b,c");
  auto st = f.view->getattr(a, nullptr);
  REQUIRE(st.ok());
  CHECK(st->st_mode == (S_IFDIR | 0555));
  CHECK(f.lookup_err(a, "zzz") == ENOENT);
  Inode* b = f.lookup(a, "b");
  Inode* file = f.lookup(b, "f.txt");
  bool keep = false;

  SUBCASE("create") {
    CHECK(f.view->create(a, "x", 0644, O_CREAT | O_WRONLY, f.me).error() == EROFS);
    f.check_denied(OpKind::Create, "a/x", EROFS);
  }
  SUBCASE("mkdir in the synthetic root") {
    CHECK(f.view->mkdir(root, "z", 0755, f.me).error() == EROFS);
    f.check_denied(OpKind::Mkdir, "z", EROFS);
  }
  SUBCASE("symlink") { CHECK(f.view->symlink("b", a, "l", f.me).error() == EROFS); }
  SUBCASE("unlink a bind root") {
    CHECK(f.view->unlink(a, "b", f.me).error() == EROFS);
    f.check_denied(OpKind::Unlink, "a/b", EROFS);
  }
  SUBCASE("rmdir a bind root") { CHECK(f.view->rmdir(a, "c", f.me).error() == EROFS); }
  SUBCASE("rename a bind root") {
    CHECK(f.view->rename(a, "b", a, "d", 0, f.me).error() == EROFS);
    f.check_denied(OpKind::Rename, "a/b", EROFS);
  }
  SUBCASE("link into it") { CHECK(f.view->link(file, a, "hard", f.me).error() == EROFS); }
  SUBCASE("setattr") {
    CHECK(f.view->setattr(a, chmod_req(0777), nullptr, f.me).error() == EROFS);
    f.check_denied(OpKind::Chmod, "a", EROFS);
  }
  SUBCASE("open") { CHECK(f.view->open(a, O_RDONLY, f.me, keep).error() == EISDIR); }
  SUBCASE("access") { CHECK(f.view->access(a, W_OK).error() == EROFS); }
  SUBCASE("the write bind below it still takes changes") {
    auto c = f.view->create(b, "new.txt", 0644, O_CREAT | O_WRONLY, f.me);
    REQUIRE(c.ok());
    f.view->release(std::move(c->second));
    CHECK(exists_nofollow(f.tmp.at("b/new.txt")));
  }
  CHECK(exists_nofollow(f.tmp.at("b/f.txt")));
  CHECK(exists_nofollow(f.tmp.at("c")));
}

TEST_CASE("a rule can hide a bind or a synthetic directory") {
  ViewFixture f;
  f.tmp.mkdir("b");
  f.tmp.mkdir("c");
  f.tmp.mkdir("y");
  f.start({{"a/b", "b", "write"}, {"a/c", "c", "read"}, {"x/y", "y", "read"}},
          {{"a/c", "hide"}, {"x", "hide"}});
  CHECK(f.list(f.root(), false) == "a");
  CHECK(f.lookup_err(f.root(), "x") == ENOENT);
  Inode* a = f.lookup(f.root(), "a");
  CHECK(f.list(a, true) == "b");
  CHECK(f.lookup_err(a, "c") == ENOENT);
}

// ---------------------------------------------------------------------------
// Symlinks and names

TEST_CASE_FIXTURE(StdView, "a symlink pointing outside is returned as-is and never followed") {
  Inode* rw = walk("rw");
  auto e = view->lookup(rw, "out");
  REQUIRE(e.ok());
  CHECK(S_ISLNK(e->attr.st_mode));
  Inode* out = e->node;
  CHECK(out->is_symlink());
  auto target = view->readlink(out);
  REQUIRE(target.ok());
  CHECK(*target == "/etc");
  CHECK(view->lookup(out, "passwd").error() == ENOTDIR);
  CHECK(view->opendir(out).error() == ENOTDIR);
  auto st = view->getattr(out, nullptr);
  REQUIRE(st.ok());
  CHECK(S_ISLNK(st->st_mode));
  CHECK(st->st_size == 4);
}

TEST_CASE_FIXTURE(StdView, "operations on a symlink node never reach its target") {
  const std::string target = real("outside/target.txt");
  Inode* esc = walk("rw/escape");
  REQUIRE(esc->is_symlink());
  bool keep = false;
  SUBCASE("chmod") {
    (void)view->setattr(esc, chmod_req(0600), nullptr, me);
    CHECK((mode_of(target) & 07777) == 0644);
  }
  SUBCASE("truncate") {
    (void)view->setattr(esc, truncate_req(0), nullptr, me);
    CHECK(read_file(target) == "outside");
  }
  SUBCASE("utimens") {
    struct stat before {};
    REQUIRE(::stat(target.c_str(), &before) == 0);
    SetattrRequest req;
    req.to_set = SetattrRequest::kMtime;
    req.mtime.tv_sec = 12345;
    (void)view->setattr(esc, req, nullptr, me);
    struct stat after {};
    REQUIRE(::stat(target.c_str(), &after) == 0);
    CHECK(after.st_mtim.tv_sec == before.st_mtim.tv_sec);
  }
  SUBCASE("open for writing with O_TRUNC") {
    auto r = view->open(esc, O_WRONLY | O_TRUNC, me, keep);
    CHECK_FALSE(r.ok());
    CHECK(read_file(target) == "outside");
  }
  SUBCASE("open for reading") {
    auto r = view->open(esc, O_RDONLY, me, keep);
    CHECK_FALSE(r.ok());
  }
  SUBCASE("setxattr") {
    (void)view->setxattr(esc, "user.scopefs", "v", 1, 0, me);
    char buf[8];
    CHECK(::getxattr(target.c_str(), "user.scopefs", buf, sizeof buf) < 0);
  }
}

TEST_CASE_FIXTURE(StdView, "create over an existing symlink never follows it") {
  const std::string target = real("outside/target.txt");
  Inode* rw = walk("rw");
  int flags = O_CREAT | O_WRONLY;
  SUBCASE("plain") {}
  SUBCASE("with O_TRUNC") { flags |= O_TRUNC; }
  auto r = view->create(rw, "escape", 0644, flags, me);
  CHECK_FALSE(r.ok());
  CHECK(read_file(target) == "outside");
  CHECK(S_ISLNK(mode_of(real("rw/escape"))));
}

TEST_CASE_FIXTURE(StdView, "lookup rejects '.', '..', empty names and names with '/'") {
  Inode* rw = walk("rw");
  for (Inode* dir : {root(), rw}) {
    for (const char* bad : {".", "..", "", "sub/note.txt", "sub/", "/etc"}) {
      CAPTURE(bad);
      CHECK(lookup_err(dir, bad) == ENOENT);
    }
  }
  CHECK(lookup_err(rw, std::string(256, 'x')) == ENAMETOOLONG);
}

TEST_CASE_FIXTURE(StdView, "mutations refuse '.', '..' and names with '/'") {
  Inode* rw = walk("rw");
  CHECK(view->create(rw, "..", 0644, O_CREAT | O_WRONLY, me).error() == EINVAL);
  CHECK(view->mkdir(rw, "a/b", 0755, me).error() == EINVAL);
  CHECK(view->symlink("x", rw, ".", me).error() == EINVAL);
  CHECK(view->rename(rw, "file.txt", rw, "../file.txt", 0, me).error() == EINVAL);
  CHECK(view->rename(rw, "..", rw, "x", 0, me).error() == EINVAL);
  CHECK(exists_nofollow(real("rw/file.txt")));
  CHECK(gate.begun.empty());
}

// ---------------------------------------------------------------------------
// Callers

TEST_CASE_FIXTURE(StdView, "objects created for a caller belong to that caller") {
  tmp.mkdir("rw/shared");
  REQUIRE(::chmod(real("rw/shared").c_str(), 0777) == 0);
  Inode* shared = walk("rw/shared");
  const Caller user{::getpid(), 4242, 4343};
  auto c = view->create(shared, "f", 0644, O_CREAT | O_WRONLY, user);
  REQUIRE(c.ok());
  view->release(std::move(c->second));
  REQUIRE(view->mkdir(shared, "d", 0755, user).ok());
  REQUIRE(view->symlink("f", shared, "l", user).ok());
  REQUIRE(view->mknod(shared, "p", S_IFIFO | 0600, 0, user).ok());
  for (const char* n : {"f", "d", "l", "p"}) {
    CAPTURE(n);
    struct stat st {};
    REQUIRE(::lstat((real("rw/shared/") + n).c_str(), &st) == 0);
    CHECK(st.st_uid == 4242);
    CHECK(st.st_gid == 4343);
  }
  // The thread's credentials are back to the daemon's afterwards.
  auto r = view->create(shared, "root-owned", 0644, O_CREAT | O_WRONLY, me);
  REQUIRE(r.ok());
  view->release(std::move(r->second));
  CHECK(::geteuid() == 0);
  struct stat st {};
  REQUIRE(::lstat(real("rw/shared/root-owned").c_str(), &st) == 0);
  CHECK(st.st_uid == 0);
}

TEST_CASE_FIXTURE(StdView, "a caller without write permission on the real directory gets EACCES") {
  Inode* rw = walk("rw");  // root-owned, 0755
  const Caller user{::getpid(), 4242, 4343};
  CHECK(view->create(rw, "f", 0644, O_CREAT | O_WRONLY, user).error() == EACCES);
  CHECK(view->mkdir(rw, "d", 0755, user).error() == EACCES);
  CHECK_FALSE(exists_nofollow(real("rw/f")));
  CHECK_FALSE(exists_nofollow(real("rw/d")));
}

// ---------------------------------------------------------------------------
// The gate

TEST_CASE_FIXTURE(StdView, "a failing gate begin aborts the change before the real tree") {
  Inode* rw = walk("rw");
  gate.fail_begin = EIO;
  SUBCASE("create") {
    CHECK(view->create(rw, "new.txt", 0644, O_CREAT | O_WRONLY, me).error() == EIO);
    CHECK_FALSE(exists_nofollow(real("rw/new.txt")));
  }
  SUBCASE("unlink") {
    CHECK(view->unlink(rw, "file.txt", me).error() == EIO);
    CHECK(exists_nofollow(real("rw/file.txt")));
  }
  SUBCASE("rename") {
    CHECK(view->rename(rw, "file.txt", rw, "moved.txt", 0, me).error() == EIO);
    CHECK(exists_nofollow(real("rw/file.txt")));
    CHECK_FALSE(exists_nofollow(real("rw/moved.txt")));
  }
  SUBCASE("link") {
    Inode* file = lookup(rw, "file.txt");
    CHECK(view->link(file, rw, "hard", me).error() == EIO);
    CHECK_FALSE(exists_nofollow(real("rw/hard")));
  }
  SUBCASE("open with O_TRUNC") {
    Inode* file = lookup(rw, "file.txt");
    bool keep = false;
    CHECK(view->open(file, O_WRONLY | O_TRUNC, me, keep).error() == EIO);
    CHECK(read_file(real("rw/file.txt")) == "hello");
  }
  CHECK(gate.begun.size() == 1);
  CHECK(gate.denials.empty());
}

// ---------------------------------------------------------------------------
// Inode reference counts

TEST_CASE_FIXTURE(StdView, "two lookups of a name need a forget of two") {
  Inode* rw = walk("rw");
  size_t base = view->inode_count();
  Inode* n1 = lookup(rw, "file.txt");
  Inode* n2 = lookup(rw, "file.txt");
  CHECK(n1 == n2);
  CHECK(view->inode_count() == base + 1);
  view->forget(n1, 1);
  CHECK(view->inode_count() == base + 1);
  view->forget(n1, 1);
  CHECK(view->inode_count() == base);
}

TEST_CASE_FIXTURE(StdView, "forget of n at once drops n lookups") {
  Inode* rw = walk("rw");
  size_t base = view->inode_count();
  Inode* n = lookup(rw, "file.txt");
  (void)lookup(rw, "file.txt");
  CHECK(view->inode_count() == base + 1);
  view->forget(n, 2);
  CHECK(view->inode_count() == base);
  // A new lookup gives a fresh node that works.
  Inode* again = lookup(rw, "file.txt");
  CHECK(view->getattr(again, nullptr).ok());
  view->forget(again, 1);
  CHECK(view->inode_count() == base);
}

TEST_CASE_FIXTURE(StdView, "a looked-up child keeps its forgotten parent until it goes too") {
  Inode* rw = walk("rw");
  size_t base = view->inode_count();
  Inode* sub = lookup(rw, "sub");
  Inode* note = lookup(sub, "note.txt");
  CHECK(view->inode_count() == base + 2);
  view->forget(sub, 1);
  CHECK(view->inode_count() == base + 2);  // note's parent link keeps sub
  CHECK(lookup(sub, "note.txt") == note);  // and sub still resolves names
  view->forget(note, 2);
  CHECK(view->inode_count() == base);  // both gone
}

TEST_CASE_FIXTURE(StdView, "readdirplus counts one lookup per entry and plain readdir none") {
  Inode* rw = walk("rw");
  size_t base = view->inode_count();
  (void)list(rw, false);
  CHECK(view->inode_count() == base);
  std::vector<Inode*> nodes;
  (void)list(rw, true, &nodes);
  CHECK(nodes.size() == 7);
  CHECK(view->inode_count() == base + 7);
  for (Inode* n : nodes) view->forget(n, 1);
  CHECK(view->inode_count() == base);
}

TEST_CASE_FIXTURE(StdView, "create, mkdir, mknod, symlink and link each count one lookup") {
  Inode* rw = walk("rw");
  Inode* file = lookup(rw, "file.txt");
  size_t base = view->inode_count();
  auto c = view->create(rw, "n1", 0644, O_CREAT | O_WRONLY, me);
  REQUIRE(c.ok());
  view->release(std::move(c->second));
  auto m = view->mkdir(rw, "n2", 0755, me);
  REQUIRE(m.ok());
  auto k = view->mknod(rw, "n3", S_IFIFO | 0600, 0, me);
  REQUIRE(k.ok());
  auto s = view->symlink("n1", rw, "n4", me);
  REQUIRE(s.ok());
  CHECK(view->inode_count() == base + 4);
  auto l = view->link(file, rw, "n5", me);  // an existing node: one more lookup of it
  REQUIRE(l.ok());
  CHECK(l->node == file);
  CHECK(view->inode_count() == base + 4);
  for (Inode* n : {c->first.node, m->node, k->node, s->node}) view->forget(n, 1);
  CHECK(view->inode_count() == base);
  view->forget(file, 2);
  CHECK(view->inode_count() == base - 1);
}

TEST_CASE("a file whose inode number was reused gets a fresh, working node") {
  // Inodes pin no fds: once the cached fd of a looked-up file is evicted and
  // the file is deleted, the filesystem may give its inode number to a new
  // file. The kernel still holds the old node (no forget yet). The new file
  // must not be resolved to that stale node, whose file handle is dead.
  ViewFixture f;
  f.tmp.file("rw/a.txt", "old");
  f.tmp.file("rw/other.txt", "o");
  scopefs::fs::ViewOptions opts;
  opts.fd_cache_capacity = 1;
  f.start({{"rw", "rw", "write"}}, {}, opts);
  Inode* rw = f.walk("rw");
  auto a = f.view->lookup(rw, "a.txt");
  REQUIRE(a.ok());
  Inode* old_node = a->node;
  const ino_t old_ino = a->attr.st_ino;
  SUBCASE("deleted through the view") { REQUIRE(f.view->unlink(rw, "a.txt", f.me).ok()); }
  SUBCASE("deleted outside the view") { REQUIRE(::unlink(f.tmp.at("rw/a.txt").c_str()) == 0); }
  (void)f.lookup(rw, "other.txt");  // evicts a.txt's fd: its inode is now free
  f.tmp.file("rw/b.txt", "new");
  struct stat st {};
  REQUIRE(::lstat(f.tmp.at("rw/b.txt").c_str(), &st) == 0);
  if (st.st_ino != old_ino) {
    MESSAGE("the filesystem did not reuse the inode number; nothing to check");
    return;
  }
  auto b = f.view->lookup(rw, "b.txt");
  REQUIRE(b.ok());
  CHECK(b->node != old_node);
  auto attr = f.view->getattr(b->node, nullptr);
  CHECK_MESSAGE(attr.ok(), "getattr errno ", attr.error());
  bool keep = false;
  auto fh = f.view->open(b->node, O_RDONLY, f.me, keep);
  REQUIRE_MESSAGE(fh.ok(), "open errno ", fh.error());
  char buf[8] = {};
  CHECK(::pread((*fh)->fd.get(), buf, sizeof buf, 0) == 3);
  CHECK(std::string(buf) == "new");
  f.view->release(std::move(*fh));
}

TEST_CASE_FIXTURE(StdView, "forget of a bind root or the synthetic root changes nothing") {
  Inode* rw = walk("rw");
  size_t base = view->inode_count();
  view->forget(rw, 5);
  view->forget(root(), 1);
  CHECK(view->inode_count() == base);
  CHECK(lookup(root(), "rw") == rw);
  CHECK(list(rw, false) == "emptydir,escape,file.txt,frozen,locked.txt,out,sub");
}

TEST_SUITE_END();
