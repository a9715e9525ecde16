"""The shipped demo (tools/demo/run-demo.sh) runs end to end and passes.

The demo mounts its own view in a scratch directory and cleans up after
itself; this test also checks that it left no mount and no scratch directory
behind. On a timeout it sends SIGTERM to the demo's process group (the demo's
EXIT trap then unmounts and ends its daemon), and SIGKILL only if that fails.
"""
import os
import re
import signal
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCOPEFS = os.environ.get("SCOPEFS_BIN") or str(REPO / "build" / "scopefs")
DEMO = REPO / "tools" / "demo" / "run-demo.sh"
TIMEOUT = 120


def mounted_paths():
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]


def run_demo():
    env = dict(os.environ)
    env.pop("DEMO_KEEP", None)
    proc = subprocess.Popen(["bash", str(DEMO), SCOPEFS], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        raise AssertionError(f"the demo did not finish within {TIMEOUT}s:\n{out}")
    return proc.returncode, out


def test_demo_runs_and_every_outcome_is_as_expected():
    rc, out = run_demo()
    m = re.search(r"^scratch: (\S+)$", out, re.M)
    scratch = m.group(1) if m else None
    if scratch:
        leftover = [p for p in mounted_paths() if p.startswith(scratch + "/")]
        assert not leftover, f"the demo left a mount behind: {leftover}\n{out}"
        assert not os.path.exists(scratch), f"the demo left {scratch} behind\n{out}"
    assert rc == 0, out
    assert scratch, out

    expected = [
        "=== 3. scopefs check ===",
        "secrets/bank-api.pem: hide",
        "exports/vendors.csv: read",
        re.compile(r"^mounted task 'demo' at \S+/view \(pid \d+\)$", re.M),
        "invoiced EUR 31,818.85   paid EUR 25,818.25   open EUR 6,000.60",
        "secrets/: README.md   (no *.pem, no .env, no id_*)",
        "agent: all 13 steps came out as the policy says",
        "yes  reports/ is byte-for-byte as before",
        "yes  2026-q1-summary.md exists",
        "yes  draft-2025-q4.md is still there (its deletion was rejected)",
        "yes  nothing is left pending",
        re.compile(r"^  rejected \d+$", re.M),
        re.compile(r"^  approved \d+$", re.M),
        "unchanged",
        "No error in the daemon's log.",
        "DEMO PASSED: every expected outcome happened.",
    ]
    for e in expected:
        if isinstance(e, re.Pattern):
            assert e.search(out), f"missing /{e.pattern}/ in:\n{out}"
        else:
            assert e in out, f"missing {e!r} in:\n{out}"

    # Each step's outcome, as the agent printed it.
    outcomes = re.findall(r"^\[\s*\d+\] (.+)\n\s+-> (OK|DENIED \(\w+\))\s+as expected$",
                          out, re.M)
    got = dict(outcomes)
    assert got.get("read secrets/bank-api.pem") == "DENIED (ENOENT)", out
    assert got.get("append a row to exports/vendors.csv") == "DENIED (EROFS)", out
    assert got.get("create exports/2026-q1-adjustments.csv") == "DENIED (EROFS)", out
    assert got.get("write reports/2026-q1-summary.md") == "OK", out
    assert got.get("delete the old draft reports/draft-2025-q4.md") == "OK", out
    assert len(outcomes) == 13 and "UNEXPECTED" not in out, out
    # The exports and the secrets: all seven files listed as unchanged.
    assert len(re.findall(r"^  unchanged  [0-9a-f]{16}  finance/(exports|secrets)/", out,
                          re.M)) == 7, out
