// Helpers shared by the unit tests: a private temp directory that is removed
// at the end of the test, and small readers of the real tree.
#pragma once

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

namespace scopefs::test {

// A directory from mkdtemp, canonical (so it compares equal to what the
// config loader resolves), removed recursively on destruction.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/scopefs-unit-XXXXXX";
    char* p = ::mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path_ = std::filesystem::canonical(p).string();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string at(const std::string& rel) const { return path_ + "/" + rel; }

  // Creates a directory (and its parents); returns its absolute path.
  std::string mkdir(const std::string& rel) const {
    std::filesystem::create_directories(at(rel));
    return at(rel);
  }
  // Creates a regular file with `content` (parents included).
  std::string file(const std::string& rel, const std::string& content = "",
                   mode_t mode = 0644) const {
    std::filesystem::path p(at(rel));
    std::filesystem::create_directories(p.parent_path());
    {
      std::ofstream out(p, std::ios::binary | std::ios::trunc);
      out << content;
    }
    REQUIRE(::chmod(p.c_str(), mode) == 0);
    return p.string();
  }
  // Creates a symlink at `rel` pointing at `target` (verbatim).
  std::string symlink(const std::string& target, const std::string& rel) const {
    REQUIRE(::symlink(target.c_str(), at(rel).c_str()) == 0);
    return at(rel);
  }

 private:
  std::string path_;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline bool exists_nofollow(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

inline mode_t mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st.st_mode;
}

// Joins lines with '\n' (line N of the result is lines[N-1]).
inline std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

inline std::vector<std::string> cat(std::initializer_list<std::vector<std::string>> parts) {
  std::vector<std::string> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

inline std::string tstr(const std::string& s) { return "\"" + s + "\""; }

}  // namespace scopefs::test
