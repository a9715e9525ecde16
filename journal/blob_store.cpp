#include "journal/blob_store.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "fs/sys/sys.hpp"

namespace scopefs::journal {

BlobStore::BlobStore(std::string dir) : dir_(std::move(dir)) {
  std::error_code ec;
  std::filesystem::create_directories(dir_ + "/tmp", ec);
  if (ec) throw std::runtime_error("cannot create blob store " + dir_ + ": " + ec.message());
  auto d = sys::open_at(AT_FDCWD, dir_.c_str(), O_RDONLY | O_DIRECTORY);
  auto t = sys::open_at(AT_FDCWD, (dir_ + "/tmp").c_str(), O_RDONLY | O_DIRECTORY);
  if (!d || !t) throw std::runtime_error("cannot open blob store " + dir_);
  dir_fd_ = std::move(d).value();
  tmp_fd_ = std::move(t).value();
  auto st = sys::stat_fd(dir_fd_.get());
  if (!st) throw std::runtime_error("cannot stat blob store " + dir_);
  dev_ = st->st_dev;
  make_fanout();
}

void BlobStore::make_fanout() {
  // Made in order, so the last one tells that all are there. Making them
  // here, once, keeps directory creation off the delete path: on ext4 a
  // new inode after many deletions scans past the recently freed ones
  // (a third of the daemon's time in a first `rm -rf` when made lazily).
  struct stat st {};
  if (::fstatat(dir_fd_.get(), "ff", &st, 0) == 0) return;
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 256; ++i) {
    const char sub[3] = {kHex[i >> 4], kHex[i & 15], '\0'};
    if (::mkdirat(dir_fd_.get(), sub, 0700) != 0 && errno != EEXIST)
      throw std::runtime_error("cannot create blob store directory " + dir_ + "/" + sub + ": " +
                               std::strerror(errno));
  }
}

std::string BlobStore::path_of(const Hash128& h) const {
  std::string hex = h.hex();
  return dir_ + "/" + hex.substr(0, 2) + "/" + hex.substr(2);
}

bool BlobStore::contains(const Hash128& h) const {
  struct stat st {};
  return ::stat(path_of(h).c_str(), &st) == 0;
}

Result<sys::UniqueFd> BlobStore::open_blob(const Hash128& h) const {
  return sys::open_at(AT_FDCWD, path_of(h).c_str(), O_RDONLY | O_NOFOLLOW);
}

Result<void> BlobStore::copy_into(int src, int dst) {
  if (try_clone_.load(std::memory_order_relaxed)) {
    if (::ioctl(dst, FICLONE, src) == 0) return {};
    int e = errno;
    if (e == EOPNOTSUPP || e == ENOTTY || e == EXDEV || e == EINVAL || e == ENOSYS)
      try_clone_.store(false, std::memory_order_relaxed);
    else return Errno{e};
  }
  // Holes stay holes: a sparse file's before-image costs its data only.
  return sys::copy_sparse(src, dst);
}

Result<Hash128> BlobStore::publish_tmp(int tmp_fd) {
  auto h = hash_fd(tmp_fd);
  if (!h) return Errno{h.error()};
  std::string hex = h->hex();
  std::string sub = hex.substr(0, 2);
  std::string rel = sub + "/" + hex.substr(2);
  sys::ProcPath pp(tmp_fd);
  int r = ::linkat(AT_FDCWD, pp.c_str(), dir_fd_.get(), rel.c_str(), AT_SYMLINK_FOLLOW);
  if (r != 0 && errno == ENOENT) {
    // Its directory went missing (removed by hand): make it again.
    if (::mkdirat(dir_fd_.get(), sub.c_str(), 0700) != 0 && errno != EEXIST) return Errno{errno};
    r = ::linkat(AT_FDCWD, pp.c_str(), dir_fd_.get(), rel.c_str(), AT_SYMLINK_FOLLOW);
  }
  if (r != 0) {
    if (errno != EEXIST) return Errno{errno};
    // Reused: make it young again (its ctime), so that a gc running meanwhile
    // does not remove it before the record naming it commits (journal/gc.hpp).
    struct stat st {};
    if (::fstatat(dir_fd_.get(), rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
      (void)::fchmodat(dir_fd_.get(), rel.c_str(), st.st_mode & 07777, 0);
  }
  return *h;
}

Result<Hash128> BlobStore::put_copy(int fd) {
  int t = ::openat(tmp_fd_.get(), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0400);
  if (t < 0) return Errno{errno};
  sys::UniqueFd tmp(t);
  if (auto r = copy_into(fd, tmp.get()); !r) return Errno{r.error()};
  return publish_tmp(tmp.get());
}

Result<Hash128> BlobStore::put_link(int dirfd, const char* name) {
  // The open descriptor pins the inode: what is hashed is what gets linked,
  // straight to its name in the store (no staging link to make and remove).
  auto fd = sys::open_at(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOATIME);
  if (!fd) return Errno{fd.error()};
  auto st = sys::stat_fd(fd->get());
  if (!st) return Errno{st.error()};
  if (!S_ISREG(st->st_mode)) return Errno{EINVAL};
  return publish_tmp(fd->get());
}

Result<void> BlobStore::put_link_known(int dirfd, const char* name, const Hash128& h,
                                       const struct stat& expect) {
  std::string hex = h.hex();
  std::string rel = hex.substr(0, 2) + "/" + hex.substr(2);
  if (::linkat(dirfd, name, dir_fd_.get(), rel.c_str(), 0) != 0) {
    if (errno != EEXIST) return Errno{errno};
    // Already stored: make it young again, as publish_tmp() does.
    struct stat st {};
    if (::fstatat(dir_fd_.get(), rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
      (void)::fchmodat(dir_fd_.get(), rel.c_str(), st.st_mode & 07777, 0);
    return {};
  }
  // The name may have been given to another object since `expect` was taken
  // (a change to the source tree outside the view): then this link is not
  // the content `h` names, and is undone.
  struct stat st {};
  if (::fstatat(dir_fd_.get(), rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Errno{errno};
  if (st.st_ino != expect.st_ino || st.st_dev != expect.st_dev || st.st_size != expect.st_size ||
      st.st_mtim.tv_sec != expect.st_mtim.tv_sec || st.st_mtim.tv_nsec != expect.st_mtim.tv_nsec) {
    ::unlinkat(dir_fd_.get(), rel.c_str(), 0);
    return Errno{ESTALE};
  }
  return {};
}

void BlobStore::unlink_if_inode(const Hash128& h, dev_t dev, ino_t ino) {
  struct stat st {};
  std::string p = path_of(h);
  if (::lstat(p.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino) ::unlink(p.c_str());
}

void BlobStore::for_each_blob(
    const std::function<void(const Hash128&, const std::string&)>& fn) const {
  namespace stdfs = std::filesystem;
  std::error_code ec;
  for (auto it = stdfs::directory_iterator(dir_, ec); !ec && it != stdfs::directory_iterator();
       it.increment(ec)) {
    std::string sub = it->path().filename().string();
    std::error_code ec2;
    if (sub.size() != 2 || !it->is_directory(ec2)) continue;
    for (auto f = stdfs::directory_iterator(it->path(), ec2);
         !ec2 && f != stdfs::directory_iterator(); f.increment(ec2)) {
      Hash128 h;
      if (Hash128::parse(sub + f->path().filename().string(), h)) fn(h, f->path().string());
    }
  }
}

size_t BlobStore::remove_tmp_links() const {
  namespace stdfs = std::filesystem;
  std::error_code ec;
  size_t n = 0;
  for (auto f = stdfs::directory_iterator(dir_ + "/tmp", ec);
       !ec && f != stdfs::directory_iterator(); f.increment(ec)) {
    if (f->path().filename().string().rfind("l.", 0) != 0) continue;
    if (::unlink(f->path().c_str()) == 0) ++n;
  }
  return n;
}

uint64_t BlobStore::disk_bytes() const {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir_, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  }
  return total;
}

}  // namespace scopefs::journal
