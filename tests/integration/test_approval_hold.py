"""[approval] hold and max_deletes under `write` access (docs/approvals.md).

Under write, changes go to the real tree at once, except the operations
[approval] holds: those vanish from (or appear in) the view at once while the
real tree keeps its state until an admin approves.
"""
import json
import os
import subprocess

from conftest import SCOPEFS


def cli(*args):
    return subprocess.run([SCOPEFS, *map(str, args)], capture_output=True, text=True, timeout=60)


def pending(m):
    r = cli("pending", m.config, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["pending"]


def test_hold_unlink_and_rename_under_write(mount, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "keep.txt").write_text("keep\n")
    (src / "old.txt").write_text("old\n")
    (src / "mv.txt").write_text("mv\n")
    m = mount([{"path": "", "source": src, "access": "write"}],
              approval={"hold": ["unlink", "rename"]})
    v = m.mp
    # Not held: applied to the real tree at once.
    (v / "new.txt").write_text("new\n")
    (v / "keep.txt").write_text("changed\n")
    assert (src / "new.txt").read_text() == "new\n"
    assert (src / "keep.txt").read_text() == "changed\n"
    # Held: the view changes, the real tree does not.
    os.unlink(v / "old.txt")
    os.rename(v / "mv.txt", v / "moved.txt")
    assert not (v / "old.txt").exists()
    assert (v / "moved.txt").read_text() == "mv\n" and not (v / "mv.txt").exists()
    assert (src / "old.txt").read_text() == "old\n"
    assert (src / "mv.txt").exists() and not (src / "moved.txt").exists()
    ops = sorted(c["op"] for c in pending(m))
    assert ops == ["rename", "unlink"], ops
    # A later write to the held name stays in the overlay, the real file untouched.
    (v / "moved.txt").write_text("mv2\n")
    assert (src / "mv.txt").read_text() == "mv\n"
    r = cli("approve", m.config, "--all")
    assert r.returncode == 0, r.stderr
    assert not (src / "old.txt").exists()
    assert (src / "moved.txt").read_text() == "mv2\n" and not (src / "mv.txt").exists()
    assert sorted(os.listdir(v)) == sorted(os.listdir(src))
    assert pending(m) == []


def test_max_deletes_holds_the_rest(mount, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}").write_text(str(i))
    m = mount([{"path": "", "source": src, "access": "write"}], approval={"max_deletes": 2})
    for i in range(5):
        os.unlink(m.mp / f"f{i}")
    assert os.listdir(m.mp) == []
    # Two deletes applied, the rest held.
    assert sorted(os.listdir(src)) == ["f2", "f3", "f4"]
    assert sorted(c["path"] for c in pending(m)) == ["f2", "f3", "f4"]
    r = cli("reject", m.config, "--path", "f3")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(m.mp)) == ["f3"]
    assert (m.mp / "f3").read_text() == "3"
    r = cli("approve", m.config, "--all")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(src)) == ["f3"]


def test_state_contents_stay_roots_alone(mount, tmp_path):
    """The daemon runs with umask 0 (callers' modes pass through); its own
    state must not: the journal, blobs and overlay are 0700, the pid file is
    not writable by others, even with the state directory open to an admin group."""
    src = tmp_path / "src"
    src.mkdir()
    m = mount([{"path": "", "source": src, "access": "stage"}])
    (m.mp / "f").write_text("x")
    for sub in ("journal", "blobs", "stage"):
        mode = os.stat(m.state / sub).st_mode & 0o777
        assert mode == 0o700, (sub, oct(mode))
    assert os.stat(m.state / "daemon.pid").st_mode & 0o022 == 0
