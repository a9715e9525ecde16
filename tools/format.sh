#!/usr/bin/env bash
# clang-format over every project C++ file (.clang-format at the top).
#
#   tools/format.sh           reformat the files in place
#   tools/format.sh --check   change nothing; list what differs, exit 1 if anything does
#
# Project files: tracked *.cpp/*.hpp (git ls-files), so build trees and
# anything outside the repository are never touched.
set -euo pipefail
cd "$(dirname "$0")/.."

CLANG_FORMAT=${CLANG_FORMAT:-$(command -v clang-format-14 || command -v clang-format)}
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.h' '*.cc')

case "${1:-}" in
  "")
    "$CLANG_FORMAT" -i "${files[@]}"
    ;;
  --check)
    # One clang-format process for all files; each difference is a warning
    # naming its file.
    mapfile -t bad < <("$CLANG_FORMAT" --dry-run "${files[@]}" 2>&1 |
                       sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: warning: code should be clang-formatted.*/\1/p' |
                       sort -u)
    if ((${#bad[@]})); then
      printf 'needs formatting: %s\n' "${bad[@]}"
      echo "run tools/format.sh to reformat" >&2
      exit 1
    fi
    ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
