"""The tamper-evident audit trail (issue 6): hash chain, signed checkpoints,
`scopefs verify`, `scopefs key`, export bundles verified offline.

Tampering is done the way an intruder would: RocksDB's own `ldb` tool opens
the journal directly (the daemon stopped) and edits, deletes, swaps, inserts
or truncates records. Each case runs on a fresh copy of the same state
directory, and `scopefs verify` must exit non-zero naming the record's
sequence number; the untouched journal verifies clean.
"""
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from conftest import SCOPEFS

LDB = shutil.which("ldb")


def cli(*args, check=None):
    r = subprocess.run([SCOPEFS, *map(str, args)], capture_output=True, text=True, timeout=120)
    if check is not None:
        assert r.returncode == check, f"scopefs {' '.join(map(str, args))}: {r.returncode}\n{r.stdout}{r.stderr}"
    return r


def ldb(db, *args):
    r = subprocess.run([LDB, f"--db={db}", "--hex", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"ldb {args}: {r.stdout}{r.stderr}"
    return r.stdout


def key(prefix, seq):
    return "0x" + prefix.encode().hex().upper() + "2F" + f"{seq:016X}"


def scan(db):
    """{key hex: value hex} of the whole database."""
    out = {}
    for line in ldb(db, "scan").splitlines():
        if " : " in line:
            k, v = line.split(" : ", 1)
            out[k.strip()] = v.strip()
    return out


def workload(v):
    (v / "a.txt").write_text("alpha\n")
    with open(v / "a.txt", "a") as f:
        f.write("more\n")
    (v / "d").mkdir()
    (v / "d" / "b.txt").write_text("bravo\n")
    os.rename(v / "a.txt", v / "d" / "a2.txt")
    os.chmod(v / "d" / "b.txt", 0o600)
    os.unlink(v / "d" / "b.txt")
    (v / "c.bin").write_bytes(os.urandom(5000))


@pytest.fixture
def journal_state(mount, tmp_root):
    """A stopped task's state directory with a journal of a small workload."""
    m = mount([{"path": "w", "access": "write"}])
    workload(m.mp / "w")
    m.stop()
    return m, tmp_root


def verify(target, *extra):
    r = cli("verify", target, "--json", *extra)
    report = json.loads(r.stdout)
    return r.returncode, report


def tampered_copy(state, tmp_root, name):
    dst = tmp_root / f"copy-{name}"
    shutil.copytree(state, dst)
    return dst


def records_of(db):
    kv = scan(db)
    return {int(k[6:], 16): v for k, v in kv.items() if k.startswith("0x722F")}


def test_untouched_journal_verifies(journal_state):
    m, _ = journal_state
    rc, rep = verify(m.state)
    assert rc == 0 and rep["ok"], rep
    assert rep["records"] >= 8 and rep["events"] > rep["records"]  # intents and outcomes are events
    assert rep["anchored_event"] == rep["head_event"], rep  # closed: all signed
    text = cli("verify", m.config, check=0).stdout
    assert "OK" in text
    # The key: 0600 in the state directory, its public half printable.
    st = os.stat(m.state / "keys" / "ed25519.key")
    assert st.st_mode & 0o777 == 0o600
    k = json.loads(cli("key", m.config, "--json", check=0).stdout)
    assert len(k["public_key"]) == 64 and k["fingerprint"] == rep["key_fingerprint"]
    # Pinned key: right one passes, another fails.
    assert verify(m.state, "--pubkey", k["public_key"])[0] == 0
    rc, rep = verify(m.state, "--pubkey", "11" * 32)
    assert rc == 1 and not rep["ok"]
    assert any("another key" in p["problem"] for p in rep["problems"]), rep


@pytest.mark.skipif(LDB is None, reason="RocksDB's ldb tool (package rocksdb-tools) is not installed")
@pytest.mark.parametrize("kind", ["edit", "delete", "swap", "insert", "truncate", "edit_event", "no_head"])
def test_tampering_is_detected(journal_state, kind):
    m, tmp_root = journal_state
    state = tampered_copy(m.state, tmp_root, kind)
    db = state / "journal"
    recs = records_of(db)
    last = max(recs)
    expect_seq = None
    if kind == "edit":
        # Change the path stored in record 3 (same length, so CBOR stays valid).
        v = recs[3]
        old, new = b"w/a.txt".hex().upper(), b"w/z.txt".hex().upper()
        assert old in v, "record 3 should name w/a.txt"
        ldb(db, "put", key("r", 3), v.replace(old, new, 1))
        expect_seq = 3
    elif kind == "delete":
        ldb(db, "delete", key("r", 4))
        expect_seq = 4
    elif kind == "swap":
        ldb(db, "put", key("r", 2), recs[3])
        ldb(db, "put", key("r", 3), recs[2])
        expect_seq = 2
    elif kind == "insert":
        ldb(db, "put", key("r", last + 1), recs[last])
        expect_seq = last + 1
    elif kind == "truncate":
        # The intruder cuts the tail of everything in the database: records,
        # their chain events and the checkpoints.
        kv = scan(db)
        events = sorted(int(k[6:], 16) for k in kv if k.startswith("0x612F"))
        cut_from = None
        for e in events:
            val = kv[key("a", e)]
            rseq = int(val[2 + 2 + 16:2 + 2 + 32], 16)
            if rseq >= last - 1 and cut_from is None:
                cut_from = e
        for e in events:
            if e >= cut_from:
                ldb(db, "delete", key("a", e))
        for k in kv:
            if k.startswith("0x6B2F"):
                ldb(db, "delete", k)
        ldb(db, "delete", key("r", last))
        ldb(db, "delete", key("r", last - 1))
    elif kind == "edit_event":
        kv = scan(db)
        k5 = key("a", 5)
        v = kv[k5]
        flip = v[:40] + ("0" if v[40] != "0" else "1") + v[41:]
        ldb(db, "put", k5, flip)
    elif kind == "no_head":
        os.unlink(state / "chain.head")
    rc, rep = verify(state)
    assert rc == 1 and not rep["ok"], f"{kind} not detected: {rep}"
    text = cli("verify", state).stdout
    assert "TAMPERED" in text, text
    if expect_seq is not None:
        assert rep.get("first_bad_seq") == expect_seq, rep
        assert f"record {expect_seq}" in text, text
    if kind == "truncate":
        assert any("truncated" in p["problem"] for p in rep["problems"]), rep
    if kind == "edit_event":
        assert any("edited" in p["problem"] or "follow" in p["problem"] for p in rep["problems"]), rep


def test_export_bundle_verifies_offline(journal_state):
    m, tmp_root = journal_state
    bundle = tmp_root / "audit.tar"
    r = cli("export", m.config, "--out", bundle, "--json", check=0)
    summary = json.loads(r.stdout)
    assert summary["records"] >= 8
    # An ordinary tar: an auditor can look inside.
    with tarfile.open(bundle) as t:
        names = set(t.getnames())
        recs = [json.loads(x) for x in t.extractfile("records.jsonl").read().decode().splitlines()]
    assert {"manifest.json", "manifest.sig", "events.jsonl", "records.jsonl", "checkpoints.jsonl"} <= names
    assert any(x["event"]["action"] == "rename" and x["file"]["target_path"] == "/w/d/a2.txt" for x in recs)
    # Offline: a copy elsewhere, no state directory needed.
    elsewhere = tmp_root / "auditor"
    elsewhere.mkdir()
    shutil.copy(bundle, elsewhere / "b.tar")
    pub = cli("key", m.config, check=0).stdout.strip()
    rc, rep = verify(elsewhere / "b.tar", "--pubkey", pub)
    assert rc == 0 and rep["ok"], rep
    assert rep["anchored_event"] > 0, rep

    # One byte changed anywhere in a member: fails.
    data = bytearray(bundle.read_bytes())
    at = data.find(b'"action":"rename"')
    assert at > 0
    data[at + 11] = ord("R")
    bad = tmp_root / "bad.tar"
    bad.write_bytes(bytes(data))
    rc, rep = verify(bad, "--pubkey", pub)
    assert rc == 1 and not rep["ok"], rep

    # A bundle signed with another key: fails against the pinned key.
    other = tmp_root / "other-state"
    shutil.copytree(m.state, other)
    shutil.rmtree(other / "keys")
    other_bundle = tmp_root / "other.tar"
    cli("export", other, "--out", other_bundle, check=0)
    rc, rep = verify(other_bundle, "--pubkey", pub)
    assert rc == 1 and any("another key" in p["problem"] for p in rep["problems"]), rep


def test_export_by_run_keeps_the_chain_checkable(mount, tmp_root):
    m = mount([{"path": "w", "access": "write"}])
    (m.mp / "w" / "one.txt").write_text("first run\n")
    m.stop()
    m.start()
    (m.mp / "w" / "two.txt").write_text("second run\n")
    m.stop()
    runs = []
    for line in cli("log", m.config, "--json", check=0).stdout.splitlines():
        rec = json.loads(line)
        if rec["run"] not in runs:
            runs.append(rec["run"])
    assert len(runs) == 2
    bundle = tmp_root / "run2.tar"
    cli("export", m.config, "--run", runs[1], "--out", bundle, check=0)
    with tarfile.open(bundle) as t:
        recs = [json.loads(x) for x in t.extractfile("records.jsonl").read().decode().splitlines()]
        events = [json.loads(x) for x in t.extractfile("events.jsonl").read().decode().splitlines()]
    assert recs and {x["scopefs"]["run"] for x in recs} == {runs[1]}
    assert any("value_digest" in e for e in events)  # the other run's records: digests only
    assert verify(bundle)[0] == 0
