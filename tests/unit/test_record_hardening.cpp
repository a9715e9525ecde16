// Regressions found by fuzzing journal record decoding (tests/fuzz/).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "journal/record.hpp"

using namespace scopefs::journal;

namespace {
std::string with_version(const nlohmann::json& j) {
  auto cbor = nlohmann::json::to_cbor(j);
  return std::string(1, static_cast<char>(kSchemaVersion)) + std::string(cbor.begin(), cbor.end());
}
nlohmann::json minimal() {
  return {{"seq", 1},           {"t", 2},
          {"task", "t"},        {"run", "r"},
          {"op", "create"},     {"path", "p"},
          {"flags", 0},         {"err", 0},
          {"state", "applied"}, {"caller", {{"pid", 1}, {"uid", 0}, {"gid", 0}, {"comm", "c"}}}};
}
}  // namespace

TEST_CASE("record decoding refuses numbers of the wrong kind or range") {
  REQUIRE(decode_record(with_version(minimal())).ok());
  for (const char* key : {"seq", "t", "flags", "err"}) {
    auto j = minimal();
    j[key] = 1e30;
    CHECK(decode_record(with_version(j)).error() == EBADMSG);
  }
  auto neg = minimal();
  neg["seq"] = -1;
  CHECK(decode_record(with_version(neg)).error() == EBADMSG);
  auto big = minimal();
  big["caller"]["uid"] = 1ULL << 40;
  CHECK(decode_record(with_version(big)).error() == EBADMSG);
  auto str = minimal();
  str["seq"] = "1";
  CHECK(decode_record(with_version(str)).error() == EBADMSG);
}

TEST_CASE("record decoding refuses deep nesting instead of exhausting the stack") {
  std::string v(1, static_cast<char>(kSchemaVersion));
  v += std::string(200000, '\x81');  // 200,000 nested one-element arrays
  v += '\0';
  CHECK(decode_record(v).error() == EBADMSG);
}

TEST_CASE("record JSON survives a non-UTF-8 path") {
  Record r;
  r.path = "bad\xff name";
  std::string j = record_json(r);
  CHECK(j.find("bad") != std::string::npos);
}

TEST_CASE("a very long task name is checked without recursion") {
  std::string name(200000, 'a');
  std::string text = "[task]\nname = \"" + name + "\"\nmountpoint = \"/m\"\nstate_dir = \"/s\"\n";
  try {
    scopefs::config::parse_config(text, "t.toml", "/");
  } catch (const scopefs::config::ConfigError& e) {
    // Fails for the missing bind, not for the name.
    for (const auto& d : e.diagnostics()) CHECK(d.message.find("task name") == std::string::npos);
  }
}
