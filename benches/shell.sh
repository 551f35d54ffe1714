#!/usr/bin/env bash
# `auditlake shell` against one `auditlake query` process per question: the same named queries,
# with the same window, on the same lake. The shell opens the lake (lists the partitions,
# reads the Delta log, checks every file's frame) once; separate processes open it each time.
# The outputs of both are compared, and the script fails if they differ.
#
# The project VM's speed drifts by up to 2x between periods, so the two are compared only
# within a round; the order alternates from round to round.
#
# Usage: bash benches/shell.sh [-r ROUNDS] [-l LAKE] [-q Q,...] [-s SINCE] [-u UNTIL] [BINARY]
#   -r  rounds (default 3)
#   -l  lake (default: the 10M-event lake of benches/query.sh, ~/.cache/auditlake-bench/L10M,
#       built the same way if missing)
#   -q  named queries, comma-separated (default: five that take no parameter)
#   -s, -u  the window (default: one day of that lake, 2026-11-21)
#   BINARY  the auditlake executable (default: builds --release)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

ROUNDS=3
LAKE="$HOME/.cache/auditlake-bench/L10M"
QUERIES="events-deleted,denied-per-actor,exec-attach-portforward,anonymous-allowed,proxy-summary"
SINCE=2026-11-21T00:00:00Z
UNTIL=2026-11-22T00:00:00Z
while getopts "r:l:q:s:u:" opt; do
  case "$opt" in
    r) ROUNDS="$OPTARG" ;;
    l) LAKE="$OPTARG" ;;
    q) QUERIES="$OPTARG" ;;
    s) SINCE="$OPTARG" ;;
    u) UNTIL="$OPTARG" ;;
    *) echo "usage: bash benches/shell.sh [-r ROUNDS] [-l LAKE] [-q Q,...] [-s SINCE] [-u UNTIL] [BINARY]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
source benches/lib.sh
bench_binary benches/shell.sh "${1:-}"
if [ ! -d "$LAKE" ]; then
  echo "benches/shell.sh: building $LAKE (10M events, seed 7)" >&2
  "$BIN" gen --events 10000000 --seed 7 -o - | "$BIN" ingest --lake "$LAKE" --cluster bench - 2>/dev/null
fi

WINDOW=(--since "$SINCE" --until "$UNTIL")
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
IFS=, read -r -a QS <<<"$QUERIES"
{
  echo ".mode csv"
  for q in "${QS[@]}"; do echo ".named $q ${WINDOW[*]}"; done
} >"$WORK/script.sql"

now() { date +%s.%N; }
run_shell() { "$BIN" shell --lake "$LAKE" <"$WORK/script.sql" >"$WORK/shell.out"; }
run_processes() {
  for q in "${QS[@]}"; do
    "$BIN" query --lake "$LAKE" --named "$q" "${WINDOW[@]}" --format csv
  done >"$WORK/processes.out"
}

echo "| round | first | shell s | processes s | processes / shell |"
echo "|---|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then first=shell; else first=processes; fi
  for who in $first $([ $first = shell ] && echo processes || echo shell); do
    a=$(now)
    "run_$who"
    b=$(now)
    eval "t_$who=$(echo "$b - $a" | bc)"
  done
  cmp -s "$WORK/shell.out" "$WORK/processes.out" || {
    echo "benches/shell.sh: the shell's answers differ from the processes' (round $r)" >&2
    exit 1
  }
  printf '| %s | %s | %.2f | %.2f | %.3f |\n' "$r" "$first" "$t_shell" "$t_processes" \
    "$(echo "$t_processes / $t_shell" | bc -l)"
done
echo "answers: $(wc -l <"$WORK/shell.out") lines of CSV for ${#QS[@]} queries, the same from both"
