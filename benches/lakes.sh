#!/usr/bin/env bash
# Every named query on two or more lakes holding the same events (issue 18: does compaction
# bring the 10M-event lake under the 2 s target?), in interleaved rounds: each round runs each
# query once on every lake, the lake order rotating, each run a fresh process. The answers'
# row counts must agree across lakes, or the row is marked.
#
# Usage: bash benches/lakes.sh [-r ROUNDS] [-q QUERY,...] [-b BINARY] LAKE LAKE...
#   -r  rounds (default 2)
#   -q  only these named queries (default: all of `auditlake queries`)
#   -b  the auditlake executable (default: a --release build)
# Parameters as benches/query.sh gives them (alice@example.com, the stolen token).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
ROUNDS=2
ONLY=""
BIN=""
while getopts "r:q:b:" opt; do
  case "$opt" in
    r) ROUNDS="$OPTARG" ;;
    q) ONLY="$OPTARG" ;;
    b) BIN="$OPTARG" ;;
    *) echo "usage: bash benches/lakes.sh [-r ROUNDS] [-q QUERY,...] [-b BINARY] LAKE LAKE..." >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [ "$#" -lt 2 ]; then
  echo "benches/lakes.sh: give two or more lakes" >&2
  exit 2
fi
if [ -z "$BIN" ]; then
  cargo build --release --bin auditlake --quiet
  BIN="$CARGO_TARGET_DIR/release/auditlake"
fi
python3 - "$BIN" "$ROUNDS" "$ONLY" queries "$@" <<'PY'
import os, re, subprocess, sys, time
binary, rounds, only, qdir, lakes = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
PARAMS = {"actor": "alice@example.com",
          "credential": "JTI=7e3f9a52-1b2c-4d5e-8f90-stolen000001"}
names = sorted(f[:-4] for f in os.listdir(qdir) if f.endswith(".sql"))
if only:
    names = [n for n in names if n in only.split(",")]

def run(lake, name):
    cmd = [binary, "query", "--lake", lake, "--format", "csv", "--named", name]
    text = open(os.path.join(qdir, name + ".sql")).read()
    for p, v in PARAMS.items():
        if re.search(r"^-- param: %s\b" % p, text, re.M):
            cmd += ["--param", f"{p}={v}"]
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lines = 0
    while True:
        b = p.stdout.read(1 << 20)
        if not b:
            break
        lines += b.count(b"\n")
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - start
    ok = os.waitstatus_to_exitcode(status) == 0
    return wall, ru.ru_maxrss / 1024, lines if ok else None

results = {(n, l): [] for n in names for l in lakes}
for r in range(rounds):
    for i, n in enumerate(names):
        order = lakes[(r + i) % len(lakes):] + lakes[:(r + i) % len(lakes)]
        for l in order:
            results[(n, l)].append(run(l, n))
short = [os.path.basename(l.rstrip("/")) for l in lakes]
print(f"binary: {binary}; rounds: {rounds}; lakes: " + ", ".join(f"L{i} = {s}" for i, s in enumerate(short)))
head = "| query | " + " | ".join(f"L{i} s" for i in range(len(lakes))) + " | " + " | ".join(f"L{i}/L0" for i in range(1, len(lakes))) + " | RSS MiB | rows agree |"
print(head)
print("|" + "---|" * (head.count("|") - 1))
under = [0] * len(lakes)
for n in names:
    cells, ratios, rss, rows = [], [], [], set()
    for i, l in enumerate(lakes):
        ws = [w for w, _, _ in results[(n, l)]]
        cells.append(f"{min(ws):.2f}–{max(ws):.2f}")
        if max(ws) <= 2.0:
            under[i] += 1
        rss.append(f"{max(m for _, m, _ in results[(n, l)]):.0f}")
        rows |= {k for _, _, k in results[(n, l)]}
    base = [w for w, _, _ in results[(n, lakes[0])]]
    for l in lakes[1:]:
        rs = [w / b for (w, _, _), b in zip(results[(n, l)], base)]
        ratios.append(f"{min(rs):.2f}–{max(rs):.2f}")
    agree = "yes" if len(rows) == 1 and None not in rows else f"NO {sorted(rows, key=str)}"
    print(f"| {n} | " + " | ".join(cells) + " | " + " | ".join(ratios) + f" | {', '.join(rss)} | {agree} |")
print()
print("queries at or under 2 s in every round: " + ", ".join(f"L{i} {u}/{len(names)}" for i, u in enumerate(under)))
PY
