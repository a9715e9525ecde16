// Fills fuse_lowlevel_ops, nothing else (STYLE rule 1). No flock/getlk/setlk:
// the kernel then keeps flock and POSIX locks locally, coherent for every
// process using the view.
#include "fs/ops/ops.hpp"

namespace scopefs::fs {

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops o{};
  o.init = ops::init;
  o.destroy = ops::destroy;
  o.lookup = ops::lookup;
  o.forget = ops::forget;
  o.forget_multi = ops::forget_multi;
  o.getattr = ops::getattr;
  o.setattr = ops::setattr;
  o.readlink = ops::readlink;
  o.mknod = ops::mknod;
  o.mkdir = ops::mkdir;
  o.unlink = ops::unlink;
  o.rmdir = ops::rmdir;
  o.symlink = ops::symlink;
  o.rename = ops::rename;
  o.link = ops::link;
  o.open = ops::open;
  o.create = ops::create;
  o.read = ops::read;
  o.write_buf = ops::write_buf;
  o.flush = ops::flush;
  o.release = ops::release;
  o.fsync = ops::fsync;
  o.opendir = ops::opendir;
  o.readdir = ops::readdir;
  o.readdirplus = ops::readdirplus;
  o.releasedir = ops::releasedir;
  o.fsyncdir = ops::fsyncdir;
  o.statfs = ops::statfs;
  o.setxattr = ops::setxattr;
  o.getxattr = ops::getxattr;
  o.listxattr = ops::listxattr;
  o.removexattr = ops::removexattr;
  o.access = ops::access;
  o.fallocate = ops::fallocate;
  o.copy_file_range = ops::copy_file_range;
  o.lseek = ops::lseek;
  return o;
}

}  // namespace scopefs::fs
