"""The operator's commands: init, status without a task, check --json,
--version, exit codes, bash completion, and the mount(8) helper."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import SCOPEFS, is_fuse_mount, write_config

ROOT = Path(__file__).resolve().parents[2]
HELPER = ROOT / "tools" / "mount.fuse.scopefs"


def run(*args, **kw):
    return subprocess.run([SCOPEFS, *map(str, args)], capture_output=True, text=True, timeout=60, **kw)


def test_version_and_exit_codes(tmp_root):
    r = run("--version")
    assert r.returncode == 0 and re.fullmatch(r"scopefs \d+\.\d+\.\d+\n", r.stdout), r.stdout
    assert run("no-such-command").returncode == 2
    assert run("check").returncode == 2  # missing argument
    bad = tmp_root / "bad.toml"
    bad.write_text("[task]\nname = 'a b'\n")
    r = run("check", bad, "--json")
    assert r.returncode == 2
    out = json.loads(r.stdout)
    assert out["ok"] is False and out["diagnostics"][0]["line"] >= 1
    assert all({"file", "line", "column", "message"} <= set(d) for d in out["diagnostics"])
    r = run("status", tmp_root / "missing.toml")
    assert r.returncode == 2  # an unreadable config is a usage error
    r = run("pending", bad)
    assert r.returncode == 2


def test_check_json(tmp_root):
    src = tmp_root / "src"
    src.mkdir()
    cfg = tmp_root / "t.toml"
    write_config(cfg, "j", tmp_root / "mnt", tmp_root / "state",
                 [{"path": "data", "source": str(src), "access": "read"}], rules=[("**/*.pem", "hide")])
    r = run("check", cfg, "--json", "--explain", "data/a.pem", "--explain", "data/b.csv",
            "--explain", "elsewhere")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] is True and out["task"] == "j" and out["rules"] == 1
    assert out["binds"] == [{"path": "data", "source": str(src), "access": "read"}]
    assert [e["access"] for e in out["explain"]] == ["hide", "read", None]


def test_init_writes_a_config_that_checks_and_mounts_staged(tmp_root):
    a = tmp_root / "srv" / "exports"
    b = tmp_root / "srv" / "reports"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    (a / "q1.csv").write_text("1,2\n")
    (a / "bank.pem").write_text("secret\n")
    (a / ".env").write_text("TOKEN=x\n")
    cfg = tmp_root / "tasks" / "pilot.toml"
    mp = tmp_root / "mnt"
    r = run("init", "pilot", a, f"out={b}", "-o", cfg, "--mountpoint", mp, "--state-dir",
            tmp_root / "state")
    assert r.returncode == 0, r.stderr
    text = cfg.read_text()
    assert 'retention = "7d"' in text and text.count('access = "stage"') == 2
    assert text.lstrip().startswith("#")  # commented
    # Again without --force: refused, file untouched.
    r = run("init", "pilot", a, "-o", cfg)
    assert r.returncode == 1 and "exists" in r.stderr
    assert cfg.read_text() == text
    # Bad input writes nothing: a task name check rejects, a missing source.
    r = run("init", "bad name", a, "-o", tmp_root / "x.toml")
    assert r.returncode == 2 and not (tmp_root / "x.toml").exists()
    r = run("init", "x", tmp_root / "nope", "-o", tmp_root / "x.toml")
    assert r.returncode == 2 and not (tmp_root / "x.toml").exists()
    assert run("init", "x", a, "-o", "-").stdout.startswith("# scopefs task")
    # It checks...
    r = run("check", cfg, "--json", "--explain", "exports/bank.pem", "--explain", "exports/.env",
            "--explain", "exports/q1.csv", "--explain", "out/new.md")
    assert r.returncode == 0, r.stderr
    levels = [e["access"] for e in json.loads(r.stdout)["explain"]]
    assert levels == ["hide", "hide", "stage", "stage"]
    # ...and mounts: secrets invisible, changes held.
    r = run("mount", cfg)
    assert r.returncode == 0, r.stderr
    try:
        assert sorted(os.listdir(mp / "exports")) == ["q1.csv"]
        assert (mp / "exports" / "q1.csv").read_text() == "1,2\n"
        (mp / "out" / "report.md").write_text("draft\n")
        assert not (b / "report.md").exists()
        st = json.loads(run("status", cfg, "--json").stdout)
        assert st["mounted"] is True and st["pending"] == 2  # create + write
    finally:
        assert run("unmount", cfg).returncode == 0
    assert not is_fuse_mount(mp)


def test_status_without_task_lists_every_view(tmp_root, mount):
    m = mount([{"path": "", "access": "stage"}], name="listed")
    (m.mp / "a.txt").write_text("held\n")
    (m.mp / "b.txt").write_text("held\n")
    r = run("status", "--json")
    assert r.returncode in (0, 1), r.stderr  # 1 only if some other view's journal is unreadable
    views = json.loads(r.stdout)["views"]
    mine = [v for v in views if v.get("mountpoint") == str(m.mp)]
    assert len(mine) == 1, views
    v = mine[0]
    assert v["task"] == "listed" and v["mounted"] is True and v["config"] == str(m.config)
    assert v["pending"] == 4 and v["journal_bytes"] > 0 and v["last_run"]  # 2 x (create + write)
    text = run("status").stdout
    line = next(l for l in text.splitlines() if l.startswith("listed "))
    assert " yes " in line and " 4 " in line and str(m.mp) in line
    m.stop()
    # Gone from the list once unmounted (its config is not in /etc/scopefs/tasks).
    views = json.loads(run("status", "--json").stdout)["views"]
    assert not [v for v in views if v.get("mountpoint") == str(m.mp)]


def test_bash_completion(tmp_root):
    script = tmp_root / "scopefs.bash"
    r = run("completion", "bash")
    assert r.returncode == 0
    script.write_text(r.stdout)
    (tmp_root / "mytask.toml").write_text("")

    def complete(*words):
        line = " ".join(["scopefs", *words])
        prog = (f"source {script}\nCOMP_WORDS=(scopefs {' '.join(repr(w) for w in words)})\n"
                f"COMP_CWORD={len(words)}\nCOMP_LINE={line!r}\n_scopefs\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
        r = subprocess.run(["bash", "-c", prog], capture_output=True, text=True, cwd=tmp_root, timeout=30)
        assert r.returncode == 0, r.stderr
        return set(r.stdout.split())

    subs = complete("")
    assert {"check", "mount", "status", "approve", "rollback", "gc", "init", "completion"} <= subs
    assert complete("ro") == {"rollback"}
    assert {"--dry-run", "--force", "--json", "--path", "--run", "--since"} <= complete("rollback", "recon", "--")
    assert complete("log", "x", "--outcome", "he") == {"held"}
    assert "mytask.toml" in complete("check", "my")


def test_mount_helper(tmp_root):
    """mount.fuse.scopefs as mount(8) runs it: SPEC DIR -o OPTIONS."""
    src = tmp_root / "src"
    src.mkdir()
    (src / "f.txt").write_text("via helper\n")
    mp = tmp_root / "mnt"
    cfg = tmp_root / "t.toml"
    write_config(cfg, "helper", mp, tmp_root / "state", [{"path": "", "source": str(src), "access": "read"}])
    env = dict(os.environ, SCOPEFS_BIN=SCOPEFS)
    h = lambda *a: subprocess.run([str(HELPER), *map(str, a)], env=env, capture_output=True, text=True,
                                  timeout=60)
    r = h(cfg, tmp_root / "elsewhere", "-o", "rw,nofail")
    assert r.returncode == 1 and "not at" in r.stderr  # the config decides the mountpoint
    assert h(cfg).returncode == 1  # usage
    assert h(cfg, mp, "-f").returncode == 0 and not is_fuse_mount(mp)  # fake: checks only
    r = h(cfg, mp, "-o", "rw,nofail,x-systemd.requires=local-fs.target")
    assert r.returncode == 0, r.stderr
    try:
        assert (mp / "f.txt").read_text() == "via helper\n"
        r = h(cfg, mp)
        assert r.returncode == 32  # already mounted
    finally:
        assert run("unmount", cfg).returncode == 0  # umount, then waits for the daemon
    assert not is_fuse_mount(mp)
