"""Ordinary tools driven through the view, each checked against a native run.

Every scenario runs twice: once in a plain native directory and once inside a
`write` bind of the view. The real source tree must end exactly as the native
run left its tree (helpers.manifest: path, type, mode, size, content, symlink
target, owner, link count and grouping, xattrs). Where a scenario observes
something (errnos, outputs, read-back contents), the observations must match
the native ones too.
"""
import ctypes
import errno
import hashlib
import os
import random
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from helpers import (assert_same_tree, assert_view_shows, errno_of, manifest, native_dir,
                     sh)

MiB = 1 << 20
NOBODY = 65534
NOGROUP = 65534


def data(n, seed):
    return random.Random(seed).randbytes(n)


# ---------------------------------------------------------------------------
# cp -a

def build_rich_tree(root):
    """A tree with every kind of entry cp -a / tar must carry over."""
    root = Path(root)
    root.mkdir()
    (root / "d" / "e" / "f").mkdir(parents=True)
    (root / "empty" / "nested_empty").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "empty.txt").write_bytes(b"")
    (root / "big.bin").write_bytes(data(3 * MiB + 123, 1))
    (root / "d" / "e" / "f" / "deep.txt").write_text("deep\n")
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "ro.txt").write_text("read only\n")
    (root / "suid").write_text("suid\n")
    (root / "sgid").write_text("sgid\n")
    (root / "owned").write_text("owned by someone else\n")
    (root / "sticky").mkdir()
    (root / "private").mkdir()
    (root / "private" / "secret").write_text("s\n")
    os.chown(root / "owned", 1234, 5678)
    os.chown(root / "private", 4321, 8765)
    os.chown(root / "suid", 1234, 5678)
    os.chmod(root / "a.txt", 0o640)
    os.chmod(root / "run.sh", 0o755)
    os.chmod(root / "ro.txt", 0o444)
    os.chmod(root / "suid", 0o4755)
    os.chmod(root / "sgid", 0o2755)
    os.chmod(root / "sticky", 0o1777)
    os.chmod(root / "private", 0o700)
    os.symlink("d/e/f/deep.txt", root / "rel_link")
    os.symlink("/nonexistent/absolute/target", root / "abs_link")
    os.symlink("missing", root / "dangling")
    os.symlink("d/e", root / "dir_link")
    os.lchown(root / "rel_link", 1234, 1234)
    os.link(root / "a.txt", root / "d" / "hard_a")
    (root / "t1").write_text("triple\n")
    os.link(root / "t1", root / "t2")
    os.link(root / "t1", root / "d" / "e" / "t3")
    os.mkfifo(root / "fifo")
    os.chmod(root / "fifo", 0o640)
    os.setxattr(root / "a.txt", "user.note", b"hello")
    os.setxattr(root / "d", "user.dir", b"dir value")
    os.setxattr(root / "big.bin", "user.empty", b"")
    with open(root / "sparse", "wb") as f:
        f.seek(4 * MiB)
        f.write(b"tail")
    return root


def test_cp_a_tree_into_view(mount, tmp_root):
    m = mount([{"path": "out", "access": "write"}])
    tree = build_rich_tree(tmp_root / "tree")
    nat = native_dir(tmp_root, "cp")
    cmd = f"cp -a '{tree}' copy && cp -a '{tree}/.' flat"
    sh(cmd, nat)
    sh(cmd, m.mp / "out")
    assert_same_tree(nat, m.src("out"), m)
    assert_view_shows(m.src("out"), m.mp / "out", m)
    # Sparse files stay sparse (cp detects holes with SEEK_HOLE on the source).
    n = os.stat(nat / "copy" / "sparse")
    r = os.stat(m.src("out") / "copy" / "sparse")
    assert r.st_blocks == n.st_blocks


# ---------------------------------------------------------------------------
# tar

TAR_OPTS = ("--format=posix --sort=name --xattrs --xattrs-include='user.*' "
            "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime")


def fix_times(root, t=1_600_000_000):
    """Deterministic times on a whole tree, children before parents."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for n in filenames + dirnames:
            os.utime(os.path.join(dirpath, n), ns=(t * 10**9, t * 10**9), follow_symlinks=False)
    os.utime(root, ns=(t * 10**9, t * 10**9))


def test_tar_out_of_and_into_view(mount, tmp_root):
    m = mount([{"path": "in", "access": "read"}, {"path": "out", "access": "write"}])
    # The same input tree natively and as the real source of the read bind.
    nat_in = tmp_root / "native" / "in"
    nat_in.parent.mkdir()
    for root in (nat_in, m.src("in") / "tree"):
        build_rich_tree(root)
        fix_times(root)
    nat_out = native_dir(tmp_root, "out")
    script = (f"tar {TAR_OPTS} -cf arch.tar -C '{{src}}' . && mkdir x && "
              f"tar {TAR_OPTS} -xpf arch.tar -C x && "
              f"tar {TAR_OPTS} -tvf arch.tar --numeric-owner --full-time > list.txt")
    sh(script.format(src=nat_in), nat_out)
    sh(script.format(src=m.mp / "in" / "tree"), m.mp / "out")
    # tar c out of the view: the archives are byte for byte the native one.
    assert (nat_out / "arch.tar").read_bytes() == (m.src("out") / "arch.tar").read_bytes(), \
        (nat_out / "list.txt").read_text() + "\n---- view:\n" + (m.src("out") / "list.txt").read_text()
    # tar x into the view: the extracted tree is the native one.
    assert_same_tree(nat_out, m.src("out"), m)
    assert_view_shows(m.src("out"), m.mp / "out", m)


# ---------------------------------------------------------------------------
# git

GIT_ENV = {"GIT_AUTHOR_DATE": "2020-01-02T03:04:05Z", "GIT_COMMITTER_DATE": "2020-01-02T03:04:05Z",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0",
           "GIT_PAGER": "cat", "PAGER": "cat"}

GIT_SCRIPT = r"""
set -e
G="git -c user.name=Tester -c user.email=tester@example.com -c init.defaultBranch=main"
mkdir repo && cd repo
$G init -q
printf 'hello\n' > a.txt
mkdir -p src docs
printf 'int main(void) { return 0; }\n' > src/main.c
printf '#!/bin/sh\necho hi\n' > run.sh && chmod 755 run.sh
ln -s a.txt link
printf 'doc\n' > docs/readme.md
$G add -A
$G commit -q -m first
$G checkout -q -b feature
printf 'more\n' >> a.txt
rm src/main.c
printf 'new\n' > new.txt
chmod 644 run.sh
$G add -A
$G commit -q -m second
$G branch topic
$G switch -q main
$G status --porcelain=v1 --branch > ../status-clean.txt
ls -la --time-style=+ . | awk '{print $1, $NF}' > ../ls-main.txt
cat a.txt > ../a-main.txt
$G checkout -q feature
$G status --porcelain=v1 --branch > ../status-feature.txt
printf 'dirty\n' >> a.txt
printf 'untracked\n' > untracked.txt
$G status --porcelain=v1 --branch > ../status-dirty.txt
$G stash -q
$G switch -q topic
$G branch --list > ../branches.txt
$G log --all --format='%H %an %s' > ../log.txt
$G fsck --strict --no-progress > ../fsck.txt 2>&1
"""


def test_git_workflow(mount, tmp_root):
    m = mount([{"path": "out", "access": "write"}])
    home = tmp_root / "home"
    home.mkdir()
    env = dict(GIT_ENV, HOME=str(home))
    nat = native_dir(tmp_root, "git")
    sh(GIT_SCRIPT, nat, env=env)
    sh(GIT_SCRIPT, m.mp / "out", env=env)
    for f in ("status-clean.txt", "status-feature.txt", "status-dirty.txt", "branches.txt",
              "log.txt", "fsck.txt", "ls-main.txt", "a-main.txt"):
        assert (m.src("out") / f).read_text() == (nat / f).read_text(), f
    # The index records inode numbers and times: compare everything but its bytes.
    assert_same_tree(nat, m.src("out"), m, ignore_content={"repo/.git/index"})
    # The repository is usable natively afterwards (and natively on the view's copy).
    r = sh("git status --porcelain=v1 && git fsck --strict --no-progress", m.src("out") / "repo",
           env=env)
    assert r.stdout == "?? untracked.txt\n"


# ---------------------------------------------------------------------------
# python atomic save

def atomic_saves(d, rounds=40):
    """Editor-style saves: temp file in the same dir, fsync, os.replace."""
    d = Path(d)
    target = d / "config.json"
    obs = []
    held = None
    for i in range(rounds):
        payload = (f'{{"version": {i}}}\n' * (i + 1)).encode()
        if i % 2:
            with tempfile.NamedTemporaryFile(dir=d, prefix=".config.", suffix=".tmp",
                                             delete=False) as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            tmp = f.name
        else:
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".config.")
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            if i % 4 == 0:
                os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
        # The new content is visible at once, under the same name.
        obs.append(target.read_bytes() == payload)
        obs.append(oct(stat.S_IMODE(os.stat(target).st_mode)))
        if i == 10:
            held = open(target, "rb")  # a reader keeps the replaced version
    old = held.read()
    held.close()
    obs.append(old == ('{"version": 10}\n' * 11).encode())
    # Replace over an existing name in a subdirectory.
    (d / "sub").mkdir()
    (d / "sub" / "x").write_text("old")
    fd, tmp = tempfile.mkstemp(dir=d / "sub")
    os.write(fd, b"new")
    os.close(fd)
    os.replace(tmp, d / "sub" / "x")
    obs.append((d / "sub" / "x").read_text())
    obs.append(sorted(p.name for p in d.iterdir()))
    return obs


def test_python_atomic_save(mount, tmp_root):
    m = mount([{"path": "out", "access": "write"}])
    nat = native_dir(tmp_root, "save")
    expected = atomic_saves(nat)
    got = atomic_saves(m.mp / "out")
    assert got == expected
    assert all(x for x in got if isinstance(x, bool))
    assert_same_tree(nat, m.src("out"), m)
    assert_view_shows(m.src("out"), m.mp / "out", m)


# ---------------------------------------------------------------------------
# sqlite3 (WAL)

def sqlite_cli_script():
    lines = ["PRAGMA journal_mode=WAL;",
             "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER);",
             "CREATE INDEX t_v ON t(v);"]
    for batch in range(10):
        lines.append("BEGIN;")
        for i in range(100):
            k = batch * 100 + i
            lines.append(f"INSERT INTO t(v, n) VALUES ('row{k:04d}', {k * k});")
        lines.append("COMMIT;")
    lines.append("PRAGMA wal_checkpoint(TRUNCATE);")
    return "\n".join(lines) + "\n"


SQLITE_QUERY = ("PRAGMA journal_mode; SELECT count(*), sum(n), min(v), max(v) FROM t; "
                "PRAGMA integrity_check; SELECT v FROM t WHERE v > 'row0990' ORDER BY v;")


def test_sqlite3_cli_wal(mount, tmp_root):
    m = mount([{"path": "out", "access": "write"}])
    nat = native_dir(tmp_root, "sqlite")
    script = tmp_root / "create.sql"
    script.write_text(sqlite_cli_script())
    outs = []
    for d in (nat, m.mp / "out"):
        r1 = sh(f"sqlite3 db.sqlite < '{script}'", d)
        r2 = sh(f'sqlite3 db.sqlite "{SQLITE_QUERY}"', d)
        outs.append((r1.stdout, r2.stdout, r2.stderr))
    assert outs[1] == outs[0]
    assert "1000|" in outs[0][1] and "ok" in outs[0][1]
    assert_same_tree(nat, m.src("out"), m)


SQLITE_READER = r"""
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "begin":
        con.execute("BEGIN")
        out = "began"
    elif cmd == "count":
        out = str(con.execute("SELECT count(*), coalesce(sum(n), 0) FROM t").fetchone())
    elif cmd == "end":
        con.execute("COMMIT")
        out = "ended"
    elif cmd == "mode":
        out = con.execute("PRAGMA journal_mode").fetchone()[0]
    else:
        break
    print(out, flush=True)
con.close()
"""


def sqlite_python_scenario(d):
    """A writer in this process, a reader in another: WAL snapshot isolation."""
    import sqlite3
    db = str(Path(d) / "py.sqlite")
    obs = []
    w = sqlite3.connect(db, isolation_level=None, timeout=10)
    obs.append(w.execute("PRAGMA journal_mode=WAL").fetchone()[0])
    w.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, b BLOB)")

    def batch(k):
        w.execute("BEGIN")
        w.executemany("INSERT INTO t(n, b) VALUES (?, ?)",
                      [(k * 100 + i, data(200, k * 100 + i)) for i in range(100)])
        w.execute("COMMIT")

    batch(0)
    reader = subprocess.Popen([sys.executable, "-c", SQLITE_READER, db], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)

    def ask(cmd):
        reader.stdin.write(cmd + "\n")
        reader.stdin.flush()
        return reader.stdout.readline().strip()

    try:
        obs.append(ask("mode"))
        obs.append(ask("begin"))
        obs.append(ask("count"))            # snapshot taken: 100 rows
        for k in range(1, 6):
            batch(k)                        # commits proceed while the reader holds it
        obs.append(ask("count"))            # still the snapshot
        obs.append(w.execute("SELECT count(*) FROM t").fetchone())
        obs.append(w.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0])
        obs.append(ask("end"))
        obs.append(ask("count"))            # now sees 600
        for k in range(6, 10):
            batch(k)
        obs.append(ask("count"))
        obs.append(w.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
    finally:
        reader.stdin.close()
        reader.wait(timeout=20)
    obs.append(reader.returncode)
    w.close()
    r = sqlite3.connect(db)
    obs.append(r.execute("SELECT count(*), sum(n), sum(length(b)) FROM t").fetchone())
    obs.append(r.execute("PRAGMA integrity_check").fetchone()[0])
    obs.append(hashlib.sha256(b"".join(x[0] for x in r.execute("SELECT b FROM t ORDER BY id")))
               .hexdigest())
    r.close()
    obs.append(sorted(os.listdir(d)))
    return obs


def test_sqlite3_python_concurrent_reader(mount, tmp_root):
    m = mount([{"path": "out", "access": "write"}])
    nat = native_dir(tmp_root, "pysqlite")
    expected = sqlite_python_scenario(nat)
    got = sqlite_python_scenario(m.mp / "out")
    assert got == expected
    assert expected[3] == "(100, 4950)" and expected[4] == "(100, 4950)"
    assert_same_tree(nat, m.src("out"), m)


# ---------------------------------------------------------------------------
# mv across two binds

MV_SETUP = r"""
set -e
mkdir -p a/proj/sub a/proj/empty
printf 'file\n' > a/proj/sub/f
ln a/proj/sub/f a/proj/hl
ln -s sub/f a/proj/sl
chmod 0750 a/proj
setfattr -n user.k -v value a/proj/sub/f
printf 'single\n' > a/single
chown 1234:5678 a/single
chmod 0600 a/single
touch -d '2001-02-03 04:05:06' a/single a/proj/sub/f
"""


def test_mv_across_binds(mount, tmp_root):
    m = mount([{"path": "a", "access": "write"}, {"path": "b", "access": "write"}])
    nat = native_dir(tmp_root, "mv")
    (nat / "a").mkdir()
    (nat / "b").mkdir()
    script = MV_SETUP + "mv a/proj b/proj\nmv a/single b/\n"
    sh(script, nat)
    r = sh(script, m.mp)
    assert r.stderr == ""
    for b in ("a", "b"):
        assert_same_tree(nat / b, m.src(b), m)
    # mv preserved the times too (it copied).
    assert os.stat(m.src("b") / "single").st_mtime_ns == os.stat(nat / "b" / "single").st_mtime_ns
    assert os.stat(m.src("b") / "proj" / "sub" / "f").st_mtime_ns == \
        os.stat(nat / "b" / "proj" / "sub" / "f").st_mtime_ns
    # The syscalls themselves: EXDEV, nothing moved.
    (m.mp / "a" / "r.txt").write_text("r")
    (m.mp / "a" / "rd").mkdir()
    assert errno_of(os.rename, m.mp / "a" / "r.txt", m.mp / "b" / "r.txt") == errno.EXDEV
    assert errno_of(os.rename, m.mp / "a" / "rd", m.mp / "b" / "rd") == errno.EXDEV
    assert errno_of(os.link, m.mp / "a" / "r.txt", m.mp / "b" / "r.txt") == errno.EXDEV
    assert (m.src("a") / "r.txt").read_text() == "r"
    assert (m.src("a") / "rd").is_dir()
    assert not (m.src("b") / "r.txt").exists() and not (m.src("b") / "rd").exists()


# ---------------------------------------------------------------------------
# hard links

def hardlink_scenario(d):
    d = Path(d)
    obs = []
    sh("printf 'data\\n' > f", d)
    obs.append(os.stat(d / "f").st_nlink)  # attributes now cached
    sh("ln f g", d)
    obs.append((os.stat(d / "f").st_nlink, os.stat(d / "g").st_nlink))
    sh("mkdir sub && ln f sub/h && ln -s f sym && ln -P sym symhl && mkfifo p && ln p p2", d)
    st = [os.stat(d / n) for n in ("f", "g", "sub/h")]
    obs.append([s.st_nlink for s in st])
    obs.append(len({s.st_ino for s in st}))
    obs.append(os.lstat(d / "sym").st_ino == os.lstat(d / "symhl").st_ino)
    obs.append(os.lstat(d / "symhl").st_nlink)
    obs.append(os.stat(d / "p2").st_nlink)
    # A write through one name is read through the others.
    with open(d / "g", "ab") as f:
        f.write(b"via g\n")
    obs.append((d / "f").read_bytes())
    obs.append((d / "sub" / "h").read_bytes())
    sh("rm g", d)
    obs.append(os.stat(d / "f").st_nlink)
    os.unlink(d / "sub" / "h")
    obs.append(os.stat(d / "f").st_nlink)
    obs.append(errno_of(os.link, d / "missing", d / "x"))
    obs.append(errno_of(os.link, d / "f", d / "sym"))
    obs.append(errno_of(os.link, d / "sub", d / "subhl"))
    r = sh("ln f sub 2>&1; ln sub sublink 2>&1", d, check=False)
    obs.append(r.stdout.replace(str(d), "D"))
    return obs


def test_hard_links(mount, tmp_root):
    m = mount([{"path": "out", "access": "write"}])
    nat = native_dir(tmp_root, "ln")
    expected = hardlink_scenario(nat)
    got = hardlink_scenario(m.mp / "out")
    assert got == expected
    assert expected[:3] == [1, (2, 2), [3, 3, 3]]
    assert_same_tree(nat, m.src("out"), m)
    assert_view_shows(m.src("out"), m.mp / "out", m)


# ---------------------------------------------------------------------------
# symlinks

def symlink_scenario(d):
    d = Path(d)
    obs = []
    long_target = "x/" * 1999 + "end"  # 4001 bytes
    sh("mkdir -p dir/sub && printf 'target\\n' > dir/sub/t && "
       "ln -s dir/sub/t rel && ln -s ../sub/t dir/sub/up && ln -s /etc/hostname abs && "
       "ln -s nowhere dangling && ln -s dir dirlink && ln -s loop loop && "
       f"ln -s '{long_target}' long", d)
    for n in ("rel", "dir/sub/up", "abs", "dangling", "dirlink", "loop"):
        obs.append(sh(f"readlink {n}", d).stdout)
        obs.append(os.readlink(d / n))
    obs.append(os.readlink(d / "long") == long_target)
    obs.append(os.lstat(d / "long").st_size)
    obs.append((d / "rel").read_text())
    obs.append((d / "dir" / "sub" / "up").read_text())
    obs.append(sh("cat dirlink/sub/t && ls dirlink/sub", d).stdout)
    obs.append(os.path.exists(d / "dangling"))
    obs.append(os.path.lexists(d / "dangling"))
    obs.append(errno_of(os.stat, d / "loop"))
    obs.append(errno_of(os.open, d / "rel", os.O_RDONLY | os.O_NOFOLLOW))
    obs.append(errno_of(os.readlink, d / "dir"))
    obs.append(os.path.realpath(d / "dirlink" / "sub" / "t") == str(d / "dir" / "sub" / "t"))
    obs.append(os.path.samefile(d / "rel", d / "dir" / "sub" / "t"))
    # Writing through a dangling symlink creates its target (natively too).
    (d / "dangling").write_text("created")
    obs.append((d / "nowhere").read_text())
    # Replacing a symlink atomically (ln -sfn).
    sh("ln -s dir/sub newlink && ln -sfn dir newlink", d)
    obs.append(os.readlink(d / "newlink"))
    os.lchown(d / "rel", 1234, 4321)
    obs.append((os.lstat(d / "rel").st_uid, os.lstat(d / "rel").st_gid))
    obs.append((os.stat(d / "rel").st_uid, os.stat(d / "rel").st_gid))
    return obs


def test_symlinks(mount, tmp_root):
    m = mount([{"path": "out", "access": "write"}])
    nat = native_dir(tmp_root, "sym")
    expected = symlink_scenario(nat)
    got = symlink_scenario(m.mp / "out")
    assert got == expected
    assert_same_tree(nat, m.src("out"), m)
    assert_view_shows(m.src("out"), m.mp / "out", m)


# ---------------------------------------------------------------------------
# xattrs

def xattr_scenario(d):
    d = Path(d)
    obs = []
    sh("printf 'x\\n' > f && mkdir dd && ln -s f l && "
       "setfattr -n user.one -v first f && setfattr -n user.two -v 0x00ff10 f && "
       "setfattr -n user.empty f && setfattr -n user.dir -v on dd && "
       "setfattr -n user.gone -v 1 f && setfattr -x user.gone f", d)
    obs.append(sh("getfattr -d -e hex --absolute-names f dd", d).stdout)
    obs.append(sh("getfattr -n user.one --only-values f", d).stdout)
    r = sh("getfattr -n user.gone f", d, check=False)
    obs.append((r.returncode, r.stderr))
    r = sh("setfattr -h -n user.x -v 1 l", d, check=False)
    obs.append((r.returncode, r.stderr))
    f = d / "f"
    os.setxattr(f, "user.py", b"python")
    big = data(3000, 7)
    os.setxattr(f, "user.big", big)
    obs.append(sorted(os.listxattr(f)))
    obs.append(os.getxattr(f, "user.py"))
    obs.append(os.getxattr(f, "user.big") == big)
    obs.append(errno_of(os.setxattr, f, "user.py", b"again", os.XATTR_CREATE))
    obs.append(errno_of(os.setxattr, f, "user.none", b"v", os.XATTR_REPLACE))
    os.setxattr(f, "user.py", b"replaced", os.XATTR_REPLACE)
    obs.append(os.getxattr(f, "user.py"))
    obs.append(errno_of(os.getxattr, f, "user.none"))
    obs.append(errno_of(os.removexattr, f, "user.none"))
    os.removexattr(f, "user.big")
    obs.append(sorted(os.listxattr(f)))
    obs.append(errno_of(os.setxattr, d / "l", "user.s", b"1", follow_symlinks=False))
    obs.append(os.listxattr(d / "l", follow_symlinks=False))
    obs.append(sorted(os.listxattr(d / "l")))  # follows to f
    obs.append(errno_of(os.setxattr, f, "user." + "n" * 250, b"v"))
    obs.append(errno_of(os.setxattr, f, "user." + "n" * 300, b"v"))
    obs.append(errno_of(os.setxattr, f, "bogus.name", b"v"))
    obs.append(errno_of(os.getxattr, d / "missing", "user.x"))
    os.setxattr(d / "dd", "user.py", b"dir")
    obs.append(sorted(os.listxattr(d / "dd")))
    return obs


def test_xattrs(mount, tmp_root):
    m = mount([{"path": "out", "access": "write"}])
    nat = native_dir(tmp_root, "xattr")
    expected = xattr_scenario(nat)
    got = xattr_scenario(m.mp / "out")
    assert got == expected
    assert_same_tree(nat, m.src("out"), m)
    assert_view_shows(m.src("out"), m.mp / "out", m)


# ---------------------------------------------------------------------------
# chmod / chown / touch

ATTR_SCRIPT = r"""
set -e
printf 'a\n' > f; printf 'b\n' > g; printf 'h\n' > h; printf 's\n' > s
mkdir d sticky
chmod 0640 f
chmod u+x,g-r,o+w g
chown 1234:5678 s
chmod 4750 s
chmod g+s d
chmod 1777 sticky
chown 42:43 d
chgrp 99 h
chown 7 g
ln -s f l
chown -h 11:12 l
chmod -R go-w d
touch -d '2001-02-03 04:05:06.123456789' f
touch -m -d '2010-01-01 00:00:00' g
touch -a -d '2005-05-05 05:05:05' h
touch -h -d '1999-12-31 23:59:59' l
touch -r f ref_copy
umask 000; touch wide; mkdir widedir; umask 077; touch narrow; mkdir narrowdir
"""


def attr_times(d):
    out = {}
    for n in ("f", "g", "h", "l", "ref_copy"):
        st = os.lstat(Path(d) / n)
        out[n] = (st.st_atime_ns if n in ("f", "h", "ref_copy") else None, st.st_mtime_ns
                  if n in ("f", "g", "l", "ref_copy") else None)
    return out


def touch_m_observation(d):
    p = Path(d) / "tm"
    p.write_text("tm")
    os.utime(p, ns=(10**18, 10**18))
    before = os.stat(p)
    sh("touch -m tm", d)
    after = os.stat(p)
    return [after.st_atime_ns == before.st_atime_ns, after.st_mtime_ns > before.st_mtime_ns,
            abs(after.st_mtime - time.time()) < 30]


def test_chmod_chown_touch(mount, tmp_root):
    m = mount([{"path": "out", "access": "write"}])
    nat = native_dir(tmp_root, "attr")
    sh(ATTR_SCRIPT, nat)
    sh(ATTR_SCRIPT, m.mp / "out")
    # Times first, before anything reads the files.
    assert attr_times(m.src("out")) == attr_times(nat)
    assert attr_times(m.mp / "out") == attr_times(nat)
    assert touch_m_observation(m.mp / "out") == touch_m_observation(nat) == [True, True, True]
    assert_same_tree(nat, m.src("out"), m)
    assert_view_shows(m.src("out"), m.mp / "out", m)


# ---------------------------------------------------------------------------
# truncate

def truncate_scenario(d):
    d = Path(d)
    obs = []
    sh("printf 'hello world' > f", d)
    for size in ("1M", "5", "+10", "-3", "0", "4097"):
        sh(f"truncate -s {size} f", d)
        b = (d / "f").read_bytes()
        obs.append((size, len(b), hashlib.sha256(b).hexdigest(), os.stat(d / "f").st_size))
    sh("truncate -s 100M big && truncate -s 7 new && printf 'abcdefgh' > g && "
       "truncate -s '<4' g", d)
    obs.append(os.stat(d / "big").st_size)
    obs.append(os.stat(d / "big").st_blocks)
    obs.append((d / "g").read_bytes())
    # Shrink while open, then read through the open fd.
    with open(d / "g", "r+b") as fo:
        os.truncate(d / "g", 2)
        obs.append(fo.read())
        fo.truncate(6)
        fo.seek(0)
        obs.append(fo.read())
    return obs


def test_truncate(mount, tmp_root):
    m = mount([{"path": "out", "access": "write"}])
    nat = native_dir(tmp_root, "trunc")
    expected = truncate_scenario(nat)
    got = truncate_scenario(m.mp / "out")
    assert got == expected
    assert_same_tree(nat, m.src("out"), m)
    assert os.stat(m.src("out") / "big").st_blocks == os.stat(nat / "big").st_blocks


# ---------------------------------------------------------------------------
# rm -rf

def build_deep(d, depth=150, wide=2000):
    d = Path(d)
    p = d / "tree"
    for i in range(depth):
        p = p / f"d{i}"
    p.mkdir(parents=True)
    q = d / "tree"
    for i in range(depth):
        q = q / f"d{i}"
        if i % 10 == 0:
            (q / "file").write_text(str(i))
            os.symlink("file", q / "link")
    w = d / "tree" / "wide"
    w.mkdir()
    for i in range(wide):
        (w / f"entry-{i:05d}").write_bytes(b"")
    os.chmod(d / "tree" / "d0", 0o555)  # rm -rf of a non-writable dir as root


def test_rm_rf_deep_tree(mount, tmp_root):
    m = mount([{"path": "out", "access": "write"}])
    nat = native_dir(tmp_root, "rm")
    for d in (nat, m.mp / "out"):
        build_deep(d)
        (d / "keep").write_text("keep")
    assert_same_tree(nat, m.src("out"), m)
    for d in (nat, m.mp / "out"):
        r = sh("rm -rf tree && ls -A", d)
        assert r.stdout == "keep\n", r.stdout
    assert_same_tree(nat, m.src("out"), m)
    assert sorted(os.listdir(m.src("out"))) == ["keep"]


# ---------------------------------------------------------------------------
# non-root user, setgid directory

def as_user(uid, gid, script, cwd, umask=0o022):
    def drop():
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        os.umask(umask)
    return subprocess.run(["/bin/sh", "-c", script], cwd=str(cwd), capture_output=True,
                          text=True, preexec_fn=drop, timeout=30,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"})


NOBODY_SCRIPT = r"""
set -e
printf 'hi\n' > f
mkdir d
printf 'x\n' > d/g
ln -s f l
mkfifo p
mkdir private && chmod 700 private
printf 'y\n' > sg/by_nobody
mkdir sg/sub
printf 'z\n' > sg/sub/deeper
printf 'w\n' >> suid_file
chmod 640 f
"""


def nobody_scenario(d):
    d = Path(d)
    os.chmod(d, 0o777)
    (d / "sg").mkdir()
    os.chown(d / "sg", 0, 1234)
    os.chmod(d / "sg", 0o2777)
    (d / "suid_file").write_text("s\n")
    os.chmod(d / "suid_file", 0o6777)  # a non-root write clears set-id bits
    obs = []
    r = as_user(NOBODY, NOGROUP, NOBODY_SCRIPT, d)
    obs.append((r.returncode, r.stderr))
    (d / "sg" / "by_root").write_text("r\n")
    os.mkdir(d / "sg" / "root_dir")
    r = as_user(NOBODY, NOGROUP, "chown 0 f", d)
    obs.append((r.returncode, r.stderr.replace(str(d), "D")))
    # Permission checks as natively: a root-only dir, a sticky dir.
    (d / "rootonly").mkdir(mode=0o700)
    (d / "sticky").mkdir()
    os.chmod(d / "sticky", 0o1777)
    (d / "sticky" / "roots").write_text("r")
    for cmd in ("printf no > rootonly/x", "ls rootonly", "rm -f sticky/roots",
                "mv sticky/roots sticky/mine", "chmod 777 sticky/roots",
                "printf mine > sticky/own && rm sticky/own"):
        r = as_user(NOBODY, NOGROUP, cmd, d)
        obs.append((cmd, r.returncode, r.stderr.replace(str(d), "D")))
    # umask 0 gives exactly the requested modes.
    r = as_user(NOBODY, NOGROUP, "printf w > wide && mkdir widedir && mkfifo widefifo", d, umask=0)
    obs.append((r.returncode, r.stderr))
    # And through su, as an agent's shell would run.
    r = subprocess.run(["su", "nobody", "-s", "/bin/sh", "-c", "umask 027; printf su > via_su; "
                        "mkdir su_dir; id -u; id -g"], cwd=str(d), capture_output=True,
                       text=True, timeout=30)
    obs.append((r.returncode, r.stdout, r.stderr))
    return obs


def test_non_root_user_and_setgid(mount, tmp_root):
    m = mount([{"path": "out", "access": "write"}])
    nat = native_dir(tmp_root, "nobody")
    expected = nobody_scenario(nat)
    got = nobody_scenario(m.mp / "out")
    assert got == expected
    assert expected[0] == (0, "")
    real = m.src("out")
    st = os.stat(real / "f")
    assert (st.st_uid, st.st_gid) == (NOBODY, NOGROUP)
    st = os.stat(real / "d")
    assert (st.st_uid, st.st_gid) == (NOBODY, NOGROUP)
    assert os.lstat(real / "l").st_uid == NOBODY
    assert os.stat(real / "sg" / "by_nobody").st_gid == 1234
    assert os.stat(real / "sg" / "by_root").st_gid == 1234
    assert os.stat(real / "sg" / "sub").st_mode & stat.S_ISGID
    assert os.stat(real / "sg" / "sub" / "deeper").st_gid == 1234
    st = os.stat(real / "via_su")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOGROUP, 0o640)
    assert stat.S_IMODE(os.stat(real / "wide").st_mode) == 0o666
    assert stat.S_IMODE(os.stat(real / "widedir").st_mode) == 0o777
    assert_same_tree(nat, real, m)
    assert_view_shows(real, m.mp / "out", m)


# ---------------------------------------------------------------------------
# fallocate, dd seek (sparse), SEEK_DATA / SEEK_HOLE

def seek_map(path):
    """[(data_start, data_end), ...] from SEEK_DATA/SEEK_HOLE."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        out = []
        off = 0
        while off < size:
            try:
                start = os.lseek(fd, off, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    break
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            off = end
        try:
            out.append(("data-at-eof", os.lseek(fd, size, os.SEEK_DATA)))
        except OSError as e:
            out.append(("data-at-eof", errno.errorcode[e.errno]))
        return out
    finally:
        os.close(fd)


def sparse_scenario(d, src):
    d = Path(d)
    sh(f"fallocate -l 8M alloc && "
       f"touch keep && fallocate -n -l 1M keep && "
       f"dd if='{src}' of=sparse bs=4096 seek=1024 count=4 conv=notrunc status=none && "
       f"dd if='{src}' of=sparse bs=4096 seek=4096 count=1 conv=notrunc status=none && "
       f"dd if='{src}' of=punched bs=1M count=1 status=none && "
       f"fallocate -p -o 65536 -l 131072 punched && "
       f"fallocate -z -o 0 -l 4096 punched && "
       f"truncate -s 1M holes_only && "
       f"dd if=/dev/zero of=zeros bs=64k count=4 status=none", d)
    obs = []
    for n in ("alloc", "keep", "sparse", "punched", "holes_only", "zeros"):
        # The map first: ext4 reports unwritten (fallocated) extents as data
        # once their pages are in the page cache, so reading changes it.
        smap = seek_map(d / n)
        st = os.stat(d / n)
        b = (d / n).read_bytes()
        obs.append((n, st.st_size, st.st_blocks, hashlib.sha256(b).hexdigest(), smap))
    with open(d / "sparse", "rb") as f:
        f.seek(1024 * 4096)
        obs.append(f.read(16384) == Path(src).read_bytes()[:16384])
    return obs


def test_fallocate_dd_sparse_seek(mount, tmp_root):
    m = mount([{"path": "out", "access": "write"}])
    src = tmp_root / "input.bin"
    src.write_bytes(data(MiB, 3))
    nat = native_dir(tmp_root, "sparse")
    expected = sparse_scenario(nat, src)
    got = sparse_scenario(m.mp / "out", src)
    assert got == expected
    assert expected[2][4][0] == (1024 * 4096, 1028 * 4096)
    assert_same_tree(nat, m.src("out"), m)
    for n in ("alloc", "keep", "sparse", "punched", "holes_only"):
        assert os.stat(m.src("out") / n).st_blocks == os.stat(nat / n).st_blocks, n
        # Whatever the page cache state, the view answers as the real file does.
        assert seek_map(m.mp / "out" / n) == seek_map(m.src("out") / n), n


# ---------------------------------------------------------------------------
# renameat2

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)


def renameat2(old, new, flags):
    """0 or the errno of renameat2(2)."""
    fn = getattr(_libc, "renameat2", None)
    o, n = os.fsencode(str(old)), os.fsencode(str(new))
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        r = fn(AT_FDCWD, o, AT_FDCWD, n, flags)
    else:
        assert os.uname().machine == "x86_64"
        _libc.syscall.restype = ctypes.c_long
        r = _libc.syscall(ctypes.c_long(316), ctypes.c_int(AT_FDCWD), ctypes.c_char_p(o),
                          ctypes.c_int(AT_FDCWD), ctypes.c_char_p(n), ctypes.c_uint(flags))
    return 0 if r == 0 else ctypes.get_errno()


def snapshot(d):
    """{path: content or 'dir'} read through d (the view or the native dir)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(d):
        rel = os.path.relpath(dirpath, d)
        for n in dirnames:
            out[os.path.normpath(os.path.join(rel, n))] = "dir"
        for n in filenames:
            p = os.path.join(dirpath, n)
            out[os.path.normpath(os.path.join(rel, n))] = (
                "->" + os.readlink(p) if os.path.islink(p) else Path(p).read_text())
    return dict(sorted(out.items()))


def rename_scenario(d):
    d = Path(d)
    (d / "a").write_text("A")
    (d / "b").write_text("B")
    (d / "dir").mkdir()
    (d / "dir" / "x").write_text("X")
    (d / "empty").mkdir()
    (d / "sub").mkdir()
    (d / "sub" / "p").write_text("P")
    os.symlink("a", d / "sl")
    snapshot(d)  # look everything up (and cache it) before renaming
    steps = [
        ("a", "b", RENAME_NOREPLACE),
        ("a", "c", RENAME_NOREPLACE),
        ("c", "b", RENAME_EXCHANGE),
        ("b", "missing", RENAME_EXCHANGE),
        ("missing", "b", RENAME_EXCHANGE),
        ("b", "dir", RENAME_EXCHANGE),
        ("b", "empty", RENAME_NOREPLACE),
        ("empty", "empty/inside", RENAME_NOREPLACE),
        ("c", "c", RENAME_EXCHANGE),
        ("c", "c", RENAME_NOREPLACE),
        ("c", "dir", RENAME_NOREPLACE | RENAME_EXCHANGE),
        ("sub/p", "c", RENAME_EXCHANGE),
        ("sl", "sub/p", RENAME_EXCHANGE),
        ("b", "sub/moved", RENAME_NOREPLACE),
        ("sub", "empty", 0),
        ("c", "dir", 0),
        ("empty", "dir", 0),
        ("c", "x", 8),
    ]
    obs = []
    for old, new, flags in steps:
        r = renameat2(d / old, d / new, flags)
        obs.append((old, new, flags, errno.errorcode.get(r, r), snapshot(d)))
    # Open files follow their inode through an exchange.
    with open(d / "dir", "rb") as fa:
        renameat2(d / "dir", d / "empty/moved/x", RENAME_EXCHANGE)
        obs.append(fa.read())
    # A directory moves with cached descendants and an open file below it.
    (d / "proj" / "deep" / "er").mkdir(parents=True)
    (d / "proj" / "deep" / "er" / "f").write_text("1")
    with open(d / "proj" / "deep" / "er" / "f", "a") as fh:
        snapshot(d)
        obs.append(renameat2(d / "proj", d / "renamed", 0))
        fh.write("2")
    obs.append((d / "renamed" / "deep" / "er" / "f").read_text())
    (d / "renamed" / "deep" / "er" / "g").write_text("created after the move")
    os.chmod(d / "renamed" / "deep" / "er" / "f", 0o600)
    os.setxattr(d / "renamed" / "deep", "user.moved", b"yes")
    obs.append(oct(os.stat(d / "renamed" / "deep" / "er" / "f").st_mode))
    obs.append(errno_of(os.stat, d / "proj"))
    obs.append(snapshot(d))
    return obs


def test_renameat2_noreplace_exchange(mount, tmp_root):
    m = mount([{"path": "out", "access": "write"}])
    nat = native_dir(tmp_root, "rename")
    expected = rename_scenario(nat)
    got = rename_scenario(m.mp / "out")
    for e, g in zip(expected, got):
        assert g == e
    assert got == expected
    assert expected[0][3] == "EEXIST" and expected[2][3] == 0
    assert_same_tree(nat, m.src("out"), m)
    assert_view_shows(m.src("out"), m.mp / "out", m)


# ---------------------------------------------------------------------------
# statvfs, mkfifo

def test_statvfs(mount, tmp_root):
    m = mount([{"path": "out", "access": "write"}, {"path": "in", "access": "read"}])
    nat = native_dir(tmp_root, "statvfs")
    n = os.statvfs(nat)
    for p in (m.mp, m.mp / "out", m.mp / "in"):
        v = os.statvfs(p)
        assert (v.f_bsize, v.f_frsize, v.f_blocks, v.f_files, v.f_namemax) == \
            (n.f_bsize, n.f_frsize, n.f_blocks, n.f_files, n.f_namemax), p
        assert abs(v.f_bavail - n.f_bavail) <= max(n.f_blocks // 100, 1024), p
        assert abs(v.f_ffree - n.f_ffree) <= max(n.f_files // 100, 1024), p
    # Ordinary tools agree with native.
    r_nat = sh("df -P -k . | tail -1 | awk '{print $2}'", nat)
    r_view = sh("df -P -k . | tail -1 | awk '{print $2}'", m.mp / "out")
    assert r_view.stdout == r_nat.stdout
    r = sh(f"stat -f -c '%S %b %c' '{m.mp / 'out'}' '{nat}'", tmp_root)
    a, b = r.stdout.splitlines()
    assert a == b


def fifo_scenario(d):
    d = Path(d)
    sh("mkfifo -m 0640 p && mkfifo q && umask 0 && mkfifo wide", d)
    obs = [stat.S_ISFIFO(os.stat(d / "p").st_mode),
           errno_of(os.mkfifo, d / "p"),
           errno_of(os.open, d / "p", os.O_WRONLY | os.O_NONBLOCK)]
    got = []

    def reader():
        with open(d / "p", "rb") as f:
            got.append(f.read())

    t = threading.Thread(target=reader)
    t.start()
    with open(d / "p", "wb") as f:
        f.write(b"through the fifo\n" * 1000)
    t.join(10)
    obs.append(got == [b"through the fifo\n" * 1000])
    r = sh("(printf 'shell\\n' > q &) ; cat q", d)
    obs.append(r.stdout)
    return obs


def test_mkfifo(mount, tmp_root):
    m = mount([{"path": "out", "access": "write"}])
    nat = native_dir(tmp_root, "fifo")
    expected = fifo_scenario(nat)
    got = fifo_scenario(m.mp / "out")
    assert got == expected
    assert expected[0] is True and expected[3] is True
    assert_same_tree(nat, m.src("out"), m)
    assert_view_shows(m.src("out"), m.mp / "out", m)


# ---------------------------------------------------------------------------
# read-only bind

RO_COMMANDS = [
    "touch f", "touch newfile", "rm -f f", "rm -rf d", "rmdir d/empty", "mv f g", "mv d d2",
    "chmod 600 f", "chown 1:1 f", "chgrp 1 f", "setfattr -n user.x -v 1 f",
    "setfattr -x user.k f", "truncate -s 0 f", "truncate -s 10 new2", "mkdir nd",
    "ln f hl", "ln -s f sl", "mkfifo p", "cp /etc/hostname copied", "printf x >> f",
    "dd if=/dev/zero of=f bs=1 count=1 conv=notrunc status=none", "touch -d 2001-01-01 f",
]


def ro_state(root):
    out = manifest(root, times=True)
    for dirpath, dirnames, filenames in os.walk(root):
        for n in [dirpath] + [os.path.join(dirpath, x) for x in dirnames + filenames]:
            out[os.path.relpath(n, root)]["ctime_ns"] = os.lstat(n).st_ctime_ns
    return out


def test_readonly_bind_refuses_every_mutation(mount, tmp_root):
    m = mount([{"path": "ro", "access": "read"}, {"path": "out", "access": "write"}])
    src = m.src("ro")
    (src / "f").write_text("content\n")
    os.setxattr(src / "f", "user.k", b"v")
    (src / "d" / "empty").mkdir(parents=True)
    (src / "d" / "x").write_text("x\n")
    os.symlink("f", src / "l")
    os.mkfifo(src / "fifo")
    before = ro_state(src)
    view = m.mp / "ro"
    for cmd in RO_COMMANDS:
        r = sh(cmd, view, check=False)
        assert r.returncode != 0, cmd
        assert "Read-only file system" in r.stderr, f"{cmd}: {r.stderr}"
    r = sh(f"mv '{view}/f' '{m.mp}/out/'", tmp_root, check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr, r.stderr
    # The syscalls themselves.
    p = view / "f"
    calls = [
        ("open O_WRONLY", os.open, (p, os.O_WRONLY)),
        ("open O_RDWR", os.open, (p, os.O_RDWR)),
        ("open O_TRUNC", os.open, (p, os.O_RDONLY | os.O_TRUNC)),
        ("open O_CREAT", os.open, (view / "new", os.O_WRONLY | os.O_CREAT, 0o644)),
        ("unlink", os.unlink, (p,)),
        ("rename", os.rename, (p, view / "g")),
        ("rename dir", os.rename, (view / "d", view / "d3")),
        ("chmod", os.chmod, (p, 0o600)),
        ("chown", os.chown, (p, 1, 1)),
        ("utime", os.utime, (p, (1, 1))),
        ("utime now", os.utime, (p, None)),
        ("setxattr", os.setxattr, (p, "user.n", b"1")),
        ("removexattr", os.removexattr, (p, "user.k")),
        ("truncate", os.truncate, (p, 0)),
        ("mkdir", os.mkdir, (view / "m",)),
        ("rmdir", os.rmdir, (view / "d" / "empty",)),
        ("link", os.link, (p, view / "h")),
        ("symlink", os.symlink, ("f", view / "s")),
        ("mkfifo", os.mkfifo, (view / "ff",)),
        ("lchown symlink", os.lchown, (view / "l", 1, 1)),
        ("chmod dir", os.chmod, (view / "d", 0o700)),
        ("setxattr dir", os.setxattr, (view / "d", "user.n", b"1")),
    ]
    got = {name: errno.errorcode.get(errno_of(fn, *args), "ok") for name, fn, args in calls}
    assert got == {name: "EROFS" for name, _, _ in calls}
    assert (view / "f").read_text() == "content\n"
    after = ro_state(src)
    assert after == before
    assert sorted(os.listdir(m.src("out"))) in ([], ["f"])


# ---------------------------------------------------------------------------
# many small writes

def many_writes(path, payload, chunk=4096):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        mv = memoryview(payload)
        for off in range(0, len(payload), chunk):
            n = os.write(fd, mv[off:off + chunk])
            assert n == min(chunk, len(payload) - off)
    finally:
        os.close(fd)


def test_many_small_writes(mount, tmp_root):
    m = mount([{"path": "out", "access": "write"}])
    payload = data(64 * MiB, 11)
    want = hashlib.sha256(payload).hexdigest()
    nat = native_dir(tmp_root, "writes")
    t0 = time.monotonic()
    for d in (nat, m.mp / "out"):
        many_writes(d / "big.bin", payload)
        # O_APPEND writes, 4 KiB each, after the big file.
        fd = os.open(d / "log.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        for i in range(2000):
            os.write(fd, f"{i:06d} ".encode() + b"x" * 4089)
        os.close(fd)
    assert time.monotonic() - t0 < 45
    real = m.src("out") / "big.bin"
    assert os.stat(real).st_size == 64 * MiB
    assert hashlib.sha256(real.read_bytes()).hexdigest() == want
    # Read back through the view in 4 KiB reads.
    h = hashlib.sha256()
    fd = os.open(m.mp / "out" / "big.bin", os.O_RDONLY)
    try:
        while True:
            b = os.read(fd, 4096)
            if not b:
                break
            h.update(b)
    finally:
        os.close(fd)
    assert h.hexdigest() == want
    assert_same_tree(nat, m.src("out"), m)
