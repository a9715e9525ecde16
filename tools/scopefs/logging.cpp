#include "tools/scopefs/logging.hpp"

#include <sys/stat.h>

#include <spdlog/cfg/env.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

namespace scopefs::cli {
namespace {

bool journald = false;

// "%*": the line's syslog priority (sd-daemon.h's SD_ERR etc.), for journald.
class PriorityFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    char p = '6';
    switch (msg.level) {
      case spdlog::level::trace:
      case spdlog::level::debug: p = '7'; break;
      case spdlog::level::info: p = '6'; break;
      case spdlog::level::warn: p = '4'; break;
      case spdlog::level::err: p = '3'; break;
      case spdlog::level::critical: p = '2'; break;
      default: break;
    }
    dest.push_back(p);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<PriorityFlag>();
  }
};

// JOURNAL_STREAM=DEV:INO names the stream systemd connected; it is ours only
// if stderr is still that stream (a child with redirected stderr inherits the
// variable, not the stream).
bool stderr_is_journal_stream() {
  const char* v = std::getenv("JOURNAL_STREAM");
  if (!v || !*v) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(v, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (::fstat(2, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

}  // namespace

bool logging_to_journald() { return journald; }

bool set_log_level(const std::string& name) {
  auto lvl = spdlog::level::from_str(name);
  // from_str answers "off" for anything it does not know.
  if (lvl == spdlog::level::off && name != "off") return false;
  spdlog::set_level(lvl);
  return true;
}

void setup_logging() {
  journald = stderr_is_journal_stream();
  auto logger = journald ? spdlog::stderr_logger_mt("scopefs") : spdlog::stderr_color_mt("scopefs");
  auto fmt = std::make_unique<spdlog::pattern_formatter>();
  if (journald) fmt->add_flag<PriorityFlag>('*').set_pattern("<%*>%v");
  else fmt->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  logger->set_formatter(std::move(fmt));
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::info);
  spdlog::cfg::load_env_levels();  // SPDLOG_LEVEL=debug|info|warn|error
  if (const char* v = std::getenv("SCOPEFS_LOG_LEVEL"); v && *v && !set_log_level(v))
    spdlog::warn(
        "SCOPEFS_LOG_LEVEL={}: not a level (trace, debug, info, warn, error, critical, off)", v);
}

}  // namespace scopefs::cli
