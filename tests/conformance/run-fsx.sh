#!/usr/bin/env bash
# Runs fsx (xfstests' ltp/fsx, built by you: FSX_BINARY) on one file inside a
# scopefs view, per access mode, with and without mmap. fsx checks every read
# against its own model of the file, so any lost or misplaced write, wrong
# size after truncate, fallocate, punch hole, zero range, copy range... is a
# failure. Each mode gets a fresh source, state and mount (unmounted on exit).
# After each run:
#   write: the real file (the bind's source) is byte-identical to the view's;
#   stage: the real tree is still empty (every change was held);
# and the view's file reads the same after an unmount and a new mount.
#
#   sudo tests/conformance/run-fsx.sh FSX_BINARY [MODE...]
#
# MODE: write, stage (default: both). Environment: FSX_OPS (operations per
# run, default 1000000), FSX_SEED (default 1), FSX_VARIANTS (default
# "mmap nommap"; nommap is -R -W), LOG_DIR (default: the current directory;
# fsx's output and, on failure, its .fsxlog/.fsxgood go there). Exits non-zero if any run failed.
source "$(dirname "$0")/lib.sh"

if [[ $# -lt 1 ]]; then
  echo "usage: $0 FSX_BINARY [write|stage...]" >&2
  exit 2
fi
FSX=$(realpath "$1")
shift
MODES=("$@")
((${#MODES[@]})) || MODES=(write stage)
OPS=${FSX_OPS:-1000000}
SEED=${FSX_SEED:-1}
read -r -a VARIANTS <<<"${FSX_VARIANTS:-mmap nommap}"
LOG_DIR=$(mkdir -p "${LOG_DIR:-.}" && cd "${LOG_DIR:-.}" && pwd)
[[ -x $FSX ]] || { echo "$0: $FSX is not an executable" >&2; exit 2; }
view_require_root

failed=0
for mode in "${MODES[@]}"; do
  view_mount "$mode"
  for variant in "${VARIANTS[@]}"; do
    args=(-q -N "$OPS" -S "$SEED" -P "$LOG_DIR")
    [[ $variant == nommap ]] && args+=(-R -W)
    name=fsx-$mode-$variant
    echo "== fsx ${args[*]} $VIEW/$name   (access = $mode)"
    start=$SECONDS
    rc=0
    "$FSX" "${args[@]}" "$VIEW/$name" >"$LOG_DIR/$name.out" 2>&1 || rc=$?
    tail -3 "$LOG_DIR/$name.out"
    verdict=ok
    if ((rc != 0)); then
      verdict="fsx exit $rc (see $LOG_DIR/$name.fsxlog)"
    elif [[ $mode == write ]] && ! cmp -s "$VIEW/$name" "$VIEW_SRC/$name"; then
      verdict="the real file differs from the view's"
    elif [[ $mode == stage && -n $(ls -A "$VIEW_SRC") ]]; then
      verdict="the real tree changed under stage: $(ls -A "$VIEW_SRC")"
    else
      # The file survives a remount unchanged (held: from the overlay).
      before=$(sha256sum <"$VIEW/$name")
      view_remount
      after=$(sha256sum <"$VIEW/$name")
      [[ $before == "$after" ]] || verdict="the file changed across a remount"
    fi
    echo "   $OPS operations, $((SECONDS - start)) s: $verdict"
    [[ $verdict == ok ]] || failed=1
  done
  errs=$(view_log_errors)
  if [[ -n $errs ]]; then
    echo "   daemon logged errors:"; echo "$errs"; failed=1
  fi
  cd /
  view_unmount
done
exit "$failed"
