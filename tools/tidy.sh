#!/usr/bin/env bash
# clang-tidy (.clang-tidy at the top) over every project translation unit.
#
#   tools/tidy.sh [FILE...]   check all project .cpp files, or only FILEs;
#                             exit 1 on any finding
#
# The compile database comes from a configure-only clang build dir
# (build-tidy; nothing is compiled), so the flags are clang's. Runs two
# clang-tidy processes at a time (TIDY_JOBS to change). Headers of the
# project are checked through the files that include them.
set -euo pipefail
cd "$(dirname "$0")/.."

CLANG_TIDY=${CLANG_TIDY:-$(command -v clang-tidy-14 || command -v clang-tidy)}
JOBS=${TIDY_JOBS:-2}
BUILD=${TIDY_BUILD_DIR:-build-tidy}

cmake -S . -B "$BUILD" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug \
      -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null

if (($#)); then
  files=("$@")
else
  # The fuzz targets are only configured with SCOPEFS_FUZZ=ON (and use
  # libFuzzer's entry point): not in this database.
  mapfile -t files < <(git ls-files '*.cpp' | grep -v '^tests/fuzz/')
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
printf '%s\n' "${files[@]}" |
  xargs -P "$JOBS" -n 4 "$CLANG_TIDY" -p "$BUILD" --quiet --warnings-as-errors='*' \
        >"$log" 2>&1 || status=$?
# clang-tidy prints "N warnings generated" chatter for suppressed system
# headers; only findings matter.
grep -v -E '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$|^Suppressed [0-9]+ warnings|^Use -header-filter|^Use -system-headers' \
  "$log" || true
if ((${status:-0})); then
  echo "clang-tidy: findings (see above)" >&2
  exit 1
fi
echo "clang-tidy: clean (${#files[@]} files)"
