"""The units and the daemon's side of them, without systemd as PID 1: the
notify protocol (READY=1 only once a file in the view is readable, STATUS=
with the pending count, STOPPING=1 on SIGTERM, clean unmount), journald log
priorities, quiet logs at the default level, and `systemd-analyze verify` of
every unit."""
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SCOPEFS, is_fuse_mount, write_config

UNITS_DIR = Path(__file__).resolve().parents[2] / "systemd"
UNIT = UNITS_DIR / "scopefs@.service"
UNITS = ["scopefs@.service", "scopefs-gc@.service", "scopefs-gc@.timer"]


def test_notify_ready_only_when_view_answers_then_stopping(tmp_root):
    src = tmp_root / "src"
    src.mkdir()
    (src / "f.txt").write_text("served\n")
    mp = tmp_root / "mnt"
    cfg = tmp_root / "task.toml"
    write_config(cfg, "notify", mp, tmp_root / "state",
                 [{"path": "", "source": str(src), "access": "read"}])
    sock_path = str(tmp_root / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(10)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path, INVOCATION_ID="0123456789abcdef0123456789abcdef")
    proc = subprocess.Popen([SCOPEFS, "mount", "--foreground", str(cfg)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        msg = sock.recv(4096).decode()
        assert "READY=1" in msg
        # At READY, the view already serves files.
        assert (mp / "f.txt").read_text() == "served\n"
        proc.send_signal(signal.SIGTERM)
        msg = sock.recv(4096).decode()
        assert "STOPPING=1" in msg
        assert proc.wait(timeout=10) == 0
        assert not is_fuse_mount(mp)
        # The run id came from systemd's INVOCATION_ID.
        log = subprocess.run([SCOPEFS, "log", str(tmp_root / "state"), "--json", "--op", "mount"],
                             capture_output=True, text=True, timeout=30).stdout
        assert '"run":"0123456789abcdef0123456789abcdef"' in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if is_fuse_mount(mp):
            subprocess.run(["umount", "-l", str(mp)], capture_output=True)
        sock.close()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_verify(tmp_root):
    # systemd-analyze wants the ExecStart binary to exist: verify copies of the
    # units pointing at the built binary. The man pages they cite are checked
    # where they are installed (tests/package).
    for name in UNITS:
        (tmp_root / name).write_text((UNITS_DIR / name).read_text().replace("/usr/bin/scopefs", SCOPEFS))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", *UNITS], cwd=tmp_root,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # An instance of each, with the timer finding its service.
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", "scopefs@recon.service",
                        "scopefs-gc@recon.timer", "scopefs-gc@recon.service"], cwd=tmp_root,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


# Settings that give a unit its own mount namespace (systemd.exec(5),
# PrivateMounts=): the view mounted inside it would be invisible on the host.
NAMESPACING = ["PrivateMounts", "PrivateTmp", "PrivateDevices", "ProtectSystem", "ProtectHome",
               "ReadOnlyPaths", "ReadWritePaths", "InaccessiblePaths", "ExecPaths", "NoExecPaths",
               "TemporaryFileSystem", "BindPaths", "BindReadOnlyPaths", "ProtectKernelTunables",
               "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectProc",
               "ProcSubset", "MountAPIVFS", "RootDirectory", "RootImage", "DynamicUser",
               "PrivateUsers", "LogNamespace", "MountFlags"]


def test_view_unit_has_no_mount_namespace():
    keys = [l.split("=", 1)[0].strip() for l in UNIT.read_text().splitlines()
            if "=" in l and not l.lstrip().startswith("#")]
    assert not set(keys) & set(NAMESPACING), set(keys) & set(NAMESPACING)
    # The gc unit mounts nothing: it is sandboxed with them.
    gc = (UNITS_DIR / "scopefs-gc@.service").read_text()
    assert "ProtectSystem=full" in gc and "PrivateNetwork=yes" in gc


def test_notify_status_counts_pending_changes(tmp_root):
    src = tmp_root / "src"
    src.mkdir()
    mp = tmp_root / "mnt"
    cfg = tmp_root / "task.toml"
    write_config(cfg, "notify", mp, tmp_root / "state", [{"path": "", "source": str(src)}])  # stage
    sock_path = str(tmp_root / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(10)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path)
    proc = subprocess.Popen([SCOPEFS, "mount", "--foreground", str(cfg)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        msg = sock.recv(4096).decode()
        assert "READY=1" in msg and "0 change(s) pending approval" in msg, msg
        for i in range(3):
            (mp / f"f{i}.txt").write_text("held\n")  # held: a create and a write each
        # Coalesced: one update within about a second, with the new count.
        deadline = time.time() + 10
        seen = []
        while time.time() < deadline:
            msg = sock.recv(4096).decode()
            seen.append(msg)
            if "6 change(s) pending approval" in msg:
                break
        else:
            pytest.fail(f"no STATUS with 6 pending: {seen}")
        assert not (src / "f0.txt").exists()  # held, not applied
        r = subprocess.run([SCOPEFS, "approve", str(cfg), "--all"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        while time.time() < deadline:
            msg = sock.recv(4096).decode()
            if "0 change(s) pending approval" in msg:
                break
        else:
            pytest.fail("no STATUS with 0 pending after approve")
        proc.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in sock.recv(4096).decode()
        assert proc.wait(timeout=10) == 0
        assert not is_fuse_mount(mp)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if is_fuse_mount(mp):
            subprocess.run(["umount", "-l", str(mp)], capture_output=True)
        sock.close()


def run_daemon_with_stderr_file(tmp_root, env_extra, work):
    """Mounts in the foreground with stderr to a file, runs work(mp, src), stops; returns the lines."""
    src = tmp_root / "src"
    src.mkdir(exist_ok=True)
    mp = tmp_root / "mnt"
    cfg = tmp_root / "task.toml"
    write_config(cfg, "logs", mp, tmp_root / "state",
                 [{"path": "", "source": str(src), "access": "write"}], rules=[("**/*.pem", "hide")])
    log_path = tmp_root / "stderr.log"
    with open(log_path, "wb") as log:
        st = os.fstat(log.fileno())
        env = dict(os.environ, **{k: v.format(dev=st.st_dev, ino=st.st_ino) for k, v in env_extra.items()})
        proc = subprocess.Popen([SCOPEFS, "mount", "--foreground", str(cfg)], env=env,
                                stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.time() + 10
            while not is_fuse_mount(mp):
                assert proc.poll() is None and time.time() < deadline, log_path.read_text()
                time.sleep(0.02)
            work(mp, src)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            if is_fuse_mount(mp):
                subprocess.run(["umount", "-l", str(mp)], capture_output=True)
    return log_path.read_text().splitlines()


def ordinary_work(mp, src):
    for i in range(100):
        p = mp / f"d{i % 5}"
        p.mkdir(exist_ok=True)
        (p / f"f{i}.txt").write_text("x" * i)
        (p / f"f{i}.txt").read_text()
        os.rename(p / f"f{i}.txt", p / f"g{i}.txt")
        os.listdir(p)
        os.unlink(p / f"g{i}.txt")


def test_journald_gets_priorities_and_default_level_is_quiet(tmp_root):
    """With JOURNAL_STREAM naming stderr, each line starts with its syslog
    priority; 500 ordinary operations log nothing at the default level (one
    refused change logs one warning-free info line)."""
    def work(mp, src):
        ordinary_work(mp, src)
        (src / "k.pem").write_text("secret\n")
        with pytest.raises(OSError):
            (mp / "k.pem").write_text("x")  # hidden: refused
    lines = run_daemon_with_stderr_file(tmp_root, {"JOURNAL_STREAM": "{dev}:{ino}"}, work)
    assert lines, "the daemon logged nothing at all"
    assert all(l[:3] in ("<6>", "<4>", "<3>", "<2>") for l in lines), lines
    assert any(l.startswith("<6>") and "mounted at" in l for l in lines), lines
    assert not any(l[0:1].isdigit() for l in lines)  # no timestamp of our own: journald has it
    # mount, unmount, and the refused write: no line per ordinary operation.
    assert len(lines) <= 4, lines


def test_log_level_from_environment_and_option(tmp_root):
    lines = run_daemon_with_stderr_file(tmp_root, {"SCOPEFS_LOG_LEVEL": "warn"}, ordinary_work)
    assert lines == [], lines  # warn: not even the mount/unmount info lines
    r = subprocess.run([SCOPEFS, "mount", "--log-level", "loud", str(tmp_root / "task.toml")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "not a level" in r.stderr


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv not installed")
def test_view_works_within_the_units_capability_set(tmp_root, mount, monkeypatch):
    """The daemon confined as scopefs@.service confines it (CapabilityBoundingSet,
    NoNewPrivileges, via setpriv) serves every kind of change, applied and
    approved: the bounding set is not missing a capability."""
    import conftest
    caps = next(l.split("=", 1)[1].split() for l in UNIT.read_text().splitlines()
                if l.startswith("CapabilityBoundingSet="))
    spec = ",".join(["-all"] + ["+" + c.lower().removeprefix("cap_") for c in caps])
    wrapper = tmp_root / "confined-scopefs"
    wrapper.write_text(f'#!/bin/sh\nexec setpriv --bounding-set {spec} --inh-caps -all --no-new-privs '
                       f'-- {SCOPEFS} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setattr(conftest, "SCOPEFS", str(wrapper))
    private = tmp_root / "src" / "w" / "private"
    m = mount([{"path": "w", "access": "write"}, {"path": "s", "access": "stage"}])
    private.mkdir()
    (private / "data.txt").write_text("someone else's\n")
    os.chown(private / "data.txt", 4321, 4321)
    os.chown(private, 4321, 4321)
    private.chmod(0o700)
    src_w = m.src("w")
    for base in (m.mp / "w", m.mp / "s"):
        f = base / "f.txt"
        f.write_text("hello\n")
        os.chown(f, 1234, 5678)
        os.chmod(f, 0o4755)
        os.setxattr(f, "user.note", b"v")
        os.setxattr(f, "trusted.note", b"t")
        os.mkfifo(base / "fifo")
        os.mknod(base / "null", 0o600 | 0o020000, os.makedev(1, 3))
        os.link(f, base / "hard")
        os.symlink("f.txt", base / "sym")
        os.rename(base / "hard", base / "hard2")
        os.truncate(f, 2)
        os.mkdir(base / "d")
        os.rmdir(base / "d")
    assert (m.mp / "w" / "private" / "data.txt").read_text() == "someone else's\n"
    (m.mp / "w" / "private" / "data.txt").write_text("changed\n")
    st = os.stat(src_w / "f.txt")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777, st.st_size) == (1234, 5678, 0o4755, 2)
    assert os.getxattr(src_w / "f.txt", "trusted.note") == b"t"
    r = subprocess.run([str(wrapper), "approve", str(m.config), "--all"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    st = os.stat(m.src("s") / "f.txt")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777, st.st_size) == (1234, 5678, 0o4755, 2)
    assert os.getxattr(m.src("s") / "f.txt", "trusted.note") == b"t"
    assert os.path.exists(m.src("s") / "null") and os.path.exists(m.src("s") / "fifo")
