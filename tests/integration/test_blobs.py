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
