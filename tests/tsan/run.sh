#!/usr/bin/env bash
# The multi-threaded parts of the suite on a ThreadSanitizer build:
# the unit tests, then the mounted tests that run threads against one view
# (concurrent writers, rename storms, the write storm under SIGKILL, stage
# coherence while deciding, a concurrent sqlite reader).
#
#   tests/tsan/run.sh BUILD_DIR    BUILD_DIR configured with -DSCOPEFS_TSAN=ON
#
# Every report (daemon, CLI or unit test) goes to a file under a private
# directory; any report fails the run and is printed. tsan.supp holds the
# suppressions, each for a report inside a library we do not build with TSan.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:?usage: $0 BUILD_DIR}
reports=${TSAN_REPORTS:-$(mktemp -d)}
[[ -n ${TSAN_REPORTS:-} ]] || trap 'rm -rf "$reports"' EXIT
export TSAN_OPTIONS="suppressions=$PWD/tests/tsan/tsan.supp log_path=$reports/tsan second_deadlock_stack=1 history_size=4"

# TSan exits 66 from a process that reported: keep going, print the reports.
rc=0
"$build/scopefs_unit" >"$reports/unit.out" 2>&1 || { rc=$?; cat "$reports/unit.out"; }
tail -3 "$reports/unit.out"
SCOPEFS_BIN=$PWD/$build/scopefs timeout 1200 /usr/bin/python3 -m pytest -q \
  "tests/integration/test_hostile.py::test_concurrent_writers_one_file" \
  "tests/integration/test_hostile.py::test_rename_storm" \
  "tests/integration/test_crash.py::test_sigkill_during_write_storm" \
  "tests/integration/test_stage.py::test_decisions_keep_the_view_coherent" \
  "tests/integration/test_tools.py::test_sqlite3_python_concurrent_reader" \
  "tests/integration/test_tools.py::test_many_small_writes" || rc=$?

if compgen -G "$reports/tsan*" >/dev/null; then
  cat "$reports"/tsan*
  echo "ThreadSanitizer reported the above" >&2
  exit 1
fi
if ((rc)); then
  echo "tests failed (exit $rc)" >&2
  exit "$rc"
fi
echo "ThreadSanitizer: no reports"
