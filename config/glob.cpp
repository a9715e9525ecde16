#include "config/glob.hpp"

#include <fnmatch.h>

namespace scopefs::config {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    if (slash > start) out.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

bool Glob::compile(std::string_view pattern, Glob& out, std::string& error, size_t& error_pos) {
  out = Glob{};
  out.pattern_ = std::string(pattern);
  if (pattern.empty()) {
    error = "empty pattern";
    error_pos = 0;
    return false;
  }
  if (pattern.front() == '/') {
    error = "patterns are relative to the view's root: drop the leading '/'";
    error_pos = 0;
    return false;
  }
  size_t seg_start = 0;
  for (;;) {
    size_t slash = pattern.find('/', seg_start);
    size_t end = slash == std::string_view::npos ? pattern.size() : slash;
    std::string_view seg = pattern.substr(seg_start, end - seg_start);
    if (seg.empty()) {
      error =
          slash == std::string_view::npos ? "pattern ends with '/'" : "empty path segment ('//')";
      error_pos = slash == std::string_view::npos ? seg_start - 1 : seg_start;
      return false;
    }
    if (seg == "." || seg == "..") {
      error = "'.' and '..' segments are not allowed in a pattern";
      error_pos = seg_start;
      return false;
    }
    if (seg != "**") {
      for (size_t i = 0; i < seg.size(); ++i) {
        char c = seg[i];
        if (c == '\\') {
          if (i + 1 == seg.size()) {
            error = "'\\' at the end of a segment escapes nothing";
            error_pos = seg_start + i;
            return false;
          }
          ++i;
          ++out.literal_count_;
        } else if (c == '*') {
          if (i + 1 < seg.size() && seg[i + 1] == '*') {
            error = "'**' must be a whole path segment (like 'a/**/b')";
            error_pos = seg_start + i;
            return false;
          }
        } else if (c == '[') {
          size_t j = i + 1;
          if (j < seg.size() && (seg[j] == '!' || seg[j] == '^')) ++j;
          if (j < seg.size() && seg[j] == ']') ++j;
          while (j < seg.size() && seg[j] != ']') ++j;
          if (j >= seg.size()) {
            error = "unclosed '[' character class";
            error_pos = seg_start + i;
            return false;
          }
          i = j;
        } else if (c != '?') {
          ++out.literal_count_;
        }
      }
    }
    out.segments_.emplace_back(seg);
    if (slash == std::string_view::npos) break;
    seg_start = slash + 1;
  }
  return true;
}

bool Glob::matches(std::string_view path) const { return matches(split_path(path)); }

bool Glob::matches(const std::vector<std::string_view>& segments) const {
  return match_from(0, segments, 0);
}

bool Glob::match_from(size_t pi, const std::vector<std::string_view>& segs, size_t si) const {
  while (pi < segments_.size()) {
    const std::string& p = segments_[pi];
    if (p == "**") {
      // Collapse consecutive '**' and try every split point.
      while (pi + 1 < segments_.size() && segments_[pi + 1] == "**") ++pi;
      if (pi + 1 == segments_.size()) return true;
      for (size_t k = si; k <= segs.size(); ++k)
        if (match_from(pi + 1, segs, k)) return true;
      return false;
    }
    if (si >= segs.size()) return false;
    std::string s(segs[si]);
    if (::fnmatch(p.c_str(), s.c_str(), 0) != 0) return false;
    ++pi;
    ++si;
  }
  return si == segs.size();
}

}  // namespace scopefs::config
