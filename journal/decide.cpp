#include "journal/decide.hpp"
#include "journal/real_tree.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <set>

#include "config/glob.hpp"
#include "fs/sys/sys.hpp"

namespace scopefs::journal {
namespace {

std::vector<std::string> paths_of(const Record& r) {
  std::vector<std::string> p{r.path};
  if (r.op == "rename" || r.op == "link") p.push_back(r.path2);
  return p;
}

// The real object's state (content hash for files, target for symlinks).

// Empty if `real` is what `want` says the change was made against.

Result<bool> dir_empty(int dir, const std::string& name) {
  auto d = sys::open_at(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (!d) return Errno{d.error()};
  for (;;) {
    auto b = sys::read_dir(d->get());
    if (!b) return Errno{b.error()};
    if (b->empty()) return true;
    for (const auto& e : *b)
      if (e.name != "." && e.name != "..") return false;
  }
}

}  // namespace

bool related(const Record& a, const Record& b) {
  for (const auto& k : a.touch)
    if (std::find(b.touch.begin(), b.touch.end(), k) != b.touch.end()) return true;
  for (const auto& [k, v] : a.undo)
    for (const auto& [k2, v2] : b.undo)
      if (k == k2) return true;
  for (const auto& p : paths_of(a))
    for (const auto& q : paths_of(b))
      if (path_related(p, q)) return true;
  return false;
}

Result<std::vector<Record>> Decider::select(const Selection& sel, bool forward, bool with_deps,
                                            DecisionReport& rep) {
  auto held = j_.held();
  if (!held) return Errno{held.error()};
  std::vector<Record>& all = *held;
  std::vector<config::Glob> globs;
  for (const auto& g : sel.globs) {
    config::Glob gl;
    std::string err;
    size_t pos = 0;
    std::string pat = g;
    while (!pat.empty() && pat.front() == '/') pat.erase(0, 1);
    if (!config::Glob::compile(pat, gl, err, pos)) {
      rep.notes.push_back(std::string("bad glob ").append(g).append(": ").append(err));
      return Errno{EINVAL};
    }
    globs.push_back(std::move(gl));
  }
  std::vector<bool> chosen(all.size(), false);
  for (size_t i = 0; i < all.size(); ++i) {
    if (sel.all) chosen[i] = true;
    if (std::find(sel.ids.begin(), sel.ids.end(), all[i].seq) != sel.ids.end()) chosen[i] = true;
    for (const auto& g : globs)
      for (const auto& p : paths_of(all[i]))
        if (g.matches(p)) chosen[i] = true;
  }
  for (uint64_t id : sel.ids)
    if (std::none_of(all.begin(), all.end(), [&](const Record& r) { return r.seq == id; }))
      rep.unknown.push_back(id);
  // Closure: approve needs earlier related changes; reject needs later ones.
  std::vector<bool> need = chosen;
  bool grew = true;
  while (grew) {
    grew = false;
    for (size_t i = 0; i < all.size(); ++i) {
      if (!need[i]) continue;
      for (size_t k = 0; k < all.size(); ++k) {
        if (need[k]) continue;
        bool earlier = all[k].seq < all[i].seq;
        if (earlier == forward && related(all[i], all[k])) {
          need[k] = true;
          grew = true;
        }
      }
    }
  }
  std::vector<Record> out;
  for (size_t i = 0; i < all.size(); ++i) {
    if (need[i] && !chosen[i]) {
      if (with_deps) rep.notes.push_back("also " + std::to_string(all[i].seq) + " (a dependency)");
      else rep.missing.push_back(all[i].seq);
    }
    if (need[i]) out.push_back(all[i]);
  }
  if (!rep.missing.empty() || !rep.unknown.empty()) return std::vector<Record>{};
  std::sort(out.begin(), out.end(), [&](const Record& a, const Record& b) {
    return forward ? a.seq < b.seq : a.seq > b.seq;
  });
  return out;
}

bool Decider::approved_here(const std::string& path, const Hash128& h) {
  std::string prefix = "p/" + path;
  prefix.push_back('\0');
  bool found = false;
  (void)j_.kv().scan(prefix, "", [&](std::string_view k, std::string_view) {
    if (k.size() != prefix.size() + 8) return true;
    uint64_t seq = 0;
    for (size_t i = prefix.size(); i < k.size(); ++i)
      seq = (seq << 8) | static_cast<unsigned char>(k[i]);
    auto r = j_.get(seq);
    if (r && *r && (*r)->op == "approve" && (*r)->state == RecordState::Applied && (*r)->after &&
        (*r)->after->hash && *(*r)->after->hash == h)
      found = true;
    return !found;
  });
  return found;
}

Result<std::string> Decider::apply(const Record& h, bool force, const CallerInfo& who) {
  auto loc = locate(cfg_, h.path);
  if (!loc) return "cannot reach " + h.path + ": " + std::strerror(loc.error());
  int dir = loc->dir.get();
  const std::string& name = loc->name;
  struct stat rst {};
  auto real = real_state(dir, name, &rst);
  if (!real) return "cannot read " + h.path + ": " + std::strerror(real.error());

  // Conflicts: the real tree must be what the change was made against.
  std::string why;
  std::optional<RealLoc> loc2;
  std::optional<ObjectState> victim_state;
  const std::string& op = h.op;
  if (op == "create" || op == "mknod" || op == "mkdir" || op == "symlink") {
    if (real->exists) why = h.path + " exists in the real tree";
  } else if (op == "rmdir") {
    why = mismatch(*real, h.before);
    if (why.empty()) {
      auto e = dir_empty(dir, name);
      if (e && !*e) why = "the real directory is not empty";
    }
    if (!why.empty()) why = h.path + ": " + why;
  } else {
    // Content matters to content changes and deletes; a metadata change, a
    // rename or a link needs the same kind of object (a write session's
    // record is written when it ends, so its content may come later in the
    // journal than a chmod made while it was open).
    bool content_matters = op == "write" || op == "truncate" || op == "fallocate" ||
                           op == "copy_file_range" || op == "unlink";
    std::optional<ObjectState> want = h.before;
    if (!content_matters && want) {
      want->hash.reset();
      want->target = real->target;
    }
    why = mismatch(*real, want);
    // Write sessions of several handles end in any order: content that an
    // earlier approval of this path put there is not someone else's change.
    if (!why.empty() && content_matters && real->hash && approved_here(h.path, *real->hash))
      why.clear();
    if (!why.empty()) why = h.path + ": " + why;
  }
  if (why.empty() && (op == "rename" || op == "link")) {
    auto l2 = locate(cfg_, h.path2);
    if (!l2) return "cannot reach " + h.path2 + ": " + std::strerror(l2.error());
    auto r2 = real_state(l2->dir.get(), l2->name);
    if (!r2) return "cannot read " + h.path2 + ": " + std::strerror(r2.error());
    std::string w2 = op == "link" ? (r2->exists ? "it exists" : "") : mismatch(*r2, h.victim);
    if (op == "rename" && r2->exists) victim_state = *r2;
    if (!w2.empty()) why = h.path2 + ": " + w2;
    loc2 = std::move(l2).value();
  }
  if (!why.empty() && !force) return "conflict: " + why;

  // The decision's own record: intent first (the write-ahead protocol).
  Record a;
  a.op = "approve";
  a.path = h.path;
  a.path2 = h.path2;
  a.flags = h.flags;
  a.ref = h.seq;
  a.caller = who;
  a.before = *real;
  if (!why.empty()) a.note = "forced over a conflict: " + why;
  BlobStore* blobs = j_.blobs();
  auto keep_before = [&](int d, const std::string& n, const struct stat& st) -> Result<void> {
    // The real content about to be replaced or removed: a before-image.
    if (!S_ISREG(st.st_mode) || st.st_size == 0) return {};
    Result<Hash128> bh = Errno{EIO};
    if (st.st_nlink == 1 && blobs->same_fs(st.st_dev)) {
      bh = blobs->put_link(d, n.c_str());
    } else {
      auto fd = sys::open_at(d, n.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      if (!fd) return Errno{fd.error()};
      bh = blobs->put_copy(fd->get());
    }
    if (!bh) return Errno{bh.error()};
    return {};
  };
  if (auto w = j_.intent(a); !w) return Errno{w.error()};

  Result<void> r;
  const ObjectState after = h.after.value_or(ObjectState{});
  bool content = op == "create" || op == "write" || op == "truncate" || op == "fallocate" ||
                 op == "copy_file_range";
  if (content) {
    // The held content into a temp file beside the target, then renamed over it.
    std::string tmp = temp_name("approve", h.seq);
    auto out = sys::open_at(dir, tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (!out) {
      r = Errno{out.error()};
    } else {
      if (after.size > 0) {
        if (!after.hash) {
          r = Errno{ENODATA};
        } else {
          auto in = blobs->open_blob(*after.hash);
          r = in ? fs::copy_content(in->get(), out->get()) : Result<void>(Errno{in.error()});
        }
      }
      if (r && real->exists && S_ISREG(rst.st_mode)) {
        auto cur = sys::open_at(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (cur) r = fs::copy_xattrs(cur->get(), out->get());
      }
      out = Errno{EBADF};  // closes
      if (r) r = set_meta(dir, tmp, after, true);
      if (r && real->exists && rst.st_nlink > 1) {
        // Other hard links share the inode: rewrite it in place.
        if (auto k = keep_before(dir, name, rst); !k) r = k;
        auto src = sys::open_at(dir, tmp.c_str(), O_RDONLY | O_CLOEXEC);
        auto dst = sys::open_at(dir, name.c_str(), O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
        if (r && src && dst) r = fs::copy_content(src->get(), dst->get());
        else if (r) r = Errno{src ? dst.error() : src.error()};
        if (r) r = set_meta(dir, name, after, true);
        (void)sys::unlink_at(dir, tmp.c_str(), 0);
      } else if (r) {
        if (real->exists) {
          if (auto k = keep_before(dir, name, rst); !k) r = k;
        }
        if (r)
          r = sys::rename_at2(dir, tmp.c_str(), dir, name.c_str(),
                              real->exists ? 0 : RENAME_NOREPLACE);
        if (!r) (void)sys::unlink_at(dir, tmp.c_str(), 0);
      } else {
        (void)sys::unlink_at(dir, tmp.c_str(), 0);
      }
    }
  } else if (op == "mkdir") {
    r = sys::mkdir_at(dir, name.c_str(), 0700);
    if (r) r = set_meta(dir, name, after, true);
  } else if (op == "mknod") {
    r = sys::mknod_at(dir, name.c_str(), type_bits(after.type) | 0600,
                      static_cast<dev_t>(after.rdev));
    if (r) r = set_meta(dir, name, after, true);
  } else if (op == "symlink") {
    r = sys::symlink_at(h.path2.c_str(), dir, name.c_str());
    if (r) r = set_meta(dir, name, after, true);
  } else if (op == "unlink") {
    if (real->exists) r = keep_before(dir, name, rst);
    if (r) r = sys::unlink_at(dir, name.c_str(), 0);
  } else if (op == "rmdir") {
    r = sys::unlink_at(dir, name.c_str(), AT_REMOVEDIR);
  } else if (op == "rename") {
    struct stat vst {};
    if (loc2 && !(h.flags & RENAME_EXCHANGE)) {
      auto v = sys::stat_at(loc2->dir.get(), loc2->name.c_str(), AT_SYMLINK_NOFOLLOW);
      if (v) {
        vst = *v;
        r = keep_before(loc2->dir.get(), loc2->name, vst);
      }
    }
    if (r && loc2)
      r = sys::rename_at2(dir, name.c_str(), loc2->dir.get(), loc2->name.c_str(), h.flags);
    else if (r) r = Errno{EINVAL};
  } else if (op == "link") {
    if (loc2) r = sys::link_at(dir, name.c_str(), loc2->dir.get(), loc2->name.c_str(), 0);
    else r = Errno{EINVAL};
  } else if (op == "chmod") {
    if (::fchmodat(dir, name.c_str(), after.mode, 0) != 0) r = Errno{errno};
  } else if (op == "chown") {
    if (::fchownat(dir, name.c_str(), after.uid, after.gid, AT_SYMLINK_NOFOLLOW) != 0)
      r = Errno{errno};
    if (r && after.type != "symlink" && ::fchmodat(dir, name.c_str(), after.mode, 0) != 0)
      r = Errno{errno};
  } else if (op == "utimens") {
    struct timespec tv[2] = {ts_of(after.mtime_ns), ts_of(after.mtime_ns)};
    tv[0].tv_nsec = UTIME_OMIT;
    r = sys::utimens_at(dir, name.c_str(), tv, AT_SYMLINK_NOFOLLOW);
  } else if (op == "setxattr") {
    std::string v = h.xattr_value.value_or("");
    if (::lsetxattr((std::string("/proc/self/fd/") + std::to_string(dir) + "/" + name).c_str(),
                    h.path2.c_str(), v.data(), v.size(), 0) != 0)
      r = Errno{errno};
  } else if (op == "removexattr") {
    if (::lremovexattr((std::string("/proc/self/fd/") + std::to_string(dir) + "/" + name).c_str(),
                       h.path2.c_str()) != 0 &&
        errno != ENODATA)
      r = Errno{errno};
  } else {
    r = Errno{ENOTSUP};
  }

  // Outcome: the decision record, the held change's new state, one transaction.
  const std::string& where_path = op == "rename" || op == "link" ? h.path2 : h.path;
  (void)where_path;
  if (r) {
    a.state = RecordState::Applied;
    if (op == "rename" || op == "link") {
      auto st = real_state(loc2->dir.get(), loc2->name);
      if (st) a.after = *st;
    } else if (op == "unlink" || op == "rmdir") {
      a.after = ObjectState{};
    } else {
      auto st = real_state(dir, name);
      if (st) a.after = *st;
    }
    if (a.before && a.before->exists && a.before->type == "file" && a.before->hash &&
        blobs->contains(*a.before->hash) && (content || op == "unlink"))
      a.before->blob = true;
    if (victim_state && !(h.flags & RENAME_EXCHANGE)) {
      a.victim = victim_state;
      if (a.victim->type == "file" && a.victim->hash && blobs->contains(*a.victim->hash))
        a.victim->blob = true;
    }
  } else {
    a.state = RecordState::Failed;
    a.err = r.error();
  }
  Record held = h;
  KvTxn extra;
  if (r) {
    held.state = RecordState::Approved;
    held.ref = a.seq;
    extra.put(record_key(held.seq), encode_record(held));
    extra.del(held_key(held.seq));
  }
  if (auto w = j_.complete_with(a, extra); !w) return Errno{w.error()};
  if (!r) return std::string("failed: ") + h.path + ": " + std::strerror(r.error());
  return std::string();
}

Result<DecisionReport> Decider::approve(const Selection& sel, bool force, bool with_deps,
                                        const CallerInfo& who, Touched& touched) {
  DecisionReport rep;
  std::lock_guard lk(stage_.mu());
  auto chosen = select(sel, true, with_deps, rep);
  if (!chosen) return Errno{chosen.error()};
  std::vector<Record> approved;
  std::vector<Record> blocked;
  for (const Record& h : *chosen) {
    // A change that builds on one not applied waits with it.
    bool waits =
        std::any_of(blocked.begin(), blocked.end(), [&](const Record& b) { return related(b, h); });
    if (waits) {
      rep.conflicts.emplace_back(h.seq, "not applied: depends on a change that was not");
      blocked.push_back(h);
      continue;
    }
    auto r = apply(h, force, who);
    if (!r) {
      rep.failed.emplace_back(h.seq, std::strerror(r.error()));
      blocked.push_back(h);
      continue;
    }
    if (!r->empty()) {
      if (r->rfind("conflict", 0) == 0) rep.conflicts.emplace_back(h.seq, *r);
      else rep.failed.emplace_back(h.seq, *r);
      blocked.push_back(h);
      continue;
    }
    rep.done.push_back(h.seq);
    approved.push_back(h);
  }
  if (!approved.empty()) {
    KvTxn txn;
    normalise(approved, txn, touched);
    if (!txn.empty())
      if (auto w = j_.rewrite_keys(txn); !w) return Errno{w.error()};
    sweep();
  }
  return rep;
}

void Decider::normalise(const std::vector<Record>& approved, KvTxn& txn, Touched& touched) {
  // Keys the remaining held changes still use stay; the rest of what the
  // approved changes set is now in the real tree, and the overlay lets go.
  auto rest = j_.held();
  std::set<std::string> kept;
  if (rest)
    for (const Record& r : *rest) {
      for (const auto& [k, v] : r.undo) kept.insert(k);
      for (const auto& k : r.touch) kept.insert(k);
    }
  // Candidates: every key no remaining held change uses (what the approved
  // changes set, and copy-ups left by earlier approvals while files were open).
  std::set<std::string> cand;
  for (const auto& k : stage_.all_keys())
    if (!kept.count(k)) cand.insert(k);
  for (const Record& r : approved) {
    for (const auto& [k, v] : r.undo) {
      fs::ObjId id;
      std::string name;
      if (fs::StageLayer::parse_entry_key(k, id, name)) touched.names.emplace_back(id, name);
      else if (fs::StageLayer::parse_obj_key(k, id)) touched.objs.push_back(id);
    }
    for (const auto& k : r.touch) {
      fs::ObjId id;
      if (fs::StageLayer::parse_obj_key(k, id)) touched.objs.push_back(id);
    }
  }
  auto needed = [&](const fs::ObjId& t) {
    for (const auto& k : kept) {
      fs::ObjId id;
      std::string name;
      if (fs::StageLayer::parse_entry_key(k, id, name) && id == t) return true;
      if (fs::StageLayer::parse_obj_key(k, id) && id == t) return true;
      if (fs::StageLayer::parse_entry_key(k, id, name)) {
        auto v = stage_.value_of(k);
        auto e = v ? fs::decode_entry(*v) : std::nullopt;
        if (e && !e->whiteout && e->target == t) return true;
      }
    }
    return busy && busy(t);
  };
  bool changed = true;
  while (changed) {
    changed = false;
    for (auto it = cand.begin(); it != cand.end();) {
      fs::ObjId id;
      std::string name;
      bool keep = false;
      if (fs::StageLayer::parse_entry_key(*it, id, name)) {
        auto v = stage_.value_of(*it);
        auto e = v ? fs::decode_entry(*v) : std::nullopt;
        keep = (e && !e->whiteout && needed(e->target)) || (id.upper() && needed(id));
      } else if (fs::StageLayer::parse_obj_key(*it, id) ||
                 fs::StageLayer::parse_times_key(*it, id)) {
        keep = needed(id);
      }
      if (keep) {
        spdlog::debug("stage: approved, keeping an overlay key still needed");
        kept.insert(*it);
        it = cand.erase(it);
        changed = true;
      } else {
        ++it;
      }
    }
  }
  for (const auto& k : cand) {
    spdlog::debug("stage: approved, dropping overlay key of {} bytes", k.size());
    stage_.apply_raw(k, std::nullopt);
    txn.del(k);
  }
}

void Decider::sweep() { stage_.remove_orphans(); }

void Decider::drop_unused_times(KvTxn& txn, Touched& touched) {
  for (const auto& k : stage_.all_keys()) {
    fs::ObjId id;
    if (!fs::StageLayer::parse_times_key(k, id)) continue;
    if (stage_.has_entries(id) || stage_.obj(id) || !stage_.names_of(id).empty()) continue;
    stage_.apply_raw(k, std::nullopt);
    txn.del(k);
    touched.objs.push_back(id);
  }
}

Result<void> Decider::unstage(const Record& h, const CallerInfo& who) {
  KvTxn txn;
  for (auto it = h.undo.rbegin(); it != h.undo.rend(); ++it) {
    stage_.apply_raw(it->first, it->second);
    if (it->second) txn.put(it->first, *it->second);
    else txn.del(it->first);
  }
  // An upper copy that stays gets back its content or attributes.
  for (const auto& k : h.touch) {
    fs::ObjId id;
    if (!fs::StageLayer::parse_obj_key(k, id)) continue;
    const fs::StageObj* o = stage_.obj(id);
    if (!o || !o->upper || !h.before || !h.before->exists) continue;
    bool undone_copy = std::any_of(h.undo.begin(), h.undo.end(), [&](const auto& u) {
      return u.first == k &&
             (!u.second || !fs::decode_obj(*u.second) || !fs::decode_obj(*u.second)->upper);
    });
    if (undone_copy) continue;
    std::string un = fs::StageLayer::upper_name(o->upper);
    int od = stage_.obj_dirfd();
    const ObjectState& b = *h.before;
    const std::string& op = h.op;
    if (b.blob && b.hash &&
        (op == "write" || op == "truncate" || op == "fallocate" || op == "copy_file_range")) {
      auto in = j_.blobs()->open_blob(*b.hash);
      auto out = sys::open_at(od, un.c_str(), O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
      if (in && out) (void)fs::copy_content(in->get(), out->get());
    } else if (b.blob == false && b.size == 0 && b.type == "file" &&
               (op == "write" || op == "truncate")) {
      auto out = sys::open_at(od, un.c_str(), O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
      (void)out;
    }
    if (op == "setxattr" || op == "removexattr") {
      std::string p = std::string("/proc/self/fd/") + std::to_string(od) + "/" + un;
      if (h.xattr_before)
        ::lsetxattr(p.c_str(), h.path2.c_str(), h.xattr_before->data(), h.xattr_before->size(), 0);
      else ::lremovexattr(p.c_str(), h.path2.c_str());
    }
    if (op == "chmod" || op == "chown" || op == "utimens" || op == "write" || op == "truncate" ||
        op == "fallocate" || op == "copy_file_range")
      (void)set_meta(od, un, b, true);
  }
  Record held = h;
  held.state = RecordState::Rejected;
  Record d;
  d.op = "reject";
  d.path = h.path;
  d.path2 = h.path2;
  d.ref = h.seq;
  d.caller = who;
  d.state = RecordState::Applied;
  d.seq = j_.reserve_seq();
  held.ref = d.seq;
  txn.put(record_key(held.seq), encode_record(held));
  txn.del(held_key(held.seq));
  return j_.append_with(d, txn);
}

Result<DecisionReport> Decider::reject(const Selection& sel, bool with_deps, const CallerInfo& who,
                                       Touched& touched) {
  DecisionReport rep;
  std::lock_guard lk(stage_.mu());
  auto chosen = select(sel, false, with_deps, rep);
  if (!chosen) return Errno{chosen.error()};
  for (const Record& h : *chosen) {
    for (const auto& [k, v] : h.undo) {
      fs::ObjId id;
      std::string name;
      if (fs::StageLayer::parse_entry_key(k, id, name)) touched.names.emplace_back(id, name);
      else if (fs::StageLayer::parse_obj_key(k, id)) touched.objs.push_back(id);
    }
    for (const auto& k : h.touch) {
      fs::ObjId id;
      if (fs::StageLayer::parse_obj_key(k, id)) touched.objs.push_back(id);
    }
    if (auto r = unstage(h, who); !r) {
      rep.failed.emplace_back(h.seq, std::strerror(r.error()));
      break;
    }
    rep.done.push_back(h.seq);
  }
  KvTxn txn;
  drop_unused_times(txn, touched);
  if (!txn.empty())
    if (auto w = j_.rewrite_keys(txn); !w) return Errno{w.error()};
  sweep();
  return rep;
}

}  // namespace scopefs::journal
