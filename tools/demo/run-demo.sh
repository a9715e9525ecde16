#!/usr/bin/env bash
# The scopefs demo: an agent does a quarter's accounts-payable report inside a
# scoped view, and we look at what reached the real files.
#
#   tools/demo/run-demo.sh SCOPEFS_BIN        (as root)
#
# Copies tools/demo/sample/finance into a fresh scratch directory, writes the
# task config there from config/examples/demo.toml, checks it, mounts the
# view, runs the scripted agent (tools/demo/agent.py) in it, then shows the
# real tree and verifies that the exports and the secrets are byte-for-byte
# unchanged. Always unmounts, and ends only its own daemon if it outlives the
# unmount. The scratch directory is removed at the end unless DEMO_KEEP=1.
# Exits 0 only if every step came out as the policy says.
set -euo pipefail

usage() { echo "usage: $0 SCOPEFS_BIN   (as root; DEMO_KEEP=1 keeps the scratch dir)" >&2; exit 2; }
[[ $# -eq 1 ]] || usage
[[ -x $1 && -f $1 ]] || { echo "run-demo.sh: $1 is not an executable file" >&2; exit 2; }
if [[ $(id -u) -ne 0 ]]; then
  echo "run-demo.sh: must run as root (scopefs mount needs root)" >&2
  exit 2
fi

SCOPEFS=$(realpath -e "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
EXAMPLE=$REPO/config/examples/demo.toml

SCRATCH=""
VIEW=""
CONFIG=""
DAEMON_PID=""

section() { printf '\n=== %s ===\n\n' "$*"; }
is_mounted() { findmnt --mountpoint "$1" >/dev/null 2>&1; }

# Our own daemon, and still the same process (pid not reused): its command
# line names our binary and our config.
our_daemon_alive() {
  [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null || return 1
  local cmd
  cmd=$(tr '\0' ' ' <"/proc/$DAEMON_PID/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *"$CONFIG"* ]]
}

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [[ -n $VIEW ]] && is_mounted "$VIEW"; then
    "$SCOPEFS" unmount "$CONFIG" >/dev/null 2>&1 ||
      "$SCOPEFS" unmount --lazy "$VIEW" >/dev/null 2>&1 ||
      umount -l "$VIEW"
  fi
  if our_daemon_alive; then
    echo "cleanup: daemon $DAEMON_PID still running after the unmount; ending it" >&2
    kill -TERM "$DAEMON_PID" 2>/dev/null
    for _ in $(seq 50); do our_daemon_alive || break; sleep 0.1; done
    our_daemon_alive && kill -KILL "$DAEMON_PID" 2>/dev/null
  fi
  if [[ -n $SCRATCH && -d $SCRATCH ]]; then
    if [[ -n $VIEW ]] && is_mounted "$VIEW"; then
      echo "cleanup: $VIEW is still mounted; leaving $SCRATCH in place" >&2
      rc=1
    elif [[ ${DEMO_KEEP:-0} == 1 ]]; then
      echo "DEMO_KEEP=1: kept $SCRATCH (config, state/daemon.log, finance/)"
    else
      rm -rf -- "$SCRATCH"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Hashes of every file under the given dirs (relative paths), sorted.
hash_tree() { (cd "$SCRATCH" && find "$@" -type f -print0 | sort -z | xargs -0 sha256sum); }

section "1. A scratch copy of the sample tree"
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/scopefs-demo.XXXXXX")
chmod 755 "$SCRATCH"
if [[ ! $SCRATCH =~ ^[A-Za-z0-9/._-]+$ ]]; then
  echo "run-demo.sh: scratch path $SCRATCH has characters this script does not quote in TOML" >&2
  exit 1
fi
cp -a "$HERE/sample/finance" "$SCRATCH/finance"
VIEW=$SCRATCH/view
CONFIG=$SCRATCH/demo.toml
echo "scratch: $SCRATCH"
echo
(cd "$SCRATCH" && find finance | sort | sed 's/^/  /')
hash_tree finance/exports finance/secrets >"$SCRATCH/untouchable.before"
hash_tree finance/reports >"$SCRATCH/reports.before"

section "2. The task config (from config/examples/demo.toml)"
{
  echo "# Written by tools/demo/run-demo.sh from config/examples/demo.toml:"
  echo "# mountpoint and state_dir in the scratch dir, sources = the scratch copy."
  sed -e "s|^mountpoint = .*|mountpoint = \"$VIEW\"|" \
      -e "s|^state_dir = .*|state_dir = \"$SCRATCH/state\"|" \
      -e 's|^source = "\.\./\.\./tools/demo/sample/|source = "|' \
      "$EXAMPLE"
} >"$CONFIG"
if [[ $(grep -c '^source = "finance/' "$CONFIG") -ne 3 ]] ||
   ! grep -qxF "mountpoint = \"$VIEW\"" "$CONFIG" ||
   ! grep -qxF "state_dir = \"$SCRATCH/state\"" "$CONFIG"; then
  echo "run-demo.sh: $EXAMPLE no longer has the layout this script rewrites" >&2
  exit 1
fi
grep -v '^#' "$CONFIG" | cat -s | sed -e '/./,$!d' -e 's/^/  /'

section "3. scopefs check"
echo "\$ scopefs check demo.toml --explain ..."
"$SCOPEFS" check "$CONFIG" --explain exports/vendors.csv reports/README.md \
  secrets/README.md secrets/bank-api.pem secrets/.env secrets/id_ed25519

section "4. scopefs mount"
echo "\$ scopefs mount demo.toml"
if ! mount_out=$("$SCOPEFS" mount "$CONFIG"); then
  echo "run-demo.sh: scopefs mount failed; the daemon's log:" >&2
  sed 's/^/  /' "$SCRATCH/state/daemon.log" >&2 2>/dev/null || true
  exit 1
fi
echo "$mount_out"
DAEMON_PID=$(sed -n 's/.*(pid \([0-9][0-9]*\)).*/\1/p' <<<"$mount_out")
if [[ -z $DAEMON_PID ]] || ! is_mounted "$VIEW"; then
  echo "run-demo.sh: the mount did not come up as reported" >&2
  exit 1
fi

section "5. The agent works in the view ($VIEW)"
agent_rc=0
(cd "$SCRATCH" && python3 "$HERE/agent.py" "$VIEW") || agent_rc=$?

section "6. The real tree while the changes are held"
(cd "$SCRATCH" && find finance -printf '%M %6s  %p\n' | sort -k3 | sed 's/^/  /')
echo
reports_ok=1
real=$SCRATCH/finance/reports
report_check() {  # description, test...
  local what=$1; shift
  if "$@"; then echo "  yes  $what"; else echo "  NO   $what"; reports_ok=0; fi
}
echo "reports/ (stage): nothing reached the real files yet?"
hash_tree finance/reports >"$SCRATCH/reports.held"
report_check "reports/ is byte-for-byte as before" cmp -s "$SCRATCH/reports.before" "$SCRATCH/reports.held"
report_check "2026-q1-summary.md is not there yet" test ! -e "$real/2026-q1-summary.md"
report_check "draft-2025-q4.md is still there" test -e "$real/draft-2025-q4.md"

section "7. Review: scopefs pending and scopefs diff"
echo "\$ scopefs pending demo.toml"
"$SCOPEFS" pending "$CONFIG" | sed 's/^/  /'
echo
echo "\$ scopefs diff demo.toml reports/README.md"
"$SCOPEFS" diff "$CONFIG" reports/README.md | sed 's/^/  /'

section "8. Decide: keep the draft, approve the rest"
echo "\$ scopefs reject demo.toml --path reports/draft-2025-q4.md"
"$SCOPEFS" reject "$CONFIG" --path reports/draft-2025-q4.md | sed 's/^/  /' || reports_ok=0
echo "\$ scopefs approve demo.toml --all"
"$SCOPEFS" approve "$CONFIG" --all | sed 's/^/  /' || reports_ok=0
echo
echo "reports/ afterwards: did exactly the approved changes reach the real files?"
report_check "2026-q1-summary.md exists" test -s "$real/2026-q1-summary.md"
report_check "README.md carries the agent's edit" grep -q '2026-q1-summary.md' "$real/README.md"
report_check "README.md kept its mode ($(stat -c %A "$HERE/sample/finance/reports/README.md"))" \
  test "$(stat -c %a "$real/README.md")" = "$(stat -c %a "$HERE/sample/finance/reports/README.md")"
report_check "draft-2025-q4.md is still there (its deletion was rejected)" test -e "$real/draft-2025-q4.md"
report_check "the agent sees the draft again" test -e "$VIEW/reports/draft-2025-q4.md"
report_check "nothing is left pending" test -z "$("$SCOPEFS" pending "$CONFIG" --json | grep '"id"')"
# shellcheck disable=SC2016  # $1 is expanded by the inner bash
report_check "no temporary file is left" \
  bash -c '! compgen -G "$1/.README.md.*" >/dev/null && ! compgen -G "$1/.scopefs-*" >/dev/null' _ "$real"
echo
echo "The report the agent wrote (finance/reports/2026-q1-summary.md):"
sed 's/^/  | /' "$real/2026-q1-summary.md" 2>/dev/null || echo "  (missing)"
echo
echo "exports/ (read) and secrets/ (hidden by rules): sha256 before vs. after:"
hash_tree finance/exports finance/secrets >"$SCRATCH/untouchable.after"
untouched=1
if diff -u "$SCRATCH/untouchable.before" "$SCRATCH/untouchable.after" >"$SCRATCH/untouchable.diff"; then
  while read -r sum path; do
    printf '  unchanged  %s  %s\n' "${sum:0:16}" "$path"
  done <"$SCRATCH/untouchable.after"
else
  untouched=0
  echo "  CHANGED:"
  sed 's/^/    /' "$SCRATCH/untouchable.diff"
fi

section "9. What the daemon logged"
echo "Refusals, from state/daemon.log:"
grep -o 'denied op=.*' "$SCRATCH/state/daemon.log" | sed 's/^/  /' || echo "  (no denials logged)"
log_clean=1
if grep -E ' (error|critical) ' "$SCRATCH/state/daemon.log" >"$SCRATCH/daemon-errors.txt"; then
  log_clean=0
  echo "The daemon logged errors:"
  sed 's/^/  /' "$SCRATCH/daemon-errors.txt"
else
  echo "No error in the daemon's log."
fi

section "10. Unmount"
echo "\$ scopefs unmount demo.toml"
"$SCOPEFS" unmount "$CONFIG"
if is_mounted "$VIEW"; then echo "run-demo.sh: still mounted after unmount" >&2; exit 1; fi
# unmount returns once the daemon released the task's lock, i.e. as it exits.
for _ in $(seq 50); do our_daemon_alive || break; sleep 0.1; done
if our_daemon_alive; then echo "run-demo.sh: daemon $DAEMON_PID outlived the unmount" >&2; exit 1; fi
echo "daemon $DAEMON_PID has exited; nothing is mounted at $VIEW"

section "11. The journal of what the agent did and what was decided"
echo "Every applied and refused operation, with caller and content hashes"
echo "(before -> after; '*' marks a before-image kept in the blob store):"
echo "\$ scopefs log demo.toml"
journal_ok=1
if ! "$SCOPEFS" log "$CONFIG" | sed 's/^/  /'; then journal_ok=0; fi
denied=$("$SCOPEFS" log "$CONFIG" --outcome denied --json | wc -l)
applied=$("$SCOPEFS" log "$CONFIG" --outcome applied --json | wc -l)
echo "$applied applied and $denied denied record(s)."
held=$("$SCOPEFS" log "$CONFIG" --outcome approved --json | wc -l)
rejected=$("$SCOPEFS" log "$CONFIG" --outcome rejected --json | wc -l)
echo "$held approved and $rejected rejected held change(s)."
[[ $denied -ge 3 && $applied -ge 4 && $held -ge 2 && $rejected -ge 1 ]] || journal_ok=0

section "Summary"
passed=0
[[ $agent_rc -eq 0 && $reports_ok -eq 1 && $untouched -eq 1 && $log_clean -eq 1 && $journal_ok -eq 1 ]] && passed=1
if [[ $passed -eq 1 ]]; then
  cat <<'EOF'
What the view did:
  - reports/  (stage): the new summary, the README edit and the draft's deletion
    were HELD: the agent saw them, the real files did not change until an admin
    looked (pending, diff) and decided: the deletion REJECTED (the draft is back
    in the view), the rest APPROVED (applied to the real files).
  - exports/  (read):  every change was REFUSED (EROFS); the files are unchanged.
  - secrets/  (write bind, *.pem/.env/id_* hidden by rules): the key material was
    never visible (ENOENT, absent from listings); writing over a hidden name was
    REFUSED (EACCES); secrets/README.md, matched by no rule, stayed visible.
EOF
fi
cat <<'EOF'
Every change and decision above is in the task's journal (RocksDB in the state
directory), with before-images of what approval overwrote kept in its blob store.
Not implemented yet: rollback of applied changes.
EOF
echo
if [[ $passed -eq 1 ]]; then
  echo "DEMO PASSED: every expected outcome happened."
  exit 0
fi
echo "DEMO FAILED: agent exit $agent_rc (see the steps marked UNEXPECTED), reports as expected:" \
  "$reports_ok, exports/secrets untouched: $untouched, daemon log clean: $log_clean"
exit 1
