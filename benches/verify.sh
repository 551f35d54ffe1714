#!/usr/bin/env bash
# Tamper-evidence benchmark (issue 21, §4): how fast `auditlake lake verify` re-reads a lake.
#
# Copies the 10M-event lake that benches/query.sh builds (or any lake given with -l) to a work
# directory, converts the copy (`lake convert`, which hashes every file once: timed), then runs
# `lake verify` -r times, dropping nothing from the page cache (the VM has no way to), so the
# figure is the hash and log replay over cached files: the ceiling a disk-bound run approaches
# from below. One row per run: wall, CPU, peak RSS, MB/s of data files hashed.
#
# Usage: bash benches/verify.sh [-l LAKE] [-r ROUNDS] [-w DIR] [BINARY]
#   -l  the lake to copy (default ~/.cache/auditlake-bench/lake-10000000)
#   -r  verify runs (default 3)
#   -w  work directory for the copy (default: a new temporary one, removed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

LAKE="$HOME/.cache/auditlake-bench/lake-10000000"
ROUNDS=3
WORK=""
while getopts "l:r:w:" opt; do
  case "$opt" in
    l) LAKE="$OPTARG" ;;
    r) ROUNDS="$OPTARG" ;;
    w) WORK="$OPTARG" ;;
    *) echo "usage: bash benches/verify.sh [-l LAKE] [-r ROUNDS] [-w DIR] [BINARY]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
source benches/lib.sh
bench_binary benches/verify.sh "${1:-}"
if [ ! -d "$LAKE" ]; then
  echo "benches/verify.sh: no lake at $LAKE; build one with benches/query.sh or pass -l" >&2
  exit 2
fi
if [ -z "$WORK" ]; then
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
fi
COPY="$WORK/lake"
rm -rf "$COPY"
cp -r "$LAKE" "$COPY"
rm -rf "$COPY/_delta_log"   # a lake of the older layout, or one converted before: start over
BYTES=$(find "$COPY" -name '*.parquet' -not -path '*/_*' -printf '%s\n' | awk '{s+=$1} END {print s}')
FILES=$(find "$COPY" -name '*.parquet' -not -path '*/_*' | wc -l)
echo "lake: $LAKE ($FILES files, $((BYTES / 1000000)) MB), binary: $BIN"

# rusage of one child: wall s, CPU s, peak RSS MiB.
measure() {
  python3 - "$@" <<'PY'
import resource, subprocess, sys, time
t = time.monotonic()
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
wall = time.monotonic() - t
u = resource.getrusage(resource.RUSAGE_CHILDREN)
if r.returncode != 0:
    sys.stderr.write(r.stderr)
    sys.exit(r.returncode)
print(f"{wall:.2f} {u.ru_utime + u.ru_stime:.2f} {u.ru_maxrss // 1024}")
PY
}

echo
echo "| run | wall s | CPU s | peak RSS MiB | MB/s |"
echo "|---|---|---|---|---|"
read -r w c m < <(measure "$BIN" lake convert "$COPY")
echo "| lake convert (hashes every file) | $w | $c | $m | $(python3 -c "print(f'{$BYTES / 1e6 / $w:.0f}')") |"
for i in $(seq 1 "$ROUNDS"); do
  read -r w c m < <(measure "$BIN" lake verify "$COPY")
  echo "| lake verify $i | $w | $c | $m | $(python3 -c "print(f'{$BYTES / 1e6 / $w:.0f}')") |"
done
