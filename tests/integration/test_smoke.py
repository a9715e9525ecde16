import os


def test_mount_read_write(mount):
    m = mount([{"path": "in", "access": "read"}, {"path": "out", "access": "write"}])
    (m.src("in") / "a.csv").write_text("x,y\n")
    assert (m.mp / "in" / "a.csv").read_text() == "x,y\n"
    (m.mp / "out" / "r.txt").write_text("hello")
    assert (m.src("out") / "r.txt").read_text() == "hello"
    assert sorted(os.listdir(m.mp)) == ["in", "out"]


def _opcodes(log, name):
    return sum(1 for l in log.splitlines() if f"opcode: {name} " in l)


def test_read_only_close_sends_no_flush(mount):
    """A close() of a read-only handle costs no FLUSH round trip (noflush at
    open); a writing handle still gets its FLUSH, which takes the write
    session's after-state, so the record shows what the close left."""
    m = mount([{"path": "", "access": "write"}], extra_args=["--debug"])
    (m.src("") / "f.txt").write_text("hello\n")
    for _ in range(3):
        assert (m.mp / "f.txt").read_text() == "hello\n"
    log = m.daemon_log()
    assert _opcodes(log, "OPEN") >= 1
    assert _opcodes(log, "FLUSH") == 0
    with open(m.mp / "f.txt", "a") as f:
        f.write("more\n")
    assert (m.src("") / "f.txt").read_text() == "hello\nmore\n"
    assert _opcodes(m.daemon_log(), "FLUSH") >= 1
