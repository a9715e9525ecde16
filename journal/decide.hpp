// Decisions on held changes: approve (apply to the real tree) and reject
// (drop from the overlay). docs/approvals.md has the model.
//
// A selection must be closed under dependencies: approving a change needs
// every earlier held change it builds on (same object, or a path equal to,
// above or below one of its paths); rejecting one needs every later change
// that builds on it. Otherwise nothing happens and the missing ids are
// reported (with `with_deps` they are added).
//
// Approve, per change, oldest first: the real object must still be what the
// change was made against (type, content hash, symlink target; absent for a
// create), else it is a conflict and neither side changes (nor any selected
// change that depends on it) unless `force`. Applying writes an intent
// record (op "approve", ref = the held change), changes the real tree —
// content through a temp file renamed over the target (in place when the
// target has other hard links), metadata from the held change's after state,
// the replaced content kept as a before-image — then records the outcome and
// the held change's new state in one transaction. Afterwards the overlay
// forgets what the real tree now shows.
//
// Reject, newest first: the overlay keys the change set go back to their old
// values, an upper copy's content or attributes are restored from the
// record's before state, and a "reject" record is written with the change's
// new state.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "fs/result.hpp"
#include "fs/stage.hpp"
#include "journal/journal.hpp"

namespace scopefs::journal {

struct Selection {
  std::vector<uint64_t> ids;
  std::vector<std::string> globs;  // view paths (either path of a change)
  bool all = false;
  bool empty() const { return ids.empty() && globs.empty() && !all; }
};

struct DecisionReport {
  std::vector<uint64_t> done;                               // approved / rejected
  std::vector<std::pair<uint64_t, std::string>> conflicts;  // not applied
  std::vector<std::pair<uint64_t, std::string>> failed;     // error while applying
  std::vector<uint64_t> missing;                            // dependencies not selected
  std::vector<uint64_t> unknown;                            // ids that are not held changes
  std::vector<std::string> notes;
  bool ok() const {
    return conflicts.empty() && failed.empty() && missing.empty() && unknown.empty();
  }
};

// What changed, for the view's caches (View::stage_changed).
struct Touched {
  std::vector<fs::ObjId> objs;
  std::vector<std::pair<fs::ObjId, std::string>> names;
};

class Decider {
 public:
  Decider(const config::TaskConfig& cfg, Journal& j, fs::StageLayer& stage)
      : cfg_(cfg), j_(j), stage_(stage) {}

  // An object the view holds open for writing keeps its upper copy.
  std::function<bool(const fs::ObjId&)> busy;

  Result<DecisionReport> approve(const Selection& sel, bool force, bool with_deps,
                                 const CallerInfo& who, Touched& touched);
  Result<DecisionReport> reject(const Selection& sel, bool with_deps, const CallerInfo& who,
                                Touched& touched);

 private:
  Result<std::vector<Record>> select(const Selection& sel, bool forward, bool with_deps,
                                     DecisionReport& rep);
  // Applies one held change to the real tree; returns the conflict text (empty: applied).
  Result<std::string> apply(const Record& h, bool force, const CallerInfo& who);
  Result<void> unstage(const Record& h, const CallerInfo& who);
  void normalise(const std::vector<Record>& approved, KvTxn& txn, Touched& touched);
  void sweep();
  // Drops the view times (fs/stage.hpp) of objects the overlay no longer
  // changes: once nothing held is left in a directory, the view shows the
  // real directory's times.
  void drop_unused_times(KvTxn& txn, Touched& touched);
  // True if an approval of `path` left content `h` there.
  bool approved_here(const std::string& path, const Hash128& h);

  const config::TaskConfig& cfg_;
  Journal& j_;
  fs::StageLayer& stage_;
};

// True if change `b` builds on change `a` (or `a` on `b`): shared overlay
// keys, or paths equal / one above the other.
bool related(const Record& a, const Record& b);

}  // namespace scopefs::journal
