// init/destroy: negotiate capabilities with the kernel.
#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

void init(void* userdata, fuse_conn_info* conn) {
  (void)userdata;
  // Large writes: 1 MiB per request (libfuse derives max_pages from it).
  conn->max_write = 1U << 20;
  // Reads are answered by splicing from the real file into /dev/fuse.
  if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE;
  if (conn->capable & FUSE_CAP_SPLICE_MOVE) conn->want |= FUSE_CAP_SPLICE_MOVE;
  // Writes must pass through the daemon in memory (hashing, journal).
  conn->want &= ~FUSE_CAP_SPLICE_READ;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  // Every chunk of a listing carries its entries' attributes (not only the
  // first, as READDIRPLUS_AUTO does until lookups follow): a walk that stats
  // what it listed (git status, os.walk + lstat, ls -l, find with tests)
  // sends no LOOKUP per entry. A bare `ls` pays about 12 us per entry more.
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  // No automatic invalidation of a file's pages when its mtime is seen to
  // change: a write through the view reaches the real file with the real
  // file's clock, the kernel keeps the mtime it had, and the next attribute
  // refresh would then throw away the pages the kernel has just written.
  // Cached data is checked at open instead (keep_cache only when the real
  // file's mtime and size are those of the last open or release), a size
  // change still drops the pages, and approve/reject/rollback invalidate
  // explicitly (docs/architecture.md, "Data path").
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  // Kernel-local flock/POSIX locks: no lock ops are registered, so the kernel
  // keeps locks itself (coherent for every process using this view).
  conn->want &= ~(FUSE_CAP_FLOCK_LOCKS | FUSE_CAP_POSIX_LOCKS);
}

void destroy(void* userdata) { (void)userdata; }

}  // namespace scopefs::fs::ops
