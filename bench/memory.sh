#!/usr/bin/env bash
# Daemon memory benchmark (issue 8's memory goal): the scopefs daemon's RSS after
# the kernel has looked up N files through a view, and after the kernel forgets
# them again. See docs/benchmarks.md, "Memory".
#
#   bench/memory.sh [--files N] [--access read|write|stage] [--keep] [--out FILE] [--quick]
#
#   --files N      files to walk (default 1000000, in directories of 1,000)
#   --access A     the bind's access (default read)
#   --keep         keep the scratch dir (the tree takes a while to make)
#   --out FILE     also write the markdown table to FILE
#   --quick        20,000 files: a smoke test
#
# Steps: the tree is made natively (untimed) in a scratch dir under /var/tmp; a
# view is mounted over it (`scopefs mount --foreground`, default options); RSS is
# read from /proc/PID/status (VmRSS, and VmHWM for the peak) after the mount,
# after `find -printf` has listed and stat'ed every file through the view (the
# kernel then holds one lookup per file), and after `echo 2 >
# /proc/sys/vm/drop_caches` (the kernel drops dentries and inodes and sends
# FORGET for every node; the daemon must give their memory back) followed by a
# settling wait. Must run as root. Cleanup (trap EXIT): unmount, end the daemon
# we started by its PID, remove the scratch dir unless --keep.
set -euo pipefail
export LC_ALL=C

FILES=1000000
ACCESS="read"
KEEP=0
OUT=""
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "bench/memory: error: $*" >&2; exit 1; }
say() { echo "[memory $(date +%H:%M:%S)] $*" >&2; }
while (($#)); do
  case "$1" in
    --files) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--files needs a positive integer"; FILES=$2; shift 2 ;;
    --access) [[ ${2:-} =~ ^(read|write|stage)$ ]] || die "--access is read, write or stage"; ACCESS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --out) [[ -n ${2:-} ]] || die "--out needs a file"; OUT=$(readlink -m "$2"); shift 2 ;;
    --quick) FILES=20000; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ $(id -u) -eq 0 ]] || die "must run as root (mount, drop_caches)"
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SCOPEFS_BIN:-$REPO/build/scopefs}
[[ -x $BIN ]] || die "no scopefs binary at $BIN (build it, or set SCOPEFS_BIN)"
PY=$(command -v python3) || die "python3 not found"

SCRATCH=$(mktemp -d /var/tmp/scopefs-memory.XXXXXX)
chmod 755 "$SCRATCH"
PID=""
MP=$SCRATCH/mnt
cleanup() {
  local rc=$?
  set +e
  if awk -v m="$MP" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; then
    fusermount3 -u "$MP" 2>/dev/null || fusermount3 -u -z "$MP" 2>/dev/null
  fi
  if [[ -n $PID ]]; then
    for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$PID" 2>/dev/null && kill -TERM "$PID" 2>/dev/null
    wait "$PID" 2>/dev/null
  fi
  if ((KEEP)); then say "kept $SCRATCH"; else rm -rf "$SCRATCH"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "making $FILES files natively in $SCRATCH/src"
"$PY" - "$SCRATCH/src" "$FILES" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
os.makedirs(root)
per = 1000
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // per))
    if i % per == 0:
        os.mkdir(d)
    open(os.path.join(d, "f%04d" % (i % per)), "wb").close()
EOF
mkdir -p "$MP"
cat >"$SCRATCH/task.toml" <<EOF
[task]
name = "memory"
mountpoint = "$MP"
state_dir = "$SCRATCH/state"

[[bind]]
path = ""
source = "$SCRATCH/src"
access = "$ACCESS"
EOF
"$BIN" mount --foreground "$SCRATCH/task.toml" >"$SCRATCH/daemon.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
  grep -q "(pid $PID)" "$SCRATCH/daemon.log" 2>/dev/null && break
  kill -0 "$PID" 2>/dev/null || { cat "$SCRATCH/daemon.log" >&2; die "the daemon exited"; }
  sleep 0.1
done
grep -q "(pid $PID)" "$SCRATCH/daemon.log" || die "the view did not come up"

kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
mib() { awk -v x="$1" 'BEGIN { printf "%.1f", x / 1024 }'; }
ROWS=()
row() { ROWS+=("| $1 | $(mib "$(kib "$PID" VmRSS)") | $(mib "$(kib "$PID" VmHWM)") | $2 |"); }

sync
echo 3 >/proc/sys/vm/drop_caches
row "mounted" "-"
say "walking the view"
t0=$(date +%s.%N)
seen=$(find "$MP" -type f -printf '%s\n' | wc -l)
t1=$(date +%s.%N)
[[ $seen -eq $FILES ]] || die "the walk saw $seen files, not $FILES"
row "after walking $FILES files (find -printf)" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f s", b - a }')"
say "dropping the kernel's dentries and inodes (FORGET)"
echo 2 >/proc/sys/vm/drop_caches
sleep 5
row "after drop_caches (the kernel forgot them) + 5 s" "-"
echo 2 >/proc/sys/vm/drop_caches
sleep 10
row "after a second drop_caches + 10 s" "-"

TABLE=$(
  echo "scopefs memory: $FILES files, access \`$ACCESS\`, $(uname -r), $("$BIN" --version 2>&1 | head -n1)"
  echo
  echo "| step | VmRSS MiB | VmHWM (peak) MiB | time |"
  echo "|---|---:|---:|---:|"
  printf '%s\n' "${ROWS[@]}"
)
echo "$TABLE"
[[ -z $OUT ]] || echo "$TABLE" >"$OUT"
