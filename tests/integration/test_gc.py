"""Retention and `scopefs gc` (issue 5, point 3; docs/journal.md "Retention and gc").

A task with retention "2s": before-images of changes older than the window
are collected (blob files gone, bytes reported), held changes keep theirs (an
approval afterwards still writes the right content), a blob shared by two
records survives while one of them is inside the window, rollback of a
collected change fails clearly, the run is journaled, --dry-run deletes
nothing; mounted (control socket) and unmounted (under the state lock).
"""
import json

import pytest
import os
import subprocess
import time

from conftest import SCOPEFS


def cli(*args):
    return subprocess.run([SCOPEFS, *map(str, args)], capture_output=True, text=True, timeout=120)


def records(m):
    r = cli("log", m.config, "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def blob_path(m, h):
    return m.state / "blobs" / h[:2] / h[2:]


def gc(m, *extra):
    r = cli("gc", m.config, "--json", *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


@pytest.mark.skipif(os.environ.get("SCOPEFS_SANITIZED") == "1",
                    reason="its 2 s retention windows are overrun by a sanitizer build's slowness")
def test_gc_mounted_and_unmounted(mount):
    m = mount([{"path": "w", "access": "write"}, {"path": "s", "access": "stage"}],
              retention="2s")
    w, s = m.src("w"), m.src("s")
    for name, text in [("a.txt", "alpha old\n"), ("del.txt", "delete me\n"),
                       ("s1.txt", "shared old\n"), ("s2.txt", "shared old\n")]:
        (w / name).write_text(text)
    (s / "h.txt").write_text("held old\n")
    # Old changes: an overwrite, a delete, one of the two identical files.
    (m.mp / "w" / "a.txt").write_text("alpha new\n")
    os.unlink(m.mp / "w" / "del.txt")
    (m.mp / "w" / "s1.txt").write_text("s1 new\n")
    # A held change (stage bind).
    (m.mp / "s" / "h.txt").write_text("held new\n")
    assert (s / "h.txt").read_text() == "held old\n"
    time.sleep(3)
    # A young change sharing s1's before-image.
    (m.mp / "w" / "s2.txt").write_text("s2 new\n")

    recs = records(m)
    by = {}
    for r in recs:
        if r["state"] in ("applied", "held") and r["op"] in ("write", "unlink", "truncate", "create"):
            by.setdefault(r["path"], []).append(r)

    def image(path):
        for r in by[path]:
            b = r.get("before") or {}
            if b.get("blob"):
                return r["seq"], b["hash"]
        raise AssertionError(f"no before-image for {path}: {by.get(path)}")

    a_seq, a_hash = image("w/a.txt")
    d_seq, d_hash = image("w/del.txt")
    s1_seq, shared = image("w/s1.txt")
    s2_seq, shared2 = image("w/s2.txt")
    assert shared == shared2
    held = [r for r in recs if r["state"] == "held"]
    assert held
    held_hashes = [st["hash"] for r in held for st in (r.get("before"), r.get("after"))
                   if st and st.get("blob")]
    assert held_hashes
    for h in [a_hash, d_hash, shared, *held_hashes]:
        assert blob_path(m, h).exists()

    # --dry-run: reports, deletes nothing, journals nothing.
    n = len(recs)
    dry = gc(m, "--dry-run")
    assert dry["dry_run"] and dry["blobs"] >= 2 and dry["bytes"] > 0
    assert blob_path(m, a_hash).exists() and blob_path(m, d_hash).exists()
    assert len(records(m)) == n

    # Mounted: through the daemon.
    rep = gc(m)
    assert rep["records"] >= 3, rep
    assert rep["blobs"] >= 2 and rep["bytes"] >= len("alpha old\n") + len("delete me\n"), rep
    assert not blob_path(m, a_hash).exists()
    assert not blob_path(m, d_hash).exists()
    assert blob_path(m, shared).exists(), "shared blob removed while a young record counts it"
    for h in held_hashes:
        assert blob_path(m, h).exists(), "a held change's blob was collected"

    recs = records(m)
    bys = {r["seq"]: r for r in recs}
    assert bys[a_seq].get("expired") is True and not bys[a_seq]["before"].get("blob")
    assert bys[s1_seq].get("expired") is True
    assert not bys[s2_seq].get("expired") and bys[s2_seq]["before"].get("blob")
    assert all(not r.get("expired") for r in recs if r["state"] == "held")
    g = [r for r in recs if r["op"] == "gc"]
    assert len(g) == 1 and g[0]["state"] == "applied" and g[0]["seq"] == rep["seq"]
    assert "removed" in g[0]["note"] and "bytes" in g[0]["note"]

    # Rollback of a collected change says so.
    r = cli("rollback", m.config, a_seq)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "past the retention window" in r.stderr and "collected by gc" in r.stderr, r.stderr
    assert (w / "a.txt").read_text() == "alpha new\n"

    # Status shows sizes and the oldest rollback-able change.
    st = json.loads(cli("status", m.config, "--json").stdout)
    assert st["blob_bytes"] >= 0 and st["journal_bytes"] > 0
    assert st["retention_s"] == 2
    assert st["oldest_rollbackable"] is not None
    assert st["oldest_rollbackable"]["seq"] > a_seq
    assert "oldest rollback-able change" in cli("status", m.config).stdout

    # The held change still approves, with the right content.
    r = cli("approve", m.config, "--all")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (s / "h.txt").read_text() == "held new\n"

    # Unmounted: past the window again, the shared blob goes too.
    m.stop()
    time.sleep(2.5)
    dry = gc(m, "--dry-run")
    assert blob_path(m, shared).exists()
    rep2 = gc(m)
    assert rep2["records"] >= 1 and rep2["blobs"] >= 1
    assert not blob_path(m, shared).exists()
    assert len([r for r in records(m) if r["op"] == "gc"]) == 2
    r = cli("rollback", m.config, s2_seq)
    assert r.returncode == 1 and "past the retention window" in r.stderr, r.stderr


def test_gc_sweeps_unreferenced_blobs(mount):
    m = mount([{"path": "w", "access": "write"}], retention="1s")
    m.stop()
    # A crash leftover: a blob file no record counts, and an old temporary.
    d = m.state / "blobs" / "ab"
    d.mkdir(exist_ok=True)
    orphan = d / ("c" * 30)
    orphan.write_bytes(b"x" * 100)
    tmp = m.state / "blobs" / "tmp" / "l.1.1"
    tmp.write_bytes(b"y")
    time.sleep(1.5)
    rep = gc(m)
    assert rep["orphans"] == 1 and rep["blobs"] == 1 and rep["bytes"] == 100
    assert not orphan.exists()
    assert tmp.exists()  # younger than an hour


def test_gc_refused_for_bad_config(tmp_path):
    cfg = tmp_path / "t.toml"
    cfg.write_text('[task]\nname = "x"\nmountpoint = "/tmp/m"\nstate_dir = "/tmp/s"\nretention = "7w"\n'
                   '[[bind]]\npath = "a"\nsource = "/tmp"\naccess = "read"\n')
    r = cli("gc", cfg)
    assert r.returncode == 2
    assert "t.toml:5:14: retention '7w'" in r.stderr, r.stderr
