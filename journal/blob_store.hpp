// Content-addressed blob store for before-images (and, later, held content).
//
// Layout: STATE_DIR/blobs/<2 hex>/<30 hex>, named by XXH3-128 of the content,
// read-only (0400); STATE_DIR/blobs/tmp/ for blobs being made. The 256
// <2 hex> directories are made with the store (and again if one goes missing). Blobs are
// deduplicated by name; reference counts live in the journal ("b/<hash>"),
// updated in the same transaction as the record that references the blob.
//
// Taking a before-image, cheapest first (probed once, remembered):
//   - an object about to lose its last name (unlink, replaced by rename) on
//     the store's filesystem gets a hard link into the store: no copy at all;
//   - otherwise FICLONE (reflink) into an O_TMPFILE, else copy_file_range,
//     else read/write, of the data extents only (holes stay holes).
// Concurrency: all methods are thread-safe; only the probe flags are shared.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <functional>
#include <string>

#include "fs/result.hpp"
#include "fs/sys/unique_fd.hpp"
#include "journal/hash.hpp"

namespace scopefs::journal {

class BlobStore {
 public:
  // Creates the directories (tmp/ and the 256 fan-out ones); throws
  // std::runtime_error on failure.
  explicit BlobStore(std::string dir);

  // Copies the whole content of `fd` into the store.
  Result<Hash128> put_copy(int fd);
  // Adds a hard link to the regular file (dirfd, name) into the store, named
  // by its content (read once). Only for objects on the store's filesystem
  // (same_fs()).
  Result<Hash128> put_link(int dirfd, const char* name);
  // The same for a file whose content hash is already known (it was written
  // through the view and has not changed since): no read. `expect` is the
  // file's stat when `h` was looked up; if the name no longer holds that
  // file, the link is undone and ESTALE returned (then use put_link()).
  Result<void> put_link_known(int dirfd, const char* name, const Hash128& h,
                              const struct stat& expect);

  // Removes the blob named `h` if it is the inode (dev, ino): undoes a
  // put_link whose removal then failed, so a live file is never a blob.
  void unlink_if_inode(const Hash128& h, dev_t dev, ino_t ino);

  // Calls fn(hash, path) for every blob file in the store (not tmp/).
  void for_each_blob(const std::function<void(const Hash128&, const std::string&)>& fn) const;
  // Unlinks what an older put_link() left in tmp/ when the process died
  // between its links: hard links to users' files. Only with the state lock held and
  // nothing under way (journal open after a crash). Returns how many.
  size_t remove_tmp_links() const;

  bool same_fs(dev_t dev) const { return dev == dev_; }
  std::string path_of(const Hash128& h) const;
  Result<sys::UniqueFd> open_blob(const Hash128& h) const;
  bool contains(const Hash128& h) const;
  uint64_t disk_bytes() const;
  const std::string& dir() const { return dir_; }

 private:
  void make_fanout();
  Result<Hash128> publish_tmp(int tmp_fd);
  Result<void> copy_into(int src, int dst);

  std::string dir_;
  sys::UniqueFd dir_fd_;
  sys::UniqueFd tmp_fd_;
  dev_t dev_ = 0;
  std::atomic<bool> try_clone_{true};
};

}  // namespace scopefs::journal
