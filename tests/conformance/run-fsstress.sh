#!/usr/bin/env bash
# Runs fsstress (xfstests' ltp/fsstress, built by you: FSSTRESS_BINARY) with
# several processes inside a scopefs view, per access mode: creates, writes,
# renames (plain, NOREPLACE, EXCHANGE), links, unlinks, truncates, fallocate,
# xattrs, mmap, direct and async I/O, all at once. Each mode gets a fresh
# source, state and mount (unmounted on exit). fsstress itself verifies
# little, so after the run:
#   - the daemon is alive and logged no error;
#   - write: the real tree is identical to the view (names, types, modes,
#     sizes, link counts, owners, mtimes, content, symlink targets);
#   - stage: the real tree is still empty (every change was held);
#   - the view is identical after an unmount and a new mount;
#   - `rm -rf` of the whole tree through the view works and leaves it empty
#     (and, under write, the real tree empty too).
#
#   sudo tests/conformance/run-fsstress.sh FSSTRESS_BINARY [MODE...]
#
# MODE: write, stage (default: both). Environment: FSSTRESS_PROCS (default
# 4), FSSTRESS_OPS (operations per process, default 20000), FSSTRESS_SEED
# (default 1), LOG_DIR (default: the current directory). Exits non-zero if
# any check failed.
source "$(dirname "$0")/lib.sh"

if [[ $# -lt 1 ]]; then
  echo "usage: $0 FSSTRESS_BINARY [write|stage...]" >&2
  exit 2
fi
FSSTRESS=$(realpath "$1")
shift
MODES=("$@")
((${#MODES[@]})) || MODES=(write stage)
PROCS=${FSSTRESS_PROCS:-4}
OPS=${FSSTRESS_OPS:-20000}
SEED=${FSSTRESS_SEED:-1}
LOG_DIR=$(mkdir -p "${LOG_DIR:-.}" && cd "${LOG_DIR:-.}" && pwd)
[[ -x $FSSTRESS ]] || { echo "$0: $FSSTRESS is not an executable" >&2; exit 2; }
view_require_root

failed=0
for mode in "${MODES[@]}"; do
  view_mount "$mode"
  args=(-d "$VIEW/work" -p "$PROCS" -n "$OPS" -s "$SEED")
  out=$LOG_DIR/fsstress-$mode.out
  echo "== fsstress ${args[*]}   (access = $mode)"
  start=$SECONDS
  problems=()
  rc=0
  "$FSSTRESS" "${args[@]}" >"$out" 2>&1 || rc=$?
  echo "   $PROCS x $OPS operations, $((SECONDS - start)) s, fsstress exit $rc"
  ((rc == 0)) || problems+=("fsstress exit $rc (see $out)")
  if ! stat "$VIEW/work" >/dev/null; then
    problems+=("the view does not answer")
  else
    digest=$(tree_digest "$VIEW/work")
    echo "   $(wc -l <<<"$digest") entries in the tree"
    if [[ $mode == write ]]; then
      real=$(tree_digest "$VIEW_SRC/work")
      [[ $digest == "$real" ]] ||
        problems+=("the real tree differs from the view: $(diff <(echo "$real") <(echo "$digest") | head -20)")
    elif [[ -n $(ls -A "$VIEW_SRC") ]]; then
      problems+=("the real tree changed under stage: $(ls -A "$VIEW_SRC" | head)")
    fi
    view_remount
    again=$(tree_digest "$VIEW/work")
    [[ $digest == "$again" ]] ||
      problems+=("the view changed across a remount: $(diff <(echo "$digest") <(echo "$again") | head -20)")
    rm -rf "$VIEW/work" || problems+=("rm -rf through the view failed")
    [[ -z $(ls -A "$VIEW") ]] || problems+=("the view is not empty after rm -rf: $(ls -A "$VIEW" | head)")
    [[ $mode != write || -z $(ls -A "$VIEW_SRC") ]] ||
      problems+=("the real tree is not empty after rm -rf: $(ls -A "$VIEW_SRC" | head)")
  fi
  errs=$(view_log_errors)
  [[ -z $errs ]] || problems+=("daemon logged errors: $errs")
  if ((${#problems[@]})); then
    printf '   FAIL: %s\n' "${problems[@]}"
    failed=1
  else
    echo "   ok"
  fi
  cd /
  view_unmount
done
exit "$failed"
