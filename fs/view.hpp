// The view: the core of the filesystem, with no FUSE types (STYLE rule 5).
//
// Every operation takes node ids as the kernel gave them (Inode*), returns a
// Result, and never replies; fs/ops/<op>.cpp turns the Result into exactly
// one fuse_reply_*.
//
// Resolution. Names are resolved one at a time relative to the parent's
// O_PATH fd with O_NOFOLLOW (STYLE rule 19); the daemon never follows a
// symlink and never builds an absolute path of the real tree. Every name an
// operation touches gets its access level from the policy on its *view path*
// (both sides of a rename or link included); hidden names are ENOENT to
// lookup and never listed.
//
// Mutations go through permit_*() (policy → ChangeGate::denied), then
// ChangeGate::begin (journal intent, before-image) and finish_change()
// (gate end): the one place where journaling and held changes plug in
// (fs/change_gate.hpp). A file written through a handle is one write session.
//
// Concurrency: the view is used by every FUSE worker thread at once. Shared
// state is the InodeTable (own lock), the FdCache (own lock), mount_fds_
// (mount_mu_) and devs_ (dev_mu_); open-file and dir handles are used by one
// request at a time except reads/writes, which only use the fd.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "config/config.hpp"
#include "fs/change_gate.hpp"
#include "fs/fd_cache.hpp"
#include "fs/inode_table.hpp"
#include "fs/result.hpp"
#include "fs/stage.hpp"
#include "fs/sys/unique_fd.hpp"

namespace scopefs::fs {

using config::Access;

struct Entry {
  Inode* node = nullptr;
  struct stat attr {};
};

struct OpenFile {
  sys::UniqueFd fd;
  Inode* node = nullptr;
  bool writable = false;
  // The write session: started by the first mutation through this handle,
  // ended at release or fsync,
  // its after-state taken at each close() (flush). `mu` serialises the handle's mutations so
  // the streaming hash sees them in order.
  std::mutex mu;
  std::unique_ptr<Change> session;  // guarded by mu
  // Held writes: the handle writes the object's upper copy (made at open).
  bool held = false;
};

struct DirHandle {
  Inode* node = nullptr;
  std::string path;  // view path of the directory
  Access access = Access::Read;
  sys::UniqueFd fd;  // real directories
  // Buffered getdents64 batch and where it continues.
  std::vector<sys::DirEntry> batch;
  size_t batch_pos = 0;
  int64_t next_off = 0;  // offset of batch[batch_pos]
  bool eof = false;
  // Directories with held changes: the merged listing (lower names not
  // replaced by the overlay, then the overlay's names), read at offset 0.
  struct Item {
    std::string name;
    uint32_t type;
    uint64_t ino;
  };
  bool merged = false;
  std::vector<Item> items;
  std::mutex mu;
};

// One directory entry produced by readdir: for readdirplus, `entry.node` is
// set and counted as a lookup (the caller undoes it with forget() if the
// entry does not fit in the reply).
struct DirItem {
  std::string_view name;
  struct stat attr {};
  Inode* node = nullptr;
  int64_t next_off = 0;
};

struct SetattrRequest {
  int to_set = 0;  // kSet* bits below
  mode_t mode = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  off_t size = 0;
  struct timespec atime {};
  struct timespec mtime {};
  // kCtime: nothing but the change time (e.g. chown(f, -1, -1)): updated as
  // a native filesystem does, by an ownership change to the same owner.
  static constexpr int kMode = 1, kUid = 2, kGid = 4, kSize = 8, kAtime = 16, kMtime = 32,
                       kAtimeNow = 64, kMtimeNow = 128, kCtime = 256;
};

struct ViewOptions {
  size_t fd_cache_capacity = 4096;
  // The overlay of held changes (owned by the caller, loaded from the
  // journal); null: `stage` access refuses changes with EROFS.
  StageLayer* stage = nullptr;
};

class View {
 public:
  View(const config::TaskConfig& cfg, ChangeGate& gate, ViewOptions opts = {});
  ~View();
  View(const View&) = delete;
  View& operator=(const View&) = delete;

  // Opens every bind source; throws std::runtime_error on failure (startup only).
  void open();

  Inode* root() const { return root_; }
  const config::TaskConfig& config() const { return cfg_; }

  // --- Names -------------------------------------------------------------
  Result<Entry> lookup(Inode* parent, std::string_view name);
  void forget(Inode* node, uint64_t n);
  Result<struct stat> getattr(Inode* node, const OpenFile* fh);
  Result<struct stat> setattr(Inode* node, const SetattrRequest& req, const OpenFile* fh,
                              const Caller& caller);
  Result<std::string> readlink(Inode* node);

  // --- Creation and removal ---------------------------------------------
  Result<Entry> mknod(Inode* parent, std::string_view name, mode_t mode, dev_t rdev,
                      const Caller& caller);
  Result<Entry> mkdir(Inode* parent, std::string_view name, mode_t mode, const Caller& caller);
  Result<Entry> symlink(std::string_view target, Inode* parent, std::string_view name,
                        const Caller& caller);
  Result<Entry> link(Inode* node, Inode* newparent, std::string_view newname, const Caller& caller);
  Result<void> unlink(Inode* parent, std::string_view name, const Caller& caller);
  Result<void> rmdir(Inode* parent, std::string_view name, const Caller& caller);
  Result<void> rename(Inode* parent, std::string_view name, Inode* newparent,
                      std::string_view newname, unsigned flags, const Caller& caller);

  // --- Files ----------------------------------------------------------------
  Result<std::unique_ptr<OpenFile>> open(Inode* node, int flags, const Caller& caller,
                                         bool& keep_cache);
  Result<std::pair<Entry, std::unique_ptr<OpenFile>>> create(Inode* parent, std::string_view name,
                                                             mode_t mode, int flags,
                                                             const Caller& caller);
  Result<size_t> write(OpenFile& fh, const char* buf, size_t size, off_t off, const Caller& caller);
  void release(std::unique_ptr<OpenFile> fh);
  // Handles handed to the kernel are tracked (from just before the reply
  // until release) so that those still open when the session ends — the
  // kernel sends no release for them after unmount — are released then, and
  // their write sessions completed in the journal.
  void track(OpenFile* fh);
  void release_all();
  Result<void> fsync(OpenFile& fh, bool datasync);
  // close() of a descriptor: the write session's after-state is taken (flush.cpp).
  void flush(OpenFile& fh);
  Result<void> fallocate(OpenFile& fh, int mode, off_t off, off_t len, const Caller& caller);
  Result<size_t> copy_file_range(OpenFile& in, off_t off_in, OpenFile& out, off_t off_out,
                                 size_t len, unsigned flags, const Caller& caller);
  Result<off_t> lseek(OpenFile& fh, off_t off, int whence);

  // --- Directories ----------------------------------------------------------
  Result<std::unique_ptr<DirHandle>> opendir(Inode* node);
  // Calls `emit` for entries from `off` on until it returns false or the
  // directory ends.
  Result<void> readdir(DirHandle& dh, int64_t off, bool plus,
                       const std::function<bool(const DirItem&)>& emit);
  Result<void> fsyncdir(DirHandle& dh, bool datasync);

  // --- Filesystem and xattrs ------------------------------------------------
  Result<struct statvfs> statfs(Inode* node);
  Result<size_t> getxattr(Inode* node, const char* name, void* buf, size_t size);
  Result<size_t> listxattr(Inode* node, char* buf, size_t size);
  Result<void> setxattr(Inode* node, const char* name, const void* value, size_t size, int flags,
                        const Caller& caller);
  Result<void> removexattr(Inode* node, const char* name, const Caller& caller);
  Result<void> access(Inode* node, int mask);

  // For tests and status.
  size_t inode_count() const { return table_.size(); }
  size_t cached_fds() const { return fds_.size(); }

  // The access level of a node (cached per policy generation).
  Access access_of(Inode* node);

  // --- Held changes -----------------------------------------------------
  StageLayer* stage() const { return stage_; }
  ObjId obj_id(const Inode* node) const;
  // After approve/reject changed the overlay or the real tree: refreshes
  // the view's inodes for these objects and tells the kernel to drop what
  // it caches about them and about these names.
  void stage_changed(const std::vector<ObjId>& objs,
                     const std::vector<std::pair<ObjId, std::string>>& names);
  // True if the view holds the object open for writing.
  bool obj_busy(const ObjId& id);
  // Set by the FUSE layer: invalidate a kernel entry / inode (data and attrs).
  std::function<void(uint64_t parent_nodeid, const std::string& name)> notify_entry;
  std::function<void(uint64_t nodeid)> notify_inode;
  // Pseudo device of upper objects' inode keys.
  static constexpr dev_t kUpperDev = static_cast<dev_t>(-2);

 private:
  struct Bind {
    config::BindConfig cfg;
    FdRef root_fd;  // O_PATH of the source directory, pinned
    dev_t dev = 0;
    int mount_id = -1;
    Inode* root = nullptr;
  };
  struct SyntheticDir {
    Inode* node = nullptr;
    std::string path;
    std::map<std::string, Inode*, std::less<>> children;
    Access access = Access::Read;
  };

  Result<FdRef> path_fd(Inode* node);
  // Attributes, xattrs, metadata changes: the upper copy if any, else path_fd.
  Result<FdRef> attr_fd(Inode* node);
  Result<FdRef> open_upper_path(Inode* node);
  bool upper_backed(const Inode* node) const;
  Result<FdRef> reopen(Inode* node);
  int mount_fd_for(int mount_id);
  // `level`: the child's access level when the caller already knows it.
  Result<Entry> lookup_real(Inode* parent, std::string_view name,
                            std::optional<Access> level = std::nullopt);
  Access child_access(Inode* parent, std::string_view child_path);
  std::string child_path(Inode* parent, std::string_view name) const;
  ino_t report_ino(dev_t dev, ino_t ino);
  void fix_attr(struct stat& st);
  struct stat synthetic_attr(const Inode* node) const;
  Result<void> deny(Change& c, int err);
  // Policy for a change at level `level`: ok, or denied (reported to the gate).
  Result<void> permit(Change& c, Access level);
  Result<void> permit_child(Change& c, Inode* parent, std::string_view name);
  Result<void> permit_node(Change& c, Inode* node);
  void finish_change(Change& c, int err);

  // Held changes (view_stage.cpp). The caller holds stage_->mu() where noted.
  // Whether a change is held: by level, by [approval], or because the overlay
  // already has the name or object (it then stays in the overlay).
  bool is_held(Access level, OpKind op, Inode* dir, std::string_view name, Inode* node);
  bool lower_visible(Inode* dir);
  static bool same_object(const Inode* node, const StageObj& o);
  bool lower_has(Inode* dir, std::string_view name);
  Result<Entry> stage_lookup(Inode* parent, std::string_view name, const StageEntry& e,
                             Access level);
  void stage_fix(Inode* node, struct stat& st);
  Result<void> copy_up(Inode* node, StageLog& log);        // holds mu
  void bump_nlink(Inode* node, int delta, StageLog& log);  // holds mu
  void keep_handle(Inode* node, StageLog& log);            // holds mu
  // A held name change's time on `node` (ctime; with `mtime` also mtime).
  void stamp(Inode* node, bool mtime, int64_t now, StageLog& log);     // holds mu
  void remove_name(Inode* dir, std::string_view name, StageLog& log);  // holds mu
  void stage_commit(Change& c, StageLog& log, int err);                // holds mu
  Result<std::vector<DirHandle::Item>> list_merged(Inode* dir);
  Result<Entry> stage_make(Inode* parent, std::string_view name, mode_t mode, dev_t rdev,
                           const std::string* target, int open_flags, const Caller& caller,
                           Change& c, std::unique_ptr<OpenFile>* out);
  Result<void> stage_remove(Inode* parent, std::string_view name, bool dir, Change& c);
  Result<void> stage_rename(Inode* parent, std::string_view name, Inode* newparent,
                            std::string_view newname, unsigned flags, Change& c);
  Result<Entry> stage_link(Inode* node, Inode* newparent, std::string_view newname, Change& c);
  Result<sys::UniqueFd> open_upper(uint64_t upper, int flags);
  // A held setxattr/removexattr (c.path2 = the name): copy-up, old value, apply.
  Result<void> stage_xattr(Inode* node, Change& c, bool must_exist,
                           const std::function<Result<void>(int fd)>& apply);
  // Starts the handle's write session if none is running (caller holds fh.mu).
  Result<void> ensure_session(OpenFile& fh, const Caller& caller, OpKind kind, unsigned flags);
  void end_session(OpenFile& fh);
  // True if the view holds the object `st` describes open for writing.
  bool open_for_write(const struct stat& st);
  // True if the view holds it open at all (any mode).
  bool open_in_view(const struct stat& st);
  Result<bool> subtree_levels_equal(int dirfd, const std::string& from, const std::string& to,
                                    Access bind_default, size_t& budget);
  const std::vector<gid_t>* caller_groups(const Caller& caller, std::vector<gid_t>& storage);
  template <typename F>
  auto as_caller(const Caller& caller, F f) -> decltype(f());

  const config::TaskConfig& cfg_;
  ChangeGate& gate_;
  StageLayer* stage_ = nullptr;
  ViewOptions opts_;
  InodeTable table_;
  FdCache fds_;
  std::vector<Bind> binds_;
  std::vector<SyntheticDir> synth_;
  Inode* root_ = nullptr;
  std::atomic<uint64_t> next_serial_{1};
  // Memory after forgets: glibc keeps freed nodes in its heap, so the
  // table's largest size since the last trim decides when to hand memory
  // back (malloc_trim) — see View::forget.
  std::atomic<size_t> trim_peak_{0};
  std::atomic<uint64_t> policy_gen_{1};
  std::atomic<uint64_t> deletes_{0};  // applied unlink/rmdir this run ([approval] max_deletes)
  struct timespec mount_time_ {};

  std::mutex handles_mu_;
  std::unordered_set<OpenFile*> handles_;  // guarded by handles_mu_
  std::mutex mount_mu_;
  std::map<int, FdRef> mount_fds_;  // guarded by mount_mu_
  std::mutex dev_mu_;
  std::vector<dev_t> devs_;  // guarded by dev_mu_

 public:
  // Hook for supplementary groups of a caller (set by the FUSE layer; unit
  // tests leave it empty).
  std::function<std::vector<gid_t>(const Caller&)> groups_of;
};

}  // namespace scopefs::fs
