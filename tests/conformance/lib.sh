# Shared by the conformance runners (run-pjdfstest.sh, run-fsx.sh,
# run-fsstress.sh): mounts a real scopefs view of a fresh source directory with
# a generated task config in a private temp dir, and always unmounts it and
# removes the temp dir on exit, whatever happened.
#
# Source this file, then call `view_mount MODE` (MODE: write | stage); it sets
# VIEW (the mounted directory), VIEW_SRC (the bind's real source) and
# VIEW_CONFIG. `view_unmount` unmounts the current view; the EXIT trap does it
# too. SCOPEFS_BIN names the binary (default: build/scopefs of this tree).

set -euo pipefail

CONFORMANCE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SCOPEFS="${SCOPEFS_BIN:-$CONFORMANCE_ROOT/build/scopefs}"
VIEW_TMP=""
VIEW=""
VIEW_SRC=""
VIEW_CONFIG=""

view_require_root() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "$(basename "$0"): must run as root (scopefs mounts with allow_other)" >&2
    exit 2
  fi
  if [[ ! -x $SCOPEFS ]]; then
    echo "$(basename "$0"): no scopefs binary at $SCOPEFS (build first, or set SCOPEFS_BIN)" >&2
    exit 2
  fi
}

view_is_mounted() {
  [[ -n $VIEW ]] && findmnt -rn -M "$VIEW" >/dev/null 2>&1
}

view_unmount() {
  if [[ -n $VIEW_CONFIG ]] && view_is_mounted; then
    "$SCOPEFS" unmount "$VIEW_CONFIG" >/dev/null 2>&1 \
      || fusermount3 -u "$VIEW" 2>/dev/null \
      || umount -l "$VIEW" 2>/dev/null || true
  fi
  VIEW_CONFIG=""
}

view_cleanup() {
  local rc=$?
  cd / || true
  view_unmount
  if [[ -n $VIEW_TMP ]]; then
    # Never delete through a mount that is still up.
    if findmnt -rn -M "$VIEW_TMP/mnt" >/dev/null 2>&1; then
      umount -l "$VIEW_TMP/mnt" 2>/dev/null || true
    fi
    rm -rf "$VIEW_TMP"
  fi
  exit "$rc"
}
trap view_cleanup EXIT
trap 'exit 130' INT TERM

# view_remount: unmounts the current view and mounts the same config again
# (same source and state).
view_remount() {
  local cfg=$VIEW_CONFIG
  cd /
  view_unmount
  VIEW_CONFIG=$cfg
  "$SCOPEFS" mount "$VIEW_CONFIG"
}

# view_mount MODE: a fresh source and state under a new temp dir, one root bind
# at MODE, mounted with the real `scopefs mount` (which returns once the view
# answers).
view_mount() {
  local mode=$1
  view_unmount
  if [[ -n $VIEW_TMP ]]; then rm -rf "$VIEW_TMP"; fi
  VIEW_TMP=$(mktemp -d "${TMPDIR:-/tmp}/scopefs-conformance.XXXXXX")
  chmod 0755 "$VIEW_TMP"
  VIEW_SRC=$VIEW_TMP/src
  VIEW=$VIEW_TMP/mnt
  VIEW_CONFIG=$VIEW_TMP/task.toml
  mkdir -m 0755 "$VIEW_SRC" "$VIEW"
  cat >"$VIEW_CONFIG" <<EOF
[task]
name = "conformance-$mode"
mountpoint = "$VIEW"
state_dir = "$VIEW_TMP/state"

[[bind]]
path = ""
source = "$VIEW_SRC"
access = "$mode"
EOF
  "$SCOPEFS" mount "$VIEW_CONFIG"
}

# The daemon's log lines at error or critical level (none expected).
view_log_errors() {
  grep -E '^[0-9T:.-]+ (error|critical) ' "$VIEW_TMP/state/daemon.log" 2>/dev/null || true
}

# tree_digest DIR: one sorted line per entry below DIR: path, type, mode,
# size, link count, owner, group, mtime, and the content hash of regular files
# or the target of symlinks. Equal digests: equal trees (inode numbers aside).
# (Names with newlines are not expected: fsstress makes none.)
tree_digest() {
  local dir=$1 line path type
  (cd "$dir" && find . -mindepth 1 -printf '%P\t%y %m %s %n %U %G %T@ %l\n' | LC_ALL=C sort) |
    while IFS= read -r line; do
      path=${line%%$'\t'*}
      type=${line#*$'\t'}
      type=${type%% *}
      if [[ $type == f ]]; then
        echo "$line $(sha256sum <"$dir/$path" | cut -c1-16)"
      else
        echo "$line"
      fi
    done
}
