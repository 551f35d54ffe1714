#!/usr/bin/env bash
# The lake on a local disk against the lake on an S3-compatible server (SeaweedFS on loopback,
# tests/s3.sh), side by side: `ingest` of the same generated events, then a query
# of each lake, first with an empty cache (the mirror fetches every live file) and then warm.
#
# The project VM's speed drifts by up to 2x between periods, so the two are only compared
# within a round; the order alternates from round to round. SeaweedFS stores on the same disk
# and runs on the same two cores, so the figures are the protocol's cost (requests, uploads,
# hashing, conditional puts, the server's own work), not a network's.
#
# Usage: bash benches/s3.sh [-n EVENTS] [-r ROUNDS] [-w DIR] [BINARY]
#   -n  events to generate (default 1000000, seed 1)
#   -r  rounds (default 3)
#   -w  work directory (default: a new temporary one, removed at the end)
#   BINARY  the auditlake executable (default: builds --release)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

EVENTS=1000000
ROUNDS=3
WORK=""
while getopts "n:r:w:" opt; do
  case "$opt" in
    n) EVENTS="$OPTARG" ;;
    r) ROUNDS="$OPTARG" ;;
    w) WORK="$OPTARG" ;;
    *) echo "usage: bash benches/s3.sh [-n EVENTS] [-r ROUNDS] [-w DIR] [BINARY]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
source benches/lib.sh
bench_binary benches/s3.sh "${1:-}"
if [ -z "$WORK" ]; then
  WORK="$(mktemp -d)"
  trap 'bash tests/s3.sh stop "$WORK/s3" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
else
  trap 'bash tests/s3.sh stop "$WORK/s3" >/dev/null 2>&1 || true' EXIT
fi
mkdir -p "$WORK"
INPUT="$WORK/events-$EVENTS.jsonl"
if [ ! -s "$INPUT" ]; then
  "$BIN" gen --events "$EVENTS" --seed 1 -o "$INPUT.tmp"
  mv "$INPUT.tmp" "$INPUT"
fi
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
bash tests/s3.sh start "$WORK/s3" "$PORT" >/dev/null
bash tests/s3.sh bucket "$WORK/s3" bench >/dev/null

python3 - "$BIN" "$INPUT" "$EVENTS" "$ROUNDS" "$WORK" "$PORT" <<'PY'
import os, shutil, subprocess, sys, time

bin_, path, events, rounds, work, port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
env = dict(os.environ,
           AUDITLAKE_LAKE_OPTIONS=f"endpoint=http://127.0.0.1:{port},allow_http=true,region=us-east-1",
           AWS_ACCESS_KEY_ID="auditlake", AWS_SECRET_ACCESS_KEY="auditlake-secret")
size = os.path.getsize(path)
print(f"input: {path}, {events:,} events, {size / 1e6:,.1f} MB")
QUERY = "SELECT actor_username, count(*) FROM requests GROUP BY 1 ORDER BY 2 DESC LIMIT 5"

def run(args, cache):
    e = dict(env, AUDITLAKE_LAKE_CACHE=cache)
    with open(os.path.join(work, "stderr"), "wb") as errf:
        start = time.monotonic()
        p = subprocess.Popen([bin_] + args, stdout=subprocess.PIPE, stderr=errf, env=e)
        out = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{args} failed:\n" + open(os.path.join(work, "stderr")).read())
    return wall, ru.ru_maxrss / 1024, out

print("| lake | round | ingest events/s | ingest wall | ingest RSS | query, cold cache | query, warm | query RSS |")
print("|---|---|---|---|---|---|---|---|")
walls = {"local": [], "s3": []}
answers = {}
for r in range(1, rounds + 1):
    order = ["local", "s3"] if r % 2 else ["s3", "local"]
    for kind in order:
        cache = os.path.join(work, "cache")
        shutil.rmtree(cache, ignore_errors=True)
        if kind == "local":
            lake = os.path.join(work, "lake")
            shutil.rmtree(lake, ignore_errors=True)
        else:
            # A new prefix each round: the server keeps what earlier rounds wrote.
            lake = f"s3://bench/lake-{r}"
        with open(path, "rb") as f:
            while f.read(8 << 20):
                pass
        iw, irss, _ = run(["ingest", "--lake", lake, "--no-progress", path], cache)
        qc, _, out1 = run(["query", "--lake", lake, "--format", "csv", QUERY], cache)
        qw, qrss, out2 = run(["query", "--lake", lake, "--format", "csv", QUERY], cache)
        assert out1 == out2, "cold and warm answers differ"
        answers.setdefault(kind, out1)
        walls[kind].append((iw, qc, qw))
        print(f"| {kind} | {r} | {events / iw:,.0f} | {iw:.2f} s | {irss:,.0f} MiB | {qc:.2f} s | {qw:.2f} s | {qrss:,.0f} MiB |")
if answers.get("local") != answers.get("s3"):
    sys.exit("the two lakes answer differently")
ratios = [(s[0] / l[0], s[1] / l[1], s[2] / l[2]) for l, s in zip(walls["local"], walls["s3"])]
for i, name in enumerate(["ingest", "query, cold cache", "query, warm"]):
    vals = sorted(x[i] for x in ratios)
    print(f"s3 / local, {name}: {', '.join(f'{v:.2f}' for v in vals)} (median {vals[len(vals) // 2]:.2f})")
PY
