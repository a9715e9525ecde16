// Thin wrappers over the syscalls the core uses (STYLE rule 2). Raw syscalls
// and errno live only here: every wrapper saves errno at once, retries EINTR
// where the call is restartable, and returns Result<T> carrying a positive
// errno. Nothing above this layer reads the global errno.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fs/result.hpp"
#include "fs/sys/unique_fd.hpp"

namespace scopefs::sys {

// A kernel file handle (name_to_handle_at) that names an inode independently
// of any path; reopened with open_by_handle_at.
struct FileHandle {
  int type = 0;
  int mount_id = -1;
  std::string bytes;  // f_handle payload
};

// Path under /proc/self/fd naming an fd we own (for calls that refuse O_PATH fds).
struct ProcPath {
  explicit ProcPath(int fd);
  const char* c_str() const { return buf_; }

 private:
  char buf_[40] = {};
};

Result<UniqueFd> open_at(int dirfd, const char* name, int flags, mode_t mode = 0);
Result<UniqueFd> open_by_handle(int mount_fd, const FileHandle& h, int flags);
Result<FileHandle> handle_of(int fd);
// The handle of `name` in `dirfd`, without following a symlink.
Result<FileHandle> handle_at(int dirfd, const char* name);
Result<struct stat> stat_at(int dirfd, const char* name, int flags);
Result<struct stat> stat_fd(int fd);
Result<struct statvfs> statvfs_fd(int fd);

Result<void> mkdir_at(int dirfd, const char* name, mode_t mode);
Result<void> mknod_at(int dirfd, const char* name, mode_t mode, dev_t rdev);
Result<void> symlink_at(const char* target, int dirfd, const char* name);
Result<void> unlink_at(int dirfd, const char* name, int flags);
Result<void> rename_at2(int olddir, const char* oldname, int newdir, const char* newname,
                        unsigned flags);
Result<void> link_at(int olddir, const char* oldname, int newdir, const char* newname, int flags);
Result<std::string> readlink_at(int dirfd, const char* name);

Result<void> chmod_fd(int fd, mode_t mode);           // works on O_PATH fds
Result<void> chown_fd(int fd, uid_t uid, gid_t gid);  // works on O_PATH fds, no follow
Result<void> truncate_fd(int fd, off_t size, bool fd_is_writable);
Result<void> utimens_at(int dirfd, const char* name, const struct timespec tv[2], int flags);
Result<void> utimens_fd(int fd, const struct timespec tv[2]);

Result<size_t> pread_fd(int fd, void* buf, size_t n, off_t off);
Result<size_t> pwrite_fd(int fd, const void* buf, size_t n, off_t off);
Result<void> fsync_fd(int fd, bool datasync);
Result<void> fallocate_fd(int fd, int mode, off_t off, off_t len);
Result<size_t> copy_range(int fd_in, off_t* off_in, int fd_out, off_t* off_out, size_t len,
                          unsigned flags);
Result<off_t> lseek_fd(int fd, off_t off, int whence);
// Copies the content of src into dst, an empty regular file, keeping holes:
// only src's data extents (SEEK_DATA/SEEK_HOLE) are copied, with
// copy_file_range, else pread/pwrite; dst ends at src's size. A filesystem
// without SEEK_DATA gets a plain full copy.
Result<void> copy_sparse(int src, int dst);
Result<void> flock_fd(int fd, int op);

// Extended attributes through /proc/self/fd of an O_PATH (or any) fd.
Result<size_t> getxattr_fd(int fd, const char* name, void* buf, size_t size);
Result<size_t> listxattr_fd(int fd, char* buf, size_t size);
Result<void> setxattr_fd(int fd, const char* name, const void* value, size_t size, int flags);
Result<void> removexattr_fd(int fd, const char* name);

struct DirEntry {
  uint64_t ino;
  int64_t off;  // cookie to continue after this entry
  unsigned char type;
  std::string name;
};
// Reads a batch of entries from an open directory fd (getdents64). Returns an
// empty vector at the end.
Result<std::vector<DirEntry>> read_dir(int fd, size_t max_bytes = 32768);
Result<void> seek_dir(int fd, int64_t off);

}  // namespace scopefs::sys

namespace scopefs::sys {
// Supplementary groups of a process, from /proc/PID/status.
Result<std::vector<gid_t>> proc_groups(pid_t pid);
}  // namespace scopefs::sys
