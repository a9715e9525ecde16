#include "config/policy.hpp"

namespace scopefs::config {

std::string_view access_name(Access a) {
  switch (a) {
    case Access::Hide: return "hide";
    case Access::Read: return "read";
    case Access::Stage: return "stage";
    case Access::Write: return "write";
  }
  return "?";
}

std::optional<Access> parse_access(std::string_view s) {
  if (s == "hide") return Access::Hide;
  if (s == "read") return Access::Read;
  if (s == "stage") return Access::Stage;
  if (s == "write") return Access::Write;
  return std::nullopt;
}

Policy::Policy(std::vector<Rule> rules) : rules_(std::move(rules)) {
  for (Rule& r : rules_) {
    has_hide_ = has_hide_ || r.access == Access::Hide;
    // "dir/**" covers dir and everything below it, which is what "dir" does
    // as an ancestor rule: it ranks as a rule on dir, not as a match of each
    // file below (so "exports/**" never outranks "**/*.pem" on exports/k.pem).
    const std::string& p = r.glob.pattern();
    std::string base = p;
    while (base.size() > 3 && base.compare(base.size() - 3, 3, "/**") == 0)
      base.resize(base.size() - 3);
    if (base != p) {
      std::string err;
      size_t pos = 0;
      r.base.emplace();
      if (!Glob::compile(base, *r.base, err, pos)) r.base.reset();
    }
  }
}

bool Policy::hidden_by_rule(std::string_view view_path) const {
  if (!has_hide_) return false;
  auto segs = split_path(view_path);
  for (size_t depth = segs.size(); depth > 0; --depth) {
    segs.resize(depth);
    for (const Rule& r : rules_)
      if (r.access == Access::Hide && r.glob.matches(segs)) return true;
  }
  return false;
}

std::optional<Access> Policy::exact_access(const std::vector<std::string_view>& segs) const {
  const Rule* best = nullptr;
  for (const Rule& r : rules_) {
    if (!(r.base ? r.base->matches(segs) : r.glob.matches(segs))) continue;
    if (r.access == Access::Hide) return Access::Hide;  // deny overrides
    if (!best || r.glob.literal_count() > best->glob.literal_count() ||
        (r.glob.literal_count() == best->glob.literal_count() && r.access < best->access))
      best = &r;
  }
  if (!best) return std::nullopt;
  return best->access;
}

std::optional<Access> Policy::exact_access(std::string_view view_path) const {
  if (rules_.empty()) return std::nullopt;
  return exact_access(split_path(view_path));
}

std::optional<Access> Policy::rule_access(std::string_view view_path) const {
  if (rules_.empty()) return std::nullopt;
  auto segs = split_path(view_path);
  // Walk from the path itself up to its first segment: the first depth at
  // which any rule matches decides.
  for (size_t depth = segs.size(); depth > 0; --depth) {
    segs.resize(depth);
    if (auto a = exact_access(segs)) return a;
  }
  return std::nullopt;
}

Access Policy::access(std::string_view view_path, Access bind_default) const {
  // Any hide rule applying to the path or an ancestor hides it (deny overrides).
  if (hidden_by_rule(view_path)) return Access::Hide;
  // Hidden ancestors hide the subtree.
  size_t pos = 0;
  for (;;) {
    size_t slash = view_path.find('/', pos);
    if (slash == std::string_view::npos) break;
    auto anc = rule_access(view_path.substr(0, slash));
    if ((anc ? *anc : bind_default) == Access::Hide) return Access::Hide;
    pos = slash + 1;
  }
  auto r = rule_access(view_path);
  return r ? *r : bind_default;
}

bool Policy::subtree_may_differ(std::string_view from, std::string_view to) const {
  // A rule whose pattern is "**/" followed by segments without further '**'
  // or '/' judges a path by its last segment alone; such rules give a subtree
  // the same levels wherever it is moved. Anything else may differ.
  (void)from;
  (void)to;
  for (const Rule& r : rules_) {
    const std::string& p = r.glob.pattern();
    if (p.rfind("**/", 0) == 0 && p.find('/', 3) == std::string::npos) continue;
    return true;
  }
  return false;
}

}  // namespace scopefs::config
