#!/usr/bin/env bash
# Builds the libFuzzer targets (Clang, -DSCOPEFS_FUZZ=ON, in build-fuzz/) and
# runs each for DURATION seconds (default 60) on a copy of its seed corpus, so
# the repository's corpus is never modified.
#
#   tests/fuzz/run.sh [DURATION]
#
# Environment:
#   FUZZERS     which targets to run (default "config glob record")
#   BUILD_DIR   build directory (default <repo>/build-fuzz)
#   CC, CXX     compilers (default clang, clang++)
#   FUZZ_JOBS   build parallelism (default nproc)
#   KEEP_CORPUS=1  keep the grown corpus copies (their path is printed)
#
# Exits 1 if any target crashed, leaked, timed out or ran out of memory, after
# printing the input that did it (kept under BUILD_DIR/artifacts/TARGET/) and
# the command that reproduces it. A crash is reproduced with
#   BUILD_DIR/scopefs_fuzz_TARGET path/to/input
set -uo pipefail

duration=${1:-60}
if ! [[ $duration =~ ^[0-9]+$ ]] || ((duration < 1)); then
  echo "usage: $0 [DURATION_SECONDS]" >&2
  exit 2
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-$repo/build-fuzz}
fuzzers=${FUZZERS:-config glob record}
export CC=${CC:-clang} CXX=${CXX:-clang++}

echo "== configuring $build ($CXX, SCOPEFS_FUZZ=ON)"
cmake -S "$repo" -B "$build" -DSCOPEFS_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build.configure.log" 2>&1 ||
  { cat "$build.configure.log" >&2; echo "configure failed" >&2; exit 2; }
rm -f "$build.configure.log"
targets=()
for f in $fuzzers; do targets+=("scopefs_fuzz_$f"); done
echo "== building ${targets[*]}"
# Only the fuzz targets: the rest of the tree is not built in this directory.
cmake --build "$build" -j "${FUZZ_JOBS:-$(nproc)}" --target "${targets[@]}" || { echo "build failed" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/scopefs-fuzz-run.XXXXXX")
cleanup() { if [[ ${KEEP_CORPUS:-0} == 1 ]]; then echo "corpus copies kept in $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

# Sanitizer reports are fatal and symbolized; leaks count as failures.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:symbolize=1}
unset SCOPEFS_FUZZ_WRITE_SEEDS

failed=()
for f in $fuzzers; do
  bin="$build/scopefs_fuzz_$f"
  corpus="$work/corpus-$f"
  artifacts="$build/artifacts/$f"
  mkdir -p "$corpus" "$artifacts"
  cp -r "$here/corpus/$f/." "$corpus/"
  args=(-max_total_time="$duration" -timeout=10 -rss_limit_mb=2048 -max_len=4096
        -print_final_stats=1 -artifact_prefix="$artifacts/")
  [[ -f $here/$f.dict ]] && args+=(-dict="$here/$f.dict")
  log="$work/$f.log"
  echo "== fuzzing $f for ${duration}s (corpus copy: $corpus)"
  before=$(find "$artifacts" -type f | sort)
  # TMPDIR: the config target's scratch base directory goes there, so it is
  # removed with the rest even when the target dies.
  TMPDIR="$work" "$bin" "${args[@]}" "$corpus" >"$log" 2>&1
  rc=$?
  grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::new_units_added|INFO: seed corpus)' "$log" || true
  if ((rc != 0)); then
    failed+=("$f")
    cp "$log" "$artifacts/last-failure.log"
    echo "!! $f FAILED (exit $rc); the end of its log (whole: $artifacts/last-failure.log):"
    tail -n 60 "$log"
    # The inputs libFuzzer says it wrote (a known crash rewrites the same
    # file), and any other new file in the artifacts directory.
    new=$({ sed -n 's/.*Test unit written to //p' "$log"
            comm -13 <(echo "$before") <(find "$artifacts" -type f ! -name '*.log' | sort); } |
          sed '/^$/d' | sort -u)
    if [[ -n $new ]]; then
      while read -r input; do
        echo "!! crashing input: $input"
        echo "!! reproduce with: $bin $input"
      done <<<"$new"
    else
      echo "!! no input was saved (see the log above)"
    fi
  else
    echo "== $f: no crash"
  fi
done

if ((${#failed[@]})); then
  echo "FUZZING FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzzing passed: $fuzzers (${duration}s each)"
