import os


def test_mount_read_write(mount):
    m = mount([{"path": "in", "access": "read"}, {"path": "out", "access": "write"}])
    (m.src("in") / "a.csv").write_text("x,y\n")
    assert (m.mp / "in" / "a.csv").read_text() == "x,y\n"
    (m.mp / "out" / "r.txt").write_text("hello")
    assert (m.src("out") / "r.txt").read_text() == "hello"
    assert sorted(os.listdir(m.mp)) == ["in", "out"]
