#include "fs/sys/sys.hpp"

#include <dirent.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace scopefs::sys {
namespace {

Errno last_errno() { return Errno{errno}; }

template <typename F>
auto retry(F f) {
  for (;;) {
    auto r = f();
    if (r != -1 || errno != EINTR) return r;
  }
}

Result<void> void_result(long r) {
  if (r == -1) return last_errno();
  return {};
}

}  // namespace

ProcPath::ProcPath(int fd) { std::snprintf(buf_, sizeof buf_, "/proc/self/fd/%d", fd); }

Result<UniqueFd> open_at(int dirfd, const char* name, int flags, mode_t mode) {
  int fd = retry([&] { return ::openat(dirfd, name, flags | O_CLOEXEC, mode); });
  if (fd == -1) return last_errno();
  return UniqueFd(fd);
}

Result<UniqueFd> open_by_handle(int mount_fd, const FileHandle& h, int flags) {
  alignas(struct file_handle) unsigned char storage[sizeof(struct file_handle) + MAX_HANDLE_SZ];
  auto* fh = reinterpret_cast<struct file_handle*>(storage);
  fh->handle_bytes = static_cast<unsigned>(h.bytes.size());
  fh->handle_type = h.type;
  std::memcpy(fh->f_handle, h.bytes.data(), h.bytes.size());
  int fd = retry([&] { return ::open_by_handle_at(mount_fd, fh, flags | O_CLOEXEC); });
  if (fd == -1) return last_errno();
  return UniqueFd(fd);
}

Result<FileHandle> handle_of(int fd) { return handle_at(fd, ""); }

Result<FileHandle> handle_at(int dirfd, const char* name) {
  alignas(struct file_handle) unsigned char storage[sizeof(struct file_handle) + MAX_HANDLE_SZ];
  auto* fh = reinterpret_cast<struct file_handle*>(storage);
  fh->handle_bytes = MAX_HANDLE_SZ;
  int mount_id = -1;
  int flags = name[0] == '\0' ? AT_EMPTY_PATH : 0;
  if (::name_to_handle_at(dirfd, name, fh, &mount_id, flags) == -1) return last_errno();
  FileHandle out;
  out.type = fh->handle_type;
  out.mount_id = mount_id;
  out.bytes.assign(reinterpret_cast<const char*>(fh->f_handle), fh->handle_bytes);
  return out;
}

Result<struct stat> stat_at(int dirfd, const char* name, int flags) {
  struct stat st {};
  if (::fstatat(dirfd, name, &st, flags) == -1) return last_errno();
  return st;
}

Result<struct stat> stat_fd(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) == -1) return last_errno();
  return st;
}

Result<struct statvfs> statvfs_fd(int fd) {
  struct statvfs st {};
  if (retry([&] { return ::fstatvfs(fd, &st); }) == -1) return last_errno();
  return st;
}

Result<void> mkdir_at(int dirfd, const char* name, mode_t mode) {
  return void_result(::mkdirat(dirfd, name, mode));
}

Result<void> mknod_at(int dirfd, const char* name, mode_t mode, dev_t rdev) {
  return void_result(::mknodat(dirfd, name, mode, rdev));
}

Result<void> symlink_at(const char* target, int dirfd, const char* name) {
  return void_result(::symlinkat(target, dirfd, name));
}

Result<void> unlink_at(int dirfd, const char* name, int flags) {
  return void_result(::unlinkat(dirfd, name, flags));
}

Result<void> rename_at2(int olddir, const char* oldname, int newdir, const char* newname,
                        unsigned flags) {
  return void_result(::syscall(SYS_renameat2, olddir, oldname, newdir, newname, flags));
}

Result<void> link_at(int olddir, const char* oldname, int newdir, const char* newname, int flags) {
  return void_result(::linkat(olddir, oldname, newdir, newname, flags));
}

Result<std::string> readlink_at(int dirfd, const char* name) {
  std::string buf(256, '\0');
  for (;;) {
    ssize_t n = ::readlinkat(dirfd, name, buf.data(), buf.size());
    if (n == -1) return last_errno();
    if (static_cast<size_t>(n) < buf.size()) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
    if (buf.size() >= 65536) return Errno{ENAMETOOLONG};
    buf.resize(buf.size() * 2);
  }
}

Result<void> chmod_fd(int fd, mode_t mode) {
  ProcPath p(fd);
  return void_result(::chmod(p.c_str(), mode));
}

Result<void> chown_fd(int fd, uid_t uid, gid_t gid) {
  return void_result(::fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW));
}

Result<void> truncate_fd(int fd, off_t size, bool fd_is_writable) {
  if (fd_is_writable) return void_result(retry([&] { return ::ftruncate(fd, size); }));
  ProcPath p(fd);
  return void_result(retry([&] { return ::truncate(p.c_str(), size); }));
}

Result<void> utimens_at(int dirfd, const char* name, const struct timespec tv[2], int flags) {
  return void_result(::utimensat(dirfd, name, tv, flags));
}

Result<void> utimens_fd(int fd, const struct timespec tv[2]) {
  ProcPath p(fd);
  return void_result(::utimensat(AT_FDCWD, p.c_str(), tv, 0));
}

Result<size_t> pread_fd(int fd, void* buf, size_t n, off_t off) {
  ssize_t r = retry([&] { return ::pread(fd, buf, n, off); });
  if (r == -1) return last_errno();
  return static_cast<size_t>(r);
}

Result<size_t> pwrite_fd(int fd, const void* buf, size_t n, off_t off) {
  ssize_t r = retry([&] { return ::pwrite(fd, buf, n, off); });
  if (r == -1) return last_errno();
  return static_cast<size_t>(r);
}

Result<void> fsync_fd(int fd, bool datasync) {
  return void_result(retry([&] { return datasync ? ::fdatasync(fd) : ::fsync(fd); }));
}

Result<void> fallocate_fd(int fd, int mode, off_t off, off_t len) {
  return void_result(retry([&] { return ::fallocate(fd, mode, off, len); }));
}

Result<size_t> copy_range(int fd_in, off_t* off_in, int fd_out, off_t* off_out, size_t len,
                          unsigned flags) {
  ssize_t r = retry([&] { return ::copy_file_range(fd_in, off_in, fd_out, off_out, len, flags); });
  if (r == -1) return last_errno();
  return static_cast<size_t>(r);
}

Result<off_t> lseek_fd(int fd, off_t off, int whence) {
  off_t r = ::lseek(fd, off, whence);
  if (r == -1) return last_errno();
  return r;
}

namespace {

// Copies [off, end) of src to the same offsets of dst.
Result<void> copy_extent(int src, int dst, off_t off, off_t end) {
  bool use_cfr = true;
  std::vector<char> buf;
  while (off < end) {
    size_t want = static_cast<size_t>(std::min<off_t>(end - off, off_t{1} << 30));
    if (use_cfr) {
      off_t in = off, out = off;
      auto n = copy_range(src, &in, dst, &out, want, 0);
      if (n && *n > 0) {
        off += static_cast<off_t>(*n);
        continue;
      }
      if (n) return {};  // src shrank meanwhile
      int e = n.error();
      if (e != EXDEV && e != EINVAL && e != EOPNOTSUPP && e != ENOSYS) return Errno{e};
      use_cfr = false;
    }
    if (buf.empty()) buf.resize(1 << 20);
    auto n = pread_fd(src, buf.data(), std::min(want, buf.size()), off);
    if (!n) return Errno{n.error()};
    if (*n == 0) return {};
    size_t done = 0;
    while (done < *n) {
      auto w = pwrite_fd(dst, buf.data() + done, *n - done, off + static_cast<off_t>(done));
      if (!w) return Errno{w.error()};
      done += *w;
    }
    off += static_cast<off_t>(*n);
  }
  return {};
}

}  // namespace

Result<void> copy_sparse(int src, int dst) {
  struct stat st {};
  if (::fstat(src, &st) == -1) return last_errno();
  if (auto t = truncate_fd(dst, st.st_size, true); !t) return t;
  off_t pos = 0;
  while (pos < st.st_size) {
    auto data = lseek_fd(src, pos, SEEK_DATA);
    if (!data) {
      if (data.error() == ENXIO) return {};  // only a hole is left
      if (pos == 0 && (data.error() == EINVAL || data.error() == EOPNOTSUPP))
        return copy_extent(src, dst, 0, st.st_size);
      return Errno{data.error()};
    }
    auto hole = lseek_fd(src, *data, SEEK_HOLE);
    if (!hole) return Errno{hole.error()};
    if (auto c = copy_extent(src, dst, *data, std::min<off_t>(*hole, st.st_size)); !c) return c;
    pos = *hole;
  }
  return {};
}

Result<void> flock_fd(int fd, int op) {
  return void_result(retry([&] { return ::flock(fd, op); }));
}

Result<size_t> getxattr_fd(int fd, const char* name, void* buf, size_t size) {
  ProcPath p(fd);
  ssize_t r = ::getxattr(p.c_str(), name, buf, size);
  if (r == -1) return last_errno();
  return static_cast<size_t>(r);
}

Result<size_t> listxattr_fd(int fd, char* buf, size_t size) {
  ProcPath p(fd);
  ssize_t r = ::listxattr(p.c_str(), buf, size);
  if (r == -1) return last_errno();
  return static_cast<size_t>(r);
}

Result<void> setxattr_fd(int fd, const char* name, const void* value, size_t size, int flags) {
  ProcPath p(fd);
  return void_result(::setxattr(p.c_str(), name, value, size, flags));
}

Result<void> removexattr_fd(int fd, const char* name) {
  ProcPath p(fd);
  return void_result(::removexattr(p.c_str(), name));
}

Result<std::vector<DirEntry>> read_dir(int fd, size_t max_bytes) {
  std::vector<char> buf(max_bytes);
  ssize_t n = retry([&] { return ::getdents64(fd, buf.data(), buf.size()); });
  if (n == -1) return last_errno();
  std::vector<DirEntry> out;
  for (ssize_t pos = 0; pos < n;) {
    const auto* d = reinterpret_cast<const struct dirent64*>(buf.data() + pos);
    out.push_back(DirEntry{d->d_ino, d->d_off, d->d_type, std::string(d->d_name)});
    pos += d->d_reclen;
  }
  return out;
}

Result<void> seek_dir(int fd, int64_t off) {
  if (::lseek(fd, off, SEEK_SET) == -1) return last_errno();
  return {};
}

}  // namespace scopefs::sys

#include <fstream>
#include <sstream>

namespace scopefs::sys {
Result<std::vector<gid_t>> proc_groups(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  if (!in) return Errno{ESRCH};
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Groups:", 0) != 0) continue;
    std::istringstream ss(line.substr(7));
    std::vector<gid_t> out;
    unsigned long g;
    while (ss >> g) out.push_back(static_cast<gid_t>(g));
    return out;
  }
  return Errno{ESRCH};
}
}  // namespace scopefs::sys
