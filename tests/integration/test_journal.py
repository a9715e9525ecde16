"""The journal as ordinary tools leave it (docs: journal/record.hpp).

Each scenario runs tools in a `write` bind and then reads the journal with
`scopefs log STATE --json`, both while the view is mounted and after it is
unmounted. The journal must hold exactly the expected applied records, in
order (op, path, path2), with:

- after.hash equal to `xxhsum -H2` of the real file at that moment, and the
  last hash recorded for every file equal to the file's final content;
- before.hash equal to the content before the change (the previous record's
  after.hash);
- a before-image blob for every content it destroys, stored at
  STATE/blobs/<2 hex>/<30 hex> and hashing to its own name;
- dense sequence numbers, the task, a run id and the caller.

Denied attempts are recorded with their errno and the caller's comm; the
`scopefs log` filters (--path, --op, --outcome, --since/--until) select the
records they promise, while mounted and after.
"""
import errno
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import SCOPEFS
from helpers import sh

BIND = "w"          # the write bind's view path
ANY = "<any>"       # no expectation on this object state
ABSENT = "<absent>"  # recorded as not existing
DIR = "<dir>"       # a directory
LIFECYCLE = ("mount", "unmount")
CONTENT_DESTROYING = ("write", "truncate", "unlink", "fallocate", "copy_file_range")


# ---------------------------------------------------------------------------
# Hashes, the journal, the blob store

def xxh_bytes(data):
    """`xxhsum -H2` of bytes, as the CLI prints it."""
    r = subprocess.run(["xxhsum", "-H2"], input=data, capture_output=True, check=True)
    return r.stdout.split()[0].decode()


def xxh_file(path):
    r = subprocess.run(["xxhsum", "-H2", "--", str(path)], capture_output=True, check=True)
    h = r.stdout.split()[0].decode()
    assert re.fullmatch(r"[0-9a-f]{32}", h), r.stdout
    return h


EMPTY = "99aa06d3014798d86001c324468d497f"  # printf '' | xxhsum -H2


def run_log(state, *args):
    return subprocess.run([SCOPEFS, "log", str(state), *map(str, args)], capture_output=True,
                          text=True, timeout=30)


def read_log(state, *args):
    """Records of `scopefs log STATE --json ARGS`; the journal must read cleanly."""
    r = run_log(state, "--json", *args)
    assert r.returncode == 0, f"scopefs log failed ({r.returncode}): {r.stderr}"
    assert "cannot be read" not in r.stderr, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def settled_log(state, n_changes, timeout=10):
    """The journal read while mounted, once it holds `n_changes` records besides
    mount/unmount and no intent (write sessions end at release, which the
    kernel sends after close() returns)."""
    deadline = time.time() + timeout
    while True:
        recs = read_log(state)
        changes = [r for r in recs if r["op"] not in LIFECYCLE]
        if (len(changes) >= n_changes and not any(r["state"] == "intent" for r in recs)) \
                or time.time() > deadline:
            return recs
        time.sleep(0.05)


def blob_path(state, h):
    return Path(state) / "blobs" / h[:2] / h[2:]


def all_blob_files(state):
    root = Path(state) / "blobs"
    out = []
    for sub in sorted(root.iterdir()):
        if sub.name == "tmp":
            continue
        assert sub.is_dir() and re.fullmatch(r"[0-9a-f]{2}", sub.name), sub
        out += sorted(sub.iterdir())
    return out


def check_blob_store(state, recs):
    """Every blob a record names exists with that content, and every blob in
    the store hashes to its own name. Returns the number of blob files."""
    for r in recs:
        for k in ("before", "victim"):
            o = r.get(k)
            if o and o.get("blob"):
                p = blob_path(state, o["hash"])
                assert p.is_file(), f"record {r['seq']} ({r['op']} {r['path']}): {k} blob {p} missing"
                assert xxh_file(p) == o["hash"], f"blob {p} does not hash to its name"
    files = all_blob_files(state)
    for p in files:
        assert xxh_file(p) == p.parent.name + p.name, f"blob {p} does not hash to its name"
    return len(files)


# ---------------------------------------------------------------------------
# Expected records

@dataclass
class Exp:
    op: str
    path: str                 # relative to the write bind
    path2: str = ""           # rename/link: relative to the bind; else verbatim
    before: str = ANY
    after: str = ANY
    victim: str = ANY
    comm: str = None
    after_attrs: dict = field(default_factory=dict)

    def key(self):
        p2 = self.path2
        if p2 and self.op in ("rename", "link"):
            p2 = f"{BIND}/{p2}"
        return (self.op, f"{BIND}/{self.path}", p2)


def key_of(r):
    return (r["op"], r["path"], r.get("path2", ""))


def check_state(r, k, spec):
    o = r.get(k)
    where = f"record {r['seq']} ({r['op']} {r['path']}) {k}"
    if spec == ANY:
        return
    if spec == ABSENT:
        assert o is not None and o["exists"] is False, f"{where}: expected absent, got {o}"
        return
    assert o is not None and o["exists"], f"{where}: expected to exist, got {o}"
    if spec == DIR:
        assert o["type"] == "dir", f"{where}: {o}"
    elif spec.startswith("symlink:"):
        assert o["type"] == "symlink" and o["target"] == spec[len("symlink:"):], f"{where}: {o}"
    else:
        assert o["type"] == "file", f"{where}: {o}"
        assert o.get("hash") == spec, f"{where}: hash {o.get('hash')} != expected {spec}"


def changes_of(recs):
    return [r for r in recs if r["op"] not in LIFECYCLE]


def check_general(recs, task="t"):
    """Rules every journal of a mounted view follows."""
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1)), "sequence not dense from 1"
    assert recs and recs[0]["op"] == "mount" and recs[0]["state"] == "applied"
    runs = {r["run"] for r in recs}
    for r in recs:
        where = f"record {r['seq']} ({r['op']} {r['path']})"
        assert r["task"] == task, where
        assert r["state"] in ("applied", "denied", "failed"), f"{where}: state {r['state']}"
        assert r["caller"]["pid"] > 0 and r["caller"]["comm"], f"{where}: caller {r['caller']}"
        if r["state"] == "applied":
            assert r["err"] == 0, where
        if r["op"] in LIFECYCLE:
            continue
        assert r["path"].startswith(BIND + "/") or r["path"].startswith("r/"), where
        a = r.get("after")
        if r["state"] == "applied" and a and a["exists"] and a["type"] == "file":
            assert re.fullmatch(r"[0-9a-f]{32}", a.get("hash", "")), f"{where}: after has no hash: {a}"
        b = r.get("before")
        if r["state"] == "applied" and r["op"] in CONTENT_DESTROYING and b and b["exists"] \
                and b["type"] == "file" and b["size"] > 0:
            assert b.get("blob") is True, f"{where}: destroyed content has no before-image: {b}"
        v = r.get("victim")
        if r["state"] == "applied" and r["op"] == "rename" and v and v["exists"] \
                and v["type"] == "file" and v["size"] > 0:
            assert v.get("blob") is True, f"{where}: replaced file has no before-image: {v}"
    assert len(runs) == 1, f"one mount, several run ids: {runs}"


def check_expected(recs, expected):
    """The applied changes are exactly `expected`, in order, with those states."""
    applied = [r for r in changes_of(recs) if r["state"] == "applied"]
    got = [key_of(r) for r in applied]
    want = [e.key() for e in expected]
    assert got == want, "journal records differ:\n got: " + "\n      ".join(map(str, got)) + \
        "\n want: " + "\n      ".join(map(str, want))
    for r, e in zip(applied, expected):
        check_state(r, "before", e.before)
        check_state(r, "after", e.after)
        check_state(r, "victim", e.victim)
        if e.comm:
            assert r["caller"]["comm"] == e.comm, f"record {r['seq']}: caller {r['caller']}"
        for k, v in e.after_attrs.items():
            assert r["after"][k] == v, f"record {r['seq']} ({r['op']} {r['path']}): after.{k} " \
                                       f"{r['after'][k]!r} != {v!r}"


def real_files(src):
    """{view path: xxhsum} of the regular files of the real source tree."""
    out = {}
    for dirpath, dirs, files in os.walk(src):
        for n in files:
            p = Path(dirpath) / n
            if p.is_file() and not p.is_symlink():
                out[f"{BIND}/{p.relative_to(src)}"] = xxh_file(p)
    return out


def check_chain(recs, initial, src):
    """Follows content through the journal: each before.hash is the content
    the path last had, and the content the journal ends with for every path
    is what the real tree holds (no change without a record)."""
    cur = dict(initial)  # view path -> content hash
    for r in changes_of(recs):
        if r["state"] != "applied":
            continue
        op, p, p2 = r["op"], r["path"], r.get("path2", "")
        b, a, v = r.get("before") or {}, r.get("after") or {}, r.get("victim") or {}
        where = f"record {r['seq']} ({op} {p} {p2})"
        if op == "rename":
            if b.get("hash") and p in cur:
                assert b["hash"] == cur[p], f"{where}: before {b['hash']} != last known {cur[p]}"
            if v.get("hash") and p2 in cur:
                assert v["hash"] == cur[p2], f"{where}: victim {v['hash']} != last known {cur[p2]}"
            cur.pop(p2, None)
            if b.get("type") == "dir":
                for k in [k for k in cur if k.startswith(p + "/")]:
                    cur[p2 + k[len(p):]] = cur.pop(k)
            cur.pop(p, None)
            if a.get("hash"):
                cur[p2] = a["hash"]
        elif op in ("unlink", "rmdir"):
            if b.get("hash") and p in cur:
                assert b["hash"] == cur[p], f"{where}: before {b['hash']} != last known {cur[p]}"
            cur.pop(p, None)
        else:
            if b.get("hash") and p in cur and op != "link":
                assert b["hash"] == cur[p], f"{where}: before {b['hash']} != last known {cur[p]}"
            if a.get("hash") and a.get("type") == "file":
                cur[p2 if op == "link" else p] = a["hash"]
    real = real_files(src)
    missing = sorted(set(real) - set(cur))
    gone = sorted(set(cur) - set(real))
    assert not missing, f"real files without any record of their content: {missing}"
    assert not gone, f"the journal says these files exist, the real tree does not have them: {gone}"
    wrong = {k: (cur[k], real[k]) for k in real if cur[k] != real[k]}
    assert not wrong, f"last recorded hash != real content (journal, real): {wrong}"


# ---------------------------------------------------------------------------
# Scenarios: setup(src) before the mount; run(view, src, tmp_root) -> [Exp]

def sc_echo_new(v, s, tmp):
    sh("echo hello > a.txt", v)
    h = xxh_file(s / "a.txt")
    assert h == xxh_bytes(b"hello\n")
    # One record per new file: the create is the write session of its handle.
    return [Exp("create", "a.txt", before=ABSENT, after=h, comm="sh")]


def setup_old(s):
    (s / "a.txt").write_text("old content\n")


def sc_echo_overwrite(v, s, tmp):
    old = xxh_file(s / "a.txt")
    sh("echo new > a.txt", v)
    return [Exp("write", "a.txt", before=old, after=xxh_file(s / "a.txt"), comm="sh")]


def setup_log(s):
    (s / "log.txt").write_text("one\n")


def sc_append(v, s, tmp):
    h1 = xxh_file(s / "log.txt")
    sh("echo two >> log.txt", v)
    h2 = xxh_file(s / "log.txt")
    sh("echo three >> log.txt", v)
    h3 = xxh_file(s / "log.txt")
    assert (s / "log.txt").read_text() == "one\ntwo\nthree\n"
    return [Exp("write", "log.txt", before=h1, after=h2, comm="sh"),
            Exp("write", "log.txt", before=h2, after=h3, comm="sh")]


def setup_doc(s):
    (s / "doc.txt").write_text("version 1\n")


ATOMIC_SAVE = """
import os, sys, tempfile
fd, tmp = tempfile.mkstemp(dir=".", prefix=".doc.", suffix=".tmp")
os.write(fd, b"version 2, saved atomically\\n")
os.fsync(fd)
os.close(fd)
os.replace(tmp, "doc.txt")
print(os.path.basename(tmp))
"""


def sc_atomic_save(v, s, tmp):
    v1 = xxh_file(s / "doc.txt")
    r = subprocess.run([sys.executable, "-c", ATOMIC_SAVE], cwd=v, capture_output=True, text=True,
                       check=True)
    t = r.stdout.strip()
    h = xxh_file(s / "doc.txt")
    assert h == xxh_bytes(b"version 2, saved atomically\n")
    comm = Path(sys.executable).name[:15]
    return [Exp("create", t, before=ABSENT, after=h, comm=comm),
            Exp("rename", t, "doc.txt", before=h, after=h, victim=v1, comm=comm)]


def setup_mv(s):
    (s / "a.txt").write_text("a\n")
    (s / "b.txt").write_text("b\n")
    (s / "d").mkdir()
    (s / "d" / "x.txt").write_text("x\n")


def sc_mv(v, s, tmp):
    ha, hb = xxh_file(s / "a.txt"), xxh_file(s / "b.txt")
    sh("mkdir sub", v)
    sh("mv a.txt sub/a.txt", v)
    sh("mv b.txt sub/a.txt", v)  # replaces a.txt: a's content becomes a before-image
    sh("mv d e", v)
    assert (s / "sub" / "a.txt").read_text() == "b\n" and (s / "e" / "x.txt").is_file()
    return [Exp("mkdir", "sub", before=ABSENT, after=DIR, comm="mkdir"),
            Exp("rename", "a.txt", "sub/a.txt", before=ha, after=ha, comm="mv"),
            Exp("rename", "b.txt", "sub/a.txt", before=hb, after=hb, victim=ha, comm="mv"),
            Exp("rename", "d", "e", before=DIR, after=DIR, comm="mv")]


def setup_rm(s):
    (s / "f1").write_text("first\n")
    (s / "dd").mkdir()
    (s / "dd" / "g").write_text("gee\n")
    (s / "keep").write_text("kept\n")


def sc_rm(v, s, tmp):
    h1, hg = xxh_file(s / "f1"), xxh_file(s / "dd" / "g")
    sh("rm f1", v)
    sh("rm -r dd", v)
    assert not (s / "f1").exists() and not (s / "dd").exists()
    return [Exp("unlink", "f1", before=h1, after=ABSENT, comm="rm"),
            Exp("unlink", "dd/g", before=hg, after=ABSENT, comm="rm"),
            Exp("rmdir", "dd", before=DIR, after=ABSENT, comm="rm")]


def sc_mkdir_rmdir(v, s, tmp):
    sh("mkdir -p p/q && mkdir -m 700 m", v)
    sh("rmdir p/q p", v)
    return [Exp("mkdir", "p", before=ABSENT, after=DIR, comm="mkdir"),
            Exp("mkdir", "p/q", before=ABSENT, after=DIR, comm="mkdir"),
            Exp("mkdir", "m", before=ABSENT, after=DIR, comm="mkdir", after_attrs={"mode": 0o700}),
            Exp("rmdir", "p/q", before=DIR, after=ABSENT, comm="rmdir"),
            Exp("rmdir", "p", before=DIR, after=ABSENT, comm="rmdir")]


def setup_a(s):
    (s / "a.txt").write_text("alpha\n")


def sc_links(v, s, tmp):
    ha = xxh_file(s / "a.txt")
    sh("ln a.txt hard.txt", v)
    sh("ln -s a.txt soft", v)
    sh("rm hard.txt", v)
    # a.txt has one name again: a change to it is a change of a.txt.
    sh("chmod 600 a.txt", v)
    sh("rm soft", v)
    return [Exp("link", "a.txt", "hard.txt", before=ABSENT, after=ha, comm="ln"),
            Exp("symlink", "soft", "a.txt", before=ABSENT, after="symlink:a.txt", comm="ln"),
            Exp("unlink", "hard.txt", before=ha, after=ABSENT, comm="rm"),
            Exp("chmod", "a.txt", before=ha, after=ha, comm="chmod", after_attrs={"mode": 0o600}),
            Exp("unlink", "soft", before="symlink:a.txt", after=ABSENT, comm="rm")]


def sc_attrs(v, s, tmp):
    ha = xxh_file(s / "a.txt")
    sh("chmod 640 a.txt", v)
    sh("chown 1234:5678 a.txt", v)
    sh("touch -m -d @1000000000 a.txt", v)
    sh("touch new.txt", v)
    assert xxh_file(s / "a.txt") == ha
    return [Exp("chmod", "a.txt", before=ha, after=ha, comm="chmod", after_attrs={"mode": 0o640}),
            Exp("chown", "a.txt", before=ha, after=ha, comm="chown",
                after_attrs={"uid": 1234, "gid": 5678, "mode": 0o640}),
            Exp("utimens", "a.txt", before=ha, after=ha, comm="touch",
                after_attrs={"mtime": 1000000000 * 10**9}),
            Exp("create", "new.txt", before=ABSENT, after=EMPTY, comm="touch"),
            Exp("utimens", "new.txt", before=EMPTY, after=EMPTY, comm="touch")]


def setup_bin(s):
    (s / "t.bin").write_bytes(bytes(range(256)) * 40)


def sc_truncate(v, s, tmp):
    h0 = xxh_file(s / "t.bin")
    sh("truncate -s 3 t.bin", v)
    h1 = xxh_file(s / "t.bin")
    assert h1 == xxh_bytes(bytes([0, 1, 2]))
    sh("truncate -s 100000 t.bin", v)
    h2 = xxh_file(s / "t.bin")
    assert h2 == xxh_bytes(bytes([0, 1, 2]) + bytes(100000 - 3))
    return [Exp("truncate", "t.bin", before=h0, after=h1, comm="truncate", after_attrs={"size": 3}),
            Exp("truncate", "t.bin", before=h1, after=h2, comm="truncate",
                after_attrs={"size": 100000})]


def sc_xattr(v, s, tmp):
    ha = xxh_file(s / "a.txt")
    sh("setfattr -n user.k -v v1 a.txt", v)
    sh("setfattr -x user.k a.txt", v)
    return [Exp("setxattr", "a.txt", "user.k", before=ha, after=ha, comm="setfattr"),
            Exp("removexattr", "a.txt", "user.k", before=ha, after=ha, comm="setfattr")]


SCENARIOS = {
    "echo_new": (None, sc_echo_new),
    "echo_overwrite": (setup_old, sc_echo_overwrite),
    "append": (setup_log, sc_append),
    "python_atomic_save": (setup_doc, sc_atomic_save),
    "mv_within_bind": (setup_mv, sc_mv),
    "rm": (setup_rm, sc_rm),
    "mkdir_rmdir": (None, sc_mkdir_rmdir),
    "ln_and_ln_s": (setup_a, sc_links),
    "chmod_chown_touch": (setup_a, sc_attrs),
    "truncate": (setup_bin, sc_truncate),
    "setfattr": (setup_a, sc_xattr),
}


def mount_view(mount, tmp_root, setup=None):
    src = tmp_root / "src" / "w"
    src.mkdir(parents=True)
    ro = tmp_root / "src" / "r"
    ro.mkdir(parents=True)
    (ro / "x.txt").write_text("read only\n")
    if setup:
        setup(src)
    m = mount([{"path": BIND, "source": str(src), "access": "write"},
               {"path": "r", "source": str(ro), "access": "read"}],
              rules=[(f"{BIND}/**/*.key", "hide")])
    return m, src


def check_journal(m, src, recs, expected, initial):
    check_general(recs)
    check_expected(recs, expected)
    check_chain(recs, initial, src)
    check_blob_store(m.state, recs)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_tool_scenario_journal(mount, tmp_root, name):
    setup, run = SCENARIOS[name]
    m, src = mount_view(mount, tmp_root, setup)
    initial = real_files(src)
    expected = run(m.mp / BIND, src, tmp_root)

    live = settled_log(m.state, len(expected))
    try:
        check_journal(m, src, live, expected, initial)
        assert live[-1]["op"] != "unmount"
    except AssertionError as e:
        raise AssertionError(f"journal read while mounted: {e}\n--- daemon log ---\n"
                             + "\n".join(m.daemon_log().splitlines()[-30:])) from None

    m.stop()
    final = read_log(m.state)
    check_journal(m, src, final, expected, initial)
    assert final[-1]["op"] == "unmount" and final[-1]["state"] == "applied"
    # Unmounting adds its record and changes nothing that was there.
    assert final[:-1] == live


def test_cp_a_tree_journal(mount, tmp_root):
    """cp -a of a small tree: every entry created (a file's create record
    holds the content cp wrote through its handle), in an order that creates each directory before its entries;
    the other records are cp's attribute copies of entries it created."""
    m, src = mount_view(mount, tmp_root)
    t = tmp_root / "native" / "tree"
    (t / "sub" / "deep").mkdir(parents=True)
    (t / "one.txt").write_text("one\n")
    (t / "sub" / "two.txt").write_text("two\n")
    (t / "sub" / "deep" / "three.bin").write_bytes(os.urandom(200000))
    (t / "empty").write_bytes(b"")
    os.symlink("one.txt", t / "link")
    os.chmod(t / "one.txt", 0o640)
    sh(f"cp -a {t} tree", m.mp / BIND)

    files = {"tree/one.txt", "tree/sub/two.txt", "tree/sub/deep/three.bin"}
    dirs = {"tree", "tree/sub", "tree/sub/deep"}
    created = files | dirs | {"tree/empty", "tree/link"}
    meta = {"utimens", "chown", "chmod", "setxattr", "removexattr"}

    def check(recs):
        check_general(recs)
        ch = [r for r in changes_of(recs)]
        assert all(r["state"] == "applied" for r in ch), [key_of(r) for r in ch]
        assert all(r["caller"]["comm"] == "cp" for r in ch)
        first = {}
        per_path = {}
        for i, r in enumerate(ch):
            rel = r["path"][len(BIND) + 1:]
            assert rel in created, f"record for an entry cp did not create: {key_of(r)}"
            per_path.setdefault(rel, []).append(r)
            first.setdefault(rel, i)
            parent = rel.rsplit("/", 1)[0] if "/" in rel else None
            if parent:
                assert first.get(parent, len(ch)) < first[rel], f"{rel} before its directory"
        assert set(per_path) == created
        for rel, rs in per_path.items():
            content_ops = [r["op"] for r in rs if r["op"] not in meta]
            want = (["mkdir"] if rel in dirs else ["symlink"] if rel == "tree/link"
                    else ["create"])
            assert content_ops == want, f"{rel}: {content_ops} != {want}"
            assert rs[0]["op"] == want[0], f"{rel}: first record is {rs[0]['op']}"
            if rel in files:
                real = xxh_file(src / rel)
                w = [r for r in rs if r["op"] == "create"][0]
                assert w["before"] == {"exists": False} and w["after"]["hash"] == real
                assert rs[-1]["after"]["hash"] == real
            if rel == "tree/link":
                assert rs[0]["after"]["target"] == "one.txt"
        assert per_path["tree/one.txt"][-1]["after"]["mode"] == 0o640
        check_chain(recs, {}, src)
        check_blob_store(m.state, recs)

    live = settled_log(m.state, 3 + 1 + 1 + 3)
    check(live)
    m.stop()
    final = read_log(m.state)
    check(final)
    assert final[:-1] == live


def test_two_handles_after_hash_is_real_content(mount, tmp_root):
    """Two handles write one file (as two processes appending to one log do).
    Every after.hash must be a content the file really had; the last one
    recorded must be the final content."""
    m, src = mount_view(mount, tmp_root)
    v = m.mp / BIND / "f"
    contents = [b""]
    a = os.open(v, os.O_CREAT | os.O_WRONLY, 0o644)
    b = os.open(v, os.O_WRONLY)
    try:
        os.write(a, b"aaaa")
        contents.append((src / "f").read_bytes())
        os.pwrite(b, b"bb", 0)
        contents.append((src / "f").read_bytes())
        os.write(a, b"cc")
        contents.append((src / "f").read_bytes())
    finally:
        os.close(b)
        os.close(a)
    assert contents == [b"", b"aaaa", b"bbaa", b"bbaacc"]
    had = {xxh_bytes(c): c for c in contents}
    for recs in (settled_log(m.state, 3), None):
        if recs is None:
            m.stop()
            recs = read_log(m.state)
        ch = changes_of(recs)
        assert [key_of(r) for r in ch] == [("create", "w/f", ""), ("write", "w/f", "")]
        for r in ch:
            h = r["after"]["hash"]
            assert h in had, (f"record {r['seq']} ({r['op']} {r['path']}) says the file became "
                              f"{h}, a content it never had (it had: "
                              f"{ {k: v.decode() for k, v in had.items()} })")
        assert ch[-1]["after"]["hash"] == xxh_file(src / "f")
        check_blob_store(m.state, recs)


def test_a_later_handle_writing_makes_the_first_sessions_hash_real(mount, tmp_root):
    """The first handle writes alone (its hash streamed), then a second one
    opens and overwrites the start: the first session must not record the
    content it streamed, but the file's."""
    m, src = mount_view(mount, tmp_root)
    v = m.mp / BIND / "f"
    contents = [b""]
    a = os.open(v, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(a, b"aaaa")
        contents.append((src / "f").read_bytes())
        b = os.open(v, os.O_WRONLY)
        try:
            os.pwrite(b, b"bb", 0)
            contents.append((src / "f").read_bytes())
        finally:
            os.close(b)
        # A change of metadata while the first session is open: its record's
        # hash must be the file's too.
        os.utime(v, ns=(1_000_000_000, 2_000_000_000))
    finally:
        os.close(a)
    assert contents == [b"", b"aaaa", b"bbaa"]
    had = {xxh_bytes(c): c for c in contents}
    recs = settled_log(m.state, 3)
    ch = changes_of(recs)
    assert [key_of(r) for r in ch] == [("create", "w/f", ""), ("write", "w/f", ""),
                                       ("utimens", "w/f", "")]
    for r in ch:
        h = r["after"]["hash"]
        assert h in had, f"record {r['seq']} ({r['op']}) says the file became {h}"
        assert h == xxh_bytes(b"bbaa"), f"record {r['seq']} ({r['op']}): {had[h]!r}"


def test_a_second_handle_truncating_at_open_makes_the_first_sessions_hash_real(mount, tmp_root):
    m, src = mount_view(mount, tmp_root)
    v = m.mp / BIND / "t"
    a = os.open(v, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(a, b"aaaa")
        os.close(os.open(v, os.O_WRONLY | os.O_TRUNC))  # truncates, writes nothing
        os.write(a, b"cccc")  # at a's offset, 4: a hole before it now
    finally:
        os.close(a)
    final = b"\0\0\0\0cccc"
    assert (src / "t").read_bytes() == final
    ch = changes_of(settled_log(m.state, 2))
    got = [(r["op"], r["after"]["hash"]) for r in ch]
    assert got[0] == ("create", xxh_bytes(final)), got  # streamed "aaaacccc": not the file
    assert [op for op, _ in got] == ["create", "write"], got


def test_metadata_set_while_writing_records_the_written_content(mount, tmp_root):
    """cp -a sets times and modes on the file it is still writing: those
    records carry the content written so far, as the file has it."""
    m, src = mount_view(mount, tmp_root)
    v = m.mp / BIND / "g"
    fd = os.open(v, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        os.write(fd, b"x" * 10000)
        os.utime(v, ns=(1_000_000_000, 2_000_000_000))
        os.chmod(v, 0o640)
        os.write(fd, b"tail")
        os.utime(v, ns=(3_000_000_000, 4_000_000_000))
    finally:
        os.close(fd)
    first = b"x" * 10000
    second = first + b"tail"
    settled_log(m.state, 4)
    # Changed behind the view, same size, mtime put back: the hash known for
    # the old bytes must not be trusted (the ctime moved).
    with open(src / "g", "r+b") as f:
        f.write(b"y" * 5)
    os.utime(src / "g", ns=(3_000_000_000, 4_000_000_000))
    third = b"y" * 5 + second[5:]
    os.chmod(v, 0o644)
    recs = settled_log(m.state, 5)
    ch = changes_of(recs)
    got = [(r["op"], r["after"]["hash"]) for r in ch]
    want = [("create", second), ("utimens", first), ("chmod", first), ("utimens", second),
            ("chmod", third)]
    assert got == [(op, xxh_bytes(c)) for op, c in want], got


def test_back_to_back_appends_record_each_content(mount, tmp_root):
    """A shell loop of `>>` appends: each close() ends its write session, so
    every record's after.hash is the content right after that append (the
    next record's before.hash) — not a later append's, which the kernel's late
    RELEASE of the previous handle used to pick up. Rollback then undoes every
    append without a conflict."""
    m, src = mount_view(mount, tmp_root)
    n = 60
    sh(f"printf 'start\\n' > f; i=0; while [ $i -lt {n} ]; do echo line$i >> f; i=$((i+1)); done",
       cwd=m.mp / BIND)
    writes = [r for r in changes_of(settled_log(m.state, n + 1)) if r["op"] in ("create", "write")]
    assert [r["op"] for r in writes] == ["create"] + ["write"] * n
    for a, b in zip(writes, writes[1:]):
        assert a["after"]["hash"] == b["before"]["hash"], (a["seq"], b["seq"])
        assert a["after"]["size"] == b["before"]["size"], (a["seq"], b["seq"])
    assert writes[-1]["after"]["hash"] == xxh_file(src / "f")
    r = subprocess.run([SCOPEFS, "rollback", str(m.config), "--all"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert not (src / "f").exists()


def test_denied_attempts_are_recorded(mount, tmp_root):
    m, src = mount_view(mount, tmp_root)
    ro = tmp_root / "src" / "r"
    before = sorted(p.name for p in ro.iterdir()), (ro / "x.txt").read_text()
    attempts = [
        # (command, expected op, view path, errno, comm)
        ("exec touch ../r/new.txt", "create", "r/new.txt", errno.EROFS, "touch"),
        ("echo more >> ../r/x.txt", "write", "r/x.txt", errno.EROFS, "sh"),
        ("exec rm -f ../r/x.txt", "unlink", "r/x.txt", errno.EROFS, "rm"),
        ("exec touch secret.key", "create", "w/secret.key", errno.EACCES, "touch"),
        ("exec mkdir dir.key", "mkdir", "w/dir.key", errno.EACCES, "mkdir"),
    ]
    pids = []
    for cmd, *_ in attempts:
        r = sh(f"echo $$; {cmd}", m.mp / BIND, check=False)
        assert r.returncode != 0, cmd
        pids.append(int(r.stdout.split()[0]))
    # Nothing happened to the real trees.
    assert (sorted(p.name for p in ro.iterdir()), (ro / "x.txt").read_text()) == before
    assert list(src.iterdir()) == []

    def check(recs):
        check_general(recs)
        ch = changes_of(recs)
        assert [(r["op"], r["path"], r["state"], r["err"]) for r in ch] == \
            [(op, p, "denied", e) for _, op, p, e, _ in attempts]
        for r, (cmd, op, p, e, comm), pid in zip(ch, attempts, pids):
            assert r["caller"]["comm"] == comm, (cmd, r["caller"])
            assert r["caller"]["pid"] == pid, (cmd, r["caller"])
            assert r["caller"]["uid"] == os.getuid()
            assert "before" not in r and "after" not in r
        denied = read_log(m.state, "--outcome", "denied")
        assert [r["seq"] for r in denied] == [r["seq"] for r in ch]
        assert read_log(m.state, "--outcome", "applied") == [r for r in recs if r["op"] in LIFECYCLE]

    check(read_log(m.state))  # appended at once: nothing to wait for
    m.stop()
    check(read_log(m.state))
    # The daemon also logged them.
    lines = [l for l in m.daemon_log().splitlines() if " denied " in l]
    assert len(lines) == len(attempts), lines


# ---------------------------------------------------------------------------
# scopefs log filters

def wait_next_second():
    """Sleeps into the next whole second; returns it (epoch seconds)."""
    t = int(time.time()) + 1
    while time.time() < t + 0.05:
        time.sleep(0.02)
    return t


def test_log_filters(mount, tmp_root):
    m, src = mount_view(mount, tmp_root)
    v = m.mp / BIND
    sh("echo a > a.txt && echo b > b.log && mkdir d", v)
    t = wait_next_second()
    sh("echo c > d/c.txt && mv a.txt d/a2.txt && rm b.log", v)
    sh("touch ../r/n.txt", v, check=False)
    batch2 = [("create", "w/d/c.txt"), ("rename", "w/a.txt"),
              ("unlink", "w/b.log"), ("create", "r/n.txt")]

    def ops(recs):
        return [(r["op"], r["path"]) for r in recs]

    def check(mounted):
        allr = read_log(m.state)
        n = len(allr)
        # --path: the view path or a rename/link target matches the glob.
        assert ops(read_log(m.state, "--path", "w/d/**")) == [
            ("mkdir", "w/d"), ("create", "w/d/c.txt"), ("rename", "w/a.txt")]
        assert ops(read_log(m.state, "--path", "/w/b.log")) == [
            ("create", "w/b.log"), ("unlink", "w/b.log")]
        assert ops(read_log(m.state, "--path", "w/*.txt")) == [
            ("create", "w/a.txt"), ("rename", "w/a.txt")]
        assert ops(read_log(m.state, "--path", "nothing/**")) == []
        # --op, repeatable; combined with --path.
        assert ops(read_log(m.state, "--op", "rename")) == [("rename", "w/a.txt")]
        assert ops(read_log(m.state, "--op", "unlink", "--op", "mkdir")) == [
            ("mkdir", "w/d"), ("unlink", "w/b.log")]
        assert ops(read_log(m.state, "--op", "create", "--path", "w/d/**")) == [
            ("create", "w/d/c.txt")]
        lifecycle = [("mount", "")] + ([] if mounted else [("unmount", "")])
        assert ops(read_log(m.state, "--op", "mount", "--op", "unmount")) == lifecycle
        # --outcome
        assert ops(read_log(m.state, "--outcome", "denied")) == [("create", "r/n.txt")]
        assert [r for r in read_log(m.state, "--outcome", "denied")][0]["err"] == errno.EROFS
        assert len(read_log(m.state, "--outcome", "applied")) == n - 1
        assert len(read_log(m.state, "--outcome", "applied", "--outcome", "denied")) == n
        assert read_log(m.state, "--outcome", "interrupted") == []
        assert read_log(m.state, "--outcome", "intent") == []
        # --since / --until: epoch seconds, ISO 8601 (UTC), relative ages.
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        after = [x for x in ops(read_log(m.state, "--since", str(t))) if x[0] != "unmount"]
        assert after == batch2
        assert ops(read_log(m.state, "--since", iso)) == ops(read_log(m.state, "--since", str(t)))
        before = ops(read_log(m.state, "--until", str(t)))
        assert before == [("mount", ""), ("create", "w/a.txt"), ("create", "w/b.log"),
                          ("mkdir", "w/d")]
        assert ops(read_log(m.state, "--until", iso)) == before
        assert len(read_log(m.state, "--since", "1h")) == n
        assert read_log(m.state, "--until", "2001-01-01") == []
        assert read_log(m.state, "--since", str(int(time.time()) + 3600)) == []
        assert ops(read_log(m.state, "--since", str(t), "--op", "create")) == [
            ("create", "w/d/c.txt"), ("create", "r/n.txt")]
        for r in allr:
            assert (r["t"] >= t * 10**9) == ((r["op"], r["path"]) in batch2 or r["op"] == "unmount")
        # The table form prints the same records.
        tab = run_log(m.state, "--path", "w/d/**")
        assert tab.returncode == 0, tab.stderr
        lines = tab.stdout.splitlines()
        assert lines[0].split()[:5] == ["SEQ", "TIME", "STATE", "OP", "PATH"]
        assert len(lines) == 1 + 3
        assert "/w/a.txt -> /w/d/a2.txt" in tab.stdout
        den = run_log(m.state, "--outcome", "denied")
        assert "denied(EROFS)" in den.stdout and "touch[" in den.stdout, den.stdout
        # Bad arguments are refused.
        assert run_log(m.state, "--outcome", "done").returncode != 0
        assert run_log(m.state, "--since", "yesterday-ish").returncode != 0
        assert run_log(tmp_root / "no-such-state").returncode != 0

    check(mounted=True)
    m.stop()
    check(mounted=False)
