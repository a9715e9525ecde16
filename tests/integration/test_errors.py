"""Pins every row of docs/errors.md: the errno of each operation per access level."""
import errno
import os

import pytest

LEVELS = ["hide", "read", "write"]


@pytest.fixture
def tree(mount, tmp_root):
    src = tmp_root / "src" / "v"
    for lvl in LEVELS:
        d = src / lvl
        d.mkdir(parents=True)
        (d / "f").write_text("x")
        (d / "sub").mkdir()
    (src / "write" / "sub" / "empty").mkdir()
    (src / "read" / "sub" / "empty").mkdir()
    (src / "hide" / "sub" / "empty").mkdir()
    m = mount([{"path": "v", "source": str(src), "access": "write"}],
              rules=[("v/hide/f", "hide"), ("v/hide/sub", "hide"), ("v/hide/new*", "hide"),
                     ("v/read", "read")])
    return m


def code(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except OSError as e:
        return e.errno
    return 0


def p(m, lvl, name):
    return str(m.mp / "v" / lvl / name)


EXPECT = {  # row -> (hide, read, write)
    "lookup": (errno.ENOENT, 0, 0),
    "create": (errno.EACCES, errno.EROFS, 0),
    "mkdir": (errno.EACCES, errno.EROFS, 0),
    "mknod": (errno.EACCES, errno.EROFS, 0),
    "symlink": (errno.EACCES, errno.EROFS, 0),
    "open_write": (errno.ENOENT, errno.EROFS, 0),
    "unlink": (errno.ENOENT, errno.EROFS, 0),
    "rmdir": (errno.ENOENT, errno.EROFS, 0),
    "setattr": (errno.ENOENT, errno.EROFS, 0),
    "xattr_write": (errno.ENOENT, errno.EROFS, 0),
    "xattr_read": (errno.ENOENT, 0, 0),
    "rename_src": (errno.ENOENT, errno.EROFS, 0),
    "rename_dst": (errno.EACCES, errno.EROFS, 0),
    "link_src": (errno.ENOENT, errno.EROFS, 0),
    "link_dst": (errno.EACCES, errno.EROFS, 0),
}


def op(m, row, lvl):
    if row == "lookup":
        return code(os.stat, p(m, lvl, "f"))
    if row == "create":
        return code(lambda: os.close(os.open(p(m, lvl, "new1"), os.O_CREAT | os.O_WRONLY, 0o644)))
    if row == "mkdir":
        return code(os.mkdir, p(m, lvl, "newd"))
    if row == "mknod":
        return code(os.mkfifo, p(m, lvl, "newf"))
    if row == "symlink":
        return code(os.symlink, "f", p(m, lvl, "newl"))
    if row == "open_write":
        return code(lambda: os.close(os.open(p(m, lvl, "f"), os.O_WRONLY)))
    if row == "unlink":
        return code(os.unlink, p(m, lvl, "f"))
    if row == "rmdir":
        return code(os.rmdir, p(m, lvl, "sub/empty" if lvl != "hide" else "sub"))
    if row == "setattr":
        results = {code(os.chmod, p(m, lvl, "f"), 0o600), code(os.truncate, p(m, lvl, "f"), 0),
                   code(os.utime, p(m, lvl, "f"), (1, 1)), code(os.chown, p(m, lvl, "f"), 0, 0)}
        assert len(results) == 1, results
        return results.pop()
    if row == "xattr_write":
        a = code(os.setxattr, p(m, lvl, "f"), "user.k", b"v")
        b = code(os.removexattr, p(m, lvl, "f"), "user.k")
        return a if a else b
    if row == "xattr_read":
        a = code(os.listxattr, p(m, lvl, "f"))
        return a
    if row == "rename_src":
        return code(os.rename, p(m, lvl, "f"), p(m, "write", "moved"))
    if row == "rename_dst":
        return code(os.rename, p(m, "write", "f"), p(m, lvl, "new_target"))
    if row == "link_src":
        return code(os.link, p(m, lvl, "f"), p(m, "write", "linked"))
    if row == "link_dst":
        return code(os.link, p(m, "write", "f"), p(m, lvl, "new_link"))
    raise AssertionError(row)


@pytest.mark.parametrize("row", sorted(EXPECT))
def test_errno_table(tree, row):
    got = tuple(op(tree, row, lvl) for lvl in LEVELS)
    assert got == EXPECT[row], f"{row}: got {[errno.errorcode.get(c, c) for c in got]}"


def test_readdir_row(tree):
    assert "f" not in os.listdir(tree.mp / "v" / "hide")
    assert "f" in os.listdir(tree.mp / "v" / "read")
    assert "f" in os.listdir(tree.mp / "v" / "write")


def test_other_cases(mount, tmp_root):
    m = mount([{"path": "a", "access": "write"}, {"path": "b", "access": "write"}])
    (m.src("a") / "f").write_text("x")
    assert code(os.rename, m.mp / "a" / "f", m.mp / "b" / "f") == errno.EXDEV
    assert code(os.link, m.mp / "a" / "f", m.mp / "b" / "f") == errno.EXDEV
    assert code(os.stat, m.mp / "a" / ("n" * 256)) == errno.ENAMETOOLONG
    os.symlink("f", m.mp / "a" / "l")
    assert code(os.setxattr, m.mp / "a" / "l", "user.k", b"v", follow_symlinks=False) == errno.EPERM
    # Synthetic root: read-only.
    assert code(os.mkdir, m.mp / "c") == errno.EROFS
