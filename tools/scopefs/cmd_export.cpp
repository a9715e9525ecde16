// scopefs export CONFIG|STATE_DIR --out FILE [--since T] [--until T] [--run RUN] [--json]
// Writes a signed bundle of the journal's chain segment for an auditor
// (journal/export.hpp); works beside a running daemon (read-only).
#include <iostream>

#include "journal/export.hpp"
#include "journal/record.hpp"
#include "tools/scopefs/commands.hpp"

namespace scopefs::cli {
namespace {

struct ExportArgs {
  std::string task;
  std::string out;
  std::string since, until, run;
  bool json = false;
};

void run_export(const ExportArgs& a) {
  std::string state = state_dir_of(a.task);
  journal::ExportOptions o;
  o.since_ns = parse_time_arg(a.since);
  o.until_ns = a.until.empty() ? INT64_MAX : parse_time_arg(a.until);
  o.run = a.run;
  o.out = a.out;
  std::string err;
  auto kv = journal::open_rocksdb(state + "/journal", true, err);
  if (!kv) {
    std::cerr << "scopefs export: cannot open the journal in " << state << "/journal: " << err
              << "\n";
    throw Exit{kExitFailure};
  }
  try {
    auto key = journal::SigningKey::load_or_create(state);
    // The task's name, as its records carry it.
    std::string task;
    if (auto last = kv->last("r/"); last && *last)
      if (auto rec = journal::decode_record((*last)->second)) task = rec->task;
    auto s = journal::export_bundle(*kv, key, task, o);
    if (a.json)
      std::cout << nlohmann::json{{"bundle", a.out},
                                  {"events", s.events},
                                  {"records", s.records},
                                  {"first_event", s.first_event},
                                  {"last_event", s.last_event},
                                  {"checkpoints", s.checkpoints},
                                  {"fingerprint", s.fingerprint}}
                       .dump()
                << "\n";
    else
      std::cout << "wrote " << a.out << ": events " << s.first_event << ".." << s.last_event << " ("
                << s.records << " records with content, " << s.checkpoints
                << " signed checkpoints), key " << s.fingerprint << "\n";
  } catch (const std::exception& e) {
    std::cerr << "scopefs export: " << e.what() << "\n";
    throw Exit{kExitFailure};
  }
}

}  // namespace

void setup_export(CLI::App& app) {
  auto a = std::make_shared<ExportArgs>();
  auto* sub =
      app.add_subcommand("export",
                         "Write a signed audit bundle (verify it with `scopefs verify BUNDLE`)");
  sub->add_option("task", a->task, "Config file, task name, or state directory")->required();
  sub->add_option("--out", a->out, "The bundle file to write")->required();
  sub->add_option("--since", a->since,
                  "From this time (ISO 8601, epoch seconds, or 30m/2h/7d ago)");
  sub->add_option("--until", a->until, "Up to this time");
  sub->add_option("--run", a->run,
                  "Only this run's records carry their content (the chain stays whole)");
  sub->add_flag("--json", a->json, "Print the summary as JSON");
  sub->callback([a] { run_export(*a); });
}

}  // namespace scopefs::cli
