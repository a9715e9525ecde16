"""The kernel's page cache of the view (issue 8): what it keeps, and when it lets go.

The view keeps a file's pages across opens (`keep_cache`) and does not drop them
when it merely sees the mtime change (no automatic invalidation: a write through
the view would otherwise throw away the pages it has just written). What must
stay true: a file changed behind the view is read new at the next open; a reader
holding the file open sees it grow; rollback and reject drop what the kernel has
cached (reject even for a reader that keeps its descriptor open: the held copy
it was reading is gone; rollback puts a new file in the old one's place, and a
reader of the old one keeps reading it, as on any filesystem).
"""
import os
import subprocess
import time

from conftest import SCOPEFS


def cli(*args):
    return subprocess.run([SCOPEFS, *map(str, args)], capture_output=True, text=True, timeout=120)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_pages_written_through_the_view_are_kept_and_a_change_behind_it_is_seen_at_open(mount):
    m = mount([{"path": "w", "access": "write"}])
    src, v = m.src("w"), m.mp / "w"
    (v / "f").write_bytes(b"a" * 4096)
    assert read(v / "f") == b"a" * 4096
    time.sleep(1.3)  # the attributes expire; the next stat sees the real file's mtime
    os.stat(v / "f")
    assert read(v / "f") == b"a" * 4096
    # Changed behind the view, same size: the next open must not keep the pages.
    (src / "f").write_bytes(b"b" * 4096)
    st = os.stat(src / "f")
    os.utime(src / "f", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert read(v / "f") == b"b" * 4096


def test_a_file_written_through_the_view_is_read_back_without_asking_the_daemon(mount):
    """The kernel keeps the pages a write through the view filled, across the
    attribute refresh that shows the real file's new mtime: reading the file
    back sends no READ (--debug logs every request the daemon gets)."""
    m = mount([{"path": "w", "access": "write"}], extra_args=["--debug"])
    v = m.mp / "w"
    (v / "f").write_bytes(b"a" * 8192)
    time.sleep(1.3)
    os.stat(v / "f")  # attributes refreshed: the mtime the kernel had is replaced
    before = len(m.daemon_log().splitlines())
    assert read(v / "f") == b"a" * 8192
    time.sleep(0.2)
    after = m.daemon_log().splitlines()[before:]
    assert any("opcode: OPEN" in l for l in after), after[-20:]
    assert not any("opcode: READ " in l for l in after), after[-20:]


def test_a_directory_listing_brings_every_entrys_attributes(mount):
    """Every chunk of a directory listing comes with its entries' attributes
    (READDIRPLUS throughout, not only for the first chunk), so a walk that
    stats what it listed sends no LOOKUP."""
    m = mount([{"path": "r", "access": "read"}], extra_args=["--debug"])
    src, v = m.src("r"), m.mp / "r"
    (src / "d").mkdir()
    for i in range(300):
        (src / "d" / f"file-{i:04}").write_text(str(i))
    os.stat(v / "d")
    before = len(m.daemon_log().splitlines())
    names = [e.name for e in os.scandir(v / "d")]
    assert len(names) == 300
    for n in names:
        os.lstat(v / "d" / n)
    time.sleep(0.2)
    after = m.daemon_log().splitlines()[before:]
    assert any("opcode: READDIRPLUS" in l for l in after), after[-20:]
    lookups = [l for l in after if "opcode: LOOKUP" in l]
    assert not lookups, f"{len(lookups)} LOOKUPs, e.g. {lookups[:3]}"


def test_an_open_reader_sees_the_file_grow_behind_the_view(mount):
    m = mount([{"path": "w", "access": "write"}])
    src, v = m.src("w"), m.mp / "w"
    (src / "log").write_bytes(b"line 1\n")
    fd = os.open(v / "log", os.O_RDONLY)
    try:
        assert os.pread(fd, 4096, 0) == b"line 1\n"
        with open(src / "log", "ab") as f:
            f.write(b"line 2\n")
        time.sleep(1.3)  # the view's attribute timeout
        assert os.pread(fd, 4096, 0) == b"line 1\nline 2\n"
    finally:
        os.close(fd)


def test_rollback_is_seen_through_the_view_at_once(mount):
    m = mount([{"path": "w", "access": "write"}])
    src, v = m.src("w"), m.mp / "w"
    (src / "f").write_bytes(b"a" * 8192)
    assert read(v / "f") == b"a" * 8192
    (v / "f").write_bytes(b"b" * 8192)  # same size, through the view: its pages are kept
    assert read(v / "f") == b"b" * 8192
    r = cli("rollback", m.config, "--all")
    assert r.returncode == 0, r.stderr + r.stdout
    assert (src / "f").read_bytes() == b"a" * 8192
    assert read(v / "f") == b"a" * 8192
    assert os.stat(v / "f").st_size == 8192


def test_reject_drops_the_pages_of_a_reader_that_stays_open(mount):
    m = mount([{"path": "s"}])  # stage: every change is held
    src, v = m.src("s"), m.mp / "s"
    (src / "f").write_bytes(b"a" * 8192)
    fd = os.open(v / "f", os.O_RDONLY)
    try:
        assert os.pread(fd, 8192, 0) == b"a" * 8192
        (v / "f").write_bytes(b"b" * 8192)  # held: the view shows it, the real file keeps "a"
        assert (src / "f").read_bytes() == b"a" * 8192
        assert read(v / "f") == b"b" * 8192
        r = cli("reject", m.config, "--all")
        assert r.returncode == 0, r.stderr + r.stdout
        assert os.pread(fd, 8192, 0) == b"a" * 8192
    finally:
        os.close(fd)
    assert read(v / "f") == b"a" * 8192
