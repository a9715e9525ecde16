// Shared glue of the FUSE handlers (fs/ops/<op>.cpp).
//
// Every handler: decode the request → call the View (core) → exactly one
// fuse_reply_* (STYLE rule 5). checked() is the boundary adaptor (rule 6): no
// exception reaches libfuse; an escaped one is logged and answered with EIO.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <spdlog/spdlog.h>

#include <exception>

#include "fs/view.hpp"

#if defined(__SANITIZE_THREAD__)
#define SCOPEFS_TSAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SCOPEFS_TSAN_BUILD 1
#endif
#endif
#ifdef SCOPEFS_TSAN_BUILD
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace scopefs::fs {

// What the session hands every handler as userdata.
struct FsContext {
  View* view = nullptr;
  double entry_timeout = 1.0;
  double attr_timeout = 1.0;
  double negative_timeout = 1.0;
};

namespace ops {

inline FsContext& ctx(fuse_req_t req) { return *static_cast<FsContext*>(fuse_req_userdata(req)); }
inline View& view(fuse_req_t req) { return *ctx(req).view; }

// Node ids and file handles are the addresses of our Inode/OpenFile/DirHandle
// objects, round-tripped through libfuse's uint64_t fields (how the lowlevel
// API is meant to be used, as in libfuse's passthrough_hp.cc): the int-to-
// pointer casts below are that round trip, not an optimization hazard.
inline Inode* node(fuse_req_t req, fuse_ino_t ino) {
  if (ino == FUSE_ROOT_ID) return view(req).root();
  // NOLINTNEXTLINE(performance-no-int-to-ptr): the nodeid is an Inode* we handed out
  return reinterpret_cast<Inode*>(ino);
}

inline fuse_ino_t ino_of(const View& v, const Inode* n) {
  return n == v.root() ? FUSE_ROOT_ID : reinterpret_cast<fuse_ino_t>(n);
}

inline Caller caller(fuse_req_t req) {
  const fuse_ctx* c = fuse_req_ctx(req);
  return Caller{c->pid, c->uid, c->gid};
}

inline OpenFile* file(fuse_file_info* fi) {
  // NOLINTNEXTLINE(performance-no-int-to-ptr): fh is the OpenFile* open/create released
  return fi ? reinterpret_cast<OpenFile*>(fi->fh) : nullptr;
}
inline DirHandle* dir(fuse_file_info* fi) {
  // NOLINTNEXTLINE(performance-no-int-to-ptr): fh is the DirHandle* opendir released
  return reinterpret_cast<DirHandle*>(fi->fh);
}

// The kernel sends RELEASE only once every request on a handle has been
// answered, so a request's last use of its OpenFile happens before the
// release that frees it. That ordering passes through /dev/fuse, where
// ThreadSanitizer cannot see it; requests that touch the handle without its
// mutex (read) say so before replying, release before freeing.
inline void handle_used(const void* fh) {
#ifdef SCOPEFS_TSAN_BUILD
  __tsan_release(const_cast<void*>(fh));
#else
  (void)fh;
#endif
}
inline void handle_freeing(const void* fh) {
#ifdef SCOPEFS_TSAN_BUILD
  __tsan_acquire(const_cast<void*>(fh));
#else
  (void)fh;
#endif
}

inline fuse_entry_param entry_param(fuse_req_t req, const Entry& e) {
  fuse_entry_param p{};
  p.ino = ino_of(view(req), e.node);
  p.generation = 0;
  p.attr = e.attr;
  p.attr_timeout = ctx(req).attr_timeout;
  p.entry_timeout = ctx(req).entry_timeout;
  return p;
}

inline void reply_entry(fuse_req_t req, const Result<Entry>& e) {
  if (!e) {
    fuse_reply_err(req, e.error());
    return;
  }
  fuse_entry_param p = entry_param(req, *e);
  if (fuse_reply_entry(req, &p) != 0 && !e->node->pinned) {
    // The kernel did not take the reference: undo the lookup count.
    view(req).forget(e->node, 1);
  }
}

template <typename F>
void checked(fuse_req_t req, const char* op, F f) noexcept {
  try {
    f();
  } catch (const std::exception& ex) {
    spdlog::critical("{}: unexpected exception: {}", op, ex.what());
    fuse_reply_err(req, EIO);
  } catch (...) {
    spdlog::critical("{}: unexpected exception", op);
    fuse_reply_err(req, EIO);
  }
}

template <typename F>
void checked_noreply(const char* op, F f) noexcept {
  try {
    f();
  } catch (const std::exception& ex) {
    spdlog::critical("{}: unexpected exception: {}", op, ex.what());
  } catch (...) {
    spdlog::critical("{}: unexpected exception", op);
  }
}

// Handlers, one per file.
void init(void* userdata, fuse_conn_info* conn);
void destroy(void* userdata);
void lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
void forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets);
void getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi);
void readlink(fuse_req_t req, fuse_ino_t ino);
void mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev);
void mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
void unlink(fuse_req_t req, fuse_ino_t parent, const char* name);
void rmdir(fuse_req_t req, fuse_ino_t parent, const char* name);
void symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name);
void rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
            const char* newname, unsigned int flags);
void link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname);
void open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi);
void read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
void write_buf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* bufv, off_t off, fuse_file_info* fi);
void flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi);
void opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
void readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
void releasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi);
void statfs(fuse_req_t req, fuse_ino_t ino);
void setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
              int flags);
void getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
void listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void removexattr(fuse_req_t req, fuse_ino_t ino, const char* name);
void access(fuse_req_t req, fuse_ino_t ino, int mask);
void fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
               fuse_file_info* fi);
void copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in,
                     fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out, size_t len,
                     int flags);
void lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi);

}  // namespace ops

// Fills the operation table (fs/ops_table.cpp).
fuse_lowlevel_ops make_ops();

}  // namespace scopefs::fs
