#!/usr/bin/env bash
# Instructions executed by `auditlake ingest`, counted by valgrind's
# cachegrind: repeatable to a few tenths of a per cent (thread timing moves
# a little work around), where this VM's timings drift by 15-20% between
# runs. A change too small to see in
# `benches/ingest.sh` (a few per cent) is measured here instead. Instruction
# counts are not time (cache misses, hashing and compression run at very
# different instructions per cycle), so the end-to-end figures in the
# README still come from `benches/ingest.sh`.
#
# Usage: bash benches/instructions.sh [-n EVENTS] [-t TOP] [BINARY...]
#   -n  events to generate and ingest (default 50000, seed 1)
#   -t  functions to list per binary, most instructions first (default 15)
#   BINARY  auditlake executables to compare (default: `--release` build)
# Needs valgrind (Debian: apt-get install valgrind). Takes about ten seconds
# per binary for 50,000 events.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

EVENTS=50000
TOP=15
while getopts "n:t:" opt; do
  case "$opt" in
    n) EVENTS="$OPTARG" ;;
    t) TOP="$OPTARG" ;;
    *) echo "usage: bash benches/instructions.sh [-n EVENTS] [-t TOP] [BINARY...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
command -v valgrind >/dev/null || {
  echo "benches/instructions.sh: valgrind is not installed (Debian: apt-get install valgrind)" >&2
  exit 2
}
BINS=("$@")
if [ ${#BINS[@]} -eq 0 ]; then
  cargo build --release --bin auditlake --quiet
  BINS=("$CARGO_TARGET_DIR/release/auditlake")
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
INPUT="$WORK/events.jsonl"
"${BINS[0]}" gen --events "$EVENTS" --seed 1 -o "$INPUT"

echo "| binary | instructions | per event |"
echo "|---|---|---|"
i=0
for b in "${BINS[@]}"; do
  i=$((i + 1))
  out="$WORK/cg-$i.out"
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$out" \
    "$b" ingest --lake "$WORK/lake-$i" "$INPUT" >/dev/null 2>"$WORK/vg-$i.log" || {
    echo "benches/instructions.sh: $b failed under valgrind, see below" >&2
    tail -20 "$WORK/vg-$i.log" >&2
    exit 1
  }
  total=$(awk '/^summary:/ {print $2}' "$out")
  echo "| $b | $total | $((total / EVENTS)) |"
  cp "$out" "$WORK/keep-$i.out"
done
i=0
for b in "${BINS[@]}"; do
  i=$((i + 1))
  echo
  echo "$b, top $TOP functions:"
  cg_annotate --show-percs=yes "$WORK/keep-$i.out" 2>/dev/null |
    awk '/file:function/ {on = 1; getline; next} on && NF == 0 {exit} on' |
    head -n "$TOP"
done
