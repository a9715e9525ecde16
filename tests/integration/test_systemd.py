"""The notify protocol without systemd as PID 1 (Type=notify): READY=1 only
once a file in the view is readable, STOPPING=1 on SIGTERM, clean unmount."""
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SCOPEFS, is_fuse_mount, write_config

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "scopefs@.service"


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
def test_unit_verifies(tmp_root):
    # systemd-analyze wants the ExecStart binary to exist: verify a copy of the
    # unit pointing at the built binary.
    unit = tmp_root / "scopefs@.service"
    unit.write_text(UNIT.read_text().replace("/usr/bin/scopefs", SCOPEFS))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
