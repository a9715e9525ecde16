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
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  if (conn->capable & FUSE_CAP_READDIRPLUS_AUTO) conn->want |= FUSE_CAP_READDIRPLUS_AUTO;
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  // Kernel-local flock/POSIX locks: no lock ops are registered, so the kernel
  // keeps locks itself (coherent for every process using this view).
  conn->want &= ~(FUSE_CAP_FLOCK_LOCKS | FUSE_CAP_POSIX_LOCKS);
}

void destroy(void* userdata) { (void)userdata; }

}  // namespace scopefs::fs::ops
