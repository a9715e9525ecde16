#!/usr/bin/env bash
# Runs pjdfstest (a built checkout: PJDFSTEST_DIR holds the `pjdfstest` binary
# and tests/) inside a scopefs view, once per access mode, as the pjdfstest
# README says: `prove -rv PJDFSTEST_DIR/tests` from inside the mounted
# directory. Each mode gets a fresh source, state and mount (unmounted on
# exit). Prints prove's summary per mode; exits non-zero if any mode failed.
#
#   sudo tests/conformance/run-pjdfstest.sh PJDFSTEST_DIR [MODE...]
#
# MODE: write, stage (default: both). Full logs go to $LOG_DIR (default: the
# current directory), pjdfstest-MODE.log. PJDFSTEST_TESTS: a space-separated
# subset of tests/ (e.g. "unlink utimensat/05.t"), default all.
# docs/conformance.md has the results.
source "$(dirname "$0")/lib.sh"

if [[ $# -lt 1 ]]; then
  echo "usage: $0 PJDFSTEST_DIR [write|stage...]" >&2
  exit 2
fi
PJD=$(cd "$1" && pwd)
shift
MODES=("$@")
((${#MODES[@]})) || MODES=(write stage)
LOG_DIR=$(mkdir -p "${LOG_DIR:-.}" && cd "${LOG_DIR:-.}" && pwd)
if [[ ! -x $PJD/pjdfstest || ! -d $PJD/tests ]]; then
  echo "$0: $PJD has no built pjdfstest binary or no tests/ (autoreconf -ifs && ./configure && make pjdfstest)" >&2
  exit 2
fi
command -v prove >/dev/null || { echo "$0: prove (perl) is missing" >&2; exit 2; }
view_require_root

failed=0
for mode in "${MODES[@]}"; do
  view_mount "$mode"
  log=$LOG_DIR/pjdfstest-$mode.log
  echo "== pjdfstest, access = $mode, view $VIEW (log: $log)"
  start=$SECONDS
  rc=0
  targets=()
  for t in ${PJDFSTEST_TESTS:-}; do targets+=("$PJD/tests/$t"); done
  ((${#targets[@]})) || targets=("$PJD/tests")
  (cd "$VIEW" && prove -rv "${targets[@]}") >"$log" 2>&1 || rc=$?
  # prove's closing summary: the failed files, then Files=/Tests= and Result.
  sed -n '/^Test Summary Report/,/^Files=/{/^Files=/!p}' "$log"
  grep -E '^(Files=|Result:)' "$log" | tail -2 || true
  echo "   ($((SECONDS - start)) s, prove exit $rc)"
  ((rc == 0)) || failed=1
  cd /
  view_unmount
done
exit "$failed"
