"""Before-images taken by hard link must never stay live files."""
import ctypes
import errno
import os
import subprocess
import time


def blob_inodes(m):
    return {os.stat(p).st_ino for p in (m.state / "blobs").rglob("*") if p.is_file()}


def blobs_hash_to_their_names(m):
    for p in (m.state / "blobs").rglob("*"):
        if p.is_file() and p.parent.name != "tmp":
            out = subprocess.run(["xxhsum", "-H2", str(p)], capture_output=True, text=True).stdout
            assert out.split()[0] == p.parent.name + p.name, p


def test_failed_rename_does_not_keep_the_target_in_the_store(mount):
    m = mount([{"path": "w", "access": "write"}])
    (m.mp / "w" / "a").write_text("A")
    (m.mp / "w" / "b").write_text("B-content")
    libc = ctypes.CDLL(None, use_errno=True)
    RENAME_NOREPLACE = 1
    r = libc.renameat2(-100, str(m.mp / "w" / "a").encode(), -100, str(m.mp / "w" / "b").encode(),
                       RENAME_NOREPLACE)
    assert r == -1 and ctypes.get_errno() == errno.EEXIST
    st = os.stat(m.src("w") / "b")
    assert st.st_nlink == 1
    assert st.st_ino not in blob_inodes(m)
    with open(m.mp / "w" / "b", "a") as f:
        f.write("more")
    blobs_hash_to_their_names(m)


def test_replaced_file_is_kept(mount):
    m = mount([{"path": "w", "access": "write"}])
    (m.mp / "w" / "t").write_text("old content")
    ino = os.stat(m.src("w") / "t").st_ino
    (m.mp / "w" / "n").write_text("new content")
    time.sleep(0.2)  # close() returns before the kernel's release reaches the daemon
    os.replace(m.mp / "w" / "n", m.mp / "w" / "t")
    # Not open any more: the replaced inode lives on as its before-image, no copy.
    assert ino in blob_inodes(m)
    blobs_hash_to_their_names(m)


def test_unlinking_a_file_open_for_writing_copies_it(mount):
    m = mount([{"path": "w", "access": "write"}])
    p = m.mp / "w" / "f"
    p.write_text("first")
    with open(p, "a") as f:
        os.unlink(p)
        f.write(" and more after the unlink")
        f.flush()
    blobs_hash_to_their_names(m)


def test_unlinked_files_written_here_become_blobs_named_by_content(mount):
    # Files written through the view have known hashes; renamed and chmodded
    # (the content kept), then removed, each becomes its own blob.
    m = mount([{"path": "w", "access": "write"}])
    d = m.mp / "w"
    inodes = {}
    for i in range(20):
        p = d / f"f{i}"
        p.write_bytes(f"content {i}\n".encode() * (i + 1))
        os.chmod(p, 0o600)
        os.rename(p, d / f"g{i}")
        inodes[i] = os.stat(m.src("w") / f"g{i}").st_ino
    time.sleep(0.2)  # close() returns before the kernel's release reaches the daemon
    subprocess.run(["rm", "-f"] + [str(d / f"g{i}") for i in inodes], check=True)
    assert set(inodes.values()) <= blob_inodes(m)
    blobs_hash_to_their_names(m)
    assert not any((m.state / "blobs" / "tmp").iterdir())


def test_a_file_changed_behind_the_view_is_read_again(mount):
    # Same size, mtime put back by hand: only the ctime tells the change. The
    # before-image must hold the bytes the file had, not a stale hash's name.
    m = mount([{"path": "w", "access": "write"}])
    p = m.mp / "w" / "f"
    p.write_bytes(b"A" * 4096)
    time.sleep(0.2)
    real = m.src("w") / "f"
    st = os.stat(real)
    with open(real, "r+b") as f:
        f.write(b"B" * 4096)
    os.utime(real, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(real)
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    os.unlink(p)
    blobs_hash_to_their_names(m)
    held = [q for q in (m.state / "blobs").rglob("*") if q.is_file() and q.parent.name != "tmp"]
    assert [q.read_bytes() for q in held] == [b"B" * 4096]
