"""rename(2) flags under stage: RENAME_NOREPLACE and RENAME_EXCHANGE behave as
natively in the view, leave the real tree alone, and approve reproduces them."""
import ctypes
import errno
import json
import os
import subprocess

from conftest import SCOPEFS

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


def renameat2(a, b, flags):
    r = libc.renameat2(AT_FDCWD, os.fsencode(str(a)), AT_FDCWD, os.fsencode(str(b)), flags)
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def cli(*args):
    return subprocess.run([SCOPEFS, *map(str, args)], capture_output=True, text=True, timeout=60)


def test_noreplace_and_exchange(mount, tmp_path):
    src = tmp_path / "src"
    (src / "d1").mkdir(parents=True)
    (src / "d2").mkdir()
    (src / "a").write_text("A")
    (src / "b").write_text("B")
    (src / "d1" / "in1").write_text("1")
    (src / "d2" / "in2").write_text("2")
    m = mount([{"path": "", "source": src, "access": "stage"}])
    v = m.mp
    try:
        renameat2(v / "a", v / "b", RENAME_NOREPLACE)
        raise AssertionError("RENAME_NOREPLACE over an existing name succeeded")
    except OSError as e:
        assert e.errno == errno.EEXIST
    try:
        renameat2(v / "a", v / "nope", RENAME_EXCHANGE)
        raise AssertionError("RENAME_EXCHANGE with a missing target succeeded")
    except OSError as e:
        assert e.errno == errno.ENOENT
    ino_a = os.stat(v / "a").st_ino
    renameat2(v / "a", v / "b", RENAME_EXCHANGE)
    assert (v / "a").read_text() == "B" and (v / "b").read_text() == "A"
    assert os.stat(v / "b").st_ino == ino_a
    renameat2(v / "d1", v / "d2", RENAME_EXCHANGE)
    assert os.listdir(v / "d1") == ["in2"] and os.listdir(v / "d2") == ["in1"]
    renameat2(v / "a", v / "c", RENAME_NOREPLACE)
    assert sorted(os.listdir(v)) == ["b", "c", "d1", "d2"]
    # The real tree is untouched.
    assert (src / "a").read_text() == "A" and (src / "b").read_text() == "B"
    assert os.listdir(src / "d1") == ["in1"]
    r = cli("approve", m.config, "--all")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(src)) == ["b", "c", "d1", "d2"]
    assert (src / "b").read_text() == "A" and (src / "c").read_text() == "B"
    assert os.listdir(src / "d1") == ["in2"] and os.listdir(src / "d2") == ["in1"]
    assert sorted(os.listdir(v)) == ["b", "c", "d1", "d2"]
    assert (v / "c").read_text() == "B"
    pend = json.loads(cli("pending", m.config, "--json").stdout)["pending"]
    assert pend == []
