#include "fs/session.hpp"

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "fs/ops/ops.hpp"

namespace scopefs::fs {

namespace {
constexpr long kFuseSuperMagic = 0x65735546;
}

bool detach_dead_mount(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) return false;
  int e = errno;
  if (e != ENOTCONN && e != ECONNABORTED) return false;
  if (::umount2(path.c_str(), MNT_DETACH) != 0)
    throw std::runtime_error("cannot clear the dead mount at " + path + ": " +
                             std::strerror(errno));
  return true;
}

void prepare_mountpoint(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    int e = errno;
    if (e == ENOTCONN || e == ECONNABORTED) {
      // A daemon died without unmounting: detach the dead mount.
      detach_dead_mount(path);
      spdlog::warn("cleared a stale mount at {}", path);
    } else if (e == ENOENT) {
      std::error_code ec;
      std::filesystem::create_directories(path, ec);
      if (ec) throw std::runtime_error("cannot create mountpoint " + path + ": " + ec.message());
    } else {
      throw std::runtime_error("mountpoint " + path + ": " + std::strerror(e));
    }
    if (::stat(path.c_str(), &st) != 0)
      throw std::runtime_error("mountpoint " + path + ": " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) throw std::runtime_error("mountpoint " + path + " is not a directory");
  struct statfs sf {};
  if (::statfs(path.c_str(), &sf) == 0 && sf.f_type == kFuseSuperMagic) {
    // A live FUSE mount is there. The caller holds the task's state lock, so
    // it is not one of ours still running for this task.
    throw std::runtime_error("mountpoint " + path +
                             " already has a FUSE filesystem mounted (unmount it first)");
  }
}

Session::Session(View& view, std::string mountpoint, std::string fsname, SessionOptions opts)
    : view_(view), mountpoint_(std::move(mountpoint)), fsname_(std::move(fsname)), opts_(opts) {}

Session::~Session() {
  unmount();
  if (se_) {
    if (signals_) fuse_remove_signal_handlers(se_);
    fuse_session_destroy(se_);
  }
  delete static_cast<FsContext*>(ctx_);
}

void Session::mount() {
  auto* ctx =
      new FsContext{&view_, opts_.entry_timeout, opts_.attr_timeout, opts_.negative_timeout};
  ctx_ = ctx;
  std::string o = "-oallow_other,default_permissions,fsname=" + fsname_ + ",subtype=scopefs";
  std::vector<std::string> argv_s = {"scopefs", o};
  if (opts_.debug) argv_s.emplace_back("-d");
  std::vector<char*> argv;
  argv.reserve(argv_s.size());
  for (auto& s : argv_s) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  fuse_lowlevel_ops ops = make_ops();
  se_ = fuse_session_new(&args, &ops, sizeof ops, ctx);
  fuse_opt_free_args(&args);
  if (!se_) throw std::runtime_error("cannot create the FUSE session");
  if (fuse_set_signal_handlers(se_) != 0) throw std::runtime_error("cannot set signal handlers");
  signals_ = true;
  if (fuse_session_mount(se_, mountpoint_.c_str()) != 0)
    throw std::runtime_error("cannot mount at " + mountpoint_ + " (is /dev/fuse available?)");
  mounted_ = true;
  // Approve/reject/rollback change what the view shows: the kernel drops
  // what it caches about those names and objects.
  fuse_session* se = se_;
  view_.notify_entry = [se](uint64_t parent, const std::string& name) {
    fuse_lowlevel_notify_inval_entry(se, parent, name.c_str(), name.size());
  };
  view_.notify_inode = [se](uint64_t node) { fuse_lowlevel_notify_inval_inode(se, node, 0, 0); };
}

int Session::loop() {
  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, 0);
  fuse_loop_cfg_set_max_threads(cfg, opts_.max_threads);
  fuse_loop_cfg_set_idle_threads(cfg, 4);
  int r = fuse_session_loop_mt(se_, cfg);
  fuse_loop_cfg_destroy(cfg);
  return r;
}

void Session::unmount() {
  view_.notify_entry = nullptr;
  view_.notify_inode = nullptr;
  if (mounted_ && se_) {
    fuse_session_unmount(se_);
    mounted_ = false;
    // After an abort of the connection (fusectl's abort, or the kernel
    // ending it mid-unmount) libfuse skips the unmount and leaves a mount
    // that answers ENOTCONN: detach it, or the mountpoint stays unusable.
    try {
      if (detach_dead_mount(mountpoint_))
        spdlog::warn("detached the dead mount at {}", mountpoint_);
    } catch (const std::exception& e) {
      spdlog::error("{}", e.what());
    }
  }
}

}  // namespace scopefs::fs
