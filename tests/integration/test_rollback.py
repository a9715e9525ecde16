"""`scopefs rollback` (issue 5, part 1): undo applied changes of a `write` view.

Round trip: a manifest of the real tree (content, types, modes, owners,
mtimes of non-directories, symlink targets, xattrs, hard-link groups), a mixed
workload through the view, a rollback, and the manifest is the original again
— mounted (through the control socket) and unmounted (offline, under the
state lock). Also by --path, --run, --since, --to; --dry-run changes nothing;
a conflict is reported and skipped, --force applies it; a rollback can be
rolled back.
"""
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import SCOPEFS
from helpers import diff_manifests, manifest


def cli(*args):
    return subprocess.run([SCOPEFS, *map(str, args)], capture_output=True, text=True, timeout=120)


def records(m):
    r = cli("log", m.config, "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def snapshot(root):
    """The manifest with mtimes, except of directories (a parent's mtime is not journaled)."""
    m = manifest(root, times=True)
    for e in m.values():
        if e["type"] == "dir":
            e.pop("mtime_ns", None)
    return m


def assert_same(a, b, m=None):
    d = diff_manifests(a, b, "original", "after rollback")
    if d:
        msg = "\n".join(d[:60])
        if m is not None:
            msg += "\n--- daemon log ---\n" + "\n".join(m.daemon_log().splitlines()[-30:])
        raise AssertionError(msg)


def make_tree(src):
    (src / "docs" / "sub").mkdir(parents=True)
    (src / "docs" / "a.txt").write_text("alpha\n")
    (src / "docs" / "b.txt").write_text("bravo\n")
    (src / "docs" / "sub" / "c.txt").write_text("charlie\n" * 100)
    (src / "old" / "deep").mkdir(parents=True)
    (src / "old" / "x.txt").write_text("x-ray\n")
    (src / "old" / "deep" / "y.txt").write_bytes(os.urandom(70000))
    os.symlink("../x.txt", src / "old" / "deep" / "link")
    os.chmod(src / "old" / "deep", 0o750)
    os.chown(src / "old" / "deep" / "y.txt", 4321, 4321)
    (src / "report.csv").write_text("id,v\n1,2\n")
    (src / "data.bin").write_bytes(os.urandom(5000))
    (src / "keep.txt").write_text("keep\n")
    os.chmod(src / "keep.txt", 0o640)
    os.setxattr(src / "docs" / "a.txt", "user.tag", b"original")
    os.setxattr(src / "old" / "x.txt", "user.kept", b"through rm -rf")
    os.mkfifo(src / "old" / "pipe")
    # Distinct, old mtimes so that a restored time is visible.
    for p in src.rglob("*"):
        os.utime(p, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000 + hash(p.name) % 10**9),
                 follow_symlinks=False)


def workload(v):
    """Every applied operation, through the view."""
    shutil.rmtree(v / "old")                                   # unlink, rmdir, symlink, fifo
    os.rename(v / "docs", v / "documents")                     # directory rename
    (v / ".report.csv.tmp").write_text("id,v\n1,3\n2,4\n")     # atomic save: create, write,
    os.replace(v / ".report.csv.tmp", v / "report.csv")        # rename over the old file
    os.chmod(v / "keep.txt", 0o600)                            # chmod
    os.chown(v / "keep.txt", 1234, 1234)                       # chown
    os.truncate(v / "data.bin", 10)                            # truncate
    os.symlink("report.csv", v / "latest")                     # symlink
    os.link(v / "report.csv", v / "report.hard")               # hard link
    os.utime(v / "documents" / "b.txt", ns=(1, 2_000_000_000))  # utimens
    with open(v / "documents" / "sub" / "c.txt", "a") as f:    # write session (append)
        f.write("delta\n")
    (v / "new").mkdir()                                        # mkdir, create
    (v / "new" / "n.txt").write_text("new\n")
    os.mknod(v / "new" / "fifo", 0o600 | 0o010000)             # mknod
    with open(v / "documents" / "a.txt", "r+") as f:           # overwrite in place
        f.write("ALPHA")


def write_mount(mount, tmp_root):
    src = tmp_root / "src"
    src.mkdir()
    make_tree(src)
    m = mount([{"path": "", "source": src, "access": "write"}])
    return m, src


@pytest.mark.parametrize("mounted", [True, False], ids=["mounted", "unmounted"])
def test_round_trip_all(mount, tmp_root, mounted):
    m, src = write_mount(mount, tmp_root)
    before = snapshot(src)
    workload(m.mp)
    assert snapshot(src) != before
    if not mounted:
        m.stop()
    r = cli("rollback", m.config, "--all")
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same(before, snapshot(src), m)
    if mounted:
        # The view shows the rolled-back tree (caches invalidated).
        assert sorted(os.listdir(m.mp)) == sorted(os.listdir(src))
        assert (m.mp / "report.csv").read_text() == "id,v\n1,2\n"
        assert (m.mp / "old" / "deep" / "y.txt").read_bytes() == (src / "old" / "deep" / "y.txt").read_bytes()
    # Undone records are marked; a second --all has nothing to do.
    recs = records(m)
    assert any(x["state"] == "rolled_back" for x in recs)
    assert sum(1 for x in recs if x["op"] == "rollback") > 10
    r = cli("rollback", m.config, "--all")
    assert r.returncode == 0, r.stderr
    assert_same(before, snapshot(src), m)


def test_dry_run_changes_nothing(mount, tmp_root):
    m, src = write_mount(mount, tmp_root)
    workload(m.mp)
    after = snapshot(src)
    n = len(records(m))
    r = cli("rollback", m.config, "--all", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)["plan"]
    assert plan and all(s["path"] and s["becomes"] for s in plan)
    # Newest first, and the removed file's content comes from its before-image.
    assert [s["seq"] for s in plan] == sorted((s["seq"] for s in plan), reverse=True)
    assert any(s["path"] == "old/deep/y.txt" and s["blob"] for s in plan)
    assert snapshot(src) == after
    assert len(records(m)) == n
    r = cli("rollback", m.config, "--all", "--dry-run")
    assert r.returncode == 0 and "would undo" in r.stdout


def test_by_path(mount, tmp_root):
    m, src = write_mount(mount, tmp_root)
    before = snapshot(src)
    workload(m.mp)
    mid = snapshot(src)
    r = cli("rollback", m.config, "--path", "old/**", "--path", "old")
    assert r.returncode == 0, r.stdout + r.stderr
    now = snapshot(src)
    # old/ is back as it was; the rest still shows the workload.
    assert {k: v for k, v in now.items() if k == "old" or k.startswith("old/")} == \
           {k: v for k, v in before.items() if k == "old" or k.startswith("old/")}
    assert {k: v for k, v in now.items() if not (k == "old" or k.startswith("old/") or k == ".")} == \
           {k: v for k, v in mid.items() if not (k == "old" or k.startswith("old/") or k == ".")}


def test_by_run_and_since_and_to(mount, tmp_root):
    m, src = write_mount(mount, tmp_root)
    s0 = snapshot(src)
    (m.mp / "first.txt").write_text("run 1\n")
    os.chmod(m.mp / "keep.txt", 0o604)
    m.stop()
    s1 = snapshot(src)
    m.start()
    # --since takes whole seconds: start the second run's changes on a new second.
    t = int(time.time()) + 1
    time.sleep(t - time.time() + 0.02)
    (m.mp / "second.txt").write_text("run 2\n")
    os.unlink(m.mp / "data.bin")
    s2 = snapshot(src)
    recs = records(m)
    runs = [x["run"] for x in recs if x["op"] == "create"]
    assert len(runs) == 2 and runs[0] != runs[1]
    last_of_run1 = max(x["seq"] for x in recs if x["run"] == runs[0])
    # --since: only what came from t on (epoch seconds).
    r = cli("rollback", m.config, "--since", t, "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    planned = {s["path"] for s in json.loads(r.stdout)["plan"]}
    assert {"second.txt", "data.bin"} <= planned and "first.txt" not in planned
    # --run of the second mount: back to s1.
    r = cli("rollback", m.config, "--run", runs[1])
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same(s1, snapshot(src), m)
    # Roll the rollback back (by ids): s2 again.
    recs = records(m)
    rb_ids = [x["seq"] for x in recs if x["op"] == "rollback" and x["state"] == "applied"]
    r = cli("rollback", m.config, *rb_ids)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same(s2, snapshot(src), m)
    # --to SEQ: everything after the first run's last record: s1 again; then --all: s0.
    r = cli("rollback", m.config, "--to", last_of_run1)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same(s1, snapshot(src), m)
    r = cli("rollback", m.config, "--all")
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same(s0, snapshot(src), m)


@pytest.mark.parametrize("mounted", [True, False], ids=["mounted", "unmounted"])
def test_conflict_skipped_then_forced(mount, tmp_root, mounted):
    m, src = write_mount(mount, tmp_root)
    orig = (src / "report.csv").read_text()
    (m.mp / "report.csv").write_text("agent\n")
    (m.mp / "keep.txt").write_text("agent keep\n")
    if not mounted:
        m.stop()
    # Someone edits the file after the agent.
    (src / "report.csv").write_text("human edit\n")
    r = cli("rollback", m.config, "--all")
    assert r.returncode == 1
    assert "conflict" in r.stderr and "report.csv" in r.stderr and "content changed" in r.stderr
    assert (src / "report.csv").read_text() == "human edit\n"
    assert (src / "keep.txt").read_text() == "keep\n"     # the rest was rolled back
    r = cli("rollback", m.config, "--all", "--force")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (src / "report.csv").read_text() == orig
    # What --force replaced is kept: rolling the forced rollback back brings it again.
    recs = records(m)
    forced = [x for x in recs if x["op"] == "rollback" and x.get("note", "").startswith("forced")]
    assert forced, recs[-3:]
    r = cli("rollback", m.config, forced[-1]["seq"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert (src / "report.csv").read_text() == "human edit\n"


def test_missing_before_image_is_reported(mount, tmp_root):
    m, src = write_mount(mount, tmp_root)
    os.unlink(m.mp / "data.bin")
    m.stop()
    store = m.state / "blobs"
    blobs = [p for p in store.rglob("*") if p.is_file() and p.relative_to(store).parts[0] != "tmp"]
    assert blobs
    for b in blobs:
        b.unlink()
    r = cli("rollback", m.config, "--all")
    assert r.returncode == 1
    assert "before-image not kept" in r.stderr


def test_root_rolls_back_through_the_daemon(mount, tmp_root):
    m, src = write_mount(mount, tmp_root)
    (m.mp / "x.txt").write_text("x")
    r = cli("rollback", m.config, "--all", "--json")
    assert r.returncode == 0, r.stderr   # root is an admin; the daemon answers
    assert not (src / "x.txt").exists()


def test_xattr_round_trip(mount, tmp_root):
    m, src = write_mount(mount, tmp_root)
    before = snapshot(src)
    os.setxattr(m.mp / "docs" / "a.txt", "user.tag", b"changed")
    os.setxattr(m.mp / "keep.txt", "user.new", b"1")
    os.removexattr(m.mp / "old" / "x.txt", "user.kept")
    r = cli("rollback", m.config, "--all")
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same(before, snapshot(src), m)


def test_create_over_a_file_made_outside_the_view(mount, tmp_root):
    """The kernel cached "no such name" (a negative entry), then the name was
    made in the real tree directly: the agent's open(O_CREAT) reaches the
    daemon as CREATE. It opens the existing file — journaled as a write with
    a before-image, not as a create — so rollback restores the user's file
    instead of deleting it."""
    m = mount([{"path": "w", "access": "write"}], extra_args=["--cache-timeout", "30"])
    src, v = m.src("w"), m.mp / "w"
    assert not (v / "late.txt").exists()  # the kernel now caches the absence
    (src / "late.txt").write_text("the user's file\n")
    fd = os.open(v / "late.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"the agent's version\n")
    finally:
        os.close(fd)
    assert (src / "late.txt").read_text() == "the agent's version\n"
    ops = [(x["op"], x["path"]) for x in records(m) if x["path"] == "w/late.txt"]
    assert ("create", "w/late.txt") not in ops, ops
    r = cli("rollback", m.config, "--all")
    assert r.returncode == 0, r.stderr
    assert (src / "late.txt").read_text() == "the user's file\n"

    # O_EXCL still fails on the existing name, and changes nothing.
    assert (v / "other.txt").exists() is False
    (src / "other.txt").write_text("theirs\n")
    with pytest.raises(FileExistsError):
        os.open(v / "other.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    assert (src / "other.txt").read_text() == "theirs\n"
