// Globs and the access policy (STYLE rule 26: policy). The precedence tests
// follow the four numbered rules of config/policy.hpp one by one.
#include <doctest/doctest.h>

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "config/glob.hpp"
#include "config/policy.hpp"

namespace {

using scopefs::config::Access;
using scopefs::config::Glob;
using scopefs::config::Policy;
using scopefs::config::Rule;

Glob glob(const std::string& pattern) {
  Glob g;
  std::string err;
  size_t pos = 0;
  bool ok = Glob::compile(pattern, g, err, pos);
  INFO("pattern '", pattern, "': ", err, " at ", pos);
  REQUIRE(ok);
  return g;
}

struct CompileError {
  std::string message;
  size_t pos = 0;
};

CompileError compile_error(const std::string& pattern) {
  Glob g;
  CompileError e;
  bool ok = Glob::compile(pattern, g, e.message, e.pos);
  INFO("pattern '", pattern, "'");
  REQUIRE_FALSE(ok);
  return e;
}

Policy policy(std::initializer_list<std::pair<const char*, Access>> rules) {
  std::vector<Rule> out;
  for (const auto& [pattern, access] : rules)
    out.push_back(Rule{glob(pattern), access, std::nullopt});
  return Policy(std::move(out));
}

}  // namespace

TEST_SUITE_BEGIN("policy");

// ---------------------------------------------------------------------------
// Glob matching

TEST_CASE("a literal glob matches only the same path") {
  Glob g = glob("data/report.csv");
  CHECK(g.matches("data/report.csv"));
  CHECK_FALSE(g.matches("data/report.csvx"));
  CHECK_FALSE(g.matches("data"));
  CHECK_FALSE(g.matches("data/report.csv/x"));
  CHECK_FALSE(g.matches("x/data/report.csv"));
  CHECK_FALSE(g.matches(""));
}

TEST_CASE("'*' matches any run of characters within one segment, dots included") {
  Glob g = glob("data/*.csv");
  CHECK(g.matches("data/a.csv"));
  CHECK(g.matches("data/.csv"));
  CHECK(g.matches("data/a.b.csv"));
  CHECK_FALSE(g.matches("data/a.txt"));

  Glob star = glob("*");
  CHECK(star.matches("x"));
  CHECK(star.matches(".hidden"));
  CHECK_FALSE(star.matches(""));

  Glob dot = glob("dir/*");
  CHECK(dot.matches("dir/.env"));
  CHECK(dot.matches("dir/.git"));
}

TEST_CASE("'*' never crosses '/'") {
  CHECK_FALSE(glob("*.csv").matches("a/b.csv"));
  CHECK_FALSE(glob("a*").matches("ab/c"));
  CHECK_FALSE(glob("data/*").matches("data/a/b"));
  CHECK_FALSE(glob("*").matches("a/b"));
  CHECK(glob("*/*").matches("a/b"));
}

TEST_CASE("'?' matches exactly one character, never '/'") {
  Glob g = glob("log?.txt");
  CHECK(g.matches("log1.txt"));
  CHECK(g.matches("log..txt"));
  CHECK_FALSE(g.matches("log.txt"));
  CHECK_FALSE(g.matches("log12.txt"));
  CHECK_FALSE(glob("a?b").matches("a/b"));
}

TEST_CASE("character classes: ranges, sets and negation") {
  Glob range = glob("v[0-9].txt");
  CHECK(range.matches("v3.txt"));
  CHECK_FALSE(range.matches("vx.txt"));
  CHECK_FALSE(range.matches("v10.txt"));

  Glob set = glob("[abc]x");
  CHECK(set.matches("bx"));
  CHECK_FALSE(set.matches("dx"));

  Glob lower = glob("[a-z]*");
  CHECK(lower.matches("readme"));
  CHECK_FALSE(lower.matches("README"));

  Glob neg = glob("[!x]y");
  CHECK(neg.matches("ay"));
  CHECK_FALSE(neg.matches("xy"));

  Glob bracket = glob("[]a]z");  // ']' first in a class is literal
  CHECK(bracket.matches("]z"));
  CHECK(bracket.matches("az"));
  CHECK_FALSE(bracket.matches("bz"));
}

TEST_CASE("a backslash escapes the next character") {
  Glob star = glob("a\\*b");
  CHECK(star.matches("a*b"));
  CHECK_FALSE(star.matches("axb"));
  CHECK_FALSE(star.matches("ab"));

  Glob q = glob("what\\?");
  CHECK(q.matches("what?"));
  CHECK_FALSE(q.matches("whatx"));

  Glob br = glob("\\[x]");
  CHECK(br.matches("[x]"));
  CHECK_FALSE(br.matches("x"));
}

TEST_CASE("'**' at the start matches at any depth, including the top") {
  Glob g = glob("**/*.pem");
  CHECK(g.matches("k.pem"));
  CHECK(g.matches("a/k.pem"));
  CHECK(g.matches("a/b/c/k.pem"));
  CHECK_FALSE(g.matches("a/k.pem/x"));
  CHECK_FALSE(g.matches("a/k.pemx"));
}

TEST_CASE("'**' in the middle matches zero or more whole segments") {
  Glob g = glob("a/**/b");
  CHECK(g.matches("a/b"));  // zero segments
  CHECK(g.matches("a/x/b"));
  CHECK(g.matches("a/x/y/z/b"));
  CHECK_FALSE(g.matches("a/xb"));
  CHECK_FALSE(g.matches("ab"));
  CHECK_FALSE(g.matches("a/x/b/c"));
  CHECK_FALSE(g.matches("x/a/b"));
}

TEST_CASE("'**' at the end matches the directory and everything below it") {
  Glob g = glob("work/**");
  CHECK(g.matches("work"));  // zero segments
  CHECK(g.matches("work/a"));
  CHECK(g.matches("work/a/b/c"));
  CHECK_FALSE(g.matches("workshop"));
  CHECK_FALSE(g.matches("other/work/a"));
}

TEST_CASE("consecutive '**' segments behave as one") {
  Glob g = glob("a/**/**/b");
  CHECK(g.matches("a/b"));
  CHECK(g.matches("a/x/y/b"));
  CHECK_FALSE(g.matches("a/x/c"));
}

TEST_CASE("matching a path ignores empty segments") {
  Glob g = glob("a/b");
  CHECK(g.matches("a//b"));
  CHECK(g.matches("a/b/"));
  std::vector<std::string_view> segs{"a", "b"};
  CHECK(g.matches(segs));
  CHECK(scopefs::config::split_path("a//b/").size() == 2);
  CHECK(scopefs::config::split_path("").empty());
}

TEST_CASE("bad patterns fail to compile with the offset of the problem") {
  auto e = compile_error("");
  CHECK(e.pos == 0);
  CHECK(e.message.find("empty") != std::string::npos);

  e = compile_error("/etc/x");
  CHECK(e.pos == 0);

  e = compile_error("ab/c[de");
  CHECK(e.pos == 4);
  CHECK(e.message.find("unclosed") != std::string::npos);

  e = compile_error("ab/x**");
  CHECK(e.pos == 4);
  CHECK(e.message.find("'**'") != std::string::npos);

  e = compile_error("ab//c");
  CHECK(e.pos == 3);

  e = compile_error("ab/../c");
  CHECK(e.pos == 3);

  e = compile_error("ab/.");
  CHECK(e.pos == 3);

  e = compile_error("ab\\");
  CHECK(e.pos == 2);
}

TEST_CASE("a trailing '/' fails to compile at the offset of the '/'") {
  auto e = compile_error("ab/");
  CHECK(e.message.find("ends with '/'") != std::string::npos);
  CHECK(e.pos == 2);  // the '/', inside the pattern (3 would be past its end)
}

TEST_CASE("literal_count counts non-wildcard characters") {
  CHECK(glob("data").literal_count() == 4);
  CHECK(glob("a/*.csv").literal_count() == 5);  // a . c s v
  CHECK(glob("**/*.pem").literal_count() == 4);
  CHECK(glob("**").literal_count() == 0);
  CHECK(glob("[abc]").literal_count() == 0);
  CHECK(glob("x?y").literal_count() == 2);
  CHECK(glob("a\\*").literal_count() == 2);  // the escaped '*' is literal
  CHECK(glob("data/exports/**").literal_count() == 11);
}

TEST_CASE("access names round-trip and order from most to least restrictive") {
  using scopefs::config::access_name;
  using scopefs::config::most_restrictive;
  using scopefs::config::parse_access;
  for (Access a : {Access::Hide, Access::Read, Access::Stage, Access::Write})
    CHECK(parse_access(access_name(a)) == a);
  CHECK_FALSE(parse_access("rw").has_value());
  CHECK_FALSE(parse_access("").has_value());
  CHECK(most_restrictive(Access::Write, Access::Read) == Access::Read);
  CHECK(most_restrictive(Access::Hide, Access::Write) == Access::Hide);
  CHECK(most_restrictive(Access::Stage, Access::Read) == Access::Read);
  CHECK(most_restrictive(Access::Write, Access::Write) == Access::Write);
}

// ---------------------------------------------------------------------------
// Policy precedence

TEST_CASE("no rule applies: the bind default decides") {
  Policy empty;
  CHECK(empty.access("a/b", Access::Write) == Access::Write);
  CHECK(empty.access("a/b", Access::Read) == Access::Read);
  CHECK_FALSE(empty.rule_access("a/b").has_value());
  CHECK_FALSE(empty.exact_access("a/b").has_value());

  Policy p = policy({{"other/**", Access::Hide}});
  CHECK(p.access("data/x", Access::Read) == Access::Read);
  CHECK_FALSE(p.rule_access("data/x").has_value());
}

TEST_CASE("a rule on an ancestor applies to everything below it") {
  Policy p = policy({{"data", Access::Read}});
  CHECK(p.access("data", Access::Write) == Access::Read);
  CHECK(p.access("data/a", Access::Write) == Access::Read);
  CHECK(p.access("data/a/b/c", Access::Write) == Access::Read);
  CHECK(p.access("database", Access::Write) == Access::Write);
}

TEST_CASE("precedence 1: the rule matching the deepest path wins over ancestor matches") {
  Policy p = policy({{"data", Access::Read}, {"data/out", Access::Write}});
  CHECK(p.access("data/out", Access::Hide) == Access::Write);
  CHECK(p.access("data/out/f", Access::Hide) == Access::Write);
  CHECK(p.access("data/in/f", Access::Hide) == Access::Read);

  // Depth beats specificity and restrictiveness: a short, permissive
  // pattern on the path itself beats a long literal pattern on its parent.
  Policy q = policy({{"projects/alpha/reports", Access::Read}, {"**/*.tmp", Access::Write}});
  CHECK(q.access("projects/alpha/reports/x.tmp", Access::Hide) == Access::Hide);  // see below
  CHECK(q.access("projects/alpha/reports/x.tmp", Access::Read) == Access::Write);
  CHECK(q.access("projects/alpha/reports/x.csv", Access::Write) == Access::Read);

  // And the deeper rule may be more permissive than the ancestor's.
  Policy r = policy({{"src", Access::Read}, {"src/gen/**", Access::Write}});
  CHECK(r.access("src/gen/a.c", Access::Hide) == Access::Write);
  CHECK(r.access("src/main.c", Access::Hide) == Access::Read);
}

TEST_CASE("precedence 2: at the same depth, more literal characters win") {
  Policy p = policy({{"data/*", Access::Read}, {"data/*.csv", Access::Write}});
  CHECK(p.access("data/a.csv", Access::Read) == Access::Write);
  CHECK(p.access("data/a.txt", Access::Write) == Access::Read);

  // Order in the file does not matter.
  Policy q = policy({{"data/*.csv", Access::Write}, {"data/*", Access::Read}});
  CHECK(q.access("data/a.csv", Access::Read) == Access::Write);
  CHECK(q.access("data/a.txt", Access::Write) == Access::Read);

  // The less specific rule can be the more restrictive one and still lose.
  Policy r = policy({{"keys/*", Access::Read}, {"keys/public.*", Access::Write}});
  CHECK(r.access("keys/public.pem", Access::Read) == Access::Write);
  CHECK(r.access("keys/private.pem", Access::Write) == Access::Read);
}

TEST_CASE("precedence 0: a hide rule overrides every other rule, however specific") {
  Policy p = policy({{"keys/*", Access::Hide}, {"keys/public.*", Access::Write}});
  CHECK(p.access("keys/public.pem", Access::Write) == Access::Hide);
  Policy q = policy({{"data/exports/*", Access::Write}, {"**/*.pem", Access::Hide}});
  CHECK(q.access("data/exports/k.pem", Access::Write) == Access::Hide);
  CHECK(q.access("data/exports/k.csv", Access::Read) == Access::Write);
  CHECK(q.exact_access("data/exports/k.pem") == Access::Hide);
}

TEST_CASE("a trailing '/**' ranks as a rule on the directory itself") {
  // "exports/**" would otherwise match exports/a/b.csv at its own depth and
  // outrank a deeper-looking rule; as "exports" it is an ancestor rule.
  Policy p = policy({{"exports/**", Access::Read}, {"**/*.csv", Access::Write}});
  CHECK(p.access("exports/a/b.csv", Access::Read) == Access::Write);
  CHECK(p.access("exports/a/b.txt", Access::Write) == Access::Read);
  CHECK(p.access("exports", Access::Write) == Access::Read);
}

TEST_CASE("precedence 3: a tie goes to the more restrictive access") {
  Policy p = policy({{"a/*", Access::Write}, {"a/?", Access::Read}});
  CHECK(p.access("a/x", Access::Write) == Access::Read);

  // "**/*.pem" and "keys/*" both have 4 literal characters.
  Policy q = policy({{"keys/*", Access::Write}, {"**/*.pem", Access::Hide}});
  CHECK(q.access("keys/k.pem", Access::Write) == Access::Hide);
  CHECK(q.access("keys/k.txt", Access::Write) == Access::Write);

  // Identical patterns: the restrictive one wins regardless of order.
  Policy r = policy({{"x", Access::Write}, {"x", Access::Read}, {"x", Access::Write}});
  CHECK(r.access("x", Access::Write) == Access::Read);
}

TEST_CASE("a hidden ancestor hides the subtree even if a deeper rule says write") {
  Policy p = policy({{"secrets", Access::Hide}, {"secrets/public/**", Access::Write}});
  CHECK(p.access("secrets", Access::Write) == Access::Hide);
  CHECK(p.access("secrets/public", Access::Write) == Access::Hide);
  CHECK(p.access("secrets/public/readme", Access::Write) == Access::Hide);
  // rule_access alone does not consider hidden ancestors.
  CHECK(p.rule_access("secrets/public/readme") == Access::Write);

  // Hidden by a name-based rule anywhere above.
  Policy q = policy({{"**/.git", Access::Hide}, {"repo/.git/hooks", Access::Write}});
  CHECK(q.access("repo/.git/hooks", Access::Write) == Access::Hide);
  CHECK(q.access("repo/.git/hooks/pre-commit", Access::Write) == Access::Hide);
  CHECK(q.access("repo/src", Access::Write) == Access::Write);

  // Hidden by the bind default, with no rule for the ancestor (this is also
  // why a bind default of hide hides "projects/alpha/reports/x.tmp" above).
  Policy r = policy({{"a/b", Access::Write}});
  CHECK(r.access("a/b", Access::Hide) == Access::Hide);
  CHECK(r.access("a/b/c", Access::Hide) == Access::Hide);
  CHECK(r.access("a/b/c", Access::Read) == Access::Write);
}

TEST_CASE("exact_access considers only rules matching the path itself") {
  Policy p = policy({{"data", Access::Read}, {"**/*.pem", Access::Hide}});
  CHECK(p.exact_access("data") == Access::Read);
  CHECK_FALSE(p.exact_access("data/x").has_value());
  CHECK(p.rule_access("data/x") == Access::Read);
  CHECK(p.exact_access("data/k.pem") == Access::Hide);
  CHECK_FALSE(p.exact_access("other").has_value());

  Policy q = policy({{"a/*", Access::Write}, {"a/*.x", Access::Read}});
  CHECK(q.exact_access("a/f.x") == Access::Read);  // more literals
  CHECK(q.exact_access("a/f.y") == Access::Write);
}

TEST_CASE("subtree_may_differ is false only for name-based '**/name' rules") {
  CHECK_FALSE(Policy().subtree_may_differ("a", "b"));
  CHECK_FALSE(policy({{"**/*.pem", Access::Hide}}).subtree_may_differ("a", "b"));
  CHECK_FALSE(policy({{"**/*.pem", Access::Hide}, {"**/node_modules", Access::Read}})
                  .subtree_may_differ("a", "b"));
  CHECK(policy({{"work/**", Access::Write}}).subtree_may_differ("work/a", "work/b"));
  CHECK(policy({{"a/b", Access::Read}}).subtree_may_differ("x", "y"));
  CHECK(policy({{"**/a/b", Access::Read}}).subtree_may_differ("x", "y"));
  CHECK(policy({{"**/*.pem", Access::Hide}, {"data", Access::Read}}).subtree_may_differ("x", "y"));
}

TEST_SUITE_END();
