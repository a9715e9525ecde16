// The ChangeGate that journals: every mutation of the view becomes a record
// with the caller, before and after states (XXH3-128 content hashes) and,
// where content is destroyed or rewritten, a before-image in the blob store.
//
// Before-images by operation:
//   unlink of a file, rename replacing a file: the victim is hard-linked into
//     the store when it is on the store's filesystem, has no other name and
//     is not open for writing through the view (no copy); else copied.
//   write session, truncate, fallocate, open(O_TRUNC): copied (reflink or
//     copy_file_range), since the inode itself changes.
// After-hashes: a write session's hash is computed while it is written
// (sequential writes feed an XXH3 stream; data past the streamed prefix is
// read at the end; a write below it forces a rehash). Other records reuse a
// hash known for the same (dev, ino, size, mtime, ctime), else read the file;
// a change that keeps the content (chmod, chown, rename, xattrs) carries the
// known hash over to the object's new ctime. An unlinked file whose hash is
// known is linked into the blob store without being read.
//
// Open write sessions are registered by inode: a change of metadata made
// while the file's only session has streamed all of it (cp -a sets times
// before close) takes that session's digest; any other change of the file's
// content (another handle, a truncate by path) marks its sessions stale, so
// they read the file at their end.
//
// Concurrency: begin/end run on the FUSE worker threads; the known-hash
// cache has its own mutex; a write session is used by one thread at a time
// (the view serialises a handle's writes), its stream also read by others
// under its own mutex (after the registry's).
#pragma once

#include <sys/stat.h>

#include <mutex>
#include <unordered_map>

#include "fs/change_gate.hpp"
#include "journal/journal.hpp"

namespace scopefs::journal {

class JournalGate final : public fs::ChangeGate {
 public:
  explicit JournalGate(Journal& j) : j_(j) {}

  Result<void> begin(fs::Change& c) override;
  void end(fs::Change& c, int err) override;
  void denied(fs::Change& c, int err) override;
  void wrote(fs::Change& c, const void* data, size_t n, off_t off) override;
  void reshaped(fs::Change& c) override;
  void settle(fs::Change& c) override;
  void identify(fs::Change& c, dev_t dev, ino_t ino) override;
  // Internal: a write session's state leaves the registry of live sessions.
  void forget_session(const std::pair<dev_t, ino_t>& key, const fs::GateState* s);
  Result<void> sync() override { return j_.sync(); }

  // Records a mount or unmount of the view.
  void lifecycle(const std::string& op, const std::string& detail);

 private:
  struct Known {
    Hash128 hash;
    int64_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
  };
  struct KeyHash {
    size_t operator()(const std::pair<dev_t, ino_t>& k) const {
      return std::hash<uint64_t>()(k.second * 0x9E3779B97F4A7C15ULL ^ k.first);
    }
  };

  void end_held(fs::Change& c, fs::GateState& s, int err);
  void take_after(fs::Change& c, fs::GateState& s);
  void take_after_held(fs::Change& c, fs::GateState& s);
  // The state of `ref` now; `seen`, if known, is its lstat the view has
  // just taken (not taken again).
  Result<ObjectState> capture(const fs::ObjRef& ref, bool content_image, bool may_link,
                              struct stat* st_out, const fs::Change::Seen* seen = nullptr);
  std::optional<Hash128> known_hash(const struct stat& st);
  void remember(const struct stat& st, const Hash128& h);
  Result<Hash128> hash_of(const fs::ObjRef& ref, const struct stat& st);
  // Live write sessions: every session but `except` of the file `key` no
  // longer streams its content.
  void mark_stale(const std::pair<dev_t, ino_t>& key, const fs::GateState* except);
  // The streamed digest of the file's only live write session, if it covers
  // the whole file (st_size) and nothing else changed the file.
  std::optional<Hash128> live_digest(const struct stat& st);

  Journal& j_;
  std::mutex known_mu_;
  std::unordered_map<std::pair<dev_t, ino_t>, Known, KeyHash> known_;  // guarded by known_mu_
  std::mutex live_mu_;  // taken before a session's own mutex
  std::unordered_multimap<std::pair<dev_t, ino_t>, fs::GateState*, KeyHash>
      live_;  // guarded by live_mu_
};

CallerInfo caller_info(const fs::Caller& c);

}  // namespace scopefs::journal
