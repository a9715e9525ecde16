#include "fs/ops/ops.hpp"

namespace scopefs::fs::ops {

// Sent by every close() of a descriptor, before close() returns; RELEASE
// comes later and asynchronously. The write session's after-state is taken
// here, so its record shows the file as the closing process left it — not as
// a later writer (the next `>>` of a shell loop, already under way when a
// late RELEASE arrives) has made it. The session still ends at release (a
// shell's dup2-then-close of a redirect stays one record); writes after this
// close (another descriptor, dirty mmap pages) make it take its after-state
// again. Nothing is buffered in the daemon, and locks are kernel-local.
void flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  (void)ino;
  checked(req, "flush", [&] {
    view(req).flush(*file(fi));
    fuse_reply_err(req, 0);
  });
}

}  // namespace scopefs::fs::ops
