"""Mount fixture for integration tests (STYLE rule 27).

Each test gets a private temp dir with real source trees, a generated task
config, and a scopefs daemon started in the foreground by this fixture. The
fixture waits for the mount to answer, and always unmounts (fusermount3 -u,
then lazy) and ends its own daemon by PID, even when the test fails. A daemon
that logged an error or critical line fails the test.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

SCOPEFS = os.environ.get("SCOPEFS_BIN") or str(
    Path(__file__).resolve().parents[2] / "build" / "scopefs")
FUSE_SUPER_MAGIC = 0x65735546


def is_fuse_mount(path):
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == str(path) for line in f)
    except OSError:
        return False


def write_config(path, name, mountpoint, state_dir, binds, rules=(), agent_user=None,
                 admin_group=None, approval=None, retention=None, extra_toml=None):
    """Writes a task config.

    binds: dicts {path, source, access}; a bind without "access" gets no access
    line (the default, stage). rules: (match, access) pairs. admin_group: a
    group name for [task]. approval: a dict with optional "hold" (list of op
    names) and "max_deletes" (int), written as an [approval] table.
    """
    lines = ["[task]", f'name = "{name}"', f'mountpoint = "{mountpoint}"',
             f'state_dir = "{state_dir}"']
    if agent_user:
        lines.append(f'agent_user = "{agent_user}"')
    if admin_group is not None:
        lines.append(f'admin_group = "{admin_group}"')
    if retention is not None:
        lines.append(f'retention = "{retention}"')
    for b in binds:
        lines += ["", "[[bind]]", f'path = "{b["path"]}"', f'source = "{b["source"]}"']
        if b.get("access") is not None:
            lines.append(f'access = "{b["access"]}"')
    for r in rules:
        lines += ["", "[[rule]]", f'match = "{r[0]}"', f'access = "{r[1]}"']
    if approval is not None:
        lines += ["", "[approval]"]
        if approval.get("hold") is not None:
            lines.append("hold = [" + ", ".join(f'"{op}"' for op in approval["hold"]) + "]")
        if approval.get("max_deletes") is not None:
            lines.append(f'max_deletes = {int(approval["max_deletes"])}')
    if extra_toml:
        lines += ["", extra_toml]
    Path(path).write_text("\n".join(lines) + "\n")


class Mount:
    """A running view. `mp` is the mountpoint, `src(name)` a bind's source dir."""

    def __init__(self, root, binds, rules=(), name="t", extra_args=(), agent_user=None,
                 admin_group=None, approval=None, retention=None, extra_toml=None):
        self.root = Path(root)
        self.mp = self.root / "mnt"
        self.state = self.root / "state"
        self.config = self.root / "task.toml"
        self.binds = binds
        self.rules = rules
        self.name = name
        self.extra_args = list(extra_args)
        self.agent_user = agent_user
        self.admin_group = admin_group
        self.approval = approval
        self.retention = retention
        self.extra_toml = extra_toml
        self.proc = None
        self.log_path = self.root / "daemon.log"

    def src(self, bind_path=""):
        for b in self.binds:
            if b["path"] == bind_path:
                return Path(b["source"])
        raise KeyError(bind_path)

    def start(self, timeout=10):
        try:
            self.mp.mkdir(exist_ok=True)
        except OSError:
            pass  # a stale mount of a killed daemon: the next mount clears it
        write_config(self.config, self.name, self.mp, self.state, self.binds, self.rules,
                     self.agent_user, self.admin_group, self.approval, self.retention, self.extra_toml)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [SCOPEFS, "mount", "--foreground", *self.extra_args, str(self.config)],
            stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited early ({self.proc.returncode}):\n{self.daemon_log()}")
            # A killed daemon leaves its mount behind, and the kernel may still
            # answer stat() on it from its attribute cache (and reuse its mount
            # id): the new daemon's own log line says its mount is up.
            if is_fuse_mount(self.mp) and f"(pid {self.proc.pid})" in self.daemon_log():
                try:
                    os.stat(self.mp)
                    return self
                except OSError:
                    pass
            time.sleep(0.02)
        raise RuntimeError(f"mount did not answer within {timeout}s:\n{self.daemon_log()}")

    def daemon_log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout=10):
        """Unmount and end the daemon we started; never leaves either behind."""
        if self.proc is None:
            return
        if is_fuse_mount(self.mp):
            r = subprocess.run(["fusermount3", "-u", str(self.mp)], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["fusermount3", "-u", "-z", str(self.mp)], capture_output=True)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=timeout)
        if is_fuse_mount(self.mp):
            subprocess.run(["umount", "-l", str(self.mp)], capture_output=True)
        self.proc = None
        self.log.close()

    def kill9(self):
        """SIGKILL our daemon (leaves a stale mount, as a crash would)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.log.close()
        self.proc = None

    def errors_in_log(self):
        return [l for l in self.daemon_log().splitlines()
                if " error " in l or " critical " in l]


@pytest.fixture
def tmp_root():
    d = tempfile.mkdtemp(prefix="scopefs-test-")
    os.chmod(d, 0o755)
    try:
        yield Path(d)
    finally:
        # Never delete through a mount that is still up.
        mnt = Path(d) / "mnt"
        if is_fuse_mount(mnt):
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mount(tmp_root):
    """Factory: mount(binds=[...], rules=[...]) -> started Mount; stopped at teardown.

    binds: list of dicts {path, access} (source created under tmp_root/src/<n>)
    or with an explicit "source"; without "access" the bind gets the default,
    stage. Keyword arguments go to Mount: name, extra_args, agent_user,
    admin_group, approval ({"hold": [...], "max_deletes": N}).
    """
    mounts = []

    def make(binds, rules=(), **kw):
        prepared = []
        for i, b in enumerate(binds):
            b = dict(b)
            if "source" not in b:
                s = tmp_root / "src" / (b["path"].replace("/", "_") or "root")
                s.mkdir(parents=True, exist_ok=True)
                b["source"] = str(s)
            prepared.append(b)
        m = Mount(tmp_root, prepared, rules, **kw)
        mounts.append(m)
        return m.start()

    yield make
    failures = []
    for m in mounts:
        errs = m.errors_in_log()
        m.stop()
        if errs:
            # The lines before an error tell which step of the test it was.
            tail = m.daemon_log().splitlines()[-40:]
            failures.append("\n".join(errs) + "\n--- the daemon log's last lines:\n" +
                            "\n".join(tail))
    if failures:
        pytest.fail("daemon logged errors:\n" + "\n".join(failures))
