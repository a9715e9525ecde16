// libFuzzer targets for the config parser, the policy compiler and globs.
//
// Built twice (CMake option SCOPEFS_FUZZ, Clang only):
//
//   scopefs_fuzz_config  the input is a TOML task config, fed to parse_config
//                        (file "fuzz.toml", base_dir a scratch directory made
//                        once, with real directories "a", "b", "c" and "a/sub", a
//                        regular file "f" and a symlink "l" -> "a", so that
//                        binds can succeed). ConfigError is the expected way to
//                        refuse an input; any other exception escapes and is
//                        reported by libFuzzer as a crash. A config that parses
//                        has its policy queried on paths derived from it.
//
//   scopefs_fuzz_glob    (SCOPEFS_FUZZ_GLOB) the input is lines: the first is a
//                        glob pattern, the others paths it is matched against.
//                        Every line is also compiled as a pattern; those that
//                        compile become the rules of a Policy (access by line
//                        number) queried on every line as a path.
//
// Both check invariants that follow from config/glob.hpp and
// config/policy.hpp and abort (with a message) when one fails.
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "config/config.hpp"
#include "config/glob.hpp"
#include "config/policy.hpp"

namespace {

using scopefs::config::Access;
using scopefs::config::Glob;
using scopefs::config::Policy;
using scopefs::config::Rule;
using scopefs::config::split_path;

[[noreturn]] void fail(const char* what, std::string_view a = {}, std::string_view b = {}) {
  std::fprintf(stderr, "fuzz invariant violated: %s [%.*s] [%.*s]\n", what,
               static_cast<int>(a.size()), a.data(), static_cast<int>(b.size()), b.data());
  std::abort();
}

// FUZZ_CHECK(condition, what to print...): one or two strings shown on failure.
#define FUZZ_CHECK(cond, ...)              \
  do {                                     \
    if (!(cond)) fail(#cond, __VA_ARGS__); \
  } while (0)

// "a//b/" -> "a/b": the normalised form of a view path.
std::string normalise(std::string_view p) {
  std::string out;
  for (auto seg : split_path(p)) {
    if (!out.empty()) out += '/';
    out += seg;
  }
  return out;
}

constexpr Access kAllAccess[] = {Access::Hide, Access::Read, Access::Stage, Access::Write};

// Queries the policy on each path (and each path's child "x") and checks what
// config/policy.hpp promises whatever the rules are.
void exercise_policy(const Policy& pol, std::vector<std::string> paths) {
  if (paths.size() > 32) paths.resize(32);
  bool any_hide_rule = false;
  for (const Rule& r : pol.rules()) any_hide_rule = any_hide_rule || r.access == Access::Hide;

  for (const std::string& raw : paths) {
    const std::string p = normalise(raw);
    const bool hidden = pol.hidden_by_rule(raw);
    FUZZ_CHECK(hidden == pol.hidden_by_rule(p), raw, p);
    FUZZ_CHECK(!hidden || any_hide_rule, raw);

    const auto exact = pol.exact_access(raw);
    FUZZ_CHECK(exact == pol.exact_access(split_path(raw)), raw);
    FUZZ_CHECK(!exact || !pol.rules().empty(), raw);
    const auto rule = pol.rule_access(raw);
    // The path itself is the deepest candidate: an exact decision is the rule
    // decision (the root, no segment at all, is never decided by a rule).
    FUZZ_CHECK(split_path(raw).empty() || !exact || rule == exact, raw);
    FUZZ_CHECK(!rule || *rule != Access::Hide || any_hide_rule, raw);

    for (Access dflt : kAllAccess) {
      const Access a = pol.access(p, dflt);
      FUZZ_CHECK(a == pol.access(p, dflt), p);  // deterministic
      // 0. Hide overrides.
      FUZZ_CHECK(!hidden || a == Access::Hide, p);
      // Nothing but a hide rule or a hidden default hides.
      FUZZ_CHECK(a != Access::Hide || any_hide_rule || dflt == Access::Hide, p);
      // 4. No rule at all: the bind default.
      if (pol.rules().empty()) FUZZ_CHECK(a == dflt, p);
      // Below a hidden directory everything is hidden.
      if (a == Access::Hide) {
        const std::string child = p.empty() ? std::string("x") : p + "/x";
        FUZZ_CHECK(p.empty() || pol.access(child, dflt) == Access::Hide, p, child);
      }
    }
  }
  for (size_t i = 0; i + 1 < paths.size(); ++i) {
    const bool d = pol.subtree_may_differ(paths[i], paths[i + 1]);
    FUZZ_CHECK(d == pol.subtree_may_differ(paths[i + 1], paths[i]), paths[i], paths[i + 1]);
    FUZZ_CHECK(!d || !pol.rules().empty(), paths[i]);
  }
}

#if SCOPEFS_FUZZ_GLOB

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= text.size() && out.size() < 64) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

bool has_wildcards(std::string_view p) {
  return p.find_first_of("*?[\\") != std::string_view::npos;
}

// Compiles one pattern and checks what glob.hpp promises of the result.
std::optional<Glob> compile_checked(std::string_view pattern) {
  Glob g;
  std::string err;
  size_t pos = ~size_t{0};
  if (!Glob::compile(pattern, g, err, pos)) {
    FUZZ_CHECK(pos <= pattern.size(), pattern);
    FUZZ_CHECK(!err.empty(), pattern);
    return std::nullopt;
  }
  FUZZ_CHECK(g.pattern() == pattern, pattern, g.pattern());
  FUZZ_CHECK(g.literal_count() >= 0 && static_cast<size_t>(g.literal_count()) <= pattern.size(),
             pattern);
  FUZZ_CHECK(!pattern.empty() && pattern.front() != '/' && pattern.back() != '/', pattern);
  if (!has_wildcards(pattern)) {
    // A literal pattern matches exactly the path it spells.
    FUZZ_CHECK(g.matches(pattern), pattern);
    FUZZ_CHECK(!g.matches(std::string(pattern) + "/x"), pattern);
    FUZZ_CHECK(static_cast<size_t>(g.literal_count()) + split_path(pattern).size() - 1 ==
                   pattern.size(),
               pattern);
  }
  return g;
}

int fuzz_glob(std::string_view input) {
  auto lines = lines_of(input);
  auto first = compile_checked(lines[0]);
  std::vector<Rule> rules;
  std::vector<std::string> paths;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string_view path = lines[i];
    paths.emplace_back(path);
    if (first) {
      const bool m = first->matches(path);
      FUZZ_CHECK(m == first->matches(split_path(path)), lines[0], path);
    }
    auto g = i == 0 ? first : compile_checked(path);
    if (g) rules.push_back(Rule{*g, kAllAccess[i % 4], std::nullopt});
  }
  exercise_policy(Policy(std::move(rules)), std::move(paths));
  return 0;
}

#else  // the config target

// The scratch base directory, made once per process and removed at exit.
struct BaseDir {
  std::string path;
  BaseDir() {
    namespace fs = std::filesystem;
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/scopefs-fuzz-XXXXXX";
    if (!::mkdtemp(templ.data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    path = templ;
    fs::create_directories(path + "/a/sub");
    fs::create_directories(path + "/b");
    fs::create_directories(path + "/c");
    std::FILE* f = std::fopen((path + "/f").c_str(), "w");
    if (f) std::fclose(f);
    std::error_code ec;
    fs::create_directory_symlink("a", path + "/l", ec);
  }
  ~BaseDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  BaseDir(const BaseDir&) = delete;
  BaseDir& operator=(const BaseDir&) = delete;
};

const std::string& base_dir() {
  static BaseDir dir;
  return dir.path;
}

// A path a glob pattern matches (or nearly): wildcards replaced by letters.
std::string concretise(const std::string& pattern) {
  std::string out;
  for (auto seg : split_path(pattern)) {
    if (!out.empty()) out += '/';
    if (seg == "**") {
      out += "d";
      continue;
    }
    for (size_t i = 0; i < seg.size(); ++i) {
      char c = seg[i];
      if (c == '*') {
        out += "s";
      } else if (c == '?') {
        out += 'q';
      } else if (c == '\\' && i + 1 < seg.size()) {
        out += seg[++i];
      } else if (c == '[') {
        size_t j = seg.find(']', i + 2);
        char pick = i + 1 < seg.size() && seg[i + 1] != '!' && seg[i + 1] != '^' ? seg[i + 1] : 'z';
        out += pick;
        i = j == std::string_view::npos ? seg.size() : j;
      } else {
        out += c;
      }
    }
  }
  return out;
}

int fuzz_config(const std::string& text) {
  scopefs::config::TaskConfig cfg;
  try {
    cfg = scopefs::config::parse_config(text, "fuzz.toml", base_dir());
  } catch (const scopefs::config::ConfigError& e) {
    FUZZ_CHECK(!e.diagnostics().empty(), text);
    for (const auto& d : e.diagnostics()) {
      FUZZ_CHECK(d.file == "fuzz.toml", d.file);
      FUZZ_CHECK(!d.message.empty(), text);
    }
    return 0;  // the expected refusal
  }
  // Any other exception propagates: libFuzzer reports it (with its stack).

  FUZZ_CHECK(!cfg.binds.empty(), text);
  FUZZ_CHECK(!cfg.name.empty() && !cfg.mountpoint.empty() && !cfg.state_dir.empty(), text);
  std::vector<std::string> paths{""};
  for (const auto& b : cfg.binds) {
    FUZZ_CHECK(!b.source.empty() && b.source.front() == '/', b.source);
    // Every access level is valid for a bind, stage (held changes) included:
    // it is the default.
    FUZZ_CHECK(std::find(std::begin(kAllAccess), std::end(kAllAccess), b.access) !=
                   std::end(kAllAccess),
               b.path);
    paths.push_back(b.path);
    paths.push_back(b.path.empty() ? std::string("x") : b.path + "/x");
  }
  for (const Rule& r : cfg.policy.rules()) {
    FUZZ_CHECK(std::find(std::begin(kAllAccess), std::end(kAllAccess), r.access) !=
                   std::end(kAllAccess),
               r.glob.pattern());
    std::string c = concretise(r.glob.pattern());
    paths.push_back(c);
    paths.push_back(c + "/k.pem");
    auto segs = split_path(c);
    if (segs.size() > 1) paths.push_back(std::string(c, 0, c.rfind('/')));
  }
  // And a few words of the input itself.
  size_t i = 0;
  for (int n = 0; n < 6 && i < text.size(); ++n) {
    size_t start = text.find_first_not_of(" \t\r\n\"'=[]", i);
    if (start == std::string::npos) break;
    size_t end = text.find_first_of(" \t\r\n\"'=[]", start);
    if (end == std::string::npos) end = text.size();
    paths.push_back(text.substr(start, std::min<size_t>(end - start, 128)));
    i = end;
  }
  exercise_policy(cfg.policy, std::move(paths));
  return 0;
}

#endif

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
#if SCOPEFS_FUZZ_GLOB
  return fuzz_glob(input);
#else
  return fuzz_config(input);
#endif
}
