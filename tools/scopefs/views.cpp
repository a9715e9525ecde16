#include "tools/scopefs/views.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace scopefs::cli {
namespace {

namespace stdfs = std::filesystem;

// The state directory as one file name: [A-Za-z0-9._-] kept, the rest %XX.
std::string entry_name(const std::string& state_dir) {
  std::string out;
  for (unsigned char c : state_dir) {
    if (std::isalnum(c) || c == '.' || c == '_' || c == '-') {
      out += static_cast<char>(c);
    } else {
      char b[4];
      std::snprintf(b, sizeof b, "%%%02X", c);
      out += b;
    }
  }
  return out + ".json";
}

// /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t k = 1; k <= 3; ++k) {
        char c = s[i + k];
        if (c < '0' || c > '7') ok = false;
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out += static_cast<char>(v);
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

}  // namespace

void register_view(const RegisteredView& v) {
  // The daemon runs with umask 0: directories get their mode explicitly
  // (root's, readable by all; a world-writable /run/scopefs would let anyone
  // plant symlinks where views are mounted).
  ::mkdir("/run/scopefs", 0755);
  ::mkdir(kViewsDir, 0755);
  std::error_code ec;
  std::string path = std::string(kViewsDir) + "/" + entry_name(v.state_dir);
  std::string tmp = path + ".tmp";
  nlohmann::json j = {{"task", v.task},
                      {"config", v.config},
                      {"state_dir", v.state_dir},
                      {"mountpoint", v.mountpoint},
                      {"pid", v.pid},
                      {"run", v.run}};
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << j.dump() << "\n";
    if (!f) {
      spdlog::warn("task {}: cannot register the view in {} (scopefs status will not list it)",
                   v.task, kViewsDir);
      return;
    }
  }
  stdfs::permissions(tmp,
                     stdfs::perms::owner_read | stdfs::perms::owner_write |
                         stdfs::perms::group_read | stdfs::perms::others_read,
                     ec);
  stdfs::rename(tmp, path, ec);
  if (ec) spdlog::warn("task {}: cannot register the view: {}", v.task, ec.message());
}

void unregister_view(const std::string& state_dir) {
  std::error_code ec;
  stdfs::remove(std::string(kViewsDir) + "/" + entry_name(state_dir), ec);
}

std::vector<RegisteredView> registered_views() {
  std::vector<RegisteredView> out;
  std::error_code ec;
  for (auto it = stdfs::directory_iterator(kViewsDir, ec); !ec && it != stdfs::directory_iterator();
       it.increment(ec)) {
    if (it->path().extension() != ".json") continue;
    std::ifstream f(it->path());
    nlohmann::json j = nlohmann::json::parse(f, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;
    RegisteredView v;
    v.task = j.value("task", "");
    v.config = j.value("config", "");
    v.state_dir = j.value("state_dir", "");
    v.mountpoint = j.value("mountpoint", "");
    v.pid = j.value("pid", 0);
    v.run = j.value("run", "");
    // A daemon killed without unmounting left its entry: skip it (and
    // remove it, where we may).
    std::ifstream comm("/proc/" + std::to_string(v.pid) + "/comm");
    std::string name;
    if (v.pid <= 0 || !(comm >> name) || name != "scopefs") {
      stdfs::remove(it->path(), ec);
      ec.clear();
      continue;
    }
    out.push_back(std::move(v));
  }
  return out;
}

std::vector<MountEntry> scopefs_mounts() {
  std::vector<MountEntry> out;
  std::ifstream f("/proc/self/mountinfo");
  std::string line;
  while (std::getline(f, line)) {
    // id parent maj:min root mountpoint options [optional...] - fstype source superoptions
    std::istringstream in(line);
    std::vector<std::string> fields;
    for (std::string w; in >> w;) fields.push_back(w);
    size_t dash = 0;
    while (dash < fields.size() && fields[dash] != "-") ++dash;
    if (fields.size() < 5 || dash + 2 >= fields.size()) continue;
    if (fields[dash + 1] != "fuse.scopefs") continue;
    out.push_back({unescape(fields[4]), unescape(fields[dash + 2])});
  }
  return out;
}

}  // namespace scopefs::cli
