#!/usr/bin/env bash
# Small-file benchmark (issue 18, §4): what a lake written by `serve` costs to query.
#
# `serve` commits a segment at every flush (--flush-seconds, 10 s by default), one file per
# hour partition it touched, so a busy cluster's hour holds hundreds of small files where
# `ingest` writes one or two. This script writes the same generated events twice:
#   - lake-N:       `gen | ingest` (as benches/query.sh builds it, and reuses it);
#   - lake-N-serve: the same events posted to a real `serve` over loopback, 400 per EventList as
#                   kube-apiserver batches them, with `--segment-rows R`, so each commit holds what
#                   a 10 s flush holds when the cluster sends R / 10 events per second.
# Time does not pass as it would (the generator's 22 hours arrive in minutes), so the flush is
# forced by rows, not by seconds; the file layout is what 10 s flushes leave at that rate.
#
# Then, in interleaved rounds (lakes alternate which goes first), each in a fresh process:
#   - `plan`:   SELECT count(*) FROM audit WHERE dt = '1999-01-01': lists the lake, plans,
#               reads nothing: the cost of the file count alone;
#   - `count`:  SELECT count(*) FROM audit: every file's footer;
#   - the named queries given with -q (default three of the heavier ones), all data.
#
# Usage: bash benches/small_files.sh [-n EVENTS] [-s ROWS] [-r ROUNDS] [-w DIR] [-q QUERY,...] [BINARY]
#   -n  events (default 10000000)
#   -s  rows per serve commit (default 1264: 10 s flushes at 126 events/s, which is what the
#       generator's 10M events over 22 hours come to)
#   -r  rounds (default 3)
#   -w  work directory holding the lakes (default ~/.cache/auditlake-bench, shared with
#       benches/query.sh); a lake is built once and reused
#   -q  named queries (default actor-via-proxy,secrets-by-humans,who-acted-as-whom)
#   -c  also compact a copy of the serve lake (`lake convert`, `compact`, `lake vacuum`; the
#       compaction's wall time, MB/s and peak RSS are printed) and query it as a third lake
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

EVENTS=10000000
ROWS=1264
ROUNDS=3
QUERIES="actor-via-proxy,secrets-by-humans,who-acted-as-whom"
WORK="$HOME/.cache/auditlake-bench"
COMPACT=""
while getopts "n:s:r:w:q:c" opt; do
  case "$opt" in
    n) EVENTS="$OPTARG" ;;
    s) ROWS="$OPTARG" ;;
    r) ROUNDS="$OPTARG" ;;
    w) WORK="$OPTARG" ;;
    q) QUERIES="$OPTARG" ;;
    c) COMPACT=1 ;;
    *) echo "usage: bash benches/small_files.sh [-n EVENTS] [-s ROWS] [-r ROUNDS] [-w DIR] [-q QUERY,...] [-c] [BINARY]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
source benches/lib.sh
bench_binary benches/small_files.sh "${1:-}"
mkdir -p "$WORK"
BIG="$WORK/lake-$EVENTS"
SMALL="$WORK/lake-$EVENTS-serve-$ROWS"
if [ ! -f "$BIG/.complete" ]; then
  rm -rf "$BIG"
  echo "building $BIG ($EVENTS events, seed 7)" >&2
  "$BIN" gen --events "$EVENTS" --seed 7 -o - | "$BIN" ingest --lake "$BIG" --cluster bench --no-progress -
  touch "$BIG/.complete"
fi
if [ ! -f "$SMALL/.complete" ]; then
  rm -rf "$SMALL"
  echo "building $SMALL through serve ($EVENTS events, $ROWS rows per commit)" >&2
  python3 - "$BIN" "$SMALL" "$EVENTS" "$ROWS" <<'PY'
import http.client, os, socket, subprocess, sys, tempfile, threading, time
binary, lake, events, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
token = "bench-token-0123456789abcdef0123456789"
tmp = tempfile.mkdtemp()
tokens = os.path.join(tmp, "tokens")
with open(tokens, "w") as f:
    f.write(f"{token} bench\n")
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
# --flush-seconds high, so commits come from --segment-rows alone.
serve = subprocess.Popen([binary, "serve", "--lake", lake, "--listen", f"127.0.0.1:{port}",
                          "--insecure-http", "--token-file", tokens, "--flush-seconds", "3600",
                          "--segment-rows", rows])
for _ in range(200):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5); c.request("GET", "/readyz")
        if c.getresponse().status == 200: break
    except OSError: pass
    time.sleep(0.1)
gen = subprocess.Popen([binary, "gen", "--events", str(events), "--seed", "7", "--format", "eventlist",
                        "-o", "-"], stdout=subprocess.PIPE)
lock = threading.Lock()
sent = [0]
def post():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while True:
        with lock:
            line = gen.stdout.readline()
        if not line: return
        for attempt in range(100):
            try:
                c.request("POST", "/", body=line, headers={"Authorization": f"Bearer {token}",
                                                            "Content-Type": "application/json"})
                r = c.getresponse(); r.read()
                if r.status == 200: break
            except (OSError, http.client.HTTPException):
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            time.sleep(0.05)
        else:
            sys.exit(f"batch refused 100 times (last status {r.status})")
        with lock:
            sent[0] += 1
ts = [threading.Thread(target=post) for _ in range(4)]
for t in ts: t.start()
for t in ts: t.join()
gen.wait()
serve.terminate(); serve.wait(timeout=600)
print(f"posted {sent[0]} batches", file=sys.stderr)
PY
  "$BIN" query --lake "$SMALL" "SELECT count(*) FROM audit" | grep -q "$EVENTS" \
    || { echo "benches/small_files.sh: $SMALL does not hold $EVENTS rows" >&2; exit 1; }
  touch "$SMALL/.complete"
fi

LAKES=("ingest=$BIG" "serve=$SMALL")
if [ -n "$COMPACT" ]; then
  COMPACTED="$SMALL-compacted"
  if [ ! -f "$COMPACTED/.complete" ]; then
    rm -rf "$COMPACTED"
    cp -a "$SMALL" "$COMPACTED"
    rm -f "$COMPACTED/.complete"
    [ -d "$COMPACTED/_delta_log" ] || "$BIN" lake convert "$COMPACTED"
    python3 - "$BIN" "$COMPACTED" <<'PY'
import os, subprocess, sys, time
binary, lake = sys.argv[1], sys.argv[2]
size = sum(os.path.getsize(os.path.join(d, f)) for d, _, n in os.walk(lake) for f in n if f.endswith(".parquet"))
start = time.monotonic()
p = subprocess.Popen([binary, "compact", lake])
_, status, ru = os.wait4(p.pid, 0)
wall = time.monotonic() - start
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit("compact failed")
print(f"compact: {size / 1e6:.0f} MB in {wall:.1f} s = {size / 1e6 / wall:.1f} MB/s, "
      f"CPU {ru.ru_utime + ru.ru_stime:.1f} s, peak RSS {ru.ru_maxrss / 1024:.0f} MiB")
PY
    "$BIN" lake vacuum "$COMPACTED" --min-age 0s
    touch "$COMPACTED/.complete"
  fi
  LAKES+=("compacted=$COMPACTED")
fi

python3 - "$BIN" "$ROUNDS" "$QUERIES" "${LAKES[@]}" <<'PY'
import os, re, subprocess, sys, time
binary, rounds, queries = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lakes = [tuple(a.split("=", 1)) for a in sys.argv[4:]]
def files(lake):
    fs = [os.path.join(d, f) for d, _, n in os.walk(lake) for f in n if f.endswith(".parquet")]
    parts = {os.path.dirname(f) for f in fs}
    return len(fs), len(parts), sum(os.path.getsize(f) for f in fs) / 1e6
for name, lake in lakes:
    n, p, mb = files(lake)
    print(f"{name}: {lake}: {n} Parquet files in {p} hour partitions ({n / p:.0f} per partition), {mb:.0f} MB")
probes = [("plan", ["SELECT count(*) FROM audit WHERE dt = '1999-01-01'"]),
          ("count", ["SELECT count(*) FROM audit"])]
# Subjects present in the generated traffic, for the questions that need one.
PARAMS = {"actor": "alice@example.com", "credential": "JTI=7e3f9a52-1b2c-4d5e-8f90-stolen000001"}
def named(q):
    text = open(os.path.join("queries", q + ".sql")).read()
    args = ["--named", q]
    for k, v in PARAMS.items():
        if re.search(r"^-- param: %s\b" % k, text, re.M):
            args += ["--param", f"{k}={v}"]
    return args
probes += [(q, named(q)) for q in queries.split(",") if q]
def run(lake, args):
    start = time.monotonic()
    p = subprocess.Popen([binary, "query", "--lake", lake, "--format", "csv"] + args,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = sum(chunk.count(b"\n") for chunk in iter(lambda: p.stdout.read(1 << 20), b""))
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{args} on {lake} failed: {err.decode()[-2000:]}")
    return time.monotonic() - start, ru.ru_maxrss / 1024, lines
res = {}
print("| probe | round | lake | wall s | peak RSS MiB | lines |")
print("|---|---|---|---|---|---|")
for r in range(1, rounds + 1):
    for i, (probe, args) in enumerate(probes):
        # Rotate which lake goes first, round by round and probe by probe.
        k = (r + i) % len(lakes)
        order = lakes[k:] + lakes[:k]
        for name, lake in order:
            wall, rss, lines = run(lake, args)
            res.setdefault((probe, name), []).append((wall, rss, lines))
            print(f"| {probe} | {r} | {name} | {wall:.2f} | {rss:.0f} | {lines} |", flush=True)
def rng(xs, fmt):
    lo, hi = min(xs), max(xs)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else fmt.format(lo) + "–" + fmt.format(hi)
print()
others = [name for name, _ in lakes[1:]]
print("| probe | ingest lake s | " + " | ".join(f"{o} lake s | {o} / ingest" for o in others)
      + " | RSS MiB (" + ", ".join(n for n, _ in lakes) + ") | same answer |")
print("|---|---|" + "---|---|" * len(others) + "---|---|")
bad = False
for probe, _ in probes:
    base = res[(probe, "ingest")]
    cells = [rng([x[0] for x in base], '{:.2f}')]
    same = True
    for o in others:
        b = res[(probe, o)]
        cells += [rng([x[0] for x in b], '{:.2f}'), rng([y[0] / x[0] for x, y in zip(base, b)], '{:.1f}×')]
        same &= all(x[2] == y[2] for x, y in zip(base, b))
    rss = ", ".join(rng([x[1] for x in res[(probe, n)]], '{:.0f}') for n, _ in lakes)
    bad |= not same
    print(f"| {probe} | " + " | ".join(cells) + f" | {rss} | {'yes' if same else 'NO'} |")
sys.exit(1 if bad else 0)
PY
