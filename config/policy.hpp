// The access model: which level (hide/read/stage/write) a view path gets.
//
// Precedence (docs/config.md is the normative text):
//   0. Hide overrides: a path to which any `hide` rule applies (matching the
//      path or an ancestor) is hidden, whatever other rules say.
//   1. A rule applies to a path if its glob matches the path itself or one of
//      its ancestors ("dir/**" ranks as "dir"). The rule matching the deepest
//      of these wins (the path itself beats its parent, ...).
//   2. Among rules matching at the same depth, the one with more literal
//      characters wins.
//   3. Still tied: the more restrictive access wins (read > stage > write).
//   4. No rule applies: the default access of the bind holding the path.
// A path below a hidden directory is hidden whatever the rules say of it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/glob.hpp"

namespace scopefs::config {

// Ordered from most to least restrictive.
enum class Access : uint8_t { Hide = 0, Read = 1, Stage = 2, Write = 3 };

std::string_view access_name(Access a);
std::optional<Access> parse_access(std::string_view s);
inline Access most_restrictive(Access a, Access b) { return a < b ? a : b; }

struct Rule {
  Glob glob;
  Access access = Access::Hide;
  std::optional<Glob> base;  // "dir" for a pattern "dir/**" (set by Policy)
};

class Policy {
 public:
  Policy() = default;
  explicit Policy(std::vector<Rule> rules);

  // True if a hide rule applies to the path or one of its ancestors.
  bool hidden_by_rule(std::string_view view_path) const;

  // The decision of the rules matching exactly this path (no ancestors);
  // nullopt when none does.
  std::optional<Access> exact_access(std::string_view view_path) const;
  std::optional<Access> exact_access(const std::vector<std::string_view>& segs) const;

  // The rule decision for one path, not considering ancestors being hidden;
  // nullopt when no rule applies (the caller uses the bind default).
  std::optional<Access> rule_access(std::string_view view_path) const;

  // Full decision: rules, then `bind_default`, with hidden ancestors hiding
  // everything below them.
  Access access(std::string_view view_path, Access bind_default) const;

  // True when renaming a directory from one view path to another could change
  // the level of something below it (so the caller must check the subtree).
  bool subtree_may_differ(std::string_view from, std::string_view to) const;

  const std::vector<Rule>& rules() const { return rules_; }

 private:
  std::vector<Rule> rules_;
  bool has_hide_ = false;
};

}  // namespace scopefs::config
