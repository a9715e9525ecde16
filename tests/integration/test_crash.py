"""The journal under failure: the daemon SIGKILLed during a write storm, and
a state directory whose filesystem is full.

(a) After a SIGKILL and a remount the journal opens cleanly, leftover intents
    are "interrupted", every file of the real tree is named by a record, and
    every file whose last record was applied holds exactly that record's
    after-hash.
(b) With the state directory on a small tmpfs filled up, changes through the
    view fail with ENOSPC (and nothing else), the real tree holds no change
    the journal did not record, reads keep working, and once space is freed,
    writes work again.
"""
import errno
import json
import os
import random
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from conftest import Mount, is_fuse_mount
from test_journal import read_log, run_log, xxh_file

MiB = 1 << 20


# ---------------------------------------------------------------------------
# (a) SIGKILL during a write storm

def storm_worker(v, i, stop, killed, unexpected, counts):
    """create+write a temp file, rename it into place, overwrite, delete, mkdir."""
    rnd = random.Random(i)
    n = 0
    try:
        while not stop.is_set():
            tmp = v / f".t{i}_{n}.tmp"
            with open(tmp, "wb") as f:
                f.write(rnd.randbytes(rnd.randint(0, 64 * 1024)))
            os.rename(tmp, v / f"f{i}_{n}")
            if n % 3 == 2:
                with open(v / f"f{i}_{n - 1}", "wb") as f:  # O_TRUNC overwrite
                    f.write(rnd.randbytes(rnd.randint(1, 32 * 1024)))
            if n % 4 == 3:
                os.unlink(v / f"f{i}_{n - 2}")
            if n % 7 == 0:
                d = v / f"d{i}_{n}"
                d.mkdir()
                (d / "x").write_bytes(rnd.randbytes(100))
            if n % 5 == 4:
                with open(v / f"f{i}_{n}", "ab") as f:
                    f.write(b"appended\n")
            n += 1
            counts[i] = n
    except OSError as e:
        if not killed.is_set():
            unexpected.append(f"worker {i}: {e!r}")


SHELL_STORM = ('i=0; while :; do echo "line $i" > s$i; mv s$i S$i; rm -f S$((i-2)); '
               'i=$((i+1)); done')


def resulting_path(r):
    """The view path a record leaves its object at (None: removed)."""
    if r["op"] in ("unlink", "rmdir"):
        return None
    if r["op"] in ("rename", "link"):
        return r.get("path2")
    return r["path"]


def test_sigkill_during_write_storm(mount, tmp_root):
    m = mount([{"path": "w", "access": "write"}])
    src = m.src("w")
    v = m.mp / "w"
    stop, killed = threading.Event(), threading.Event()
    unexpected, counts = [], {}
    threads = [threading.Thread(target=storm_worker, args=(v, i, stop, killed, unexpected, counts))
               for i in range(4)]
    shell = subprocess.Popen(["/bin/sh", "-c", SHELL_STORM], cwd=v, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for t in threads:
            t.start()
        time.sleep(1.5)
        assert not unexpected, unexpected
        assert all(counts.get(i, 0) > 3 for i in range(4)), f"the storm did not get going: {counts}"
        killed.set()
        m.kill9()
        time.sleep(0.5)  # the storm meets the dead mount (ENOTCONN)
    finally:
        stop.set()
        os.killpg(shell.pid, signal.SIGKILL)  # our own shell's process group
        shell.wait(timeout=10)
        for t in threads:
            t.join(timeout=20)
    assert not any(t.is_alive() for t in threads), "a storm thread is stuck"
    assert not unexpected, unexpected

    m.start()
    # The remounted view works and journals.
    (v / "after-crash.txt").write_text("still journaling\n")
    assert (src / "after-crash.txt").read_text() == "still journaling\n"
    m.stop()

    recs = read_log(m.state)  # exit 0 and no record that cannot be read
    assert len(recs) > 50, f"only {len(recs)} records for a 1.5 s storm"
    seqs = [x["seq"] for x in recs]
    assert seqs == sorted(set(seqs)), "sequence numbers repeat or go backwards"
    intents = [(x["seq"], x["op"], x["path"]) for x in recs if x["state"] == "intent"]
    assert not intents, f"intents left after recovery: {intents[:20]}"
    runs = []
    for x in recs:
        if x["run"] not in runs:
            runs.append(x["run"])
    assert len(runs) == 2, f"expected the killed run and the remount: {runs}"
    first = [x for x in recs if x["run"] == runs[0]]
    second = [x for x in recs if x["run"] == runs[1]]
    assert max(x["seq"] for x in first) < min(x["seq"] for x in second)
    assert [x["op"] for x in first if x["op"] in ("mount", "unmount")] == ["mount"]
    assert second[0]["op"] == "mount" and second[-1]["op"] == "unmount"
    # The records marked interrupted are the ones the daemon reported at open.
    interrupted = sorted(x["seq"] for x in recs if x["state"] == "interrupted")
    assert all(x["run"] == runs[0] for x in recs if x["state"] == "interrupted")
    warned = sorted(int(l.split("journal: change ")[1].split()[0])
                    for l in m.daemon_log().splitlines() if "was interrupted by a crash" in l)
    assert interrupted == warned

    # Every object of the real tree is named by a record; a file whose last
    # record was applied holds exactly that record's after-hash.
    by_path = {}
    for x in recs:
        if x["state"] in ("denied", "failed") or x["op"] in ("mount", "unmount"):
            continue
        for p in {x["path"], x.get("path2") if x["op"] in ("rename", "link") else None} - {None}:
            by_path.setdefault(p, []).append(x)
    problems = []
    n_checked = 0
    for dirpath, dirs, files in os.walk(src):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = "w/" + str(p.relative_to(src))
            named = by_path.get(rel, [])
            if not named:
                problems.append(f"{rel}: no record names it")
                continue
            last = named[-1]
            if last["state"] == "interrupted" or not p.is_file() or p.is_symlink():
                continue
            n_checked += 1
            if resulting_path(last) != rel:
                problems.append(f"{rel}: exists, but its last record ({last['seq']} {last['op']} "
                                f"{last['path']} -> {last.get('path2', '')}) moved or removed it")
                continue
            h = (last.get("after") or {}).get("hash")
            real = xxh_file(p)
            if h != real:
                problems.append(f"{rel}: real content {real}, last record {last['seq']} "
                                f"({last['op']}, {last['state']}) says {h}")
    print(f"storm: {len(recs)} records, {len(interrupted)} interrupted, "
          f"{n_checked} files checked against their last record")
    assert not problems, "\n".join(problems[:40])
    assert n_checked > 10


# ---------------------------------------------------------------------------
# (b) Full disk under the state directory

@contextmanager
def state_on_small_tmpfs(tmp_root, size="16m", n_files=6):
    """A view whose state directory is on a fresh tmpfs of `size`; yields
    (mount, source dir, tmpfs dir, {name: original hash}). Always stops the
    daemon and unmounts the tmpfs."""
    src = tmp_root / "src" / "w"
    src.mkdir(parents=True)
    rnd = random.Random(7)
    for i in range(n_files):
        (src / f"f{i}.bin").write_bytes(rnd.randbytes(MiB))
    original = {p.name: xxh_file(p) for p in src.iterdir()}
    tfs = tmp_root / "tfs"
    tfs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(tfs)],
                   check=True, capture_output=True)
    m = Mount(tmp_root, [{"path": "w", "source": str(src), "access": "write"}])
    m.state = tfs / "state"
    try:
        m.start()
        yield m, src, tfs, original
    finally:
        try:
            m.stop()
        finally:
            r = subprocess.run(["umount", str(tfs)], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", str(tfs)], capture_output=True)
            assert not is_fuse_mount(m.mp)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(tfs, leave):
    filler = tfs / "filler"
    with open(filler, "wb") as f:
        f.write(b"\xa5" * max(0, free_bytes(tfs) - leave))
    return filler


def try_write(path, data, mode="wb"):
    """0 on success, else the errno (of open, write or close)."""
    try:
        with open(path, mode) as f:
            f.write(data)
        return 0
    except OSError as e:
        return e.errno


def unrecorded_changes(src, original, recs):
    """Real files whose content is neither their original nor the after-hash
    of an applied record of that path."""
    recorded = {}
    for x in recs:
        if x["state"] == "applied" and (x.get("after") or {}).get("hash"):
            p = x.get("path2") if x["op"] in ("rename", "link") else x["path"]
            recorded.setdefault(p, set()).add(x["after"]["hash"])
    out = []
    for p in sorted(src.iterdir()):
        h = xxh_file(p)
        if original.get(p.name) == h:
            continue
        if h not in recorded.get(f"w/{p.name}", set()):
            state = [(x["seq"], x["op"], x["state"]) for x in recs if x["path"] == f"w/{p.name}"]
            out.append(f"w/{p.name}: content {h} has no applied record (records: {state})")
    return out


def views_read_back(m, src):
    """Every real file reads back through the view (one summary line on failure)."""
    bad = []
    for p in sorted(src.iterdir()):
        try:
            if (m.mp / "w" / p.name).read_bytes() != p.read_bytes():
                bad.append(f"w/{p.name}: other bytes")
        except OSError as e:
            bad.append(f"w/{p.name}: {e!r}")
    if not bad:
        return []
    return [f"reading {len(bad)} of {len(list(src.iterdir()))} files through the view fails, "
            f"first: {bad[0]}"]


def journal_of(m, problems):
    """The journal's records, or [] with the failure noted in `problems`."""
    r = run_log(m.state, "--json")
    if r.returncode != 0 or "cannot be read" in r.stderr:
        problems.append(f"scopefs log fails ({r.returncode}): {r.stderr.strip()}")
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def daemon_tail(m, n=30):
    return "\n--- daemon log (tail) ---\n" + "\n".join(m.daemon_log().splitlines()[-n:])


def check_after_freeing(m, src, tfs, filler, problems):
    filler.unlink()
    for name, data in (("f0.bin", b"rewritten after space came back\n"),
                       ("new-after.txt", b"created after space came back\n")):
        e = try_write(m.mp / "w" / name, data)
        if e:
            problems.append(f"after freeing space, writing w/{name} fails with "
                            f"{errno.errorcode.get(e, e)}")
        elif (src / name).read_bytes() != data:
            problems.append(f"after freeing space, w/{name} does not hold what was written")


def test_full_state_dir_before_images(tmp_root):
    """Overwriting files needs room for their before-images: when the state
    directory is full, the overwrite fails with ENOSPC and changes nothing."""
    problems = []
    with state_on_small_tmpfs(tmp_root) as (m, src, tfs, original):
        filler = fill(tfs, leave=MiB + MiB // 2)  # room for one before-image
        v = m.mp / "w"
        rnd = random.Random(1)
        errs = []
        for i in range(6):
            errs.append(try_write(v / f"f{i}.bin", rnd.randbytes(MiB)))
            if errs[-1]:
                break
        assert errs[-1] != 0, "six 1 MiB before-images fit in 1.5 MiB?" + daemon_tail(m)
        assert errs[-1] == errno.ENOSPC, \
            f"overwrites gave {[errno.errorcode.get(e, e) for e in errs]}" + daemon_tail(m)
        assert errs[0] == 0, "the first overwrite should have fitted" + daemon_tail(m)
        # Other content-destroying changes fail the same way, and change nothing.
        for what, fn in (("unlink", lambda: os.unlink(v / "f5.bin")),
                         ("truncate", lambda: os.truncate(v / "f4.bin", 10)),
                         ("overwrite", lambda: (v / "f3.bin").write_bytes(b"x"))):
            try:
                fn()
                problems.append(f"{what} succeeded with a full state directory")
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    problems.append(f"{what} failed with {errno.errorcode.get(e.errno)}, not ENOSPC")
        for n in ("f3.bin", "f4.bin", "f5.bin"):
            if xxh_file(src / n) != original[n]:
                problems.append(f"w/{n} changed although the change failed")
        if m.proc.poll() is not None:
            problems.append(f"the daemon died (exit {m.proc.returncode})")
        problems += views_read_back(m, src)
        problems += unrecorded_changes(src, original, journal_of(m, problems))
        check_after_freeing(m, src, tfs, filler, problems)
        if m.proc is not None and m.proc.poll() is not None:
            problems.append(f"the daemon died (exit {m.proc.returncode})")
        log_tail = daemon_tail(m)
        m.stop()
        recs = journal_of(m, problems)
        problems += unrecorded_changes(src, original, recs)
        if not recs or recs[-1]["op"] != "unmount":
            problems.append("no unmount record at the end of the journal")
    assert not problems, "\n".join(problems) + log_tail


def test_full_state_dir_journal(tmp_root):
    """Creating small files needs only journal records: when the journal's
    filesystem is full, a change fails with ENOSPC, no change lands in the
    real tree without its record, the view keeps serving reads, and writes
    work again once space is freed."""
    problems = []
    with state_on_small_tmpfs(tmp_root, n_files=2) as (m, src, tfs, original):
        filler = fill(tfs, leave=256 * 1024)
        v = m.mp / "w"
        first_err, n = 0, 0
        deadline = time.time() + 25
        while time.time() < deadline:
            first_err = try_write(v / f"s{n}.txt", b"small %d\n" % n)
            if first_err:
                break
            n += 1
        assert first_err != 0, f"{n} small files and the 256 KiB left never filled up" + \
            daemon_tail(m)
        if first_err != errno.ENOSPC:
            problems.append(f"creating s{n}.txt failed with {errno.errorcode.get(first_err)}, "
                            "not ENOSPC")
        # Later attempts fail the same way (or fit), never otherwise.
        for k in range(3):
            e = try_write(v / f"x{k}.txt", b"x\n")
            if e not in (0, errno.ENOSPC):
                problems.append(f"creating x{k}.txt after the first ENOSPC failed with "
                                f"{errno.errorcode.get(e, e)}")
        if m.proc.poll() is not None:
            problems.append(f"the daemon died once the state directory was full "
                            f"(exit {m.proc.returncode})")
        problems += unrecorded_changes(src, original, journal_of(m, problems))
        problems += views_read_back(m, src)
        check_after_freeing(m, src, tfs, filler, problems)
        if m.proc.poll() is not None:
            problems.append(f"the daemon is gone (exit {m.proc.returncode})")
        log_tail = daemon_tail(m)
        m.stop()
        recs = journal_of(m, problems)
        problems += [p + " [after unmount]" for p in unrecorded_changes(src, original, recs)]
    assert not problems, "\n".join(dict.fromkeys(problems)) + log_tail
