#!/usr/bin/env bash
# scopefs benchmark: native ext4 vs libfuse passthrough_ll vs scopefs (and any
# installed FUSE peers), all measured in the same run, reported as ratios.
#
#   bench/run.sh [--runs N] [--quick] [--out FILE] [--install-peers]
#                [--targets LIST] [--log-dir DIR] [--scratch-parent DIR]
#
#   --runs N          runs per phase and target; the table shows the median (default 3)
#   --quick           small sizes and 1 run (unless --runs is given): a smoke test
#   --out FILE        also write the result as markdown to FILE
#   --install-peers   apt-get install bindfs fuse-overlayfs mergerfs unionfs-fuse first
#   --targets LIST    comma-separated subset, e.g. native,scopefs (native is always run)
#   --log-dir DIR     copy daemon and error logs there before the scratch dir is removed
#   --scratch-parent  where the scratch dir is made (default /var/tmp; must be the disk
#                     under test: every target's backing directory lives there)
#
# Environment: SCOPEFS_BIN (default build/scopefs), PHASE_TIMEOUT seconds (default 1800).
#
# Targets: native (a plain directory), passthrough_ll (-o source=DIR,cache=always),
# scopefs (one bind at the view root "", access "write", default options, its journal
# and blob store in a state dir beside the data), scopefs-nojournal (the same with
# SCOPEFS_BENCH_JOURNAL=off, when the binary knows that switch), and whichever of
# bindfs, fuse-overlayfs, mergerfs, unionfs-fuse are installed.
#
# Every target's data lives in one scratch dir on one filesystem. Each (run, target)
# pair gets a fresh mount (and scopefs a fresh state dir); the target order rotates from run to run so slow drift on a
# shared host does not always hit the same target. Each phase is timed by wall clock
# around one command (after an untimed `sync`); the sequential read is preceded by
# `echo 3 > /proc/sys/vm/drop_caches` when that is writable. A phase that fails skips
# the rest of its group for that run and the target is remounted.
#
# Cleanup (trap EXIT): every mount this script made is unmounted (fusermount3 -u, then
# -u -z), every daemon it started is ended by its PID, the scratch dir is removed.
# It never kills processes by name. Must run as root.
set -euo pipefail
export LC_ALL=C

# ---------------------------------------------------------------------------
# Phase bodies. The script re-invokes itself as `run.sh __phase NAME DIR` under
# `timeout`, so each phase is one process tree that can be timed and killed.
# Sizes come from the environment exported by the orchestrator below.
# ---------------------------------------------------------------------------
phase_main() {
  local name=$1 dir=$2
  case "$name" in
    seqwrite)
      dd if=/dev/zero of="$dir/seq.bin" bs=1M count="$SEQ_MB" conv=fsync status=none ;;
    seqread)
      dd if="$dir/seq.bin" of=/dev/null bs=1M status=none ;;
    create)
      "$PY" - "$dir/small" "$NDIRS" "$FILES_PER_DIR" "$FILE_BYTES" <<'EOF'
import os, sys
root, ndirs, nfiles, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = os.urandom(size)
os.mkdir(root)
for d in range(ndirs):
    dp = os.path.join(root, "d%03d" % d)
    os.mkdir(dp)
    for f in range(nfiles):
        with open(os.path.join(dp, "f%05d" % f), "wb") as fh:
            fh.write(data)
EOF
      ;;
    statwalk)
      "$PY" - "$dir/small" "$((NDIRS * FILES_PER_DIR))" <<'EOF'
import os, sys
root, want = sys.argv[1], int(sys.argv[2])
n = 0
for dp, dns, fns in os.walk(root):
    for x in dns + fns:
        st = os.lstat(os.path.join(dp, x))
    n += len(fns)
if n != want:
    sys.exit("stat walk saw %d files, expected %d" % (n, want))
EOF
      ;;
    readsmall)
      find "$dir/small" -type f -print0 | xargs -0 cat >/dev/null ;;
    delete)
      rm -rf "$dir/small"
      [[ ! -e "$dir/small" ]] || { echo "small/ still exists after rm -rf" >&2; exit 1; } ;;
    cptree)
      cp -a "$CP_SRC" "$dir/tree" ;;
    rmtree)
      rm -rf "$dir/tree"
      [[ ! -e "$dir/tree" ]] || { echo "tree/ still exists after rm -rf" >&2; exit 1; } ;;
    gitsetup)   # untimed
      cp -a "$GIT_SRC" "$dir/repo" ;;
    git)
      cd "$dir/repo"
      git -c init.defaultBranch=main init -q
      git add -A
      git commit -q -m bench ;;
    # untimed checks and cleanups
    check_seq)
      local sz; sz=$(stat -c %s "$dir/seq.bin")
      [[ $sz -eq $((SEQ_MB * 1048576)) ]] || { echo "seq.bin has $sz bytes" >&2; exit 1; } ;;
    check_tree)
      local a b
      a=$(cd "$CP_SRC" && find . | wc -l); b=$(cd "$dir/tree" && find . | wc -l)
      [[ $a -eq $b ]] || { echo "copy has $b entries, source $a" >&2; exit 1; } ;;
    check_git)
      local n; n=$(cd "$dir/repo" && git ls-files | wc -l)
      local m; m=$(cd "$GIT_SRC" && find . -type f -o -type l | wc -l)
      [[ $n -eq $m ]] || { echo "git tracks $n files, source has $m" >&2; exit 1; } ;;
    rm_seq) rm -f "$dir/seq.bin" ;;
    rm_repo) rm -rf "$dir/repo" ;;
    *) echo "unknown phase $name" >&2; exit 2 ;;
  esac
}

if [[ ${1:-} == __phase ]]; then
  shift
  phase_main "$@"
  exit 0
fi

# ---------------------------------------------------------------------------
# Orchestrator
# ---------------------------------------------------------------------------
SELF=$(readlink -f "$0")
REPO=$(cd "$(dirname "$SELF")/.." && pwd)
RUNS=3
RUNS_SET=0
QUICK=0
OUT=""
INSTALL_PEERS=0
TARGETS_ARG=""
LOG_DIR=""
SCRATCH_PARENT=/var/tmp
SCOPEFS_BIN=${SCOPEFS_BIN:-$REPO/build/scopefs}
PHASE_TIMEOUT=${PHASE_TIMEOUT:-1800}
CMDLINE="bench/run.sh $*"

usage() { sed -n '2,17p' "$SELF" | sed 's/^# \{0,1\}//'; }
die() { echo "bench: error: $*" >&2; exit 1; }
say() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

while (($#)); do
  case "$1" in
    --runs) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive integer"; RUNS=$2; RUNS_SET=1; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --out) [[ -n ${2:-} ]] || die "--out needs a file"; OUT=$(readlink -m "$2"); shift 2 ;;
    --install-peers) INSTALL_PEERS=1; shift ;;
    --targets) TARGETS_ARG=${2:-}; shift 2 ;;
    --log-dir) [[ -n ${2:-} ]] || die "--log-dir needs a directory"; LOG_DIR=$(readlink -m "$2"); shift 2 ;;
    --scratch-parent) SCRATCH_PARENT=${2:-}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
if ((QUICK && !RUNS_SET)); then RUNS=1; fi

# --- preconditions ---------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "must run as root (mounts, drop_caches, allow_other)"
[[ -c /dev/fuse ]] || die "/dev/fuse is missing or not a character device: load the fuse module (modprobe fuse) or give the container /dev/fuse"
for c in fusermount3 cc pkg-config dd git timeout find xargs cp; do
  command -v "$c" >/dev/null || die "'$c' not found (apt-get install fuse3 build-essential pkg-config git coreutils findutils)"
done
pkg-config --exists fuse3 || die "pkg-config cannot find fuse3 (apt-get install libfuse3-dev)"
PY=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || die "python3 not found"
[[ -x $SCOPEFS_BIN ]] || die "scopefs binary not found at $SCOPEFS_BIN (cmake --build build, or set SCOPEFS_BIN)"
[[ -d $SCRATCH_PARENT ]] || die "scratch parent $SCRATCH_PARENT is not a directory"
[[ $SCRATCH_PARENT != *[[:space:]]* ]] || die "scratch parent must not contain whitespace"

if ((QUICK)); then
  SEQ_MB=64; NDIRS=4; FILES_PER_DIR=250; FILE_BYTES=4096
  CP_SRC=/usr/include/linux
  GIT_SRC=$(find /usr/include/c++ -mindepth 2 -maxdepth 2 -type d -name bits 2>/dev/null | sort | head -n1)
  [[ -n $GIT_SRC ]] || GIT_SRC=/usr/include/linux
else
  SEQ_MB=512; NDIRS=20; FILES_PER_DIR=1000; FILE_BYTES=4096
  CP_SRC=/usr/include
  GIT_SRC=/usr/include/c++
fi
[[ -d $CP_SRC ]] || die "$CP_SRC missing (apt-get install libc6-dev)"
[[ -d $GIT_SRC ]] || die "$GIT_SRC missing (apt-get install libstdc++-12-dev)"
NFILES=$((NDIRS * FILES_PER_DIR))
export SEQ_MB NDIRS FILES_PER_DIR FILE_BYTES CP_SRC GIT_SRC PY

# git must not read the invoking user's or the system's configuration.
export GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@localhost \
       GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@localhost

if ((INSTALL_PEERS)); then
  say "installing peers: bindfs fuse-overlayfs mergerfs unionfs-fuse"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends bindfs fuse-overlayfs mergerfs unionfs-fuse \
    || { apt-get update && apt-get install -y --no-install-recommends bindfs fuse-overlayfs mergerfs unionfs-fuse; } \
    || die "apt-get install of the peers failed"
fi

# --- scratch dir and cleanup -------------------------------------------------
SCRATCH=$(mktemp -d "$SCRATCH_PARENT/scopefs-bench.XXXXXX")
chmod 755 "$SCRATCH"
mkdir -p "$SCRATCH/bin" "$SCRATCH/logs" "$SCRATCH/home"
export HOME=$SCRATCH/home GIT_CONFIG_GLOBAL=$SCRATCH/home/.gitconfig
RESULTS=$SCRATCH/results.tsv
# Benchmark one build throughout: others may rebuild build/scopefs while this runs.
cp "$SCOPEFS_BIN" "$SCRATCH/bin/scopefs"
"$SCRATCH/bin/scopefs" --version >/dev/null 2>&1 || die "$SCOPEFS_BIN does not run (a rebuild in progress?)"
META_SCOPEFS="$("$SCRATCH/bin/scopefs" --version 2>&1 | head -n1), binary $SCOPEFS_BIN (sha256 $(sha256sum "$SCOPEFS_BIN" | cut -c1-12), built $(date -u -r "$SCOPEFS_BIN" '+%Y-%m-%d %H:%M UTC')), repo HEAD $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo '+dirty')"
META_LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
NOTES=$SCRATCH/notes.txt
: >"$RESULTS"; : >"$NOTES"

declare -A MNT=() PID=() BACKING=() WORK=() LOGF=()
MOUNTS_MADE=()    # every mountpoint we ever mounted on
PIDS_STARTED=()   # every daemon PID we ever started
PHASE_PID=""      # the phase process running now, if any

is_mounted() { awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }

unmount_mp() {
  local mp=$1
  is_mounted "$mp" || return 0
  for _ in 1 2 3; do
    fusermount3 -u "$mp" 2>/dev/null && return 0
    is_mounted "$mp" || return 0
    sleep 0.5
  done
  say "fusermount3 -u $mp failed 3 times; detaching lazily"
  fusermount3 -u -z "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
}

end_pid() {  # end a daemon we started: it should exit after unmount; else TERM, then KILL
  local pid=$1
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? mp pid
  trap - EXIT INT TERM
  set +e
  if [[ -n $PHASE_PID ]] && kill -0 "$PHASE_PID" 2>/dev/null; then  # a phase still running
    kill -TERM "$PHASE_PID" 2>/dev/null; wait "$PHASE_PID" 2>/dev/null
  fi
  for mp in "${MOUNTS_MADE[@]}"; do unmount_mp "$mp"; done
  for pid in "${PIDS_STARTED[@]}"; do end_pid "$pid"; done
  if [[ -n $LOG_DIR && -d $SCRATCH/logs ]]; then
    mkdir -p "$LOG_DIR" && cp -a "$SCRATCH/logs/." "$LOG_DIR/" && say "logs copied to $LOG_DIR"
  fi
  local left=0
  for mp in "${MOUNTS_MADE[@]}"; do is_mounted "$mp" && left=1; done
  if ((left)); then
    echo "bench: WARNING: a mount under $SCRATCH is still present; not removing the scratch dir" >&2
  else
    rm -rf "$SCRATCH"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- passthrough_ll, built at run time into the scratch dir -------------------
build_passthrough_ll() {
  local ex=/usr/share/doc/libfuse3-dev/examples f
  for f in passthrough_ll.c passthrough_helpers.h; do
    if [[ -f $ex/$f ]]; then cp "$ex/$f" "$SCRATCH/bin/$f"
    elif [[ -f $ex/$f.gz ]]; then gzip -dc "$ex/$f.gz" >"$SCRATCH/bin/$f"
    else return 1; fi
  done
  # shellcheck disable=SC2046
  cc -O2 -Wall -o "$SCRATCH/bin/passthrough_ll" "$SCRATCH/bin/passthrough_ll.c" \
     $(pkg-config --cflags --libs fuse3) >"$SCRATCH/logs/passthrough_ll.build.log" 2>&1
}

# --- targets -------------------------------------------------------------------
ALL_TARGETS=(native passthrough_ll scopefs scopefs-nojournal bindfs fuse-overlayfs mergerfs unionfs-fuse)
UNIONFS_BIN=$(command -v unionfs-fuse || command -v unionfs || true)
target_available() {
  case "$1" in
    native|scopefs) return 0 ;;
    # the same daemon with its change journal switched off (a benchmark-only switch)
    scopefs-nojournal) grep -aq SCOPEFS_BENCH_JOURNAL "$SCRATCH/bin/scopefs" ;;
    passthrough_ll) [[ -x $SCRATCH/bin/passthrough_ll ]] ;;
    bindfs|fuse-overlayfs|mergerfs) command -v "$1" >/dev/null ;;
    unionfs-fuse) [[ -n $UNIONFS_BIN ]] ;;
    *) return 1 ;;
  esac
}

if build_passthrough_ll; then :; else
  say "could not build passthrough_ll (see below); it is left out"
  cat "$SCRATCH/logs/passthrough_ll.build.log" >&2 2>/dev/null || true
  echo "passthrough_ll: could not be built from /usr/share/doc/libfuse3-dev/examples" >>"$NOTES"
fi

TARGETS=()
if [[ -n $TARGETS_ARG ]]; then
  IFS=, read -r -a req <<<"$TARGETS_ARG"
  TARGETS=(native)
  for t in "${req[@]}"; do
    [[ $t == native ]] && continue
    [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || die "unknown target $t (known: ${ALL_TARGETS[*]})"
    if target_available "$t"; then TARGETS+=("$t"); else die "target $t is not available here"; fi
  done
else
  for t in "${ALL_TARGETS[@]}"; do
    if target_available "$t"; then TARGETS+=("$t")
    else echo "$t: not installed, skipped (use --install-peers)" >>"$NOTES"; fi
  done
fi

DROP_OK=0
if sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then DROP_OK=1
else echo "drop_caches is not writable here: the sequential read is NOT cold" >>"$NOTES"; fi

drop_caches() { ((DROP_OK)) && sync && echo 3 >/proc/sys/vm/drop_caches; return 0; }

# Mount (or, for native, create) target $1 for run $2. Sets WORK/BACKING/MNT/PID.
start_target() {
  local t=$1 run=$2 base=$SCRATCH/t/$1 pid
  mkdir -p "$base"
  LOGF[$t]=$SCRATCH/logs/$t.run$run.log
  case "$t" in
    native)
      mkdir -p "$base/data"; WORK[$t]=$base/data; BACKING[$t]=$base/data; return 0 ;;
    fuse-overlayfs)
      mkdir -p "$base/lower" "$base/upper" "$base/ovlwork" "$base/mnt"; BACKING[$t]=$base/upper ;;
    *)
      mkdir -p "$base/src" "$base/mnt"; BACKING[$t]=$base/src ;;
  esac
  local mp=$base/mnt src=${BACKING[$t]} log=${LOGF[$t]}
  is_mounted "$mp" && die "$mp is already mounted"
  case "$t" in
    passthrough_ll)
      "$SCRATCH/bin/passthrough_ll" -f -o "source=$src,cache=always" "$mp" >>"$log" 2>&1 & pid=$! ;;
    scopefs|scopefs-nojournal)
      cat >"$base/task.toml" <<EOF
[task]
name = "bench"
mountpoint = "$mp"
state_dir = "$base/state"

[[bind]]
path = ""
source = "$src"
access = "write"
EOF
      if [[ $t == scopefs-nojournal ]]; then
        SCOPEFS_BENCH_JOURNAL=off "$SCRATCH/bin/scopefs" mount --foreground "$base/task.toml" >>"$log" 2>&1 & pid=$!
      else
        "$SCRATCH/bin/scopefs" mount --foreground "$base/task.toml" >>"$log" 2>&1 & pid=$!
      fi ;;
    bindfs)
      bindfs -f "$src" "$mp" >>"$log" 2>&1 & pid=$! ;;
    fuse-overlayfs)
      fuse-overlayfs -f -o "lowerdir=$base/lower,upperdir=$src,workdir=$base/ovlwork" "$mp" >>"$log" 2>&1 & pid=$! ;;
    mergerfs)
      mergerfs -f -o "cache.files=partial,fsname=mergerfs" "$src" "$mp" >>"$log" 2>&1 & pid=$! ;;
    unionfs-fuse)
      "$UNIONFS_BIN" -f "$src=RW" "$mp" >>"$log" 2>&1 & pid=$! ;;
  esac
  PID[$t]=$pid; MNT[$t]=$mp; WORK[$t]=$mp
  PIDS_STARTED+=("$pid"); MOUNTS_MADE+=("$mp")
  for _ in $(seq 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      local rc=0; wait "$pid" 2>/dev/null || rc=$?
      say "$t: daemon exited before the mount answered (status $rc); log:"; tail -n 20 "$log" >&2
      PID[$t]=""; return 1
    fi
    if is_mounted "$mp" && stat "$mp" >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  say "$t: mount did not answer within 15 s; log:"; tail -n 20 "$log" >&2
  stop_target "$t"; return 1
}

stop_target() {
  local t=$1
  [[ $t == native ]] && return 0
  [[ -n ${MNT[$t]:-} ]] && unmount_mp "${MNT[$t]}"
  if [[ -n ${PID[$t]:-} ]]; then
    local pid=${PID[$t]} rc=0
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$t: daemon $pid still running 10 s after unmount; sending TERM"
      echo "$t: daemon did not exit after unmount (run log: ${LOGF[$t]##*/})" >>"$NOTES"
      end_pid "$pid"
    else
      wait "$pid" 2>/dev/null || rc=$?
      if ((rc != 0)); then
        say "$t: daemon exited with status $rc"
        echo "$t: daemon exited with status $rc after unmount (run $CUR_RUN)" >>"$NOTES"
      fi
    fi
  fi
  PID[$t]=""; MNT[$t]=""
}

daemon_alive() { [[ $1 == native ]] || { [[ -n ${PID[$1]:-} ]] && kill -0 "${PID[$1]}" 2>/dev/null; }; }

# run_step RUN TARGET PHASE TIMED(0/1): returns 0 on success.
run_step() {
  local run=$1 t=$2 ph=$3 timed=$4 rc=0 t0 t1 err
  err=$SCRATCH/logs/$t.run$run.$ph.err
  sync
  [[ $ph == seqread ]] && drop_caches
  t0=$EPOCHREALTIME
  # In the background + wait, so a signal to this script runs the cleanup at once.
  timeout -k 10 "$PHASE_TIMEOUT" "$SELF" __phase "$ph" "${WORK[$t]}" >"$err" 2>&1 &
  PHASE_PID=$!
  wait "$PHASE_PID" || rc=$?
  PHASE_PID=""
  t1=$EPOCHREALTIME
  local secs; secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  if ((rc == 0)) && ! daemon_alive "$t"; then rc=255; echo "daemon died during $ph" >>"$err"; fi
  if ((rc == 0)); then
    ((timed)) && printf '%s\t%s\t%s\tok\t%s\n' "$run" "$t" "$ph" "$secs" >>"$RESULTS"
    ((timed)) && say "run $run  $(printf '%-15s %-10s %8.3f s' "$t" "$ph" "$secs")"
    rm -f "$err"
    return 0
  fi
  local why="exit $rc"; ((rc == 124 || rc == 137)) && why="timed out after ${PHASE_TIMEOUT}s"
  daemon_alive "$t" || why="$why; daemon not running"
  say "run $run  $t $ph FAILED ($why) after $secs s; output:"
  tail -n 15 "$err" >&2 || true
  printf '%s\t%s\t%s\tfail\t%s\n' "$run" "$t" "$ph" "$secs" >>"$RESULTS"
  {
    echo "$t, run $run, phase $ph: FAILED ($why) after $secs s:"
    tail -n 5 "$err" | sed 's/^/    /'
    if [[ $t != native ]]; then
      echo "    daemon log tail:"; tail -n 10 "${LOGF[$t]}" | sed 's/^/    /'
    fi
  } >>"$NOTES"
  return 1
}

GROUPS_SPEC=(
  "seqwrite:1 check_seq:0 seqread:1 rm_seq:0"
  "create:1 statwalk:1 readsmall:1 delete:1"
  "cptree:1 check_tree:0 rmtree:1"
  "gitsetup:0 git:1 check_git:0 rm_repo:0"
)
PHASES=(seqwrite seqread create statwalk readsmall delete cptree rmtree git)

clean_backing() {  # with the target unmounted: empty its backing dir; fresh scopefs state
  rm -rf "$SCRATCH/t/$1/state"
  if [[ -n ${BACKING[$1]:-} ]]; then find "${BACKING[$1]}" -mindepth 1 -delete 2>/dev/null || true; fi
}

run_target() {
  local t=$1 run=$2 g step ph timed failed
  if ! start_target "$t" "$run"; then
    echo "$t, run $run: mount failed (log ${LOGF[$t]##*/}):" >>"$NOTES"
    tail -n 10 "${LOGF[$t]}" 2>/dev/null | sed 's/^/    /' >>"$NOTES"
    for ph in "${PHASES[@]}"; do printf '%s\t%s\t%s\tfail\t0\n' "$run" "$t" "$ph" >>"$RESULTS"; done
    return 0
  fi
  for g in "${GROUPS_SPEC[@]}"; do
    failed=0
    for step in $g; do
      ph=${step%%:*}; timed=${step##*:}
      if ((failed)); then
        ((timed)) && printf '%s\t%s\t%s\tskip\t0\n' "$run" "$t" "$ph" >>"$RESULTS"
        continue
      fi
      run_step "$run" "$t" "$ph" "$timed" || failed=1
    done
    if ((failed)); then  # start the next group from a clean, freshly mounted target
      stop_target "$t"; clean_backing "$t"
      if ! start_target "$t" "$run"; then
        echo "$t, run $run: remount after a failure did not come up" >>"$NOTES"
        return 0
      fi
    fi
  done
  stop_target "$t"
  clean_backing "$t"
}

# --- go ------------------------------------------------------------------------------
FSTYPE=$(findmnt -n -o FSTYPE -T "$SCRATCH" || stat -f -c %T "$SCRATCH")
if [[ ,$(findmnt -n -o OPTIONS -T "$SCRATCH"), == *,discard,* ]]; then
  echo "the scratch filesystem is mounted with online 'discard': deletions issue TRIMs at journal commit, so delete phases (6, 8) can stall for seconds and vary a lot between runs" >>"$NOTES"
fi
say "scratch $SCRATCH ($FSTYPE); targets: ${TARGETS[*]}; runs: $RUNS$( ((QUICK)) && echo ' (quick)')"
say "sizes: seq ${SEQ_MB} MiB; $NFILES files of $FILE_BYTES B in $NDIRS dirs; cp -a $CP_SRC; git of $GIT_SRC"
# Warm the copy sources once so cp/git phases read them from the page cache for every target.
tar -cf - "$CP_SRC" "$GIT_SRC" 2>/dev/null | cat >/dev/null || true

START=$EPOCHREALTIME
CUR_RUN=0
for ((run = 1; run <= RUNS; run++)); do
  CUR_RUN=$run
  n=${#TARGETS[@]}
  for ((k = 0; k < n; k++)); do
    t=${TARGETS[$(((k + run - 1) % n))]}
    run_target "$t" "$run"
  done
done
ELAPSED=$(awk -v a="$START" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')

# scopefs daemon log lines at warning level or above are worth a note.
for f in "$SCRATCH"/logs/scopefs*.run*.log; do
  [[ -f $f ]] || continue
  if grep -E ' (warn|warning|error|critical) ' "$f" | grep -vq 'SCOPEFS_BENCH_JOURNAL=off'; then
    echo "scopefs daemon log ${f##*/} has warnings/errors:" >>"$NOTES"
    grep -E ' (warn|warning|error|critical) ' "$f" | grep -v 'SCOPEFS_BENCH_JOURNAL=off' | head -n 10 | sed 's/^/    /' >>"$NOTES"
  fi
done

# --- report ----------------------------------------------------------------------------
META_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
META_HOST="$(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r), scratch fs $FSTYPE on $(df --output=source "$SCRATCH" | tail -n1)"
META_HOST="$META_HOST, ulimit -n $(ulimit -n); load average $META_LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
META_FUSE="libfuse $(pkg-config --modversion fuse3)"

"$PY" - "$RESULTS" "$NOTES" "$OUT" "${TARGETS[*]}" <<EOF
import math, statistics, sys
results, notes_path, out, targets = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split()
runs = $RUNS
phases = [
  ("seqwrite",  "1. seq write ${SEQ_MB} MiB (dd bs=1M conv=fsync)"),
  ("seqread",   "2. seq read ${SEQ_MB} MiB (dd bs=1M$( ((DROP_OK)) && echo ', caches dropped'))"),
  ("create",    "3. create {:,} x $((FILE_BYTES / 1024)) KiB in $NDIRS dirs".format($NFILES)),
  ("statwalk",  "4. stat walk (os.walk + lstat)"),
  ("readsmall", "5. read all small files (find | xargs cat)"),
  ("delete",    "6. delete them (rm -rf)"),
  ("cptree",    "7. cp -a $CP_SRC"),
  ("rmtree",    "8. rm -rf that copy"),
  ("git",       "9. git init + add -A + commit ($GIT_SRC)"),
]
data = {}
for line in open(results):
    run, t, ph, st, secs = line.rstrip("\n").split("\t")
    data.setdefault((t, ph), []).append((st, float(secs)))

def cell(t, ph):
    rs = data.get((t, ph), [])
    ok = [s for st, s in rs if st == "ok"]
    if rs and len(ok) == len(rs):
        return statistics.median(ok), ""
    fails = sum(1 for st, _ in rs if st == "fail")
    if fails:
        return None, "FAIL %d/%d" % (fails, len(rs))
    return None, "skipped" if rs else "-"

table = []
for ph, label in phases:
    row = [label]
    nat, _ = cell("native", ph)
    for t in targets:
        v, txt = cell(t, ph)
        row.append("%.2f" % v if v is not None else txt)
        if t != "native":
            row.append("%.2f" % (nat / v) if (v and nat) else "-")
    table.append(row)
geo = ["geometric mean of relative speed"]
for t in targets:
    geo.append("")
    if t == "native":
        continue
    rel = []
    for ph, _ in phases:
        nat, _ = cell("native", ph); v, _ = cell(t, ph)
        if v and nat:
            rel.append(nat / v)
    if rel:
        g = math.exp(sum(map(math.log, rel)) / len(rel))
        geo.append("%.2f" % g + ("" if len(rel) == len(phases) else " (%d/%d phases)" % (len(rel), len(phases))))
    else:
        geo.append("-")
table.append(geo)
# Geometric mean over the phases that every target completed, so targets that
# failed some phases are compared on the same ground.
common = [ph for ph, _ in phases if all(cell(t, ph)[0] for t in targets)]
geo2 = ["geometric mean, phases all targets completed (%d/%d)" % (len(common), len(phases))]
for t in targets:
    geo2.append("")
    if t == "native":
        continue
    rel = [cell("native", ph)[0] / cell(t, ph)[0] for ph in common]
    geo2.append("%.2f" % math.exp(sum(map(math.log, rel)) / len(rel)) if rel else "-")
if len(common) != len(phases):
    table.append(geo2)

# Spread: slowest / fastest successful run per cell (1.00 = identical runs).
spread_header = ["phase"] + targets
spread = []
for ph, label in phases:
    row = [label]
    for t in targets:
        ok = [s for st, s in data.get((t, ph), []) if st == "ok"]
        row.append("%.2f" % (max(ok) / min(ok)) if len(ok) > 1 and min(ok) > 0 else "-")
    spread.append(row)
header = ["phase"]
for t in targets:
    header.append(t + " s")
    if t != "native":
        header.append("ratio")

widths = [max(len(r[i]) for r in [header] + table) for i in range(len(header))]
def fmt(r):
    return "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
print()
print("Median wall-clock seconds of %d run(s); ratio = native_time / target_time (1.00 = native speed, lower = slower)." % runs)
print(fmt(header))
print(fmt(["-" * w for w in widths]))
for r in table:
    print(fmt(r))
if runs > 1:
    sw = [max(len(r[i]) for r in [spread_header] + spread) for i in range(len(spread_header))]
    sfmt = lambda r: "  ".join(c.ljust(sw[0]) if i == 0 else c.rjust(sw[i]) for i, c in enumerate(r))
    print()
    print("Spread: slowest run / fastest run per cell (1.00 = identical runs).")
    print(sfmt(spread_header))
    print(sfmt(["-" * w for w in sw]))
    for r in spread:
        print(sfmt(r))
notes = open(notes_path).read().strip()
if notes:
    print("\nNotes:\n" + notes)

if out:
    md = []
    md.append("Command: \`$CMDLINE\`  ")
    md.append("Date: $META_DATE  ")
    md.append("Machine: $META_HOST  ")
    md.append("scopefs: $META_SCOPEFS  ")
    md.append("$META_FUSE; runs per phase: %d (median); total time ${ELAPSED} s" % runs)
    md.append("")
    md.append("| " + " | ".join(header) + " |")
    md.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for r in table:
        md.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    if runs > 1:
        md.append("")
        md.append("Spread: slowest run / fastest run per cell (1.00 = identical runs).")
        md.append("")
        md.append("| " + " | ".join(spread_header) + " |")
        md.append("|" + "|".join(["---"] + ["---:"] * (len(spread_header) - 1)) + "|")
        for r in spread:
            md.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    if notes:
        md.append("")
        md.append("Notes from the run:")
        md.append("")
        md.append("\`\`\`")
        md.append(notes)
        md.append("\`\`\`")
    open(out, "w").write("\n".join(md) + "\n")
    print("\nmarkdown written to " + out)
EOF
say "done in ${ELAPSED} s"
