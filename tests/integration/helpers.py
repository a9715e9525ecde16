"""Shared helpers for mounted integration tests: tree manifests and tool runs.

A manifest describes a real tree by what a user can observe and what must
survive going through the view: relative path, type, mode, size, content
sha256, symlink target, uid/gid, nlink and hard-link grouping for non-dirs,
and xattrs. It leaves out times, inode numbers and directory sizes, which
legitimately differ between two runs of the same scenario.
"""
import errno
import hashlib
import os
import stat
import subprocess
from pathlib import Path

XATTR_NAMESPACES = ("user.",)


def _kind(mode):
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "chr"), (stat.S_ISBLK, "blk")):
        if test(mode):
            return name
    return "?"


def sha256_of(path):
    """Content hash without touching the file's atime (O_NOATIME as owner/root)."""
    h = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOATIME)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            h.update(b)
    finally:
        os.close(fd)
    return h.hexdigest()


def xattrs_of(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return ()
        raise
    out = []
    for n in sorted(names):
        if n.startswith(XATTR_NAMESPACES):
            out.append((n, os.getxattr(path, n, follow_symlinks=False)))
    return tuple(out)


def manifest(root, *, times=False, ignore_content=(), skip=()):
    """{relative path: dict of observable attributes} for the tree at root.

    times=True adds mtime_ns (and ctime_ns is never included: it cannot be
    set). ignore_content: relative paths whose content hash is not compared
    (their size still is). skip: relative paths (and their subtrees) left out.
    """
    root = Path(root)
    entries = {}
    inode_paths = {}

    def visit(rel):
        p = root / rel if rel != "." else root
        st = os.lstat(p)
        kind = _kind(st.st_mode)
        e = {"type": kind, "mode": oct(stat.S_IMODE(st.st_mode)), "uid": st.st_uid,
             "gid": st.st_gid}
        if kind != "dir":
            e["nlink"] = st.st_nlink
            e["size"] = st.st_size
            inode_paths.setdefault((st.st_dev, st.st_ino), []).append(rel)
        if kind == "file" and rel not in ignore_content:
            e["sha256"] = sha256_of(p)
        if kind == "symlink":
            e["target"] = os.readlink(p)
        if kind in ("file", "dir"):
            e["xattrs"] = xattrs_of(p)
        if times:
            e["mtime_ns"] = st.st_mtime_ns
        entries[rel] = e
        if kind == "dir":
            for name in sorted(os.listdir(p)):
                r = name if rel == "." else f"{rel}/{name}"
                if r in skip:
                    continue
                visit(r)

    visit(".")
    # Hard-link grouping: which names share one inode (not the numbers).
    for paths in inode_paths.values():
        if len(paths) > 1:
            group = tuple(sorted(paths))
            for p in paths:
                entries[p]["links"] = group
    return entries


def diff_manifests(a, b, a_name="native", b_name="view"):
    lines = []
    for k in sorted(set(a) | set(b)):
        if k not in b:
            lines.append(f"only in {a_name}: {k} {a[k]}")
        elif k not in a:
            lines.append(f"only in {b_name}: {k} {b[k]}")
        elif a[k] != b[k]:
            fields = sorted(set(a[k]) | set(b[k]))
            d = {f: (a[k].get(f), b[k].get(f)) for f in fields if a[k].get(f) != b[k].get(f)}
            lines.append(f"differs: {k}: " + ", ".join(f"{f}: {x!r} ({a_name}) != {y!r} ({b_name})"
                                                     for f, (x, y) in d.items()))
    return lines


def assert_same_tree(native_root, real_root, mount=None, **kw):
    """The real source tree ends exactly as the native run left its tree."""
    a = manifest(native_root, **kw)
    b = manifest(real_root, **kw)
    d = diff_manifests(a, b, "native", "real source")
    if d:
        msg = "\n".join(d[:60])
        if mount is not None:
            msg += "\n--- daemon log (tail) ---\n" + "\n".join(mount.daemon_log().splitlines()[-40:])
        raise AssertionError("real tree differs from the native run:\n" + msg)


def assert_view_shows(real_root, view_root, mount=None, **kw):
    """The view shows the real tree's attributes (write bind, no rules)."""
    a = manifest(real_root, **kw)
    b = manifest(view_root, **kw)
    d = diff_manifests(a, b, "real source", "view")
    if d:
        msg = "\n".join(d[:60])
        if mount is not None:
            msg += "\n--- daemon log (tail) ---\n" + "\n".join(mount.daemon_log().splitlines()[-40:])
        raise AssertionError("the view does not show the real tree:\n" + msg)


def sh(script, cwd, check=True, env=None, timeout=50, **kw):
    """Run a /bin/sh script in cwd; returns CompletedProcess (text)."""
    e = dict(os.environ)
    e.update({"LC_ALL": "C", "LANG": "C"})
    if env:
        e.update(env)
    r = subprocess.run(["/bin/sh", "-c", script], cwd=str(cwd), capture_output=True, text=True,
                       env=e, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"script failed ({r.returncode}) in {cwd}:\n{script}\n"
                             f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


def errno_of(fn, *args, **kw):
    """0 if fn(*args) succeeds, else the OSError's errno."""
    try:
        fn(*args, **kw)
        return 0
    except OSError as e:
        return e.errno


def native_dir(tmp_root, name, mode=None):
    d = Path(tmp_root) / "native" / name
    d.mkdir(parents=True)
    if mode is not None:
        os.chmod(d, mode)
    return d


# ---------------------------------------------------------------------------
# Held changes (stage): a content manifest by XXH3-128, and a per-test watchdog

def xxh3_files(paths, timeout=120):
    """`xxhsum -H2` of each path, in order (one xxhsum run per 256 paths)."""
    paths = [str(p) for p in paths]
    out = []
    for i in range(0, len(paths), 256):
        chunk = paths[i:i + 256]
        r = subprocess.run(["xxhsum", "-H2", "--", *chunk], capture_output=True, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(f"xxhsum failed ({r.returncode}): {r.stderr.decode(errors='replace')}")
        # A name with a backslash or newline makes xxhsum escape the line with
        # a leading backslash; the hash is still the first field.
        hashes = [line.split()[0].lstrip("\\") for line in r.stdout.decode(errors="replace").splitlines()]
        if len(hashes) != len(chunk):
            raise AssertionError(f"xxhsum printed {len(hashes)} hashes for {len(chunk)} files")
        out += hashes
    return out


def content_manifest(root, *, skip=(), ignore_content=()):
    """{relative path: {type, mode, xxh3, target, xattrs}} of the tree at root.

    What an approved change must carry to the real tree and a rejected one
    must leave it: type, permission bits (with setuid/setgid/sticky), XXH3-128
    of a regular file's content (`xxhsum -H2`), a symlink's target, the user.*
    xattrs of files and directories, and which names in the tree share one
    inode (hard links; not the numbers). The root itself, times, owners, sizes
    of directories and inode numbers are left out. skip: relative paths left
    out with their subtrees; ignore_content: paths whose hash is not compared.
    """
    root = Path(root)
    entries = {}
    files = []
    inode_paths = {}

    def visit(rel):
        p = root / rel
        st = os.lstat(p)
        kind = _kind(st.st_mode)
        e = {"type": kind, "mode": oct(stat.S_IMODE(st.st_mode)), "xxh3": None, "target": None,
             "xattrs": ()}
        if kind == "file" and rel not in ignore_content:
            files.append(rel)
        if kind == "symlink":
            e["target"] = os.readlink(p)
        if kind in ("file", "dir"):
            e["xattrs"] = xattrs_of(p)
        if kind != "dir":
            inode_paths.setdefault((st.st_dev, st.st_ino), []).append(rel)
        entries[rel] = e
        if kind == "dir":
            walk(rel)

    def walk(rel):
        d = root / rel if rel else root
        for name in sorted(os.listdir(d)):
            r = f"{rel}/{name}" if rel else name
            if r not in skip:
                visit(r)

    walk("")
    for rel, h in zip(files, xxh3_files([root / f for f in files])):
        entries[rel]["xxh3"] = h
    for paths in inode_paths.values():
        if len(paths) > 1:
            for p in paths:
                entries[p]["links"] = tuple(sorted(paths))
    return entries


def assert_manifests_equal(a, b, a_name, b_name, mount=None, what=""):
    d = diff_manifests(a, b, a_name, b_name)
    if d:
        msg = "\n".join(d[:60])
        if mount is not None:
            msg += "\n--- daemon log (tail) ---\n" + "\n".join(mount.daemon_log().splitlines()[-40:])
        raise AssertionError(f"{what or a_name + ' != ' + b_name}:\n{msg}")


def fuse_connection_dir(mp):
    """The fusectl connection directory of the FUSE mount at `mp` (from its
    device number in /proc/self/mountinfo, which never touches the mount)."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if fields[4] == str(mp):
                    major, minor = (int(x) for x in fields[2].split(":"))
                    return Path("/sys/fs/fuse/connections") / str((major << 20) | minor)
    except OSError:
        pass
    return None


class Watchdog:
    """Ends a hung test: after `seconds`, aborts the mount's FUSE connection
    (fusectl, when mounted) and SIGKILLs the mount's own daemon by PID, so
    every call blocked in the view fails (ENOTCONN) instead of hanging the
    run. `fired` tells the test's teardown to report a timeout."""

    def __init__(self, mount, seconds):
        import threading
        self.mount = mount
        self.seconds = seconds
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def start(self):
        self._timer.start()
        return self

    def cancel(self):
        self._timer.cancel()

    def _fire(self):
        import signal
        self.fired = True
        conn = fuse_connection_dir(self.mount.mp)
        if conn is not None and (conn / "abort").exists():
            try:
                (conn / "abort").write_text("1")
            except OSError:
                pass
        proc = self.mount.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGKILL)
            except OSError:
                pass
