#!/usr/bin/env bash
# Journal query benchmark: a RocksDB journal of 1,000,000 synthetic records,
# then path (exact and glob), time-range, run and held queries through the
# query planner, each against a full scan, and `scopefs stats`' computation.
# See docs/benchmarks.md, "Journal queries".
#
#   bench/query.sh [--records N] [--runs R] [--dir DIR] [--keep] [--drop-caches] [--flush-first]
#                  [--out FILE] [--quick]
#
#   --records N     journal size (default 1000000; 6 minutes to build on a busy 2-core host)
#   --runs R        runs per query; the table shows the median (default 5)
#   --dir DIR       build (or reuse, when it holds N records) the journal there
#                   instead of a temp dir under /var/tmp that is removed at the end
#   --keep          keep the temp dir
#   --drop-caches   drop the page cache before each cold open (root)
#   --flush-first   open the journal writable once first: its RocksDB log is then
#                   flushed and read-only opens have nothing to replay
#   --out FILE      also write the markdown table to FILE
#   --quick         20,000 records, one run: a smoke test (ctest runs it)
#
# Builds build/scopefs_bench_query first (CMake target scopefs_bench_query).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d build ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build build --target scopefs_bench_query -j2 >/dev/null
exec build/scopefs_bench_query "$@"
