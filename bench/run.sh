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
#   --install-peers   apt-get install bindfs fuse-overlayfs mergerfs unionfs-fuse fio first
#   --targets LIST    comma-separated subset, e.g. native,scopefs,scopefs-read (native is always run)
#   --log-dir DIR     copy daemon and error logs there before the scratch dir is removed
#   --scratch-parent  where the scratch dir is made (default /var/tmp; must be the disk
#                     under test: every target's backing directory lives there)
#
# Environment: SCOPEFS_BIN (default build/scopefs), PHASE_TIMEOUT seconds (default 1800).
#
# Targets: native (a plain directory); passthrough_ll (-o source=DIR,cache=always) and
# passthrough_ll-nocache (-o source=DIR: the example's defaults, cache=auto, 1 s
# timeouts); scopefs (one bind at the view root "", access "write", default options, its
# journal and blob store in a state dir beside the data); scopefs-stage (the same bind
# with access left at its default "stage": every change is held in the overlay, nothing
# is approved); scopefs-read (access "read", over a backing dir filled natively and
# untimed with what the writable targets create; it runs only the read phases);
# scopefs-nojournal (write, with SCOPEFS_BENCH_JOURNAL=off, when the binary knows that
# switch); and whichever of bindfs, fuse-overlayfs, mergerfs, unionfs-fuse are installed.
#
# Phases (18, in 7 groups): sequential write, cold read, warm read; 20,000 small files
# create, stat walk, read, delete; cp -a /usr/include, tar of it, rm -rf; git init+add+
# commit, git status warm and on a fresh mount; fio random 4 KiB read and write at QD1
# (skipped with a note without fio); renames within and across directories; make -j2
# of a generated C project. Read phases: 2, 3, 5, 6, 9, 12, 13, 14.
#
# Every target's data lives in one scratch dir on one filesystem. Each (run, target)
# pair gets a fresh mount (and scopefs a fresh state dir); the target order rotates from
# run to run so slow drift on a shared host does not always hit the same target. Each
# phase is timed by wall clock around one command (after an untimed `sync`); the cold
# sequential read, the random read and the fresh-mount git status are preceded by
# `echo 3 > /proc/sys/vm/drop_caches` when that is writable. During each phase the FUSE
# daemon's CPU time (utime+stime from /proc/PID/stat) and peak RSS (VmHWM, reset through
# /proc/PID/clear_refs) are recorded. A phase that fails skips the rest of its group for
# that run and the target is remounted.
#
# Cleanup (trap EXIT): every mount this script made is unmounted (fusermount3 -u, then
# -u -z), every daemon it started is ended by its PID, the scratch dir is removed.
# It never kills processes by name. Must run as root.
set -euo pipefail
export LC_ALL=C

# ---------------------------------------------------------------------------
# Phase bodies. The script re-invokes itself as `run.sh __phase NAME DIR` under
# `timeout`, so each phase is one process tree that can be timed and killed.
# Sizes come from the environment exported by the orchestrator below; AUX is a
# scratch directory outside every target for tool output (fio's JSON, git status).
# ---------------------------------------------------------------------------
phase_main() {
  local name=$1 dir=$2
  case "$name" in
    seqwrite)
      dd if=/dev/zero of="$dir/seq.bin" bs=1M count="$SEQ_MB" conv=fsync status=none ;;
    seqread|seqread_warm)
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
    tar)  # through cat: GNU tar does not read the files when its output is /dev/null
      cd "$dir" && tar -cf - tree | cat >/dev/null ;;
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
    gitstatus|gitstatus_fresh|gitstatus_warmup)
      cd "$dir/repo"
      git status >"$AUX/git-status.out"
      grep -q '^nothing to commit, working tree clean$' "$AUX/git-status.out" \
        || { echo "git status does not report a clean tree:" >&2; head -n 20 "$AUX/git-status.out" >&2; exit 1; } ;;
    fio_layout)  # untimed: the file both fio phases work on, written once
      dd if=/dev/urandom of="$dir/fio.dat" bs=1M count="$FIO_MB" conv=fsync status=none ;;
    randread|randwrite)
      # A fixed amount of I/O: every 4 KiB block of the file once per loop, in a random
      # order that is the same in every run (the read: one loop, after drop_caches; the
      # write: FIO_WRITE_LOOPS loops, so that fio's own ~0.3 s of start-up and teardown
      # is not most of native's time). --runtime only bounds a pathological case; the
      # check step below fails the phase if fio stopped early.
      local loops=1; [[ $name == randwrite ]] && loops=$FIO_WRITE_LOOPS
      fio --name="$name" --filename="$dir/fio.dat" --size="${FIO_MB}M" --loops="$loops" \
          --rw="$name" --bs=4k --ioengine=psync --iodepth=1 --direct=0 --invalidate=0 \
          --fsync_on_close=1 --allow_file_create=0 --randrepeat=1 \
          --runtime="$FIO_RUNTIME" --time_based=0 \
          --output-format=json --output="$AUX/fio-$name.json" ;;
    ren_setup)  # untimed: N empty files in ren/a
      "$PY" - "$dir/ren" "$NREN" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
os.mkdir(root); os.mkdir(os.path.join(root, "a")); os.mkdir(os.path.join(root, "b"))
for i in range(n):
    os.close(os.open(os.path.join(root, "a", "f%05d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
EOF
      ;;
    ren_within)
      "$PY" - "$dir/ren" "$NREN" <<'EOF'
import os, sys
a, n = os.path.join(sys.argv[1], "a"), int(sys.argv[2])
for i in range(n):
    os.rename(os.path.join(a, "f%05d" % i), os.path.join(a, "g%05d" % i))
EOF
      ;;
    ren_across)
      "$PY" - "$dir/ren" "$NREN" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
a, b = os.path.join(root, "a"), os.path.join(root, "b")
for i in range(n):
    os.rename(os.path.join(a, "g%05d" % i), os.path.join(b, "g%05d" % i))
EOF
      ;;
    build_setup)  # untimed
      cp -a "$CPROJ" "$dir/cproj" ;;
    build)
      cd "$dir/cproj"
      env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -j2 -s CC=cc ;;
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
    check_randread|check_randwrite)
      local sz; sz=$(stat -c %s "$dir/fio.dat")
      [[ $sz -eq $((FIO_MB * 1048576)) ]] || { echo "fio.dat has $sz bytes" >&2; exit 1; }
      local loops=1; [[ $name == check_randwrite ]] && loops=$FIO_WRITE_LOOPS
      "$PY" - "$AUX/fio-${name#check_}.json" "${name#check_rand}" "$((loops * FIO_MB * 1048576))" <<'EOF'
import json, sys
path, rw, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(path).read()
job = json.loads(text[text.index("{"):])["jobs"][0]   # fio may print notes before the JSON
if job["error"] != 0:
    sys.exit("fio reported error %d" % job["error"])
if job[rw]["io_bytes"] != want:
    sys.exit("fio did %d bytes of %s, expected %d (runtime bound hit?)" % (job[rw]["io_bytes"], rw, want))
EOF
      ;;
    check_ren_within|check_ren_across)
      "$PY" - "$dir/ren" "$NREN" "${name#check_ren_}" <<'EOF'
import os, sys
root, n, which = sys.argv[1], int(sys.argv[2]), sys.argv[3]
a, b = sorted(os.listdir(os.path.join(root, "a"))), sorted(os.listdir(os.path.join(root, "b")))
want_a = ["g%05d" % i for i in range(n)] if which == "within" else []
want_b = [] if which == "within" else ["g%05d" % i for i in range(n)]
if a != want_a or b != want_b:
    sys.exit("after renames %s: a/ has %d entries (want %d), b/ has %d (want %d)"
             % (which, len(a), len(want_a), len(b), len(want_b)))
EOF
      ;;
    check_build)
      local got want
      got=$(cd "$dir/cproj" && ./app); want=$(cat "$dir/cproj/expected.txt")
      [[ $got == "$want" ]] || { echo "the built program printed '$got', expected '$want'" >&2; exit 1; } ;;
    rm_seq) rm -f "$dir/seq.bin" ;;
    rm_repo) rm -rf "$dir/repo" ;;
    rm_fio) rm -f "$dir/fio.dat" ;;
    rm_ren) rm -rf "$dir/ren" ;;
    rm_build) rm -rf "$dir/cproj" ;;
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
PEER_PACKAGES=(bindfs fuse-overlayfs mergerfs unionfs-fuse fio)

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
for c in fusermount3 cc make ar pkg-config dd git tar timeout find xargs cp; do
  command -v "$c" >/dev/null || die "'$c' not found (apt-get install fuse3 build-essential pkg-config git tar coreutils findutils)"
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
  FIO_MB=16; FIO_RUNTIME=120; NREN=500; NSRC=40
else
  SEQ_MB=512; NDIRS=20; FILES_PER_DIR=1000; FILE_BYTES=4096
  CP_SRC=/usr/include
  GIT_SRC=/usr/include/c++
  FIO_MB=64; FIO_RUNTIME=600; NREN=5000; NSRC=300
fi
[[ -d $CP_SRC ]] || die "$CP_SRC missing (apt-get install libc6-dev)"
[[ -d $GIT_SRC ]] || die "$GIT_SRC missing (apt-get install libstdc++-12-dev)"
NFILES=$((NDIRS * FILES_PER_DIR))
FIO_WRITE_LOOPS=4
export SEQ_MB NDIRS FILES_PER_DIR FILE_BYTES CP_SRC GIT_SRC PY FIO_MB FIO_WRITE_LOOPS FIO_RUNTIME NREN

# git must not read the invoking user's or the system's configuration.
export GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@localhost \
       GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@localhost

if ((INSTALL_PEERS)); then
  say "installing peers: ${PEER_PACKAGES[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${PEER_PACKAGES[@]}" \
    || { apt-get update && apt-get install -y --no-install-recommends "${PEER_PACKAGES[@]}"; } \
    || die "apt-get install of the peers failed"
fi
FIO_OK=0
if command -v fio >/dev/null; then FIO_OK=1; fi

# --- scratch dir and cleanup -------------------------------------------------
SCRATCH=$(mktemp -d "$SCRATCH_PARENT/scopefs-bench.XXXXXX")
chmod 755 "$SCRATCH"
mkdir -p "$SCRATCH/bin" "$SCRATCH/logs" "$SCRATCH/home" "$SCRATCH/aux"
export HOME=$SCRATCH/home GIT_CONFIG_GLOBAL=$SCRATCH/home/.gitconfig AUX=$SCRATCH/aux
RESULTS=$SCRATCH/results.tsv

declare -A MNT=() PID=() BACKING=() WORK=() LOGF=()
MOUNTS_MADE=()    # every mountpoint we ever mounted on
PIDS_STARTED=()   # every daemon PID we ever started
PHASE_PID=""      # the phase process running now, if any
NOTES=$SCRATCH/notes.txt

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

# Benchmark one build throughout: others may rebuild build/scopefs while this runs.
cp "$SCOPEFS_BIN" "$SCRATCH/bin/scopefs"
"$SCRATCH/bin/scopefs" --version >/dev/null 2>&1 || die "$SCOPEFS_BIN does not run (a rebuild in progress?)"
META_SCOPEFS="$("$SCRATCH/bin/scopefs" --version 2>&1 | head -n1), binary $SCOPEFS_BIN (sha256 $(sha256sum "$SCOPEFS_BIN" | cut -c1-12), built $(date -u -r "$SCOPEFS_BIN" '+%Y-%m-%d %H:%M UTC')), repo HEAD $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo '+dirty')"
META_LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$RESULTS"; : >"$NOTES"
((FIO_OK)) || echo "fio is not installed: phases 14 and 15 (random 4 KiB I/O) are not run (apt-get install fio, or --install-peers)" >>"$NOTES"

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

# --- the C project of the parallel build phase, generated (deterministically) -------
# NSRC small modules f00000.c ... with a few shared headers, a main.c that calls every
# module and prints a checksum (expected.txt, computed here), and a Makefile that
# compiles with -MMD, archives the modules and links.
generate_cproj() {
  "$PY" - "$1" "$NSRC" <<'EOF'
import os, sys
root, nsrc = sys.argv[1], int(sys.argv[2])
nhdr = max(4, nsrc // 15)
M = (1 << 64) - 1
PRIME = 1099511628211
os.makedirs(os.path.join(root, "include"))
os.makedirs(os.path.join(root, "src"))
def write(rel, text):
    with open(os.path.join(root, rel), "w") as f:
        f.write(text)
salt = [(k * 2654435761 + 1) & M for k in range(nhdr)]
seed = [(i * 0x9E3779B97F4A7C15 + 12345) & M for i in range(nsrc)]
write("include/common.h", """#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
typedef uint64_t u64;
#define MIX(h, x) (((h) ^ (x)) * UINT64_C(%d))
#endif
""" % PRIME)
for k in range(nhdr):
    decls = "".join("u64 f%05d(u64 x);\n" % i for i in range(nsrc) if i % nhdr == k)
    write("include/mod%02d.h" % k, """#ifndef BENCH_MOD%02d_H
#define BENCH_MOD%02d_H
#include "common.h"
static inline u64 mod%02d_salt(void) { return UINT64_C(%d); }
%s#endif
""" % (k, k, k, salt[k], decls))
expected = 0
for i in range(nsrc):
    k, k2 = i % nhdr, (i * 7 + 3) % nhdr
    write("src/f%05d.c" % i, """#include "common.h"
#include "mod%02d.h"
#include "mod%02d.h"

struct rec%05d {
  u64 a[8];
  char name[16];
};

static u64 step%05d(u64 h, u64 x) { return MIX(h, x + mod%02d_salt()); }

u64 f%05d(u64 x) {
  struct rec%05d r;
  memset(&r, 0, sizeof r);
  u64 h = UINT64_C(%d);
  for (int i = 0; i < 8; i++) {
    r.a[i] = x + (u64)i;
    h = step%05d(h, r.a[i]);
  }
  return h;
}
""" % (k, k2, i, i, k, i, i, seed[i], i))
    h = seed[i]
    for j in range(8):
        h = ((h ^ ((i + j + salt[k]) & M)) * PRIME) & M
    expected = (expected + h) & M
includes = "".join('#include "mod%02d.h"\n' % k for k in range(nhdr))
calls = "".join("  s += f%05d(%d);\n" % (i, i) for i in range(nsrc))
write("src/main.c", """#include <stdio.h>
%s
int main(void) {
  u64 s = 0;
%s  printf("%%llu\\n", (unsigned long long)s);
  return 0;
}
""" % (includes, calls))
write("expected.txt", "%d\n" % expected)
write("Makefile", """CFLAGS = -O1 -Wall -Werror
MODS := $(sort $(wildcard src/f*.c))
OBJS := $(MODS:src/%.c=obj/%.o)

app: obj/main.o libmods.a
\t$(CC) -o $@ obj/main.o libmods.a

libmods.a: $(OBJS)
\tar rcs $@ $(OBJS)

obj/%.o: src/%.c | obj
\t$(CC) $(CFLAGS) -Iinclude -MMD -MP -c -o $@ $<

obj:
\tmkdir -p obj

-include $(OBJS:.o=.d) obj/main.d
""")
EOF
}

# --- targets -------------------------------------------------------------------
ALL_TARGETS=(native passthrough_ll passthrough_ll-nocache scopefs scopefs-stage scopefs-read
             scopefs-nojournal bindfs fuse-overlayfs mergerfs unionfs-fuse)
UNIONFS_BIN=$(command -v unionfs-fuse || command -v unionfs || true)
target_available() {
  case "$1" in
    native|scopefs|scopefs-stage|scopefs-read) return 0 ;;
    # the same daemon with its change journal switched off (a benchmark-only switch)
    scopefs-nojournal) grep -aq SCOPEFS_BENCH_JOURNAL "$SCRATCH/bin/scopefs" ;;
    passthrough_ll|passthrough_ll-nocache) [[ -x $SCRATCH/bin/passthrough_ll ]] ;;
    bindfs|fuse-overlayfs|mergerfs) command -v "$1" >/dev/null ;;
    unionfs-fuse) [[ -n $UNIONFS_BIN ]] ;;
    *) return 1 ;;
  esac
}
is_read_target() { [[ $1 == scopefs-read ]]; }

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
    [[ " ${TARGETS[*]} " == *" $t "* ]] && continue
    if target_available "$t"; then TARGETS+=("$t"); else die "target $t is not available here"; fi
  done
else
  for t in "${ALL_TARGETS[@]}"; do
    if target_available "$t"; then TARGETS+=("$t")
    else echo "$t: not installed, skipped (use --install-peers)" >>"$NOTES"; fi
  done
fi

CPROJ=$SCRATCH/cproj
export CPROJ
generate_cproj "$CPROJ" || die "could not generate the C project for the build phase"

DROP_OK=0
if sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then DROP_OK=1
else echo "drop_caches is not writable here: the cold sequential read, the random read and the fresh-mount git status are NOT cold" >>"$NOTES"; fi

# Sources read from outside the targets (the copy sources, the compiler and its
# headers) are read back into the page cache after a drop, untimed, so that the
# phases reading them find them cached for every target.
SOURCES_COLD=1
warm_sources() {
  ((SOURCES_COLD)) || return 0
  tar -cf - "$CP_SRC" "$GIT_SRC" 2>/dev/null | cat >/dev/null || true
  (cd "$CPROJ" && cc -O1 -Iinclude -c -o /dev/null src/main.c) >/dev/null 2>&1 || true
  SOURCES_COLD=0
}
drop_caches() {
  ((DROP_OK)) || return 0
  sync && echo 3 >/proc/sys/vm/drop_caches
  SOURCES_COLD=1
  # the tools the cold phases run come back from disk now, not inside the timing
  dd --version >/dev/null 2>&1; git --version >/dev/null 2>&1
  ((FIO_OK)) && fio --version >/dev/null 2>&1
  return 0
}

CLK_TCK=$(getconf CLK_TCK)
# user+system clock ticks of a process (all its threads)
proc_cpu_ticks() {
  local s f
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  read -r -a f <<<"$s"
  echo $((f[11] + f[12]))
}
CLEAR_REFS_NOTED=0

# Mount (or, for native, create) target $1 for run $2. Sets WORK/BACKING/MNT/PID.
target_backing() {
  case "$1" in
    native) echo "$SCRATCH/t/$1/data" ;;
    fuse-overlayfs) echo "$SCRATCH/t/$1/upper" ;;
    *) echo "$SCRATCH/t/$1/src" ;;
  esac
}
start_target() {
  local t=$1 run=$2 base=$SCRATCH/t/$1 pid
  mkdir -p "$base"
  LOGF[$t]=$SCRATCH/logs/$t.run$run.log
  BACKING[$t]=$(target_backing "$t")
  mkdir -p "${BACKING[$t]}"
  if [[ $t == native ]]; then WORK[$t]=${BACKING[$t]}; return 0; fi
  mkdir -p "$base/mnt"
  [[ $t == fuse-overlayfs ]] && mkdir -p "$base/lower" "$base/ovlwork"
  local mp=$base/mnt src=${BACKING[$t]} log=${LOGF[$t]}
  is_mounted "$mp" && die "$mp is already mounted"
  case "$t" in
    passthrough_ll)
      "$SCRATCH/bin/passthrough_ll" -f -o "source=$src,cache=always" "$mp" >>"$log" 2>&1 & pid=$! ;;
    passthrough_ll-nocache)
      "$SCRATCH/bin/passthrough_ll" -f -o "source=$src" "$mp" >>"$log" 2>&1 & pid=$! ;;
    scopefs|scopefs-nojournal|scopefs-stage|scopefs-read)
      local access_line
      case "$t" in
        scopefs-stage) access_line="# access left at its default, \"stage\"" ;;
        scopefs-read) access_line='access = "read"' ;;
        *) access_line='access = "write"' ;;
      esac
      cat >"$base/task.toml" <<EOF
[task]
name = "bench"
mountpoint = "$mp"
state_dir = "$base/state"

[[bind]]
path = ""
source = "$src"
$access_line
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

# The untimed step before a fresh-mount phase: unmount and mount again (the state dir,
# the backing dir and the overlay stay), then drop the page cache for every target
# (native included) so that none of them reads the backing files from memory.
remount_target() {
  local t=$1 run=$2
  if [[ $t != native ]]; then
    stop_target "$t"
    if ! start_target "$t" "$run"; then
      echo "$t, run $run: the remount before a fresh-mount phase did not come up (log ${LOGF[$t]##*/})" >>"$NOTES"
      return 1
    fi
  fi
  drop_caches
}

# run_step RUN TARGET PHASE TIMED(0/1) [DIR]: returns 0 on success. DIR defaults to
# the target's working directory (its mountpoint).
run_step() {
  local run=$1 t=$2 ph=$3 timed=$4 dir=${5:-${WORK[$2]:-}} rc=0 t0 t1 err
  local check_daemon=1; [[ -n ${5:-} ]] && check_daemon=0  # an explicit DIR: no mount involved
  local pid="" c0="" cpu="-" rss="-"
  err=$SCRATCH/logs/$t.run$run.$ph.err
  if ((timed)); then sync; fi  # timed phases start with no dirty data of earlier steps pending
  [[ $ph == seqread || $ph == randread ]] && drop_caches  # the cold reads
  if ((timed)) && [[ $t != native && -n ${PID[$t]:-} ]]; then
    pid=${PID[$t]}
    # reset the daemon's VmHWM to its current RSS, so VmHWM afterwards is this phase's peak
    if ! echo 5 >"/proc/$pid/clear_refs" 2>/dev/null && ((!CLEAR_REFS_NOTED)); then
      echo "/proc/PID/clear_refs is not writable: the peak RSS column is the daemon's peak since its start" >>"$NOTES"
      CLEAR_REFS_NOTED=1
    fi
    c0=$(proc_cpu_ticks "$pid") || c0=""
  fi
  t0=$EPOCHREALTIME
  # In the background + wait, so a signal to this script runs the cleanup at once.
  timeout -k 10 "$PHASE_TIMEOUT" "$SELF" __phase "$ph" "$dir" >"$err" 2>&1 &
  PHASE_PID=$!
  wait "$PHASE_PID" || rc=$?
  PHASE_PID=""
  t1=$EPOCHREALTIME
  if [[ -n $c0 ]]; then
    local c1 hwm
    if c1=$(proc_cpu_ticks "$pid") && hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) && [[ -n $hwm ]]; then
      cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / hz }')
      rss=$hwm
    fi
  fi
  local secs; secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  if ((rc == 0 && check_daemon)) && ! daemon_alive "$t"; then rc=255; echo "daemon died during $ph" >>"$err"; fi
  if ((rc == 0)); then
    ((timed)) && printf '%s\t%s\t%s\tok\t%s\t%s\t%s\n' "$run" "$t" "$ph" "$secs" "$cpu" "$rss" >>"$RESULTS"
    ((timed)) && say "run $run  $(printf '%-22s %-16s %8.3f s' "$t" "$ph" "$secs")$([[ $cpu != - ]] && printf '   daemon %6.2f s CPU, %5d MiB peak' "$cpu" "$((rss / 1024))")"
    rm -f "$err"
    return 0
  fi
  local why="exit $rc"; ((rc == 124 || rc == 137)) && why="timed out after ${PHASE_TIMEOUT}s"
  ((check_daemon)) && ! daemon_alive "$t" && why="$why; daemon not running"
  say "run $run  $t $ph FAILED ($why) after $secs s; output:"
  tail -n 15 "$err" >&2 || true
  printf '%s\t%s\t%s\tfail\t%s\t-\t-\n' "$run" "$t" "$ph" "$secs" >>"$RESULTS"
  {
    echo "$t, run $run, phase $ph: FAILED ($why) after $secs s:"
    tail -n 5 "$err" | sed 's/^/    /'
    if [[ $t != native ]] && ((check_daemon)); then
      echo "    daemon log tail:"; tail -n 10 "${LOGF[$t]}" | sed 's/^/    /'
    fi
  } >>"$NOTES"
  return 1
}

# Groups of steps NAME:TIMED. A failed step skips the rest of its group for that run.
# `remount` is the untimed unmount + mount + drop_caches before a fresh-mount phase.
GROUPS_SPEC=(
  "seqwrite:1 check_seq:0 seqread:1 seqread_warm:1 rm_seq:0"
  "create:1 statwalk:1 readsmall:1 delete:1"
  "cptree:1 check_tree:0 tar:1 rmtree:1"
  "gitsetup:0 git:1 check_git:0 gitstatus:1 remount:0 gitstatus_fresh:1 rm_repo:0"
  "fio_layout:0 randread:1 check_randread:0 randwrite:1 check_randwrite:0 rm_fio:0"
  "ren_setup:0 ren_within:1 check_ren_within:0 ren_across:1 check_ren_across:0 rm_ren:0"
  "build_setup:0 build:1 check_build:0 rm_build:0"
)
# A read-only view (scopefs-read) runs only the read phases. What the writable
# targets create in a group is written here natively into its backing dir, untimed,
# behind the mounted view (steps NAME:b), right before the group's read phases, so
# the backing files are in the page cache as they are for the writable targets;
# gitstatus_warmup stands in for the commit before the warm git status.
READ_GROUPS_SPEC=(
  "seqwrite:b check_seq:b seqread:1 seqread_warm:1 rm_seq:b"
  "create:b statwalk:1 readsmall:1 delete:b"
  "cptree:b check_tree:b tar:1 rmtree:b"
  "gitsetup:b git:b check_git:b gitstatus_warmup:0 gitstatus:1 remount:0 gitstatus_fresh:1 rm_repo:b"
  "fio_layout:b randread:1 check_randread:0 rm_fio:b"
)
PHASES=(seqwrite seqread seqread_warm create statwalk readsmall delete cptree tar rmtree
        git gitstatus gitstatus_fresh randread randwrite ren_within ren_across build)
READ_PHASES=(seqread seqread_warm statwalk readsmall tar gitstatus gitstatus_fresh randread)
FIO_PHASES=(randread randwrite)
if ((!FIO_OK)); then
  GROUPS_SPEC=("${GROUPS_SPEC[@]/fio_layout*/}")
  READ_GROUPS_SPEC=("${READ_GROUPS_SPEC[@]/fio_layout*/}")
fi

target_phases() {  # the timed phases target $1 runs
  local ph
  for ph in "${PHASES[@]}"; do
    if ((!FIO_OK)) && [[ " ${FIO_PHASES[*]} " == *" $ph "* ]]; then continue; fi
    if is_read_target "$1" && [[ " ${READ_PHASES[*]} " != *" $ph "* ]]; then continue; fi
    echo "$ph"
  done
}

clean_backing() {  # with the target unmounted: empty its backing dir; fresh scopefs state
  rm -rf "$SCRATCH/t/$1/state"
  local b; b=$(target_backing "$1")
  if [[ -d $b ]]; then find "$b" -mindepth 1 -delete 2>/dev/null || true; fi
}

fail_all() {  # record every timed phase of target $1 in run $2 as failed
  local ph
  for ph in $(target_phases "$1"); do printf '%s\t%s\t%s\tfail\t0\t-\t-\n' "$2" "$1" "$ph" >>"$RESULTS"; done
}

run_target() {
  local t=$1 run=$2 g step ph timed failed groups
  if is_read_target "$t"; then groups=("${READ_GROUPS_SPEC[@]}"); else groups=("${GROUPS_SPEC[@]}"); fi
  SOURCES_COLD=1
  if ! start_target "$t" "$run"; then
    echo "$t, run $run: mount failed (log ${LOGF[$t]##*/}):" >>"$NOTES"
    tail -n 10 "${LOGF[$t]}" 2>/dev/null | sed 's/^/    /' >>"$NOTES"
    fail_all "$t" "$run"; clean_backing "$t"
    return 0
  fi
  for g in "${groups[@]}"; do
    [[ -n $g ]] || continue
    warm_sources
    failed=0
    for step in $g; do
      ph=${step%%:*}; timed=${step##*:}
      if ((failed)); then
        [[ $timed == 1 ]] && printf '%s\t%s\t%s\tskip\t0\t-\t-\n' "$run" "$t" "$ph" >>"$RESULTS"
        continue
      fi
      if [[ $ph == remount ]]; then
        remount_target "$t" "$run" || failed=1
      elif [[ $timed == b ]]; then  # untimed, natively in the backing dir
        run_step "$run" "$t" "$ph" 0 "${BACKING[$t]}" || failed=1
      else
        run_step "$run" "$t" "$ph" "$timed" || failed=1
      fi
    done
    if ((failed)); then  # start the next group from a clean, freshly mounted target
      stop_target "$t"; clean_backing "$t"
      if ! start_target "$t" "$run"; then
        echo "$t, run $run: remount after a failure did not come up" >>"$NOTES"
        stop_target "$t"; clean_backing "$t"
        return 0
      fi
    fi
  done
  stop_target "$t"
  if [[ $t == scopefs-stage ]] && [[ -n $(find "${BACKING[$t]}" -mindepth 1 -print -quit) ]]; then
    echo "scopefs-stage, run $run: the real tree is not empty after the run (held changes reached it): $(find "${BACKING[$t]}" -mindepth 1 | head -n 3 | tr '\n' ' ')" >>"$NOTES"
  fi
  clean_backing "$t"
}

# --- go ------------------------------------------------------------------------------
FSTYPE=$(findmnt -n -o FSTYPE -T "$SCRATCH" || stat -f -c %T "$SCRATCH")
if [[ ,$(findmnt -n -o OPTIONS -T "$SCRATCH"), == *,discard,* ]]; then
  echo "the scratch filesystem is mounted with online 'discard': deletions issue TRIMs at journal commit, so delete phases (7, 10) can stall for seconds and vary a lot between runs" >>"$NOTES"
fi
say "scratch $SCRATCH ($FSTYPE); targets: ${TARGETS[*]}; runs: $RUNS$( ((QUICK)) && echo ' (quick)')"
say "sizes: seq ${SEQ_MB} MiB; $NFILES files of $FILE_BYTES B in $NDIRS dirs; cp -a $CP_SRC; git of $GIT_SRC; fio ${FIO_MB} MiB$( ((FIO_OK)) || echo ' (no fio)'); $NREN renames; make -j2 of $NSRC C files"

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
if ((FIO_OK)); then META_FUSE="$META_FUSE, $(fio --version)"; fi
READ_TARGETS=()
for t in "${TARGETS[@]}"; do is_read_target "$t" && READ_TARGETS+=("$t"); done

"$PY" - "$RESULTS" "$NOTES" "$OUT" "${TARGETS[*]}" "${READ_TARGETS[*]}" "${READ_PHASES[*]}" \
      "$( ((FIO_OK)) || echo "${FIO_PHASES[*]}")" <<EOF
import math, statistics, sys
results, notes_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
targets, read_targets = sys.argv[4].split(), set(sys.argv[5].split())
read_phases, missing_phases = set(sys.argv[6].split()), set(sys.argv[7].split())
runs = $RUNS
phases = [
  ("seqwrite",        "1. seq write ${SEQ_MB} MiB (dd bs=1M conv=fsync)"),
  ("seqread",         "2. seq read ${SEQ_MB} MiB cold (dd bs=1M$( ((DROP_OK)) && echo ', caches dropped'))"),
  ("seqread_warm",    "3. seq read again, warm"),
  ("create",          "4. create {:,} x $((FILE_BYTES / 1024)) KiB in $NDIRS dirs".format($NFILES)),
  ("statwalk",        "5. stat walk (os.walk + lstat)"),
  ("readsmall",       "6. read all small files (find | xargs cat)"),
  ("delete",          "7. delete them (rm -rf)"),
  ("cptree",          "8. cp -a $CP_SRC"),
  ("tar",             "9. tar cf - that copy | cat"),
  ("rmtree",          "10. rm -rf that copy"),
  ("git",             "11. git init + add -A + commit ($GIT_SRC)"),
  ("gitstatus",       "12. git status, warm"),
  ("gitstatus_fresh", "13. git status, fresh mount$( ((DROP_OK)) && echo ', caches dropped')"),
  ("randread",        "14. fio randread 4 KiB QD1, ${FIO_MB} MiB$( ((DROP_OK)) && echo ' cold')"),
  ("randwrite",       "15. fio randwrite 4 KiB QD1, $FIO_WRITE_LOOPS x ${FIO_MB} MiB + fsync"),
  ("ren_within",      "16. rename {:,} files within a dir".format($NREN)),
  ("ren_across",      "17. rename {:,} files across dirs".format($NREN)),
  ("build",           "18. make -j2 ($NSRC C files + main)"),
]
names = [ph for ph, _ in phases]
data = {}
for line in open(results):
    run, t, ph, st, secs, cpu, rss = line.rstrip("\n").split("\t")
    data.setdefault((t, ph), []).append((st, float(secs), cpu, rss))

def runs_phase(t, ph):
    if ph in missing_phases:
        return False
    return t not in read_targets or ph in read_phases

def cell(t, ph):
    if not runs_phase(t, ph):
        return None, "n/a"
    rs = data.get((t, ph), [])
    ok = [s for st, s, _, _ in rs if st == "ok"]
    if rs and len(ok) == len(rs):
        return statistics.median(ok), ""
    fails = sum(1 for r in rs if r[0] == "fail")
    if fails:
        return None, "FAIL %d/%d" % (fails, len(rs))
    return None, "skipped" if rs else "-"

def ratio(t, ph):
    nat, _ = cell("native", ph); v, _ = cell(t, ph)
    return nat / v if (v and nat) else None

def geo(rel):
    return math.exp(sum(map(math.log, rel)) / len(rel))

table = []
for ph, label in phases:
    row = [label]
    for t in targets:
        v, txt = cell(t, ph)
        row.append("%.2f" % v if v is not None else txt)
        if t != "native":
            r = ratio(t, ph)
            row.append("%.2f" % r if r else ("n/a" if txt == "n/a" else "-"))
    table.append(row)

# 1. Per target, over the phases it runs (a read-only view: the read phases only).
row = ["geometric mean of relative speed"]
for t in targets:
    row.append("")
    if t == "native":
        continue
    own = [ph for ph in names if runs_phase(t, ph)]
    rel = [r for r in (ratio(t, ph) for ph in own) if r]
    if not rel:
        row.append("-"); continue
    txt = "%.2f" % geo(rel)
    if t in read_targets:
        txt += " (read phases%s)" % ("" if len(rel) == len(own) else ", %d/%d" % (len(rel), len(own)))
    elif len(rel) != len(own):
        txt += " (%d/%d phases)" % (len(rel), len(own))
    row.append(txt)
table.append(row)
# 2. Over the phases that every target running them completed, so targets that failed
#    some phases are compared on the same ground (a read-only view: those of the read phases).
def completed_by_all(ph):
    return all(cell(t, ph)[0] for t in targets if runs_phase(t, ph)) and any(runs_phase(t, ph) for t in targets)
common = [ph for ph in names if completed_by_all(ph)]
n_all = sum(1 for ph in names if ph not in missing_phases)
row = ["geometric mean, phases all targets completed (%d/%d)" % (len(common), n_all)]
for t in targets:
    row.append("")
    if t == "native":
        continue
    rel = [ratio(t, ph) for ph in common if runs_phase(t, ph)]
    row.append(("%.2f" % geo(rel) + (" (read phases)" if t in read_targets else "")) if rel else "-")
table.append(row)
# 3. Over the read phases every target completed: every target on the read view's ground.
rcommon = [ph for ph in common if ph in read_phases]
row = ["geometric mean, read phases all targets completed (%d)" % len(rcommon)]
for t in targets:
    row.append("")
    if t == "native":
        continue
    rel = [ratio(t, ph) for ph in rcommon]
    row.append("%.2f" % geo(rel) if rel else "-")
table.append(row)

# Spread: slowest / fastest successful run per cell (1.00 = identical runs).
spread_header = ["phase"] + targets
spread = []
for ph, label in phases:
    row = [label]
    for t in targets:
        ok = [s for st, s, _, _ in data.get((t, ph), []) if st == "ok"]
        if not runs_phase(t, ph):
            row.append("n/a")
        else:
            row.append("%.2f" % (max(ok) / min(ok)) if len(ok) > 1 and min(ok) > 0 else "-")
    spread.append(row)

# The FUSE daemon's CPU seconds (user+system) and peak RSS during each phase (medians).
dtargets = [t for t in targets if t != "native"]
daemon_header = ["phase"] + dtargets
daemon = []
for ph, label in phases:
    row = [label]
    for t in dtargets:
        if not runs_phase(t, ph):
            row.append("n/a"); continue
        rs = [(c, r) for st, _, c, r in data.get((t, ph), []) if st == "ok" and c != "-" and r != "-"]
        if not rs:
            row.append("-"); continue
        cpu = statistics.median(float(c) for c, _ in rs)
        rss = statistics.median(int(r) for _, r in rs) / 1024
        row.append("%.2f / %.0f" % (cpu, rss))
    daemon.append(row)

header = ["phase"]
for t in targets:
    header.append(t + " s")
    if t != "native":
        header.append("ratio")

def text_table(hdr, rows):
    w = [max(len(r[i]) for r in [hdr] + rows) for i in range(len(hdr))]
    f = lambda r: "  ".join(c.ljust(w[0]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r))
    return "\n".join([f(hdr), f(["-" * x for x in w])] + [f(r) for r in rows])

def md_table(hdr, rows):
    md = ["| " + " | ".join(hdr) + " |", "|" + "|".join(["---"] + ["---:"] * (len(hdr) - 1)) + "|"]
    md += ["| " + " | ".join(c.replace("|", "\\\\|") for c in r) + " |" for r in rows]
    return md

SPREAD_TITLE = "Spread: slowest run / fastest run per cell (1.00 = identical runs)."
DAEMON_TITLE = ("FUSE daemon during each phase: CPU seconds (user+system, /proc/PID/stat) / peak RSS MiB "
                "(VmHWM after clear_refs), medians; native has no daemon.")
print()
print("Median wall-clock seconds of %d run(s); ratio = native_time / target_time (1.00 = native speed, lower = slower); n/a = not run on that target." % runs)
print(text_table(header, table))
if runs > 1:
    print()
    print(SPREAD_TITLE)
    print(text_table(spread_header, spread))
if dtargets:
    print()
    print(DAEMON_TITLE)
    print(text_table(daemon_header, daemon))
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
    md += md_table(header, table)
    if runs > 1:
        md += ["", SPREAD_TITLE, ""] + md_table(spread_header, spread)
    if dtargets:
        md += ["", DAEMON_TITLE, ""] + md_table(daemon_header, daemon)
    if notes:
        md += ["", "Notes from the run:", "", "\`\`\`", notes, "\`\`\`"]
    open(out, "w").write("\n".join(md) + "\n")
    print("\nmarkdown written to " + out)
EOF
say "done in ${ELAPSED} s"
