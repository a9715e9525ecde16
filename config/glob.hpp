// Globs on view paths ("exports/2024/*.csv", "**/*.pem").
//
// A pattern is a '/'-separated list of segments, matched against the path
// inside the view (no leading '/'). In a segment, '*' matches any run of
// characters (dots included) and '?' one character, both never '/';
// '[abc]', '[a-z]' and '[!abc]' are classes; '\' escapes the next character.
// A segment that is exactly '**' matches zero or more whole segments.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace scopefs::config {

class Glob {
 public:
  // Compiles a pattern; on error returns false and sets error/error_pos
  // (0-based offset into the pattern).
  static bool compile(std::string_view pattern, Glob& out, std::string& error, size_t& error_pos);

  bool matches(std::string_view path) const;
  bool matches(const std::vector<std::string_view>& segments) const;

  const std::string& pattern() const { return pattern_; }
  // Number of literal (non-wildcard) characters: the tie-breaker of "most
  // specific" (docs/config.md).
  int literal_count() const { return literal_count_; }

 private:
  bool match_from(size_t pi, const std::vector<std::string_view>& segs, size_t si) const;

  std::string pattern_;
  std::vector<std::string> segments_;
  int literal_count_ = 0;
};

std::vector<std::string_view> split_path(std::string_view path);

}  // namespace scopefs::config
