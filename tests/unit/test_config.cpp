// Config parsing and validation (STYLE rule 26: config errors with line
// numbers). Every error case asserts the exact line and column of its
// Diagnostic and a key phrase of the message.
#include <doctest/doctest.h>
#include <grp.h>
#include <pwd.h>

#include <string>
#include <vector>

#include "config/config.hpp"
#include "test_util.hpp"

namespace {

using scopefs::config::Access;
using scopefs::config::ConfigError;
using scopefs::config::Diagnostic;
using scopefs::config::TaskConfig;
using scopefs::test::cat;
using scopefs::test::join_lines;
using scopefs::test::TempDir;
using scopefs::test::tstr;
using Lines = std::vector<std::string>;

constexpr const char* kFile = "task.toml";

std::string dump(const std::vector<Diagnostic>& diags) {
  std::string s;
  for (const auto& d : diags) s += d.str() + "\n";
  return s;
}

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

// Exactly one diagnostic, at (line, column), whose message contains `phrase`.
void check_one(const std::vector<Diagnostic>& diags, unsigned line, unsigned column,
               const std::string& phrase) {
  const std::string all = dump(diags);
  INFO("diagnostics:\n", all);
  REQUIRE(diags.size() == 1);
  CHECK(diags[0].file == kFile);
  CHECK(diags[0].line == line);
  CHECK(diags[0].column == column);
  CHECK_MESSAGE(contains(diags[0].message, phrase), "expected '", phrase, "' in the message");
}

// Some diagnostic is at (line, column) and mentions `phrase`.
bool has(const std::vector<Diagnostic>& diags, unsigned line, unsigned column,
         const std::string& phrase) {
  for (const auto& d : diags)
    if (d.line == line && d.column == column && contains(d.message, phrase)) return true;
  return false;
}

// A temp dir with two source directories; mountpoint and state_dir beside
// them (not created: the loader does not require them to exist).
struct ConfigFixture {
  TempDir tmp;
  std::string src1 = tmp.mkdir("src1");
  std::string src2 = tmp.mkdir("src2");
  std::string mnt = tmp.at("mnt");
  std::string state = tmp.at("state");

  // Lines 1-4.
  Lines task() const {
    return {"[task]", "name = \"recon\"", "mountpoint = " + tstr(mnt),
            "state_dir = " + tstr(state)};
  }
  // [[bind]] header, path, source, then access unless empty.
  static Lines bind(const std::string& path, const std::string& source, const std::string& access) {
    Lines l{"[[bind]]", "path = " + tstr(path), "source = " + tstr(source)};
    if (!access.empty()) l.push_back("access = " + tstr(access));
    return l;
  }
  static Lines rule(const std::string& match, const std::string& access) {
    return {"[[rule]]", "match = " + tstr(match), "access = " + tstr(access)};
  }
  // A valid preamble: task (1-4) and one read bind (5-8); a rule follows at 9.
  Lines valid() const { return cat({task(), bind("data", src1, "read")}); }

  TaskConfig parse(const Lines& lines) const {
    return scopefs::config::parse_config(join_lines(lines), kFile, tmp.path());
  }
  std::vector<Diagnostic> errors(const Lines& lines) const {
    return errors_text(join_lines(lines));
  }
  std::vector<Diagnostic> errors_text(const std::string& text) const {
    try {
      (void)scopefs::config::parse_config(text, kFile, tmp.path());
    } catch (const ConfigError& e) {
      return e.diagnostics();
    }
    FAIL("the config was accepted:\n" << text);
    return {};
  }
};

}  // namespace

TEST_SUITE_BEGIN("config");

// ---------------------------------------------------------------------------
// Valid configs

TEST_CASE_FIXTURE(ConfigFixture, "a valid config yields every field") {
  std::string src3 = tmp.mkdir("src3");
  Lines lines = {
      "[task]",                            // 1
      "name = \"recon-2024.v1_x\"",        // 2
      "mountpoint = \"mnt\"",              // 3: relative to base_dir
      "state_dir = " + tstr(state + "/"),  // 4: trailing '/' dropped
      "agent_user = \"root\"",             // 5
      "[[bind]]",                          // 6
      "path = \"data/\"",                  // 7: trailing '/' dropped
      "source = \"src1\"",                 // 8: relative to base_dir
      "access = \"read\"",                 // 9
      "[[bind]]",                          // 10
      "path = \"out/results\"",            // 11
      "source = " + tstr(src2),            // 12
      "access = \"write\"",                // 13
      "[[bind]]",                          // 14
      "path = \"hidden\"",                 // 15
      "source = " + tstr(src3 + "/"),      // 16
      "access = \"hide\"",                 // 17
      "[[rule]]",                          // 18
      "match = \"**/*.pem\"",              // 19
      "access = \"hide\"",                 // 20
      "[[rule]]",                          // 21
      "match = \"data/exports/**\"",       // 22
      "access = \"write\"",                // 23
  };
  TaskConfig cfg = parse(lines);
  CHECK(cfg.file == kFile);
  CHECK(cfg.name == "recon-2024.v1_x");
  CHECK(cfg.mountpoint == mnt);
  CHECK(cfg.state_dir == state);
  REQUIRE(cfg.agent_user.has_value());
  CHECK(*cfg.agent_user == "root");
  REQUIRE(cfg.agent_uid.has_value());
  CHECK(*cfg.agent_uid == 0);

  REQUIRE(cfg.binds.size() == 3);
  CHECK(cfg.binds[0].path == "data");
  CHECK(cfg.binds[0].source == src1);
  CHECK(cfg.binds[0].access == Access::Read);
  CHECK(cfg.binds[1].path == "out/results");
  CHECK(cfg.binds[1].source == src2);
  CHECK(cfg.binds[1].access == Access::Write);
  CHECK(cfg.binds[2].path == "hidden");
  CHECK(cfg.binds[2].source == src3);
  CHECK(cfg.binds[2].access == Access::Hide);

  const auto& rules = cfg.policy.rules();
  REQUIRE(rules.size() == 2);
  CHECK(rules[0].glob.pattern() == "**/*.pem");
  CHECK(rules[0].access == Access::Hide);
  CHECK(rules[1].glob.pattern() == "data/exports/**");
  CHECK(rules[1].access == Access::Write);
  CHECK(cfg.policy.access("data/exports/a.csv", Access::Read) == Access::Write);
  CHECK(cfg.policy.access("data/k.pem", Access::Read) == Access::Hide);
  CHECK(cfg.policy.access("data/other.csv", Access::Read) == Access::Read);
}

TEST_CASE_FIXTURE(ConfigFixture, "agent_user may be a numeric uid or absent") {
  SUBCASE("numeric") {
    Lines lines = cat({task(), {"agent_user = \"4242\""}, bind("data", src1, "read")});
    TaskConfig cfg = parse(lines);
    REQUIRE(cfg.agent_uid.has_value());
    CHECK(*cfg.agent_uid == 4242);
    CHECK(*cfg.agent_user == "4242");
  }
  SUBCASE("a user name") {
    struct passwd* pw = ::getpwnam("nobody");
    if (!pw) return;
    uid_t expected = pw->pw_uid;
    Lines lines = cat({task(), {"agent_user = \"nobody\""}, bind("data", src1, "read")});
    TaskConfig cfg = parse(lines);
    REQUIRE(cfg.agent_uid.has_value());
    CHECK(*cfg.agent_uid == expected);
  }
  SUBCASE("absent") {
    TaskConfig cfg = parse(valid());
    CHECK_FALSE(cfg.agent_user.has_value());
    CHECK_FALSE(cfg.agent_uid.has_value());
  }
}

TEST_CASE_FIXTURE(ConfigFixture,
                  "access = \"stage\" (held changes) is accepted on binds and rules") {
  Lines lines = cat({task(), bind("data", src1, "stage"), bind("out", src2, "write"),
                     rule("out/drafts/**", "stage")});
  TaskConfig cfg = parse(lines);
  REQUIRE(cfg.binds.size() == 2);
  CHECK(cfg.binds[0].access == Access::Stage);
  CHECK(cfg.binds[1].access == Access::Write);
  REQUIRE(cfg.policy.rules().size() == 1);
  CHECK(cfg.policy.rules()[0].access == Access::Stage);
  CHECK(cfg.policy.access("out/drafts/a.md", Access::Write) == Access::Stage);
  CHECK(cfg.policy.access("out/final.md", Access::Write) == Access::Write);
}

TEST_CASE_FIXTURE(ConfigFixture, "a bind without access defaults to stage") {
  TaskConfig cfg = parse(cat({task(), bind("data", src1, ""), bind("out", src2, "read")}));
  REQUIRE(cfg.binds.size() == 2);
  CHECK(cfg.binds[0].access == Access::Stage);
  CHECK(cfg.binds[1].access == Access::Read);
}

TEST_CASE_FIXTURE(ConfigFixture, "admin_group is resolved to a gid, or absent") {
  SUBCASE("a group name") {
    struct group* gr = ::getgrgid(0);
    REQUIRE(gr != nullptr);
    const std::string name = gr->gr_name;
    TaskConfig cfg =
        parse(cat({task(), {"admin_group = " + tstr(name)}, bind("data", src1, "read")}));
    REQUIRE(cfg.admin_group.has_value());
    CHECK(*cfg.admin_group == name);
    REQUIRE(cfg.admin_gid.has_value());
    CHECK(*cfg.admin_gid == 0);
  }
  SUBCASE("absent") {
    TaskConfig cfg = parse(valid());
    CHECK_FALSE(cfg.admin_group.has_value());
    CHECK_FALSE(cfg.admin_gid.has_value());
  }
}

TEST_CASE_FIXTURE(ConfigFixture, "[approval] hold and max_deletes are read") {
  Lines lines = cat({valid(),
                     {"[approval]", "hold = [\"unlink\", \"rmdir\", \"rename\", \"unlink\"]",
                      "max_deletes = 25"}});
  TaskConfig cfg = parse(lines);
  CHECK(cfg.approval.hold == std::vector<std::string>{"unlink", "rmdir", "rename", "unlink"});
  CHECK(cfg.approval.holds("unlink"));
  CHECK(cfg.approval.holds("rmdir"));
  CHECK(cfg.approval.holds("rename"));
  CHECK_FALSE(cfg.approval.holds("write"));
  CHECK_FALSE(cfg.approval.holds("unlin"));
  REQUIRE(cfg.approval.max_deletes.has_value());
  CHECK(*cfg.approval.max_deletes == 25);
}

TEST_CASE_FIXTURE(ConfigFixture, "[approval] accepts every journal op name") {
  std::string list;
  for (auto op : scopefs::config::kHoldableOps)
    list += (list.empty() ? "" : ", ") + tstr(std::string(op));
  TaskConfig cfg =
      parse(cat({valid(), {"[approval]", "hold = [" + list + "]", "max_deletes = 0"}}));
  CHECK(cfg.approval.hold.size() == scopefs::config::kHoldableOps.size());
  for (auto op : {"create", "mknod", "mkdir", "symlink", "link", "unlink", "rmdir", "rename",
                  "chmod", "chown", "truncate", "utimens", "write", "fallocate", "copy_file_range",
                  "setxattr", "removexattr"})
    CHECK_MESSAGE(cfg.approval.holds(op), op);
  REQUIRE(cfg.approval.max_deletes.has_value());
  CHECK(*cfg.approval.max_deletes == 0);
}

TEST_CASE_FIXTURE(ConfigFixture, "[approval] is optional, and so are its keys") {
  SUBCASE("no table") {
    TaskConfig cfg = parse(valid());
    CHECK(cfg.approval.hold.empty());
    CHECK_FALSE(cfg.approval.max_deletes.has_value());
    CHECK_FALSE(cfg.approval.holds("unlink"));
  }
  SUBCASE("an empty table") {
    TaskConfig cfg = parse(cat({valid(), {"[approval]"}}));
    CHECK(cfg.approval.hold.empty());
    CHECK_FALSE(cfg.approval.max_deletes.has_value());
  }
  SUBCASE("only max_deletes") {
    TaskConfig cfg = parse(cat({valid(), {"[approval]", "max_deletes = 3"}}));
    CHECK(cfg.approval.hold.empty());
    CHECK(cfg.approval.max_deletes == std::optional<uint64_t>(3));
  }
  SUBCASE("an empty hold list") {
    TaskConfig cfg = parse(cat({valid(), {"[approval]", "hold = []"}}));
    CHECK(cfg.approval.hold.empty());
  }
  SUBCASE("before [task]") {
    TaskConfig cfg = parse(cat({{"[approval]", "hold = [\"rename\"]"}, valid()}));
    CHECK(cfg.approval.holds("rename"));
  }
}

TEST_CASE_FIXTURE(ConfigFixture, "a bind source reached through a symlink is canonical") {
  tmp.symlink(src1, "link-to-src1");
  TaskConfig cfg = parse(cat({task(), bind("data", tmp.at("link-to-src1"), "write")}));
  REQUIRE(cfg.binds.size() == 1);
  CHECK(cfg.binds[0].source == src1);
}

TEST_CASE_FIXTURE(ConfigFixture, "a root bind alone is valid") {
  TaskConfig cfg = parse(cat({task(), bind("", src1, "read")}));
  REQUIRE(cfg.binds.size() == 1);
  CHECK(cfg.binds[0].path.empty());
}

TEST_CASE_FIXTURE(ConfigFixture, "sibling bind paths and sources sharing a prefix do not overlap") {
  std::string src1x = tmp.mkdir("src1x");
  TaskConfig cfg =
      parse(cat({task(), bind("data", src1, "read"), bind("database", src1x, "write")}));
  CHECK(cfg.binds.size() == 2);
}

TEST_CASE("load_config reads a file and resolves relative paths against its directory") {
  TempDir tmp;
  std::string src = tmp.mkdir("src");
  std::string path = tmp.file("t.toml", join_lines({"[task]", "name = \"t\"", "mountpoint = \"m\"",
                                                    "state_dir = \"s\"", "[[bind]]", "path = \"d\"",
                                                    "source = \"src\"", "access = \"read\""}));
  TaskConfig cfg = scopefs::config::load_config(path);
  CHECK(cfg.file == path);
  CHECK(cfg.mountpoint == tmp.at("m"));
  CHECK(cfg.state_dir == tmp.at("s"));
  REQUIRE(cfg.binds.size() == 1);
  CHECK(cfg.binds[0].source == src);
}

TEST_CASE("load_config of a missing file is a ConfigError") {
  TempDir tmp;
  try {
    (void)scopefs::config::load_config(tmp.at("nope.toml"));
    FAIL("accepted a missing file");
  } catch (const ConfigError& e) {
    REQUIRE(e.diagnostics().size() == 1);
    CHECK(e.diagnostics()[0].file == tmp.at("nope.toml"));
    CHECK(contains(e.diagnostics()[0].message, "cannot read"));
  }
}

TEST_CASE("Diagnostic::str and ConfigError::what are file:line:col: message") {
  Diagnostic a{"t.toml", 3, 8, "bad"};
  Diagnostic b{"t.toml", 10, 1, "worse"};
  CHECK(a.str() == "t.toml:3:8: bad");
  ConfigError e({a, b});
  CHECK(std::string(e.what()) == "t.toml:3:8: bad\nt.toml:10:1: worse");
  CHECK(e.diagnostics().size() == 2);
}

// ---------------------------------------------------------------------------
// TOML and structure errors

TEST_CASE_FIXTURE(ConfigFixture, "a TOML syntax error is reported where the parser stopped") {
  // Line 2 has a second '=' where a value should start (column 8).
  auto d = errors({"[task]", "name = = \"x\""});
  check_one(d, 2, 8, "TOML syntax error");
}

TEST_CASE_FIXTURE(ConfigFixture, "an unknown top-level key is an error at the key") {
  auto d = errors(cat({{"colour = \"red\""}, task(), bind("data", src1, "read")}));
  check_one(d, 1, 1, "unknown key 'colour' in the top level");
}

TEST_CASE_FIXTURE(ConfigFixture, "an unknown key in [task] is an error at the key") {
  auto d = errors(cat({task(), {"  nmae = \"x\""}, bind("data", src1, "read")}));
  check_one(d, 5, 3, "unknown key 'nmae' in [task]");
}

TEST_CASE_FIXTURE(ConfigFixture, "an unknown key in [[bind]] is an error at the key") {
  auto d = errors(cat({valid(), {"mode = \"ro\""}}));
  check_one(d, 9, 1, "unknown key 'mode' in [[bind]]");
}

TEST_CASE_FIXTURE(ConfigFixture, "an unknown key in [[rule]] is an error at the key") {
  auto d = errors(cat({valid(), rule("**/*.pem", "hide"), {"glob = \"x\""}}));
  check_one(d, 12, 1, "unknown key 'glob' in [[rule]]");
}

TEST_CASE_FIXTURE(ConfigFixture, "a missing [task] table is reported at 1:1") {
  auto d = errors(bind("data", src1, "read"));
  check_one(d, 1, 1, "missing [task]");
}

TEST_CASE_FIXTURE(ConfigFixture, "task that is not a table is an error at its value") {
  auto d = errors(cat({{"task = \"recon\""}, bind("data", src1, "read")}));
  check_one(d, 1, 8, "'task' must be a table");
}

TEST_CASE_FIXTURE(ConfigFixture, "missing required [task] keys are reported at the [task] header") {
  Lines t = task();
  SUBCASE("name") {
    auto d = errors(cat({{"# leading comment", t[0], t[2], t[3]}, bind("data", src1, "read")}));
    check_one(d, 2, 1, "missing key 'name' in [task]");
  }
  SUBCASE("mountpoint") {
    auto d = errors(cat({{t[0], t[1], t[3]}, bind("data", src1, "read")}));
    check_one(d, 1, 1, "missing key 'mountpoint' in [task]");
  }
  SUBCASE("state_dir") {
    auto d = errors(cat({{t[0], t[1], t[2]}, bind("data", src1, "read")}));
    check_one(d, 1, 1, "missing key 'state_dir' in [task]");
  }
}

TEST_CASE_FIXTURE(ConfigFixture, "a [task] value that is not a string is an error at the value") {
  Lines t = task();
  t[1] = "name = 42";
  auto d = errors(cat({t, bind("data", src1, "read")}));
  check_one(d, 2, 8, "'name' must be a string");
}

TEST_CASE_FIXTURE(ConfigFixture, "a bad task name is an error at its value") {
  Lines t = task();
  std::string bad;
  SUBCASE("space") { bad = "bad name"; }
  SUBCASE("slash") { bad = "a/b"; }
  SUBCASE("dotdot") { bad = ".."; }
  SUBCASE("dot") { bad = "."; }
  SUBCASE("empty") { bad = ""; }
  t[1] = "name = " + tstr(bad);
  auto d = errors(cat({t, bind("data", src1, "read")}));
  check_one(d, 2, 8, "task name '" + bad + "' must match");
}

TEST_CASE_FIXTURE(ConfigFixture, "an empty mountpoint is an error at its value") {
  Lines t = task();
  t[2] = "mountpoint = \"\"";
  auto d = errors(cat({t, bind("data", src1, "read")}));
  check_one(d, 3, 14, "mountpoint must not be empty");
}

TEST_CASE_FIXTURE(ConfigFixture, "an unknown agent_user is an error at its value") {
  auto d =
      errors(cat({task(), {"agent_user = \"no-such-user-scopefs\""}, bind("data", src1, "read")}));
  check_one(d, 5, 14, "agent_user 'no-such-user-scopefs' is not a known user");
}

TEST_CASE_FIXTURE(ConfigFixture, "a numeric agent_user outside the uid range is an error") {
  // strtoul() accepts "-1" (as ULONG_MAX) and values above UINT32_MAX, which
  // a cast to uid_t wraps: "4294967296" would become uid 0, root.
  std::string bad;
  SUBCASE("wraps to root") { bad = "4294967296"; }
  SUBCASE("negative") { bad = "-1"; }
  SUBCASE("the 'no uid' value") { bad = "4294967295"; }
  auto d = errors(cat({task(), {"agent_user = " + tstr(bad)}, bind("data", src1, "read")}));
  check_one(d, 5, 14, "agent_user '" + bad + "'");
}

TEST_CASE_FIXTURE(ConfigFixture, "an unknown admin_group is an error at its value") {
  auto d = errors(
      cat({task(), {"admin_group = \"no-such-group-scopefs\""}, bind("data", src1, "read")}));
  check_one(d, 5, 15, "admin_group 'no-such-group-scopefs' is not a known group name");
}

TEST_CASE_FIXTURE(ConfigFixture, "an empty admin_group is an error at its value") {
  auto d = errors(cat({task(), {"admin_group = \"\""}, bind("data", src1, "read")}));
  check_one(d, 5, 15, "admin_group '' is not a known group name");
}

TEST_CASE_FIXTURE(ConfigFixture, "an admin_group that is not a string is an error at its value") {
  auto d = errors(cat({task(), {"admin_group = 0"}, bind("data", src1, "read")}));
  check_one(d, 5, 15, "'admin_group' must be a string");
}

// ---------------------------------------------------------------------------
// [[bind]] errors

TEST_CASE_FIXTURE(ConfigFixture, "a config without [[bind]] is an error") {
  auto d = errors(task());
  check_one(d, 1, 1, "no [[bind]]");
}

TEST_CASE_FIXTURE(ConfigFixture, "bind that is not an array of tables is an error at its value") {
  auto d = errors(cat({{"bind = \"x\""}, task()}));
  check_one(d, 1, 8, "'bind' must be an array of tables");
}

TEST_CASE_FIXTURE(ConfigFixture, "a bad bind access value is an error at its value") {
  SUBCASE("unknown word") {
    auto d = errors(cat({task(), bind("data", src1, "rw")}));
    check_one(d, 8, 10, "access must be one of hide, read, stage, write (got 'rw')");
  }
  SUBCASE("not a string") {
    auto d = errors(
        cat({task(), {"[[bind]]", "path = \"data\"", "source = " + tstr(src1), "access = 3"}}));
    check_one(d, 8, 10, "a non-string");
  }
}

TEST_CASE_FIXTURE(ConfigFixture, "a bind without path or source is an error at its header") {
  SUBCASE("path") {
    auto d = errors(cat({task(), {"[[bind]]", "source = " + tstr(src1), "access = \"read\""}}));
    check_one(d, 5, 1, "missing key 'path' in [[bind]]");
  }
  SUBCASE("source") {
    auto d = errors(cat({task(), {"[[bind]]", "path = \"data\"", "access = \"read\""}}));
    check_one(d, 5, 1, "missing key 'source' in [[bind]]");
  }
}

TEST_CASE_FIXTURE(ConfigFixture, "a bind path with '.' or '..' segments is an error at its value") {
  std::string bad;
  SUBCASE("inner ..") { bad = "a/../b"; }
  SUBCASE("leading ..") { bad = "../b"; }
  SUBCASE("only ..") { bad = ".."; }
  SUBCASE(".") { bad = "a/./b"; }
  auto d = errors(cat({task(), bind(bad, src1, "read")}));
  check_one(d, 6, 8, "escapes or is not normalised");
}

TEST_CASE_FIXTURE(ConfigFixture, "a bind path with a leading '/' is an error at its value") {
  auto d = errors(cat({task(), bind("/data", src1, "read")}));
  check_one(d, 6, 8, "no leading '/'");
}

TEST_CASE_FIXTURE(ConfigFixture, "a bind path of just '/' is an error like any leading '/'") {
  // "" is the root; "/" must not silently become it (its leading '/' is
  // stripped as if it were a trailing one).
  auto d = errors(cat({task(), bind("/", src1, "read")}));
  check_one(d, 6, 8, "no leading '/'");
}

TEST_CASE_FIXTURE(ConfigFixture, "a bind path with an empty segment is an error at its value") {
  auto d = errors(cat({task(), bind("a//b", src1, "read")}));
  check_one(d, 6, 8, "empty segment");
}

TEST_CASE_FIXTURE(ConfigFixture, "overlapping bind paths are an error at the later path") {
  std::string first, second, phrase;
  SUBCASE("equal") {
    first = "data";
    second = "data";
  }
  SUBCASE("nested") {
    first = "data";
    second = "data/sub";
  }
  SUBCASE("nested, inner first") {
    first = "data/sub";
    second = "data";
  }
  SUBCASE("equal after dropping a trailing '/'") {
    first = "data";
    second = "data/";
  }
  SUBCASE("root and another") {
    first = "";
    second = "data";
  }
  SUBCASE("another and root") {
    first = "data";
    second = "";
  }
  auto d = errors(cat({task(), bind(first, src1, "read"), bind(second, src2, "write")}));
  check_one(d, 10, 8, "overlaps bind path '" + first + "' (line 6)");
}

TEST_CASE_FIXTURE(ConfigFixture, "overlapping bind sources are an error at the later source") {
  std::string second;
  SUBCASE("equal") { second = src1; }
  SUBCASE("nested") { second = tmp.mkdir("src1/inner"); }
  SUBCASE("parent of the first") { second = tmp.path(); }
  SUBCASE("equal through a symlink") { second = tmp.symlink(src1, "alias"); }
  // The mountpoint/state_dir sit in tmp: keep them out of the way for the
  // "parent" case by moving them elsewhere.
  TempDir elsewhere;
  Lines t = task();
  t[2] = "mountpoint = " + tstr(elsewhere.at("mnt"));
  t[3] = "state_dir = " + tstr(elsewhere.at("state"));
  auto d = errors(cat({t, bind("a", src1, "read"), bind("b", second, "write")}));
  check_one(d, 11, 10, "overlaps bind source '" + src1 + "' (line 7)");
}

TEST_CASE_FIXTURE(ConfigFixture, "a missing bind source is an error at its value") {
  auto d = errors(cat({task(), bind("data", tmp.at("nope"), "read")}));
  check_one(d, 7, 10, "does not exist");
}

TEST_CASE_FIXTURE(ConfigFixture, "a bind source that is not a directory is an error at its value") {
  std::string f = tmp.file("plain.txt", "x");
  auto d = errors(cat({task(), bind("data", f, "read")}));
  check_one(d, 7, 10, "is not a directory");
}

TEST_CASE_FIXTURE(ConfigFixture,
                  "a mountpoint inside a bind source is an error at the mountpoint") {
  Lines t = task();
  t[2] = "mountpoint = " + tstr(src1 + "/view");
  auto d = errors(cat({t, bind("data", src1, "read")}));
  check_one(d, 3, 14, "mountpoint '" + src1 + "/view' is inside bind source");
}

TEST_CASE_FIXTURE(ConfigFixture, "a mountpoint equal to a bind source is an error") {
  Lines t = task();
  t[2] = "mountpoint = " + tstr(src1);
  auto d = errors(cat({t, bind("data", src1, "read")}));
  INFO(dump(d));
  CHECK(has(d, 3, 14, "is inside bind source"));
}

TEST_CASE_FIXTURE(ConfigFixture, "a state_dir inside a bind source is an error at the state_dir") {
  Lines t = task();
  t[3] = "state_dir = " + tstr(src1 + "/.scopefs");
  auto d = errors(cat({t, bind("data", src1, "read")}));
  check_one(d, 4, 13, "state_dir '" + src1 + "/.scopefs' is inside bind source");
}

TEST_CASE_FIXTURE(ConfigFixture, "a bind source inside the mountpoint is an error at the source") {
  std::string inner = tmp.mkdir("mnt/inner");
  auto d = errors(cat({task(), bind("data", inner, "read")}));
  check_one(d, 7, 10, "is inside the mountpoint");
}

TEST_CASE_FIXTURE(ConfigFixture, "a bind source inside the state_dir is an error at the source") {
  // The state_dir holds the journal: no bind may expose it to the agent.
  std::string inner = tmp.mkdir("state/journal");
  auto d = errors(cat({task(), bind("data", inner, "read")}));
  check_one(d, 7, 10, "state_dir");
}

TEST_CASE_FIXTURE(ConfigFixture, "a state_dir inside the mountpoint is an error at the state_dir") {
  Lines t = task();
  t[3] = "state_dir = " + tstr(mnt + "/state");
  auto d = errors(cat({t, bind("data", src1, "read")}));
  check_one(d, 4, 13, "state_dir is inside the mountpoint");
}

// ---------------------------------------------------------------------------
// [[rule]] errors

TEST_CASE_FIXTURE(ConfigFixture, "rule that is not an array of tables is an error at its value") {
  auto d = errors(cat({{"rule = 1"}, valid()}));
  check_one(d, 1, 8, "'rule' must be an array of tables");
}

TEST_CASE_FIXTURE(ConfigFixture, "a rule without match or access is an error at its header") {
  SUBCASE("match") {
    auto d = errors(cat({valid(), {"[[rule]]", "access = \"hide\""}}));
    check_one(d, 9, 1, "missing key 'match' in [[rule]]");
  }
  SUBCASE("access") {
    auto d = errors(cat({valid(), {"[[rule]]", "match = \"*.pem\""}}));
    check_one(d, 9, 1, "missing key 'access' in [[rule]]");
  }
}

TEST_CASE_FIXTURE(ConfigFixture, "a bad rule access is an error at its value") {
  SUBCASE("unknown word") {
    auto d = errors(cat({valid(), rule("*.pem", "ro")}));
    check_one(d, 11, 10, "access must be one of hide, read, stage, write (got 'ro')");
  }
  SUBCASE("not a string") {
    auto d = errors(cat({valid(), {"[[rule]]", "match = \"*.pem\"", "access = true"}}));
    check_one(d, 11, 10, "(got a non-string)");
  }
}

// The glob error column points at the offending character inside the
// pattern string: `match = "` puts the pattern's first character at column 10.
TEST_CASE_FIXTURE(ConfigFixture, "a bad glob is an error pointing into the pattern") {
  std::string pattern, phrase;
  unsigned column = 0;
  SUBCASE("unclosed '['") {
    pattern = "a/[bc";
    column = 12;
    phrase = "unclosed '['";
  }
  SUBCASE("'**' inside a segment") {
    pattern = "a**";
    column = 11;
    phrase = "'**' must be a whole path segment";
  }
  SUBCASE("'**' inside a later segment") {
    pattern = "x/a**/y";
    column = 13;
    phrase = "'**' must be a whole path segment";
  }
  SUBCASE("'**' at the start of a segment") {
    pattern = "x/**b";
    column = 12;
    phrase = "'**' must be a whole path segment";
  }
  SUBCASE("leading '/'") {
    pattern = "/etc/*.conf";
    column = 10;
    phrase = "drop the leading '/'";
  }
  SUBCASE("empty segment") {
    pattern = "a//b";
    column = 12;
    phrase = "empty path segment";
  }
  SUBCASE("'..' segment") {
    pattern = "a/../b";
    column = 12;
    phrase = "'.' and '..' segments are not allowed";
  }
  SUBCASE("'.' segment") {
    pattern = "./b";
    column = 10;
    phrase = "'.' and '..' segments are not allowed";
  }
  auto d = errors(cat({valid(), rule(pattern, "hide")}));
  check_one(d, 10, column, phrase);
  CHECK(contains(d[0].message, "bad glob '" + pattern + "': "));
}

TEST_CASE_FIXTURE(ConfigFixture, "a glob with a trailing '/' is an error pointing at the '/'") {
  // "data/" starts at column 10: the offending '/' is at column 14; column
  // 15 would be the closing quote, outside the pattern.
  auto d = errors(cat({valid(), rule("data/", "hide")}));
  check_one(d, 10, 14, "pattern ends with '/'");
}

TEST_CASE_FIXTURE(ConfigFixture, "an empty glob is an error") {
  auto d = errors(cat({valid(), rule("", "hide")}));
  check_one(d, 10, 10, "empty pattern");
}

TEST_CASE_FIXTURE(ConfigFixture, "a bad glob in a literal string points into the pattern") {
  auto d = errors(cat({valid(), {"[[rule]]", "match = 'a/[b'", "access = \"hide\""}}));
  check_one(d, 10, 12, "unclosed '['");
}

TEST_CASE_FIXTURE(ConfigFixture, "a glob ending in a lone backslash points at the backslash") {
  auto d = errors(cat({valid(), {"[[rule]]", "match = 'a\\'", "access = \"hide\""}}));
  check_one(d, 10, 11, "escapes nothing");
}

TEST_CASE_FIXTURE(ConfigFixture,
                  "a bad glob after a TOML escape points at the character in the source text") {
  // TOML text: match = "x\\*/[ab"  -> pattern x\*/[ab, '[' at offset 4.
  // In the source line the '[' is at column 15 (the escape takes two columns).
  auto d = errors(cat({valid(), {"[[rule]]", R"(match = "x\\*/[ab")", "access = \"hide\""}}));
  check_one(d, 10, 15, "unclosed '['");
}

TEST_CASE_FIXTURE(ConfigFixture, "a bad glob after a non-ASCII character points at the character") {
  // TOML++ counts columns in characters (code points), as for every other
  // diagnostic: in match = "\u00e9/[a" the '[' is at column 12, although it
  // is at byte offset 3 of the pattern.
  auto d = errors(cat({valid(), {"[[rule]]", "match = \"\xc3\xa9/[a\"", "access = \"hide\""}}));
  check_one(d, 10, 12, "unclosed '['");
}

// ---------------------------------------------------------------------------
// [approval] errors (valid() is lines 1-8, [approval] is line 9)

TEST_CASE_FIXTURE(ConfigFixture, "an unknown op in [approval] hold is an error at that element") {
  SUBCASE("second on the line") {
    // hold = ["unlink", "delete"]: the bad element's quote is at column 19.
    auto d = errors(cat({valid(), {"[approval]", "hold = [\"unlink\", \"delete\"]"}}));
    check_one(d, 10, 19, "unknown operation 'delete' in [approval] hold");
    CHECK(contains(d[0].message,
                   "(expected one of: create, mknod, mkdir, symlink, link, unlink, rmdir, rename, "
                   "chmod, chown, truncate, utimens, write, fallocate, copy_file_range, setxattr, "
                   "removexattr)"));
  }
  SUBCASE("on its own line of a multi-line array") {
    auto d =
        errors(cat({valid(), {"[approval]", "hold = [", "  \"rmdir\",", "  \"Unlink\",", "]"}}));
    check_one(d, 12, 3, "unknown operation 'Unlink'");
  }
  SUBCASE("not a string") {
    auto d = errors(cat({valid(), {"[approval]", "hold = [\"rmdir\", 7]"}}));
    check_one(d, 10, 18, "unknown operation (not a string) in [approval] hold");
  }
  SUBCASE("each bad element is reported") {
    auto d = errors(cat({valid(), {"[approval]", "hold = [\"del\", \"rmdir\", \"mv\"]"}}));
    INFO(dump(d));
    CHECK(d.size() == 2);
    CHECK(has(d, 10, 9, "unknown operation 'del'"));
    CHECK(has(d, 10, 25, "unknown operation 'mv'"));
  }
}

TEST_CASE_FIXTURE(ConfigFixture, "[approval] hold that is not an array is an error at its value") {
  auto d = errors(cat({valid(), {"[approval]", "hold = \"unlink\""}}));
  check_one(d, 10, 8, "'hold' must be an array of operation names");
}

TEST_CASE_FIXTURE(ConfigFixture, "a bad max_deletes is an error at its value") {
  std::string value;
  SUBCASE("negative") { value = "-1"; }
  SUBCASE("a float") { value = "2.5"; }
  SUBCASE("a string") { value = "\"10\""; }
  SUBCASE("a boolean") { value = "false"; }
  auto d = errors(cat({valid(), {"[approval]", "max_deletes = " + value}}));
  check_one(d, 10, 15, "'max_deletes' must be an integer >= 0");
}

TEST_CASE_FIXTURE(ConfigFixture, "an unknown key in [approval] is an error at the key") {
  auto d = errors(cat({valid(), {"[approval]", "hold = [\"rmdir\"]", "  max_delete = 3"}}));
  check_one(d, 11, 3,
            "unknown key 'max_delete' in [approval] (expected one of: hold, max_deletes)");
}

TEST_CASE_FIXTURE(ConfigFixture, "approval that is not a table is an error at its value") {
  auto d = errors(cat({{"approval = [\"unlink\"]"}, valid()}));
  check_one(d, 1, 12, "'approval' must be a table ([approval])");
}

// ---------------------------------------------------------------------------
// Several errors

TEST_CASE_FIXTURE(ConfigFixture, "every error in a config is reported at once") {
  Lines lines = {
      "colour = \"red\"",                 // 1: unknown top-level key
      "[task]",                           // 2
      "name = \"bad name\"",              // 3: bad task name
      "mountpoint = " + tstr(mnt),        // 4
      "state_dir = " + tstr(state),       // 5
      "[[bind]]",                         // 6: no access (stage): fine
      "path = \"data\"",                  // 7
      "source = " + tstr(src1),           // 8
      "[[bind]]",                         // 9
      "path = \"other\"",                 // 10
      "source = " + tstr(tmp.at("no")),   // 11: missing source
      "access = \"read\"",                // 12
      "[[rule]]",                         // 13
      "match = \"a**\"",                  // 14: bad glob
      "access = \"hide\"",                // 15
      "[approval]",                       // 16
      "hold = [\"unlink\", \"delete\"]",  // 17: unknown op
      "max_deletes = -5",                 // 18: negative
  };
  auto d = errors(lines);
  INFO(dump(d));
  CHECK(d.size() == 6);
  CHECK(has(d, 1, 1, "unknown key 'colour'"));
  CHECK(has(d, 3, 8, "task name 'bad name'"));
  CHECK(has(d, 11, 10, "does not exist"));
  CHECK(has(d, 14, 11, "'**' must be a whole path segment"));
  CHECK(has(d, 17, 19, "unknown operation 'delete'"));
  CHECK(has(d, 18, 15, "'max_deletes' must be an integer >= 0"));
}

// ---------------------------------------------------------------------------
// Task arguments

TEST_CASE("resolve_task_arg maps a bare name to /etc/scopefs/tasks and keeps paths") {
  using scopefs::config::resolve_task_arg;
  CHECK(resolve_task_arg("recon") == "/etc/scopefs/tasks/recon.toml");
  CHECK(resolve_task_arg("./x.toml") == "./x.toml");
  CHECK(resolve_task_arg("x.toml") == "x.toml");
  CHECK(resolve_task_arg("/srv/tasks/x.toml") == "/srv/tasks/x.toml");
  CHECK(resolve_task_arg("sub/task") == "sub/task");
}

TEST_SUITE_END();

// ---------------------------------------------------------------------------
// [task] retention

TEST_CASE_FIXTURE(ConfigFixture, "[task] retention defaults to 7 days and takes s, m, h, d") {
  CHECK(parse(valid()).retention_s == 7 * 86400);
  for (const auto& pair : std::vector<std::pair<std::string, int64_t>>{
           {"90s", 90}, {"30m", 1800}, {"12h", 43200}, {"7d", 604800}, {"1d", 86400}}) {
    // Not a structured binding: clang 14 cannot capture one in CHECK_MESSAGE's lambda.
    const std::string& text = pair.first;
    const int64_t secs = pair.second;
    Lines l = task();
    l.push_back("retention = " + tstr(text));
    CHECK_MESSAGE(parse(cat({l, bind("data", src1, "read")})).retention_s == secs, text);
  }
}

TEST_CASE_FIXTURE(ConfigFixture, "a bad retention is an error at its value") {
  for (const char* bad :
       {"7", "d", "7w", "-1d", "0s", "1.5h", " 7d", "7 d", "", "99999999999999999999d"}) {
    Lines l = task();
    l.push_back(std::string("retention = ") + tstr(bad));  // line 5; the content at column 14
    auto d = errors(cat({l, bind("data", src1, "read")}));
    check_one(d, 5, 14, "retention '");
  }
  Lines l = task();
  l.push_back("retention = 7");
  check_one(errors(cat({l, bind("data", src1, "read")})), 5, 13, "'retention' must be a string");
}
