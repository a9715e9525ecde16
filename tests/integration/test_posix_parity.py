"""POSIX parity (issue 9, STYLE rule 28): the same sequence of calls on a
native directory and in the view, every result and errno compared.

A *scenario* is a list of steps (a label and a call). It runs once in a fresh
native directory on the same filesystem as the bind sources, and once in each
view directory; every step's outcome must be equal:

- the return value, normalised: `ok`, bytes read, a sorted listing, a stat
  reduced to what two equal trees share (type, permission bits, link count,
  owner, group, size of non-directories, device numbers), xattr values;
- or the errno of the OSError;
- for mutations, which of mtime and ctime changed on the objects the step
  names (its target and parent directories), as on a native filesystem.

Steps run as root or, in a forked child, as another user with chosen groups:
permission checks, sticky directories, set-ID bits cleared by chown and
write, files created in set-group-ID directories.

Per access level:
- `write` and `stage` must equal native, step for step;
- `read` must equal native for every reading call, and every mutation gives
  EROFS (docs/errors.md, `read` column) and leaves the real tree untouched;
- `hide`: existing hidden names are ENOENT to every call and never listed,
  new names the rules hide are EACCES to create-type calls (docs/errors.md).

The steps include what pjdfstest checks and found (docs/conformance.md),
e.g. the link count of an unlinked file still open through the view.
"""
import ctypes
import errno
import os
import pickle
import stat
import time
from pathlib import Path

import pytest

from helpers import manifest

LIBC = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
USER, OTHER, GROUP3 = 65534, 65533, 65532  # need not exist in /etc/passwd
TICK = 0.005  # ext4 here has fine-grained timestamps; a short pause still makes "changed" robust


def _errno_call(rc):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def renameat2(old, new, flags):
    _errno_call(LIBC.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new),
                               ctypes.c_uint(flags)))


def fallocate(fd, mode, off, length):
    LIBC.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    _errno_call(LIBC.fallocate(fd, mode, off, length))


def norm_stat(st):
    kind = stat.S_IFMT(st.st_mode)
    out = {"type": kind, "mode": oct(stat.S_IMODE(st.st_mode)), "nlink": st.st_nlink,
           "uid": st.st_uid, "gid": st.st_gid}
    if not stat.S_ISDIR(st.st_mode):
        out["size"] = st.st_size
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        out["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
    return out


def normalise(v):
    if v is None:
        return "ok"
    if isinstance(v, os.stat_result):
        return norm_stat(v)
    if isinstance(v, list):
        return sorted(normalise(x) for x in v)
    if isinstance(v, tuple):
        return tuple(normalise(x) for x in v)
    return v


def outcome(fn):
    try:
        return ("ok", normalise(fn()))
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno, e.errno))


def as_user(uid, gid, groups, fn):
    """Runs fn in a forked child with these credentials; returns its outcome."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.close(rfd)
            os.setgroups(groups)
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            data = pickle.dumps(outcome(fn))
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            data = pickle.dumps(("crash", repr(e)))
        os.write(wfd, data)
        os._exit(0)
    os.close(wfd)
    chunks = []
    while True:
        b = os.read(rfd, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(rfd)
    os.waitpid(pid, 0)
    return pickle.loads(b"".join(chunks))


class Run:
    """Runs steps under one root directory and records their outcomes."""

    def __init__(self, root):
        self.root = Path(root)
        self.log = []
        self.fds = {}

    def p(self, rel):
        return str(self.root / rel) if rel else str(self.root)

    def _times(self, watch):
        out = {}
        for rel in watch:
            try:
                st = os.lstat(self.p(rel))
                out[rel] = (st.st_mtime_ns, st.st_ctime_ns)
            except OSError:
                out[rel] = None
        return out

    def do(self, label, fn, watch=(), user=None):
        """fn(p) is called with the path mapper; `user`: (uid, gid, groups)."""
        before = self._times(watch)
        if watch:
            time.sleep(TICK)
        if user is None:
            res = outcome(lambda: fn(self.p))
        else:
            res = as_user(*user, lambda: fn(self.p))
        if watch:
            after = self._times(watch)
            changed = {}
            for rel in watch:
                b, a = before[rel], after[rel]
                if b is None or a is None:
                    changed[rel] = "gone" if a is None and b is not None else "-"
                else:
                    changed[rel] = ("m" if a[0] != b[0] else "") + ("c" if a[1] != b[1] else "")
            res = (res, changed)
        self.log.append((label, res))
        return res

    # Small helpers used by steps (they take the path mapper p).
    def open(self, key, rel, flags, mode=0o644, **kw):
        def f(p):
            self.fds[key] = os.open(p(rel), flags, mode)
        return self.do(f"open {key} {rel} {flags:#o}", f, **kw)

    def close(self, key):
        fd = self.fds.pop(key, None)
        if fd is not None:
            os.close(fd)

    def close_all(self):
        for k in list(self.fds):
            self.close(k)


# --- helpers for steps -------------------------------------------------------

def create(path, mode=0o644, flags=os.O_CREAT | os.O_WRONLY):
    os.close(os.open(path, flags, mode))


def write_file(path, data, flags=os.O_WRONLY):
    fd = os.open(path, flags)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)


def read_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        out = b""
        while True:
            b = os.read(fd, 65536)
            if not b:
                return out
            out += b
    finally:
        os.close(fd)


def times_of(path, follow=True):
    st = os.stat(path, follow_symlinks=follow)
    return (st.st_atime_ns, st.st_mtime_ns)


def xattrs(path):
    names = sorted(n for n in os.listxattr(path) if n.startswith("user."))
    return [(n, os.getxattr(path, n)) for n in names]


AS_USER = (USER, USER, [USER])
AS_OTHER = (OTHER, OTHER, [OTHER])
AS_USER_G3 = (USER, USER, [USER, GROUP3])


# --- the scenario --------------------------------------------------------------

def scenario(r):
    """Every call here must give the same outcome natively and in the view."""
    L = os.lstat
    # Creation and the parent's times.
    r.do("mkdir d", lambda p: os.mkdir(p("d"), 0o755), watch=[""])
    r.do("stat d", lambda p: L(p("d")))
    r.do("create d/f", lambda p: create(p("d/f"), 0o644), watch=["d"])
    r.do("stat d/f", lambda p: L(p("d/f")))
    r.do("write d/f", lambda p: write_file(p("d/f"), b"hello, world\n"), watch=["d/f", "d"])
    r.do("read d/f", lambda p: read_file(p("d/f")))
    r.do("append d/f", lambda p: write_file(p("d/f"), b"more\n", os.O_WRONLY | os.O_APPEND),
         watch=["d/f"])
    r.do("read d/f again", lambda p: read_file(p("d/f")))
    r.do("O_EXCL on an existing file", lambda p: create(p("d/f"), 0o644,
                                                       os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    r.do("O_CREAT of an existing file keeps it", lambda p: create(p("d/f"), 0o600), watch=["d/f"])
    r.do("stat d/f after O_CREAT", lambda p: L(p("d/f")))
    r.do("mkdir over a file", lambda p: os.mkdir(p("d/f")))
    r.do("mkdir under a file", lambda p: os.mkdir(p("d/f/x")))
    r.do("mkdir with a missing parent", lambda p: os.mkdir(p("d/nope/x")))
    r.do("create a 256-byte name", lambda p: create(p("d/" + "n" * 256)))
    r.do("create a 255-byte name", lambda p: create(p("d/" + "n" * 255)), watch=["d"])
    r.do("unlink a 255-byte name", lambda p: os.unlink(p("d/" + "n" * 255)), watch=["d"])
    r.do("mkdir mode 0", lambda p: os.mkdir(p("d/m0"), 0), watch=["d"])
    r.do("stat d/m0", lambda p: L(p("d/m0")))
    r.do("mkdir setgid+sticky", lambda p: os.mkdir(p("d/msg"), 0o3777))
    r.do("stat d/msg", lambda p: L(p("d/msg")))
    r.do("stat d (nlink counts subdirs)", lambda p: L(p("d")))
    r.do("mkfifo", lambda p: os.mkfifo(p("d/fifo"), 0o640), watch=["d"])
    r.do("mknod chr", lambda p: os.mknod(p("d/chr"), stat.S_IFCHR | 0o600, os.makedev(1, 3)))
    r.do("mknod blk", lambda p: os.mknod(p("d/blk"), stat.S_IFBLK | 0o600, os.makedev(7, 9)))
    r.do("mknod sock", lambda p: os.mknod(p("d/sock"), stat.S_IFSOCK | 0o600))
    r.do("mknod reg", lambda p: os.mknod(p("d/reg"), stat.S_IFREG | 0o600))
    for n in ("fifo", "chr", "blk", "sock", "reg"):
        r.do(f"stat d/{n}", lambda p, n=n: L(p(f"d/{n}")))
    r.do("mknod over an existing name", lambda p: os.mkfifo(p("d/fifo")))

    # Symlinks.
    r.do("symlink", lambda p: os.symlink("f", p("d/sl")), watch=["d"])
    r.do("readlink", lambda p: os.readlink(p("d/sl")))
    r.do("lstat symlink", lambda p: L(p("d/sl")))
    r.do("stat through symlink", lambda p: os.stat(p("d/sl")))
    r.do("readlink of a file", lambda p: os.readlink(p("d/f")))
    r.do("symlink over an existing name", lambda p: os.symlink("x", p("d/f")))
    r.do("symlink loop", lambda p: os.symlink("loop", p("d/loop")))
    r.do("open a symlink loop", lambda p: read_file(p("d/loop")))
    r.do("open O_NOFOLLOW of a symlink", lambda p: os.close(os.open(p("d/sl"), os.O_RDONLY | os.O_NOFOLLOW)))
    r.do("O_CREAT|O_EXCL through a symlink", lambda p: create(p("d/sl"), 0o644,
                                                             os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    r.do("dangling symlink", lambda p: os.symlink("target", p("d/dang")))
    r.do("O_CREAT through a dangling symlink", lambda p: create(p("d/dang"), 0o640), watch=["d"])
    r.do("stat the created target", lambda p: L(p("d/target")))
    r.do("long symlink target", lambda p: os.symlink("t" * 4095, p("d/longsl")))
    r.do("readlink long target", lambda p: len(os.readlink(p("d/longsl"))))
    r.do("lutimes of a symlink", lambda p: os.utime(p("d/sl"), ns=(10**9, 2 * 10**9),
                                                   follow_symlinks=False))
    r.do("symlink times", lambda p: times_of(p("d/sl"), follow=False))
    r.do("target times untouched", lambda p: times_of(p("d/f"))[1] != 2 * 10**9)

    # Opens.
    r.do("O_DIRECTORY of a file", lambda p: os.close(os.open(p("d/f"), os.O_RDONLY | os.O_DIRECTORY)))
    r.do("open a directory O_WRONLY", lambda p: os.close(os.open(p("d"), os.O_WRONLY)))
    r.do("open a directory O_RDWR", lambda p: os.close(os.open(p("d"), os.O_RDWR)))
    r.do("open a file with a trailing slash", lambda p: os.close(os.open(p("d/f") + "/", os.O_RDONLY)))
    r.do("O_TRUNC", lambda p: os.close(os.open(p("d/target"), os.O_WRONLY | os.O_TRUNC)),
         watch=["d/target"])
    r.do("O_RDONLY|O_TRUNC of a file with content",
         lambda p: (write_file(p("d/target"), b"abc"),
                    os.close(os.open(p("d/target"), os.O_RDONLY | os.O_TRUNC)),
                    L(p("d/target")).st_size))

    # Hard links.
    r.do("link", lambda p: os.link(p("d/f"), p("d/f2")), watch=["d", "d/f"])
    r.do("stat both links", lambda p: (L(p("d/f")), L(p("d/f2")), L(p("d/f")).st_ino == L(p("d/f2")).st_ino))
    r.do("link over an existing name", lambda p: os.link(p("d/f"), p("d/f2")))
    r.do("link a directory", lambda p: os.link(p("d/m0"), p("d/m0link")))
    r.do("link a symlink", lambda p: os.link(p("d/sl"), p("d/sl2"), follow_symlinks=False))
    r.do("stat the linked symlink", lambda p: L(p("d/sl2")))
    r.do("link a fifo", lambda p: os.link(p("d/fifo"), p("d/fifo2")), watch=["d/fifo"])
    r.do("write through the second link", lambda p: write_file(p("d/f2"), b"HELLO"))
    r.do("read the first link", lambda p: read_file(p("d/f")))
    r.do("unlink the second link", lambda p: os.unlink(p("d/f2")), watch=["d", "d/f"])
    r.do("stat d/f nlink", lambda p: L(p("d/f")))

    # Removal errors.
    r.do("unlink a directory", lambda p: os.unlink(p("d/m0")))
    r.do("rmdir a file", lambda p: os.rmdir(p("d/f")))
    r.do("rmdir a non-empty directory", lambda p: os.rmdir(p("d")))
    r.do("rmdir .", lambda p: os.rmdir(p("d/m0/.")))
    r.do("rmdir ..", lambda p: os.rmdir(p("d/m0/..")))
    r.do("unlink a missing name", lambda p: os.unlink(p("d/missing")))
    r.do("rmdir", lambda p: os.rmdir(p("d/msg")), watch=["d"])
    r.do("stat d nlink after rmdir", lambda p: L(p("d")))

    # Renames.
    r.do("mkdir d/a", lambda p: os.mkdir(p("d/a")))
    r.do("mkdir d/b", lambda p: os.mkdir(p("d/b")))
    r.do("mkdir d/e", lambda p: os.mkdir(p("d/e")))
    r.do("create d/a/x", lambda p: write_file(p("d/a/x"), b"x", os.O_CREAT | os.O_WRONLY))
    r.do("create d/a/y", lambda p: write_file(p("d/a/y"), b"yy", os.O_CREAT | os.O_WRONLY))
    r.do("create d/b/z", lambda p: create(p("d/b/z")))
    r.do("rename within a directory", lambda p: os.rename(p("d/a/x"), p("d/a/x2")),
         watch=["d/a", "d/a/x"])
    r.do("rename across directories", lambda p: os.rename(p("d/a/x2"), p("d/b/x")),
         watch=["d/a", "d/b"])
    r.do("stat the moved file", lambda p: L(p("d/b/x")))
    r.do("rename over a file", lambda p: os.rename(p("d/a/y"), p("d/b/x")), watch=["d/a", "d/b"])
    r.do("read the replacing file", lambda p: read_file(p("d/b/x")))
    r.do("rename a file to itself", lambda p: os.rename(p("d/b/x"), p("d/b/x")))
    r.do("rename a file over a directory", lambda p: os.rename(p("d/b/x"), p("d/e")))
    r.do("rename a directory over a file", lambda p: os.rename(p("d/e"), p("d/b/x")))
    r.do("rename a directory over a non-empty one", lambda p: os.rename(p("d/e"), p("d/b")))
    r.do("rename a directory into itself", lambda p: os.rename(p("d/a"), p("d/a/sub")))
    r.do("rename a missing name", lambda p: os.rename(p("d/missing"), p("d/x")))
    r.do("rename a directory across directories", lambda p: os.rename(p("d/e"), p("d/a/e")),
         watch=["d", "d/a", "d/e"])
    r.do("link counts after a directory move", lambda p: (L(p("d")), L(p("d/a")), L(p("d/a/e"))))
    r.do("mkdir d/a/e2", lambda p: os.mkdir(p("d/a/e2")))
    r.do("rename a directory over an empty one", lambda p: os.rename(p("d/a/e"), p("d/a/e2")),
         watch=["d/a"])
    r.do("link count after replacing a directory", lambda p: L(p("d/a")))
    r.do("listing of d/a", lambda p: os.listdir(p("d/a")))
    r.do("two links of one file renamed onto each other",
         lambda p: (os.link(p("d/b/x"), p("d/b/x3")), os.rename(p("d/b/x"), p("d/b/x3")),
                    sorted(os.listdir(p("d/b")))))
    r.do("RENAME_NOREPLACE onto an existing name",
         lambda p: renameat2(p("d/b/z"), p("d/b/x3"), RENAME_NOREPLACE))
    r.do("RENAME_NOREPLACE", lambda p: renameat2(p("d/b/z"), p("d/b/z2"), RENAME_NOREPLACE))
    r.do("RENAME_EXCHANGE a file and a directory",
         lambda p: renameat2(p("d/b/z2"), p("d/a/e2"), RENAME_EXCHANGE), watch=["d/a", "d/b"])
    r.do("after the exchange", lambda p: (L(p("d/b/z2")), L(p("d/a/e2")), L(p("d/a")), L(p("d/b"))))
    r.do("RENAME_EXCHANGE with a missing name",
         lambda p: renameat2(p("d/b/z2"), p("d/b/none"), RENAME_EXCHANGE))
    r.do("RENAME_NOREPLACE|RENAME_EXCHANGE",
         lambda p: renameat2(p("d/b/z2"), p("d/a/e2"), RENAME_NOREPLACE | RENAME_EXCHANGE))

    # Attributes.
    r.do("chmod", lambda p: os.chmod(p("d/f"), 0o4755), watch=["d/f"])
    r.do("stat after chmod", lambda p: L(p("d/f")))
    r.do("chmod a directory", lambda p: os.chmod(p("d/b"), 0o1777))
    r.do("chown", lambda p: os.chown(p("d/f"), USER, USER), watch=["d/f"])
    r.do("chown cleared the set-user-ID bit", lambda p: L(p("d/f")))
    r.do("chown -1 -1", lambda p: os.chown(p("d/f"), -1, -1), watch=["d/f"])
    r.do("lchown a symlink", lambda p: os.chown(p("d/sl"), OTHER, OTHER, follow_symlinks=False))
    r.do("lstat after lchown", lambda p: (L(p("d/sl")), L(p("d/f"))))
    r.do("chmod by the owner", lambda p: os.chmod(p("d/f"), 0o2755), user=AS_USER)
    r.do("set-group-ID kept (owner in the group)", lambda p: L(p("d/f")))
    r.do("chmod by another user", lambda p: os.chmod(p("d/f"), 0o777), user=AS_OTHER)
    r.do("chown by the owner to another user", lambda p: os.chown(p("d/f"), OTHER, -1), user=AS_USER)
    r.do("chgrp by the owner to a group it is not in", lambda p: os.chown(p("d/f"), -1, GROUP3),
         user=AS_USER)
    r.do("chgrp by the owner to one of its groups", lambda p: os.chown(p("d/f"), -1, GROUP3),
         user=AS_USER_G3)
    r.do("stat after chgrp", lambda p: L(p("d/f")))
    r.do("chmod set-group-ID by an owner outside the group",
         lambda p: os.chmod(p("d/f"), 0o2755), user=AS_USER)
    r.do("set-group-ID silently dropped", lambda p: L(p("d/f")))
    r.do("chmod 06777 as root", lambda p: os.chmod(p("d/f"), 0o6777))
    r.do("write by another user clears set-ID bits",
         lambda p: write_file(p("d/f"), b"!"), user=AS_OTHER)
    r.do("mode after the write", lambda p: L(p("d/f")))
    r.do("truncate larger", lambda p: os.truncate(p("d/f"), 100000), watch=["d/f"])
    r.do("truncate smaller", lambda p: os.truncate(p("d/f"), 3), watch=["d/f"])
    r.do("truncate to the same size", lambda p: os.truncate(p("d/f"), 3), watch=["d/f"])
    r.do("read after truncate", lambda p: read_file(p("d/f")))
    r.do("truncate negative", lambda p: os.truncate(p("d/f"), -1))
    r.do("truncate a directory", lambda p: os.truncate(p("d/a"), 0))
    r.do("ftruncate a read-only fd", lambda p: _ftruncate_ro(p("d/f")))
    r.do("utime explicit", lambda p: os.utime(p("d/f"), ns=(5 * 10**9, 6 * 10**9)), watch=["d/f"])
    r.do("times after utime", lambda p: times_of(p("d/f")))
    r.do("utime now", lambda p: os.utime(p("d/f")), watch=["d/f"])
    r.do("chmod 0644, owner USER", lambda p: (os.chmod(p("d/f"), 0o646), os.chown(p("d/f"), USER, USER)))
    r.do("utime now by a user with write permission", lambda p: os.utime(p("d/f")), user=AS_OTHER)
    r.do("utime explicit by a non-owner", lambda p: os.utime(p("d/f"), ns=(1, 1)), user=AS_OTHER)
    r.do("chmod 0644", lambda p: os.chmod(p("d/f"), 0o644))
    r.do("utime now by a user without write permission", lambda p: os.utime(p("d/f")), user=AS_OTHER)
    r.do("utime explicit by the owner", lambda p: os.utime(p("d/f"), ns=(7, 8)), user=AS_USER)
    r.do("times after the owner's utime", lambda p: times_of(p("d/f")))

    # Permissions of other users.
    r.do("mkdir d/priv 0700", lambda p: (os.mkdir(p("d/priv"), 0o700), create(p("d/priv/s"), 0o600)))
    r.do("stat below a 0700 directory", lambda p: L(p("d/priv/s")), user=AS_USER)
    r.do("create below a 0700 directory", lambda p: create(p("d/priv/n")), user=AS_USER)
    r.do("listdir a 0700 directory", lambda p: os.listdir(p("d/priv")), user=AS_USER)
    r.do("chmod d/priv 0711", lambda p: os.chmod(p("d/priv"), 0o711))
    r.do("open a 0600 file of root", lambda p: read_file(p("d/priv/s")), user=AS_USER)
    r.do("stat through a 0711 directory", lambda p: L(p("d/priv/s")), user=AS_USER)
    r.do("listdir a 0711 directory", lambda p: os.listdir(p("d/priv")), user=AS_USER)
    r.do("access as a user", lambda p: [os.access(p("d/priv/s"), m)
                                        for m in (os.R_OK, os.W_OK, os.X_OK, os.F_OK)], user=AS_USER)
    r.do("mkdir d/pub 01777", lambda p: (os.mkdir(p("d/pub")), os.chmod(p("d/pub"), 0o1777)))
    r.do("create in a sticky directory", lambda p: create(p("d/pub/mine"), 0o644), user=AS_OTHER)
    r.do("owner of a file created by a user", lambda p: L(p("d/pub/mine")))
    r.do("unlink another user's file in a sticky dir", lambda p: os.unlink(p("d/pub/mine")),
         user=AS_USER)
    r.do("rename another user's file in a sticky dir",
         lambda p: os.rename(p("d/pub/mine"), p("d/pub/theirs")), user=AS_USER)
    r.do("unlink one's own file in a sticky dir", lambda p: os.unlink(p("d/pub/mine")),
         user=AS_OTHER)
    r.do("mkdir d/sg 02777 group GROUP3",
         lambda p: (os.mkdir(p("d/sg")), os.chown(p("d/sg"), 0, GROUP3), os.chmod(p("d/sg"), 0o2777)))
    r.do("create in a set-group-ID directory", lambda p: create(p("d/sg/f"), 0o2755), user=AS_USER)
    r.do("mkdir in a set-group-ID directory", lambda p: os.mkdir(p("d/sg/sub"), 0o755), user=AS_USER)
    r.do("objects inherit the group", lambda p: (L(p("d/sg/f")), L(p("d/sg/sub"))))
    r.do("symlink by a user", lambda p: os.symlink("x", p("d/pub/usl")), user=AS_USER)
    r.do("owner of the user's symlink", lambda p: L(p("d/pub/usl")))
    r.do("mkfifo by a user", lambda p: os.mkfifo(p("d/pub/ufifo"), 0o666), user=AS_USER)
    r.do("owner of the user's fifo", lambda p: L(p("d/pub/ufifo")))
    r.do("link by a user to a file it cannot write",
         lambda p: os.link(p("d/priv/s"), p("d/pub/slink")), user=AS_USER)

    # Files still open when unlinked or replaced.
    r.open("rw", "d/b/x3", os.O_RDWR)
    r.do("unlink a file open for writing", lambda p: os.unlink(p("d/b/x3")), watch=["d/b"])
    r.do("fstat: no links left", lambda p: os.fstat(r.fds["rw"]))
    r.do("write to the unlinked file", lambda p: os.pwrite(r.fds["rw"], b"still here", 0))
    r.do("read the unlinked file", lambda p: os.pread(r.fds["rw"], 100, 0))
    r.do("fchmod the unlinked file", lambda p: os.fchmod(r.fds["rw"], 0o600))
    r.do("fstat after fchmod", lambda p: os.fstat(r.fds["rw"]))
    r.close("rw")
    r.do("create d/ro", lambda p: write_file(p("d/ro"), b"read only", os.O_CREAT | os.O_WRONLY))
    r.open("ro", "d/ro", os.O_RDONLY)
    r.do("unlink a file open for reading", lambda p: os.unlink(p("d/ro")))
    r.do("fstat of the reader: no links left", lambda p: os.fstat(r.fds["ro"]))
    r.do("read the unlinked file (reader)", lambda p: os.pread(r.fds["ro"], 100, 0))
    r.close("ro")
    r.do("create d/victim", lambda p: write_file(p("d/victim"), b"old", os.O_CREAT | os.O_WRONLY))
    r.open("victim", "d/victim", os.O_RDONLY)
    r.do("rename over a file open for reading", lambda p: os.rename(p("d/target"), p("d/victim")))
    r.do("fstat of the replaced file", lambda p: os.fstat(r.fds["victim"]))
    r.do("read the replaced file", lambda p: os.pread(r.fds["victim"], 10, 0))
    r.close("victim")
    r.do("create d/two", lambda p: write_file(p("d/two"), b"2", os.O_CREAT | os.O_WRONLY))
    r.do("link d/two2", lambda p: os.link(p("d/two"), p("d/two2")))
    r.open("two", "d/two", os.O_RDONLY)
    r.do("unlink one of two links of an open file", lambda p: os.unlink(p("d/two")))
    r.do("fstat: one link left", lambda p: os.fstat(r.fds["two"]))
    r.do("stat the other link", lambda p: L(p("d/two2")))
    r.close("two")

    # Xattrs.
    r.do("setxattr", lambda p: os.setxattr(p("d/a"), "user.k", b"v1"), watch=["d/a"])
    r.do("getxattr", lambda p: os.getxattr(p("d/a"), "user.k"))
    r.do("XATTR_CREATE of an existing name",
         lambda p: os.setxattr(p("d/a"), "user.k", b"v2", os.XATTR_CREATE))
    r.do("XATTR_REPLACE of a missing name",
         lambda p: os.setxattr(p("d/a"), "user.none", b"v2", os.XATTR_REPLACE))
    r.do("XATTR_REPLACE", lambda p: os.setxattr(p("d/a"), "user.k", b"v2", os.XATTR_REPLACE))
    r.do("empty xattr value", lambda p: os.setxattr(p("d/a"), "user.empty", b""))
    r.do("xattrs of d/a", lambda p: xattrs(p("d/a")))
    r.do("getxattr of a missing name", lambda p: os.getxattr(p("d/a"), "user.none"))
    r.do("removexattr of a missing name", lambda p: os.removexattr(p("d/a"), "user.none"))
    r.do("removexattr", lambda p: os.removexattr(p("d/a"), "user.k"), watch=["d/a"])
    r.do("xattrs after removal", lambda p: xattrs(p("d/a")))
    r.do("setxattr on a file", lambda p: os.setxattr(p("d/f"), "user.f", b"x" * 3000))
    r.do("xattrs of d/f", lambda p: xattrs(p("d/f")))
    r.do("setxattr on a symlink", lambda p: os.setxattr(p("d/sl"), "user.k", b"v",
                                                       follow_symlinks=False))
    r.do("setxattr by another user", lambda p: os.setxattr(p("d/f"), "user.o", b"v"), user=AS_OTHER)
    r.do("trusted xattr as root", lambda p: (os.setxattr(p("d/f"), "trusted.t", b"t"),
                                             os.getxattr(p("d/f"), "trusted.t")))
    r.do("unknown xattr namespace", lambda p: os.setxattr(p("d/f"), "bogus.k", b"v"))

    # File space.
    r.do("create d/sp", lambda p: create(p("d/sp")))
    r.open("sp", "d/sp", os.O_RDWR)
    r.do("posix_fallocate", lambda p: os.posix_fallocate(r.fds["sp"], 0, 65536), watch=["d/sp"])
    r.do("size after fallocate", lambda p: os.fstat(r.fds["sp"]))
    r.do("fallocate KEEP_SIZE", lambda p: fallocate(r.fds["sp"], FALLOC_FL_KEEP_SIZE, 0, 200000))
    r.do("size after KEEP_SIZE", lambda p: os.fstat(r.fds["sp"]))
    r.do("write in the middle", lambda p: os.pwrite(r.fds["sp"], b"D" * 8192, 16384))
    r.do("punch a hole", lambda p: fallocate(r.fds["sp"], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                             16384, 4096))
    r.do("read around the hole", lambda p: os.pread(r.fds["sp"], 12288, 12288))
    r.do("SEEK_END", lambda p: os.lseek(r.fds["sp"], 0, os.SEEK_END))
    r.do("pwrite past the end", lambda p: os.pwrite(r.fds["sp"], b"E", 1 << 20))
    r.do("size after pwrite past the end", lambda p: os.fstat(r.fds["sp"]))
    r.do("read a sparse region", lambda p: os.pread(r.fds["sp"], 16, 500000))
    r.do("ftruncate", lambda p: os.ftruncate(r.fds["sp"], 10), watch=["d/sp"])
    r.do("read after ftruncate", lambda p: os.pread(r.fds["sp"], 100, 0))
    r.close("sp")
    r.do("copy_file_range", lambda p: _copy_range(p("d/f"), p("d/copy")))
    r.do("read the copy", lambda p: read_file(p("d/copy")))

    # Directory listings.
    r.do("many names", lambda p: _many(p("d/many"), 150))
    r.do("remove every third", lambda p: _unlink_each(p("d/many"), range(0, 150, 3)))
    r.do("listing of d/many", lambda p: os.listdir(p("d/many")))
    r.do("listing of d", lambda p: os.listdir(p("d")))
    r.do("scandir types of d", lambda p: sorted((e.name, e.is_dir(follow_symlinks=False),
                                                 e.is_symlink()) for e in os.scandir(p("d"))))
    r.do("rm -r d/many", lambda p: _rm_r(p("d/many")), watch=["d"])
    r.close_all()


def _many(d, n):
    os.mkdir(d)
    for i in range(n):
        create(os.path.join(d, f"{i:03}"))


def _unlink_each(d, indexes):
    for i in indexes:
        os.unlink(os.path.join(d, f"{i:03}"))


def _rm_r(d):
    for n in os.listdir(d):
        os.unlink(os.path.join(d, n))
    os.rmdir(d)


def _ftruncate_ro(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _copy_range(src, dst):
    i = os.open(src, os.O_RDONLY)
    o = os.open(dst, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        return os.copy_file_range(i, o, 1 << 20)
    finally:
        os.close(i)
        os.close(o)


# Under stage, a held change to a directory's names updates its mtime/ctime
# in the view, and a link's gain or loss its ctime, as natively: no time flag
# is exempt (the overlay keeps those times, fs/stage.hpp "times").
STAGE_TIME_EXEMPT = set()


def exempt_stage_times(log):
    out = []
    for label, res in log:
        if isinstance(res, tuple) and len(res) == 2 and isinstance(res[1], dict):
            res = (res[0], {k: ("exempt" if (label, k) in STAGE_TIME_EXEMPT else v)
                            for k, v in res[1].items()})
        out.append((label, res))
    return out


def compare(native, view, where):
    assert len(native.log) == len(view.log)
    nlog, vlog = native.log, view.log
    if where == "stage":
        nlog, vlog = exempt_stage_times(nlog), exempt_stage_times(vlog)
    diffs = [f"  {label}:\n    native: {n}\n    {where}: {v}"
             for (label, n), (_, v) in zip(nlog, vlog) if n != v]
    if diffs:
        raise AssertionError(f"{len(diffs)} of {len(native.log)} steps differ "
                             f"from native under {where}:\n" + "\n".join(diffs))


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def native_root(tmp_root, name):
    d = tmp_root / "native" / name
    d.mkdir(parents=True)
    os.chmod(d, 0o755)
    return d


@pytest.mark.parametrize("access", ["write", "stage"])
def test_mutating_scenario_equals_native(mount, tmp_root, umask022, access):
    m = mount([{"path": "v", "access": access}])
    native = Run(native_root(tmp_root, access))
    scenario(native)
    view = Run(m.mp / "v")
    scenario(view)
    compare(native, view, access)
    if access == "write":
        # What the view left in the real tree is what the native run left.
        assert manifest(m.src("v")) == manifest(native.root)
    else:
        assert list(m.src("v").iterdir()) == [], "stage changed the real tree"


# --- read and hide ----------------------------------------------------------------

def populate(root):
    """The same small tree in a native directory and in a bind's source."""
    root = Path(root)
    (root / "d").mkdir()
    (root / "d" / "f").write_bytes(b"content\n")
    (root / "d" / "empty").write_bytes(b"")
    (root / "d" / "big").write_bytes(bytes(range(256)) * 1024)
    os.link(root / "d" / "f", root / "d" / "f_link")
    os.symlink("f", root / "d" / "sl")
    os.mkfifo(root / "d" / "fifo", 0o644)
    (root / "d" / "sub").mkdir()
    (root / "d" / "sub" / "deep").write_bytes(b"deep")
    (root / "d" / "priv").mkdir(mode=0o700)
    (root / "d" / "secret600").write_bytes(b"s")
    os.chmod(root / "d" / "secret600", 0o600)
    (root / "d" / "users").write_bytes(b"u")
    os.chown(root / "d" / "users", USER, USER)
    os.chmod(root / "d" / "users", 0o640)
    os.setxattr(root / "d" / "f", "user.a", b"1")
    os.setxattr(root / "d" / "sub", "user.b", b"2")
    (root / "d" / "hidden_file").write_bytes(b"h")
    (root / "d" / "hidden_dir").mkdir()
    (root / "d" / "hidden_dir" / "x").write_bytes(b"x")


def reading(r):
    """Reading calls: equal to native under read (and write, stage)."""
    L = os.lstat
    for n in ("d", "d/f", "d/empty", "d/big", "d/f_link", "d/sl", "d/fifo", "d/sub",
              "d/sub/deep", "d/priv", "d/secret600", "d/users"):
        r.do(f"lstat {n}", lambda p, n=n: L(p(n)))
    r.do("stat through the symlink", lambda p: os.stat(p("d/sl")))
    r.do("read d/f", lambda p: read_file(p("d/f")))
    r.do("read d/big", lambda p: read_file(p("d/big")))
    r.do("read through the symlink", lambda p: read_file(p("d/sl")))
    r.do("pread", lambda p: _pread(p("d/big"), 1000, 70000))
    r.do("readlink", lambda p: os.readlink(p("d/sl")))
    r.do("listdir d", lambda p: os.listdir(p("d")))
    r.do("scandir d", lambda p: sorted((e.name, e.is_dir(follow_symlinks=False), e.is_symlink())
                                       for e in os.scandir(p("d"))))
    r.do("xattrs of d/f", lambda p: xattrs(p("d/f")))
    r.do("xattrs of d/sub", lambda p: xattrs(p("d/sub")))
    r.do("getxattr of a missing name", lambda p: os.getxattr(p("d/f"), "user.none"))
    r.do("open O_DIRECTORY of a file", lambda p: os.close(os.open(p("d/f"), os.O_DIRECTORY)))
    r.do("read a directory", lambda p: _read_dir_fd(p("d")))
    r.do("a missing name", lambda p: L(p("d/missing")))
    r.do("a name below a file", lambda p: L(p("d/f/x")))
    r.do("read a 0600 file as a user", lambda p: read_file(p("d/secret600")), user=AS_USER)
    r.do("list a 0700 directory as a user", lambda p: os.listdir(p("d/priv")), user=AS_USER)
    r.do("read a 0640 file as its owner", lambda p: read_file(p("d/users")), user=AS_USER)
    r.do("access R_OK/X_OK as a user", lambda p: [os.access(p(n), m) for n in
                                                  ("d/f", "d/secret600", "d/priv", "d/sub")
                                                  for m in (os.R_OK, os.X_OK)], user=AS_USER)


def _pread(path, n, off):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, n, off)
    finally:
        os.close(fd)


def _read_dir_fd(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return os.read(fd, 10)
    finally:
        os.close(fd)


# Mutations that succeed natively on the populated tree, by docs/errors.md row.
MUTATIONS = [
    ("create", lambda p: create(p("d/new"))),
    ("mkdir", lambda p: os.mkdir(p("d/newdir"))),
    ("mknod", lambda p: os.mkfifo(p("d/newfifo"))),
    ("symlink", lambda p: os.symlink("f", p("d/newsl"))),
    ("open_write", lambda p: os.close(os.open(p("d/f"), os.O_WRONLY))),
    ("open_write", lambda p: os.close(os.open(p("d/f"), os.O_RDONLY | os.O_TRUNC))),
    ("unlink", lambda p: os.unlink(p("d/empty"))),
    ("rmdir", lambda p: os.rmdir(p("d/priv"))),
    ("setattr", lambda p: os.chmod(p("d/f"), 0o600)),
    ("setattr", lambda p: os.chown(p("d/f"), USER, USER)),
    ("setattr", lambda p: os.utime(p("d/f"), (1, 1))),
    ("setattr", lambda p: os.truncate(p("d/f"), 1)),
    ("xattr_write", lambda p: os.setxattr(p("d/f"), "user.n", b"v")),
    ("xattr_write", lambda p: os.removexattr(p("d/f"), "user.a")),
    ("link_src", lambda p: os.link(p("d/f"), p("d/f_link2"))),
    ("rename_src", lambda p: os.rename(p("d/f"), p("d/f_moved"))),
]

HIDDEN = ("d/hidden_file", "d/hidden_dir", "d/hidden_dir/x")
# Calls on existing hidden names (docs/errors.md, `hide` column: ENOENT) ...
HIDDEN_EXISTING = [
    ("lookup", lambda p, n: os.lstat(p(n))),
    ("lookup", lambda p, n: read_file(p(n))),
    ("open_write", lambda p, n: os.close(os.open(p(n), os.O_WRONLY))),
    ("unlink", lambda p, n: os.unlink(p(n))),
    ("rmdir", lambda p, n: os.rmdir(p(n))),
    ("setattr", lambda p, n: os.chmod(p(n), 0o777)),
    ("xattr_read", lambda p, n: os.listxattr(p(n))),
    ("xattr_write", lambda p, n: os.setxattr(p(n), "user.x", b"v")),
    ("rename_src", lambda p, n: os.rename(p(n), p("d/unhidden"))),
    ("link_src", lambda p, n: os.link(p(n), p("d/unhidden"))),
]
# ... and new names the rules hide (EACCES).
HIDDEN_NEW = [
    ("create", lambda p: create(p("d/hidden_new"))),
    ("mkdir", lambda p: os.mkdir(p("d/hidden_new"))),
    ("mknod", lambda p: os.mkfifo(p("d/hidden_new"))),
    ("symlink", lambda p: os.symlink("f", p("d/hidden_new"))),
    ("rename_dst", lambda p: os.rename(p("d/sub/deep"), p("d/hidden_new"))),
    ("link_dst", lambda p: os.link(p("d/f"), p("d/hidden_new"))),
]


def test_read_equals_native_and_refuses_mutations(mount, tmp_root, umask022):
    src = tmp_root / "src" / "r"
    src.mkdir(parents=True)
    populate(src)
    nat = native_root(tmp_root, "read")
    populate(nat)
    m = mount([{"path": "r", "source": str(src), "access": "read"}],
              rules=[("r/d/hidden_*", "hide")])
    before = manifest(src)
    native, view = Run(nat), Run(m.mp / "r")
    for run in (native, view):
        reading(run)
        # Hidden names are absent from the view; drop them from the native
        # listing so the rest compares.
    for run in (native,):
        for i, (label, res) in enumerate(run.log):
            if label in ("listdir d", "scandir d") and res[0] == "ok":
                run.log[i] = (label, ("ok", [x for x in res[1]
                                             if "hidden" not in (x if isinstance(x, str) else x[0])]))
    compare(native, view, "read")

    wrong = []
    for row, fn in MUTATIONS:
        got = outcome(lambda: fn(view.p))
        if got != ("err", "EROFS"):
            wrong.append(f"{row}: {got}, expected EROFS")
    for row, fn in MUTATIONS:  # each is a real change natively
        assert outcome(lambda: fn(native.p))[0] == "ok", row
    assert not wrong, "\n".join(wrong)
    assert manifest(src) == before, "a refused mutation changed the real tree"


@pytest.mark.parametrize("access", ["read", "write", "stage"])
def test_hide_per_errors_doc(mount, tmp_root, umask022, access):
    src = tmp_root / "src" / "h"
    src.mkdir(parents=True)
    populate(src)
    m = mount([{"path": "h", "source": str(src), "access": access}],
              rules=[("h/d/hidden_*", "hide")])
    before = manifest(src)
    p = Run(m.mp / "h").p
    wrong = []
    for n in HIDDEN:
        for row, fn in HIDDEN_EXISTING:
            got = outcome(lambda: fn(p, n))
            if got != ("err", "ENOENT"):
                wrong.append(f"{row} {n}: {got}, expected ENOENT")
    names = os.listdir(p("d"))
    if any(n.startswith("hidden") for n in names):
        wrong.append(f"hidden names listed: {names}")
    for row, fn in HIDDEN_NEW:
        got = outcome(lambda: fn(p))
        if got != ("err", "EACCES"):
            wrong.append(f"{row} of a new hidden name: {got}, expected EACCES")
    assert not wrong, "\n".join(wrong)
    assert manifest(src) == before
