"""Mount lifecycle: daemonized mount/unmount, double mount, SIGKILL recovery,
stale mounts, signals."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SCOPEFS, is_fuse_mount, write_config
from helpers import fuse_connection_dir


def run(*args, **kw):
    return subprocess.run([SCOPEFS, *map(str, args)], capture_output=True, text=True, timeout=60, **kw)


def make_config(tmp_root, name="life"):
    src = tmp_root / "src"
    src.mkdir(exist_ok=True)
    (src / "f.txt").write_text("content\n")
    cfg = tmp_root / "task.toml"
    write_config(cfg, name, tmp_root / "mnt", tmp_root / "state",
                 [{"path": "", "source": str(src), "access": "write"}])
    return cfg


def test_daemonized_mount_and_unmount(tmp_root):
    cfg = make_config(tmp_root)
    r = run("mount", cfg)
    try:
        assert r.returncode == 0, r.stderr
        assert "mounted task 'life'" in r.stdout
        # The view answers as soon as mount returns.
        assert (tmp_root / "mnt" / "f.txt").read_text() == "content\n"
        pid = int((tmp_root / "state" / "daemon.pid").read_text())
        # A second mount of the same task is refused clearly.
        r2 = run("mount", cfg)
        assert r2.returncode == 1 and "already mounted" in r2.stderr
    finally:
        u = run("unmount", cfg)
    assert u.returncode == 0, u.stderr
    assert not is_fuse_mount(tmp_root / "mnt")
    time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_sigkill_then_remount(mount, tmp_root):
    m = mount([{"path": "", "access": "write"}])
    (m.mp / "a.txt").write_text("1")
    m.kill9()
    # The dead mount is stale (ENOTCONN) until the next mount clears it.
    try:
        os.stat(m.mp)
        stale = False
    except OSError:
        stale = True
    assert stale
    m.start()
    assert (m.mp / "a.txt").read_text() == "1"
    (m.mp / "b.txt").write_text("2")
    assert (m.src("") / "b.txt").read_text() == "2"
    assert any("stale mount" in l for l in m.daemon_log().splitlines())


def test_sigterm_unmounts_cleanly(mount):
    m = mount([{"path": "", "access": "write"}])
    m.proc.send_signal(signal.SIGTERM)
    m.proc.wait(timeout=10)
    assert m.proc.returncode == 0
    assert not is_fuse_mount(m.mp)


@pytest.fixture
def fusectl():
    """The fusectl filesystem at /sys/fs/fuse/connections (mounted for the
    test if it is not, and unmounted after); skips where it cannot be had."""
    conns = Path("/sys/fs/fuse/connections")
    mounted_here = False
    if not os.path.ismount(conns):
        r = subprocess.run(["mount", "-t", "fusectl", "fusectl", str(conns)], capture_output=True)
        if r.returncode != 0:
            pytest.skip("fusectl is not available: " + r.stderr.decode(errors="replace").strip())
        mounted_here = True
    try:
        yield conns
    finally:
        if mounted_here:
            subprocess.run(["umount", str(conns)], capture_output=True)


def test_connection_abort_stops_the_view_cleanly(mount, fusectl):
    """An admin's last resort for a hung view is fusectl's abort: the daemon
    ends as on an unmount (exit 0, run closed), the dead mount is detached,
    and the next mount finds a clean mountpoint."""
    m = mount([{"path": "", "access": "write"}])
    (m.mp / "a.txt").write_text("1")
    conn = fuse_connection_dir(m.mp)
    if conn is None or not (conn / "abort").exists():
        pytest.skip("no fusectl connection directory for the mount")
    (conn / "abort").write_text("1")
    rc = m.proc.wait(timeout=20)
    log = m.daemon_log()
    assert rc == 0, log
    assert not is_fuse_mount(m.mp)
    m.stop()
    m.start()
    assert (m.mp / "a.txt").read_text() == "1"
    assert "stale mount" not in m.daemon_log()


def test_check_reports_errors_with_line_and_column(tmp_root):
    cfg = tmp_root / "bad.toml"
    cfg.write_text('[task]\nname = "x"\nmountpoint = "/tmp/x"\nstate_dir = "/tmp/y"\nbogus = 1\n\n'
                   '[[bind]]\npath = "../up"\nsource = "/nonexistent"\naccess = "read"\n')
    r = run("check", cfg)
    assert r.returncode == 2
    assert f"{cfg}:5:1: unknown key 'bogus'" in r.stderr
    assert f"{cfg}:8:8: bind path '../up' escapes" in r.stderr
    assert f"{cfg}:9:10: bind source '/nonexistent' does not exist" in r.stderr


def test_mount_as_unprivileged_user_fails_clearly(tmp_root):
    cfg = make_config(tmp_root)
    os.chmod(cfg, 0o644)
    r = subprocess.run(["su", "nobody", "-s", "/bin/sh", "-c", f"{SCOPEFS} mount {cfg}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert not is_fuse_mount(tmp_root / "mnt")


def test_status_shows_mount_run_journal_and_blobs(tmp_root):
    import json
    cfg = make_config(tmp_root)
    r = run("status", cfg)
    assert r.returncode == 1 and "never mounted" in r.stderr
    env = dict(os.environ, SCOPEFS_RUN_ID="run-for-status")
    assert subprocess.run([SCOPEFS, "mount", str(cfg)], env=env, capture_output=True,
                          timeout=60).returncode == 0
    try:
        (tmp_root / "mnt" / "f.txt").write_text("changed\n")
        s = json.loads(run("status", cfg, "--json").stdout)
        assert s["mounted"] is True and s["daemon_pid"] > 0
        assert s["last_run"] == "run-for-status"
        assert s["records_by_state"].get("applied", 0) >= 2  # mount + write
        assert s["blobs"] == 1  # the before-image of f.txt
    finally:
        assert run("unmount", cfg).returncode == 0
    s = json.loads(run("status", cfg, "--json").stdout)
    assert s["mounted"] is False and s["daemon_pid"] is None
    text = run("status", cfg).stdout
    assert "not mounted" in text and "before-images" in text
