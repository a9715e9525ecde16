"""Escape suite: nothing hidden is read, listed, written or renamed, and
nothing outside a bind is reached, by any route (issue: the scoped view)."""
import ctypes
import errno
import os
import threading
import time
from pathlib import Path

import pytest

SECRET = b"TOP-SECRET-KEY-MATERIAL"
OUTSIDE = b"OUTSIDE-THE-BIND"


def setup_tree(root):
    work = root / "src" / "work"
    (work / "secret").mkdir(parents=True)
    (work / "secret" / "plan.txt").write_bytes(SECRET)
    (work / "key.pem").write_bytes(SECRET)
    (work / "inputs").mkdir()
    (work / "inputs" / "data.csv").write_text("a,b\n")
    (work / "notes.txt").write_text("visible\n")
    (work / "d").mkdir()
    (work / "d" / "f.txt").write_text("plain\n")
    outside = root / "src" / "outside"
    outside.mkdir()
    (outside / "target.txt").write_bytes(OUTSIDE)
    # Symlinks planted in the source, pointing at hidden things and out of the bind.
    os.symlink("key.pem", work / "rel-to-hidden")
    os.symlink("secret/plan.txt", work / "rel-into-hidden-dir")
    os.symlink("../outside/target.txt", work / "rel-out-of-bind")
    os.symlink(str(work / "key.pem"), work / "abs-to-hidden")
    return work, outside


RULES = [("**/*.pem", "hide"), ("work/secret", "hide"), ("work/inputs", "read")]


@pytest.fixture
def view(mount, tmp_root):
    work, outside = setup_tree(tmp_root)
    m = mount([{"path": "work", "source": str(work), "access": "write"}], rules=RULES)
    m.work, m.outside = work, outside
    return m


def err(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except OSError as e:
        return e.errno
    return 0


def read_or_errno(p):
    try:
        return Path(p).read_bytes()
    except OSError as e:
        return e.errno


def test_hidden_names_absent_from_lookup_and_listing(view):
    w = view.mp / "work"
    assert sorted(os.listdir(w)) == sorted(
        ["inputs", "notes.txt", "d", "rel-to-hidden", "rel-into-hidden-dir", "rel-out-of-bind",
         "abs-to-hidden"])
    for name in ["key.pem", "secret", "secret/plan.txt"]:
        assert err(os.stat, w / name) == errno.ENOENT
        assert err(os.lstat, w / name) == errno.ENOENT
        assert err(open, w / name, "rb") == errno.ENOENT
        assert err(os.getxattr, w / name, "user.x") == errno.ENOENT
    # A full walk never yields a hidden path.
    for dirpath, dirnames, filenames in os.walk(view.mp):
        for n in dirnames + filenames:
            assert not n.endswith(".pem") and n != "secret"


def test_symlinks_never_lead_to_hidden_content(view):
    w = view.mp / "work"
    # The links themselves are visible and unchanged...
    assert os.readlink(w / "rel-to-hidden") == "key.pem"
    assert os.readlink(w / "rel-out-of-bind") == "../outside/target.txt"
    # ...but following them inside the view finds nothing hidden.
    assert read_or_errno(w / "rel-to-hidden") == errno.ENOENT
    assert read_or_errno(w / "rel-into-hidden-dir") == errno.ENOENT
    # Relative link out of the bind resolves inside the view (no such path).
    assert read_or_errno(w / "rel-out-of-bind") == errno.ENOENT


def test_daemon_never_follows_symlinks_for_metadata(view):
    w = view.mp / "work"
    before = os.lstat(view.outside / "target.txt")
    # Operations on the link itself (no follow) act on the link, never its target.
    os.utime(w / "rel-out-of-bind", (1, 1), follow_symlinks=False)
    assert os.lstat(view.work / "rel-out-of-bind").st_mtime == 1
    assert err(os.setxattr, w / "rel-out-of-bind", "user.x", b"1", follow_symlinks=False) in (
        errno.EPERM, errno.ENOTSUP)
    os.lchown(w / "rel-out-of-bind", 65534, 65534)
    after = os.lstat(view.outside / "target.txt")
    assert (before.st_uid, before.st_mtime_ns) == (after.st_uid, after.st_mtime_ns)


def test_dotdot_stays_in_the_view(view):
    w = view.mp / "work"
    assert os.stat(w / "..").st_ino == os.stat(view.mp).st_ino
    assert os.listdir(w / "d" / ".." / "..") == ["work"]
    assert err(os.stat, w / "d" / ".." / "key.pem") == errno.ENOENT
    assert err(os.stat, w / ".." / "outside") == errno.ENOENT


def test_dirfd_and_proc_self_fd_routes(view):
    w = view.mp / "work"
    dfd = os.open(w / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert err(os.open, "../key.pem", os.O_RDONLY, dir_fd=dfd) == errno.ENOENT
        assert err(os.open, "../secret/plan.txt", os.O_RDONLY, dir_fd=dfd) == errno.ENOENT
        assert err(os.open, "../../work/key.pem", os.O_RDONLY, dir_fd=dfd) == errno.ENOENT
        proc = f"/proc/self/fd/{dfd}"
        assert err(os.stat, proc + "/../key.pem") == errno.ENOENT
        assert read_or_errno(proc + "/../secret/plan.txt") == errno.ENOENT
        assert sorted(os.listdir(proc + "/..")) == sorted(os.listdir(w))
        # Creating a hidden name through a dirfd is refused.
        assert err(os.open, "../new.pem", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=dfd) == errno.EACCES
    finally:
        os.close(dfd)
    assert not (view.work / "new.pem").exists()


def test_hard_links_cannot_reach_hidden_or_readonly(view):
    w = view.mp / "work"
    assert err(os.link, w / "key.pem", w / "k2") == errno.ENOENT
    # A read-only input cannot get a writable second name...
    assert err(os.link, w / "inputs" / "data.csv", w / "d" / "data.csv") == errno.EROFS
    # ...and a visible file cannot get a hidden one.
    assert err(os.link, w / "notes.txt", w / "notes.pem") == errno.EACCES
    assert sorted(os.listdir(view.work / "d")) == ["f.txt"]
    assert not (view.work / "notes.pem").exists()


def test_rename_onto_or_out_of_hidden_names(view):
    w = view.mp / "work"
    assert err(os.rename, w / "notes.txt", w / "notes.pem") == errno.EACCES
    assert err(os.rename, w / "key.pem", w / "k") == errno.ENOENT
    assert err(os.rename, w / "d", w / "secret") == errno.EACCES
    assert err(os.rename, w / "inputs" / "data.csv", w / "d" / "x.csv") == errno.EROFS
    assert err(os.rename, w / "d" / "f.txt", w / "inputs" / "f.txt") == errno.EROFS
    assert (view.work / "notes.txt").exists() and (view.work / "key.pem").read_bytes() == SECRET
    # Moving a directory so that something below it would change level: the
    # rename is refused with EXDEV (mv then copies entry by entry).
    os.mkdir(w / "d" / "sub")
    assert err(os.rename, w / "d", w / "inputs2") == 0  # no rule differs: fine
    assert err(os.rename, w / "inputs2", w / "d") == 0


def test_rename_of_directory_that_would_expose_hidden_subtree(mount, tmp_root):
    work = tmp_root / "src" / "w"
    (work / "a" / "private").mkdir(parents=True)
    (work / "a" / "private" / "x.txt").write_bytes(SECRET)
    m = mount([{"path": "w", "source": str(work), "access": "write"}],
              rules=[("w/a/private", "hide")])
    v = m.mp / "w"
    assert os.listdir(v / "a") == []
    # Renaming a/ to b/ would make b/private visible: refused with EXDEV.
    assert err(os.rename, v / "a", v / "b") == errno.EXDEV
    assert (work / "a" / "private" / "x.txt").read_bytes() == SECRET


READER = r"""
import os, sys, time
w, stop = sys.argv[1], time.time() + float(sys.argv[2])
plain = 0
while time.time() < stop:
    for rel in ("d/f.txt", "d/plan.txt", "d/target.txt", "d/../key.pem"):
        try:
            data = open(os.path.join(w, rel), "rb").read()
        except OSError:
            continue
        if data == b"plain\n":
            plain += 1
        else:
            print("READ", rel, data, flush=True)
    try:
        for n in os.listdir(os.path.join(w, "d")):
            if n in ("plan.txt", "target.txt"):
                print("LISTED", n, flush=True)
    except OSError:
        pass
print("PLAIN", plain)
"""


def test_swapped_symlink_race_never_exposes_hidden(view, tmp_root):
    """One thread keeps swapping work/d in the real tree between a directory
    and symlinks (relative and absolute) to the hidden directory and out of the
    bind, while two agent processes (uid nobody, no direct access to the
    sources, as deployed) read and list through the view: no read ever returns
    hidden or outside content, and nothing hidden is listed."""
    os.chmod(tmp_root / "src", 0o700)
    w = view.mp / "work"
    real_d = view.work / "d"
    parked = view.work / "d.parked"
    tmp_link = view.work / "d.tmp"
    duration = 4.0
    stop = time.time() + duration
    failures = []

    def swapper():
        targets = ["secret", "../outside", str(view.work / "secret"), str(view.outside)]
        i = 0
        while time.time() < stop:
            try:
                os.rename(real_d, parked)
                os.symlink(targets[i % len(targets)], tmp_link)
                os.rename(tmp_link, real_d)
                time.sleep(0.0005)
                os.unlink(real_d)
                os.rename(parked, real_d)
                # Long enough as a real directory that busy readers (on a
                # loaded CI machine) also get through the view between swaps.
                time.sleep(0.01)
            except OSError as e:
                failures.append(repr(e))
                return
            i += 1

    import subprocess
    import sys
    readers = [subprocess.Popen(["su", "nobody", "-s", "/bin/sh", "-c",
                                 f"exec /usr/bin/python3 -c '{READER}' {w} {duration}"],
                                stdout=subprocess.PIPE, text=True) for _ in range(2)]
    t = threading.Thread(target=swapper)
    t.start()
    t.join(timeout=30)
    outs = [r.communicate(timeout=60)[0] for r in readers]
    assert not failures
    lines = [l for o in outs for l in o.splitlines()]
    assert [l for l in lines if l.startswith(("READ", "LISTED"))] == []
    plain = sum(int(l.split()[1]) for l in lines if l.startswith("PLAIN"))
    assert plain > 0, outs  # the readers did read through the view


def test_agent_user_cannot_use_absolute_links_to_sources(view, tmp_root):
    """In deployment the agent cannot reach the sources directly; an absolute
    symlink to a source path then leads nowhere, through the view or not."""
    os.chmod(tmp_root / "src", 0o700)
    import subprocess
    r = subprocess.run(["su", "nobody", "-s", "/bin/sh", "-c",
                        f"cat {view.mp}/work/abs-to-hidden; cat {view.mp}/work/notes.txt"],
                       capture_output=True)
    assert SECRET not in r.stdout
    assert b"visible" in r.stdout


def test_readonly_bind_refuses_every_mutation(view):
    w = view.mp / "work" / "inputs"
    f = w / "data.csv"
    assert err(open, f, "a") == errno.EROFS
    assert err(os.truncate, f, 0) == errno.EROFS
    assert err(os.chmod, f, 0o600) == errno.EROFS
    assert err(os.unlink, f) == errno.EROFS
    assert err(os.mkdir, w / "x") == errno.EROFS
    assert err(os.setxattr, f, "user.x", b"1") == errno.EROFS
    assert err(os.utime, f, (1, 1)) == errno.EROFS
    assert err(os.symlink, "x", w / "l") == errno.EROFS
    assert (view.work / "inputs" / "data.csv").read_text() == "a,b\n"
    assert os.listdir(view.work / "inputs") == ["data.csv"]
