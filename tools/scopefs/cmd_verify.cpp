// scopefs verify CONFIG|STATE_DIR|BUNDLE [--pubkey KEY] [--json]
// Walks a task's whole journal (read-only; beside a running daemon too) and
// reports every record that was edited, deleted, inserted or reordered, the
// first one first; or checks an export bundle offline. Exit 0 only when clean.
#include <sys/stat.h>

#include <cstring>
#include <iostream>

#include "journal/chain.hpp"
#include "journal/export.hpp"
#include "journal/kv.hpp"
#include "journal/state_dir.hpp"
#include "tools/scopefs/commands.hpp"

namespace scopefs::cli {
namespace {

struct VerifyArgs {
  std::string target;
  std::string pubkey;
  bool json = false;
};

std::optional<journal::PublicKey> pinned_key(const VerifyArgs& a) {
  if (a.pubkey.empty()) return std::nullopt;
  auto pk = journal::parse_public_key_arg(a.pubkey);
  if (!pk) {
    std::cerr << "scopefs verify: --pubkey '" << a.pubkey
              << "': expected 64 hex digits or a file holding them (scopefs key prints it)\n";
    throw Exit{kExitUsage};
  }
  return pk;
}

void print_report(const VerifyArgs& a, const journal::VerifyReport& rep, const std::string& what) {
  if (a.json) {
    nlohmann::json j = {{"ok", rep.ok()},
                        {"target", what},
                        {"records", rep.records},
                        {"events", rep.events},
                        {"checkpoints", rep.checkpoints},
                        {"head_event", rep.head_eseq},
                        {"anchored_event", rep.anchored_eseq},
                        {"key_fingerprint", rep.key_fingerprint},
                        {"notes", rep.notes}};
    nlohmann::json probs = nlohmann::json::array();
    for (const auto& p : rep.problems)
      probs.push_back({{"seq", p.rseq}, {"event", p.eseq}, {"problem", p.what}});
    j["problems"] = probs;
    if (!rep.problems.empty()) j["first_bad_seq"] = rep.problems.front().rseq;
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return;
  }
  for (const auto& n : rep.notes) std::cout << "note: " << n << "\n";
  if (rep.ok()) {
    std::cout << what << ": OK — " << rep.records << " records, " << rep.events << " chain events, "
              << rep.checkpoints << " checkpoints; signed up to event " << rep.anchored_eseq
              << " of " << rep.head_eseq;
    if (!rep.key_fingerprint.empty()) std::cout << " (key " << rep.key_fingerprint << ")";
    std::cout << "\n";
    return;
  }
  std::cout << what << ": TAMPERED — " << rep.problems.size() << " problem(s)\n";
  const auto& first = rep.problems.front();
  if (first.rseq) std::cout << "first bad record: seq " << first.rseq << "\n";
  for (const auto& p : rep.problems) std::cout << "  " << p.what << "\n";
}

void run_verify(const VerifyArgs& a) {
  auto pk = pinned_key(a);
  struct stat st {};
  if (::stat(a.target.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
      journal::looks_like_bundle(a.target)) {
    journal::VerifyReport rep;
    try {
      rep = journal::verify_bundle(a.target, pk);
    } catch (const std::exception& e) {
      std::cerr << "scopefs verify: " << e.what() << "\n";
      throw Exit{kExitFailure};
    }
    print_report(a, rep, a.target);
    if (!rep.ok()) throw Exit{kExitFailure};
    return;
  }
  std::string state = state_dir_of(a.target);
  journal::VerifyOptions vo;
  vo.key = pk ? pk : journal::read_public_key(state);
  vo.head_file = journal::read_head_file(state);
  vo.head_file_expected = true;
  // With the state lock free, no daemon writes: every event must be signed.
  journal::StateDir sd(state);
  vo.quiescent = sd.try_lock();
  std::string err;
  auto kv = journal::open_rocksdb(state + "/journal", true, err);
  if (!kv) {
    std::cerr << "scopefs verify: cannot open the journal in " << state << "/journal: " << err
              << "\n";
    throw Exit{kExitFailure};
  }
  auto rep = journal::verify_journal(*kv, vo);
  if (pk && journal::read_public_key(state) && *journal::read_public_key(state) != *pk)
    rep.notes.push_back("the state's key (" +
                        journal::fingerprint(*journal::read_public_key(state)) +
                        ") is not the pinned one");
  print_report(a, rep, state);
  if (!rep.ok()) throw Exit{kExitFailure};
}

struct KeyArgs {
  std::string task;
  bool json = false;
};

void run_key(const KeyArgs& a) {
  std::string state = state_dir_of(a.task);
  auto pk = journal::read_public_key(state);
  if (!pk) {
    try {
      pk = journal::SigningKey::load_or_create(state).public_key();
    } catch (const std::exception& e) {
      std::cerr << "scopefs key: " << e.what() << "\n";
      throw Exit{kExitFailure};
    }
  }
  if (a.json)
    std::cout << nlohmann::json{{"public_key", journal::to_hex(*pk)},
                                {"fingerprint", journal::fingerprint(*pk)},
                                {"file", state + "/keys/ed25519.pub"}}
                     .dump()
              << "\n";
  else std::cout << journal::to_hex(*pk) << "\n";
}

}  // namespace

void setup_verify(CLI::App& app) {
  auto a = std::make_shared<VerifyArgs>();
  auto* sub = app.add_subcommand(
      "verify",
      "Check a task's journal (hash chain, signed checkpoints) or an export bundle offline");
  sub->add_option("target", a->target, "Config file, task name, state directory, or export bundle")
      ->required();
  sub->add_option("--pubkey", a->pubkey,
                  "The key checkpoints and bundles must be signed with (hex, or a file)");
  sub->add_flag("--json", a->json, "One JSON object");
  sub->callback([a] { run_verify(*a); });
}

void setup_key(CLI::App& app) {
  auto a = std::make_shared<KeyArgs>();
  auto* sub =
      app.add_subcommand("key", "Print the task's Ed25519 public key (created on first use)");
  sub->add_option("task", a->task, "Config file, task name, or state directory")->required();
  sub->add_flag("--json", a->json, "Key, fingerprint and file as JSON");
  sub->callback([a] { run_key(*a); });
}

}  // namespace scopefs::cli
