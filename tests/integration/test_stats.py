"""`scopefs stats` (issue 6, KPIs) on a mounted view, and `scopefs log`'s
index-backed filters (--uid, --run, --state, --explain).

A pilot in miniature: writes under `write` (one rolled back), denied attempts
under `read`, deletes held by [approval] hold (one approved, one rejected,
one left pending, each decided after a measured wait). Then the figures of
`scopefs stats --json` are checked against what was done, the text form
names them, and `--prometheus` output (stdout and `--out FILE`, written
atomically) is parsed line by line against the node-exporter textfile rules.
"""
import errno
import json
import os
import re
import subprocess
import time

import pytest

from conftest import SCOPEFS


def cli(*args, timeout=60):
    return subprocess.run([SCOPEFS, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def records(m):
    r = cli("log", m.config, "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def settle(m, timeout=10):
    """Waits until no record is an intent (write sessions end at release)."""
    deadline = time.time() + timeout
    while any(r["state"] == "intent" for r in records(m)) and time.time() < deadline:
        time.sleep(0.05)


NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"({NAME})\{{({LABEL}(?:,{LABEL})*)\}} (-?[0-9.e+-]+|NaN|[+-]Inf)")
TYPES = ("counter", "gauge", "summary", "histogram", "untyped")


def parse_prometheus(text):
    """Checks the textfile format; returns {(name, frozenset(labels)): value}."""
    assert text.endswith("\n"), "the file must end with a newline"
    out = {}
    families = {}
    family = None
    lines = text.split("\n")[:-1]
    i = 0
    while i < len(lines):
        line = lines[i]
        assert line, "no empty lines"
        if line.startswith("#"):
            m = re.fullmatch(rf"# HELP ({NAME}) (\S.*)", line)
            assert m, line
            family = m.group(1)
            assert family not in families, f"{family} declared twice"
            i += 1
            t = re.fullmatch(rf"# TYPE ({NAME}) (\w+)", lines[i])
            assert t and t.group(1) == family and t.group(2) in TYPES, lines[i]
            families[family] = t.group(2)
            i += 1
            continue
        m = SAMPLE.fullmatch(line)
        assert m, f"not a sample: {line!r}"
        name = m.group(1)
        allowed = {family} | ({family + "_sum", family + "_count"} if families[family] == "summary" else set())
        assert name in allowed, f"{name} outside its family {family}"
        if families[family] == "counter":
            assert name.endswith("_total"), name
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"', m.group(2)))
        key = (name, frozenset(labels.items()))
        assert key not in out, f"duplicate sample {line}"
        out[key] = float(m.group(3))
        i += 1
    return out, families


def sample(samples, name, **labels):
    for (n, ls), v in samples.items():
        if n == name and all(dict(ls).get(k) == val for k, val in labels.items()):
            return v
    raise KeyError(f"{name} {labels}")


def test_stats_of_a_pilot(mount, tmp_root):
    m = mount([{"path": "w", "access": "write"}, {"path": "r", "access": "read"}],
              approval={"hold": ["unlink"]})
    w, r = m.src("w"), m.src("r")
    for n in ("a", "b", "c", "d"):
        (w / f"{n}.txt").write_text(f"{n} original content\n")
    (r / "ro.txt").write_text("read only\n")
    v = m.mp
    # Applied: a write over existing content (a before-image), a new file.
    (v / "w" / "a.txt").write_text("changed\n")
    (v / "w" / "new.txt").write_text("new\n")
    # Denied: read-only bind.
    for name in ("x.txt", "y.txt"):
        with pytest.raises(OSError) as e:
            (v / "r" / name).write_text("no")
        assert e.value.errno == errno.EROFS
    with pytest.raises(OSError):
        os.unlink(v / "r" / "ro.txt")
    # Held: three deletes.
    for n in ("b", "c", "d"):
        os.unlink(v / "w" / f"{n}.txt")
    settle(m)
    time.sleep(0.6)
    assert cli("approve", m.config, "--path", "w/b.txt").returncode == 0
    time.sleep(0.3)
    assert cli("reject", m.config, "--path", "w/c.txt").returncode == 0
    # Roll back the write to a.txt.
    recs = records(m)
    wseq = [x["seq"] for x in recs if x["op"] == "write" and x["path"] == "w/a.txt"]
    assert len(wseq) == 1
    rb = cli("rollback", m.config, wseq[0])
    assert rb.returncode == 0, rb.stdout + rb.stderr
    assert (w / "a.txt").read_text() == "a original content\n"

    st = cli("stats", m.config, "--json")
    assert st.returncode == 0, st.stderr
    s = json.loads(st.stdout)
    recs = records(m)
    assert s["task"] == "t"
    assert s["records"] == len(recs)
    assert s["unreadable_records"] == 0
    # Operations × outcomes: exactly what the journal holds.
    by = {}
    for x in recs:
        by.setdefault(x["op"], {}).setdefault(x["state"], 0)
        by[x["op"]][x["state"]] += 1
    assert s["operations"] == by
    assert s["operations"]["unlink"] == {"approved": 1, "rejected": 1, "held": 1, "denied": 1}
    assert s["held"] == {"total": 3, "pending": 1, "approved": 1, "rejected": 1}
    lat = s["decision_latency"]
    assert lat["approve"]["count"] == 1 and lat["reject"]["count"] == 1
    held_t = {x["path"]: x["t"] for x in recs if x["op"] == "unlink" and x["state"] != "denied"}
    dec_t = {x["path"]: x["t"] for x in recs if x["op"] in ("approve", "reject") and x["state"] == "applied"}
    assert lat["approve"]["p50_s"] == pytest.approx((dec_t["w/b.txt"] - held_t["w/b.txt"]) / 1e9)
    assert lat["reject"]["p95_s"] == pytest.approx((dec_t["w/c.txt"] - held_t["w/c.txt"]) / 1e9)
    assert lat["approve"]["p50_s"] >= 0.5 and lat["reject"]["p50_s"] >= lat["approve"]["p50_s"]
    assert s["rollbacks"] == {"applied": 1, "failed": 0, "changes_rolled_back": 1}
    assert s["denied"]["total"] == 3
    assert s["denied"]["by_errno"] == {"EROFS": 3}
    assert s["interrupted"] == 0
    # Before-images: a.txt's content overwritten, b.txt's removed on approval (at least).
    bi = s["before_images"]
    assert bi["count"] >= 2 and bi["bytes"] >= len("a original content\n") + len("b original content\n")
    assert bi["distinct_bytes"] <= bi["bytes"]
    assert s["blob_store"]["files"] >= 1 and s["blob_store"]["bytes"] > 0
    assert s["journal_bytes"] > 0

    # The text form.
    t = cli("stats", m.config)
    assert t.returncode == 0, t.stderr
    assert re.search(r"held\s+3 change\(s\): 1 pending, 1 approved, 1 rejected", t.stdout), t.stdout
    assert re.search(r"denied\s+3 \(EROFS 3\)", t.stdout), t.stdout
    assert re.search(r"rollbacks\s+1 \(0 failed\); 1 change\(s\) rolled back", t.stdout), t.stdout
    # By state directory too.
    assert json.loads(cli("stats", m.state, "--json").stdout)["records"] == s["records"]

    # Prometheus on stdout.
    p = cli("stats", m.config, "--prometheus")
    assert p.returncode == 0, p.stderr
    samples, families = parse_prometheus(p.stdout)
    assert families["scopefs_operations_total"] == "counter"
    assert families["scopefs_approval_latency_seconds"] == "summary"
    assert all(dict(ls).get("task") == "t" for (_, ls) in samples)
    for op, states in by.items():
        for state, n in states.items():
            assert sample(samples, "scopefs_operations_total", op=op, outcome=state) == n
    assert sample(samples, "scopefs_pending_changes") == 1
    assert sample(samples, "scopefs_approved_changes_total") == 1
    assert sample(samples, "scopefs_rejected_changes_total") == 1
    assert sample(samples, "scopefs_approval_latency_seconds", decision="approve", quantile="0.5") == \
        pytest.approx(lat["approve"]["p50_s"])
    assert sample(samples, "scopefs_approval_latency_seconds", decision="reject", quantile="0.95") == \
        pytest.approx(lat["reject"]["p95_s"])
    assert sample(samples, "scopefs_approval_latency_seconds_count", decision="approve") == 1
    assert sample(samples, "scopefs_rollbacks_total", outcome="applied") == 1
    assert sample(samples, "scopefs_denied_total") == 3
    assert sample(samples, "scopefs_denied_by_errno_total", errno="EROFS") == 3
    assert sample(samples, "scopefs_before_image_bytes", count="records") == bi["bytes"]

    # --out: atomically replaced, readable by the collector, no temp file left.
    outdir = tmp_root / "textfile"
    outdir.mkdir()
    prom = outdir / "scopefs_t.prom"
    prom.write_text("stale\n")
    o = cli("stats", m.config, "--prometheus", "--out", prom)
    assert o.returncode == 0, o.stderr
    assert o.stdout == ""
    assert os.listdir(outdir) == ["scopefs_t.prom"]
    assert os.stat(prom).st_mode & 0o777 == 0o644
    samples2, _ = parse_prometheus(prom.read_text())
    assert sample(samples2, "scopefs_records") == s["records"]

    # --since and --run select records.
    later = cli("stats", m.config, "--json", "--since", str(int(time.time()) + 3600))
    assert later.returncode == 0, later.stderr
    assert json.loads(later.stdout)["records"] == 0
    run = recs[0]["run"]
    assert json.loads(cli("stats", m.config, "--json", "--run", run).stdout)["records"] == \
        sum(1 for x in recs if x["run"] == run)
    assert json.loads(cli("stats", m.config, "--json", "--run", "no-such-run").stdout)["records"] == 0

    # Bad arguments.
    assert cli("stats", m.config, "--json", "--prometheus").returncode == 2
    assert cli("stats", m.config, "--since", "soon").returncode == 2
    assert cli("stats", tmp_root / "no-such-task").returncode != 0

    # Unmounted: the same figures (plus the unmount record).
    m.stop()
    s2 = json.loads(cli("stats", m.config, "--json").stdout)
    assert s2["records"] == s["records"] + 1
    assert s2["held"] == s["held"] and s2["decision_latency"] == s["decision_latency"]


def test_log_by_uid_run_state_with_the_indexes(mount, tmp_root):
    m = mount([{"path": "w", "access": "write"}, {"path": "r", "access": "read"}])
    (m.mp / "w" / "one.txt").write_text("1\n")
    m.stop()
    m.start()
    (m.mp / "w" / "two.txt").write_text("2\n")
    subprocess.run(["touch", str(m.mp / "r" / "no.txt")], capture_output=True)
    settle(m)
    recs = records(m)
    runs = []
    for x in recs:
        if x["run"] not in runs:
            runs.append(x["run"])
    assert len(runs) == 2

    def log(*args):
        r = cli("log", m.config, "--json", "--explain", *args)
        assert r.returncode == 0, r.stderr
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()], r.stderr

    got, plan = log("--run", runs[0])
    assert got == [x for x in recs if x["run"] == runs[0]]
    assert "run index" in plan, plan
    got, plan = log("--path", "w/two.txt")
    assert [x["op"] for x in got] == ["create"]  # one record per new file
    assert "path index" in plan and "1 record read" in plan, plan
    got, _ = log("--uid", os.getuid())
    assert got == [x for x in recs if x["caller"]["uid"] == os.getuid()] and got
    got, _ = log("--uid", 4242)
    assert got == []
    # --state is --outcome.
    got, _ = log("--state", "denied")
    assert [(x["op"], x["path"]) for x in got] == [("create", "r/no.txt")]
    got2, _ = log("--outcome", "denied")
    assert got2 == got
    got, plan = log("--since", str(int(time.time()) - 3600), "--until", str(int(time.time()) + 3600))
    assert got == recs
    got, plan = log("--op", "mount")
    assert "scan" in plan and len(got) == 2
    # The table form names the filters in --help.
    h = cli("log", "--help")
    for opt in ("--uid", "--run", "--state", "--outcome", "--explain"):
        assert opt in h.stdout, opt
