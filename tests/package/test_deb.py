"""The Debian package, end to end, on this machine: cpack builds it, apt-get
installs it, the installed binary, man pages, units, completion, example
configs and mount(8) helper work, and apt-get purge takes it away again.

It changes the system (that is the point), so it runs only when asked:
SCOPEFS_PACKAGE_TEST=1 (tools/run test sets it) and as root, and refuses to
touch a machine where scopefs is already installed. It leaves the machine as
it found it: the package purged, and the scopefs-admin group and the
directories it created removed too.
"""
import grp
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("SCOPEFS_BUILD_DIR", ROOT / "build"))

pytestmark = pytest.mark.skipif(
    os.environ.get("SCOPEFS_PACKAGE_TEST") != "1" or os.geteuid() != 0,
    reason="installs a package: set SCOPEFS_PACKAGE_TEST=1 and run as root")


def sh(*cmd, check=True, timeout=600, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    if check:
        assert r.returncode == 0, f"{cmd}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def installed():
    r = sh("dpkg-query", "-W", "-f=${Status}", "scopefs", check=False)
    return "install ok installed" in r.stdout


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def dpkg_excludes(prefix):
    """True if dpkg is configured not to install files under prefix (minimal images)."""
    for f in Path("/etc/dpkg/dpkg.cfg.d").glob("*"):
        try:
            for line in f.read_text().splitlines():
                if line.startswith("path-exclude") and prefix in line:
                    return True
        except OSError:
            pass
    return False


def is_mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(l.split()[4] == str(path) for l in f)


APT_WAIT = ("-o", "DPkg::Lock::Timeout=300")


@pytest.fixture
def package():
    """Builds and installs the .deb; yields its path; removes it after."""
    if installed():
        pytest.skip("scopefs is already installed on this machine; not touching it")
    for old in BUILD.glob("scopefs_*.deb"):
        old.unlink()
    sh("cpack", "-G", "DEB", cwd=BUILD)
    debs = sorted(BUILD.glob("scopefs_*.deb"))
    assert len(debs) == 1, debs
    had_group = group_exists("scopefs-admin")
    created_dirs = [d for d in ("/etc/scopefs", "/var/lib/scopefs") if not os.path.exists(d)]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        # Another apt-get (an admin's, a benchmark installing its peers) may
        # hold the dpkg lock for a while: wait for it rather than fail.
        sh("apt-get", *APT_WAIT, "install", "-y", "--no-install-recommends", f"./{debs[0].name}",
           cwd=BUILD, env=env)
        yield debs[0]
    finally:
        # purge: remove leaves the package's maintainer scripts registered.
        sh("apt-get", *APT_WAIT, "purge", "-y", "scopefs", env=env, check=False)
        if not had_group and group_exists("scopefs-admin"):
            sh("groupdel", "scopefs-admin", check=False)
        for d in reversed(created_dirs):
            shutil.rmtree(d, ignore_errors=True)
    assert "scopefs" not in sh("dpkg-query", "-W", "-f=${Package}\n", check=False).stdout.split()
    assert not os.path.exists("/usr/bin/scopefs")


def test_deb_installs_and_works(package):
    info = sh("dpkg-deb", "--field", package, "Depends").stdout
    for dep in ("libfuse3-3", "librocksdb", "libsystemd0", "fuse3", "passwd"):
        assert dep in info, info
    # The binary.
    built = sh(BUILD / "scopefs", "--version").stdout
    assert sh("/usr/bin/scopefs", "--version").stdout == built
    # The admin group and the task directory.
    assert group_exists("scopefs-admin")
    assert os.path.isdir("/etc/scopefs/tasks")
    # Man pages: found and rendered (unless this image tells dpkg to drop them).
    man_ok = not dpkg_excludes("/usr/share/man")
    if man_ok:
        assert sh("man", "-w", "scopefs").stdout.strip().endswith("man1/scopefs.1.gz")
        env = dict(os.environ, MANPAGER="cat", MANWIDTH="80")
        assert "EXIT STATUS" in sh("man", "scopefs", env=env).stdout
        assert "ACCESS LEVELS" in sh("man", "5", "scopefs.toml", env=env).stdout
    else:
        print("dpkg excludes /usr/share/man on this machine: man pages not checked")
    # Units, verified where installed (now with the man pages they cite).
    unit_dir = Path("/usr/lib/systemd/system")
    units = ["scopefs@.service", "scopefs-gc@.service", "scopefs-gc@.timer"]
    for u in units:
        assert (unit_dir / u).is_file(), u
    sh("systemd-analyze", "verify", *([] if man_ok else ["--man=no"]), *(unit_dir / u for u in units))
    # Bash completion.
    comp = Path("/usr/share/bash-completion/completions/scopefs")
    assert "complete " in comp.read_text()
    # The example config checks once the directories it names exist.
    example = Path("/usr/share/doc/scopefs/examples/annotated.toml")
    if dpkg_excludes("/usr/share/doc"):
        example = ROOT / "config" / "examples" / "annotated.toml"  # dropped by dpkg here
    assert example.is_file()
    made = []
    for d in ("/srv/finance/exports", "/srv/finance/reports", "/srv/finance/shared"):
        if not os.path.exists(d):
            os.makedirs(d)
            made.append(d)
    try:
        r = sh("/usr/bin/scopefs", "check", example)
        assert ": ok: task 'recon'" in r.stdout
    finally:
        for d in made:
            os.rmdir(d)
        if made and not os.listdir("/srv/finance"):
            os.rmdir("/srv/finance")
    # init → check → mount through mount(8) and the installed helper → umount.
    tmp = Path(tempfile.mkdtemp(prefix="scopefs-deb-"))
    try:
        src = tmp / "inputs"
        src.mkdir()
        (src / "a.txt").write_text("from the package\n")
        cfg = tmp / "pilot.toml"
        mp = tmp / "mnt"
        sh("/usr/bin/scopefs", "init", "pilot", src, "-o", cfg, "--mountpoint", mp,
           "--state-dir", tmp / "state")
        assert 'admin_group = "scopefs-admin"' in cfg.read_text()
        sh("/usr/bin/scopefs", "check", cfg)
        sh("mount", "-t", "fuse.scopefs", cfg, mp)
        try:
            assert (mp / "inputs" / "a.txt").read_text() == "from the package\n"
        finally:
            sh("/usr/bin/scopefs", "unmount", cfg, check=False)
            if is_mounted(mp):
                sh("umount", "-l", mp, check=False)
        assert not is_mounted(mp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
