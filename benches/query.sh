#!/usr/bin/env bash
# Named-query benchmark (issue 18): every named query on a generated lake,
# through auditlake and through DuckDB on the same files with the same
# relation definitions (`auditlake queries --reference-views`), with the
# default parameters and with a one-day window.
#
# The VM's speed drifts by up to 2x between periods, so engines are only
# compared within a round: each round runs every query on each engine
# once, alternating which engine goes first, each in a fresh process
# (start-up and lake opening included, as a user runs it). Wall time and
# peak RSS come from the kernel's rusage of the child. Each run's row count
# is checked against the other engine's: a figure for a wrong answer is
# worth nothing.
#
# Usage: bash benches/query.sh [-n EVENTS] [-r ROUNDS] [-w DIR] [-d SECONDS] [-q QUERY,...] [BINARY]
#   -n  events in the lake (default 10000000; 100000000 for the large pair)
#   -r  rounds (default 3)
#   -w  work directory holding the lakes (default ~/.cache/auditlake-bench);
#       a lake is built once per event count and reused
#   -d  DuckDB timeout per run in seconds (default 300; 0 skips DuckDB)
#   -q  only these named queries (comma-separated)
#   BINARY  the auditlake executable (default: a --release build)
# DuckDB runs with 2 threads and a 4 GB memory limit (it spills beyond).
# Needs python3 with duckdb (tests/run.sh installs one into
# ~/.cache/auditlake/venv; AUDITLAKE_BENCH_PYTHON overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

EVENTS=10000000
ROUNDS=3
WORK="$HOME/.cache/auditlake-bench"
DUCK_TIMEOUT=300
ONLY=""
while getopts "n:r:w:d:q:" opt; do
  case "$opt" in
    n) EVENTS="$OPTARG" ;;
    r) ROUNDS="$OPTARG" ;;
    w) WORK="$OPTARG" ;;
    d) DUCK_TIMEOUT="$OPTARG" ;;
    q) ONLY="$OPTARG" ;;
    *) echo "usage: bash benches/query.sh [-n EVENTS] [-r ROUNDS] [-w DIR] [-d SECONDS] [-q QUERY,...] [BINARY]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
source benches/lib.sh
bench_binary benches/query.sh "${1:-}"
PY="${AUDITLAKE_BENCH_PYTHON:-$HOME/.cache/auditlake/venv/bin/python}"
if [ "$DUCK_TIMEOUT" != 0 ] && ! "$PY" -c 'import duckdb' 2>/dev/null; then
  echo "benches/query.sh: $PY cannot import duckdb; run tests/run.sh once, set AUDITLAKE_BENCH_PYTHON, or pass -d 0" >&2
  exit 2
fi
[ "$DUCK_TIMEOUT" != 0 ] || PY="${AUDITLAKE_BENCH_PYTHON:-python3}"

mkdir -p "$WORK"
LAKE="$WORK/lake-$EVENTS"
if [ ! -f "$LAKE/.complete" ]; then
  rm -rf "$LAKE"
  echo "building $LAKE ($EVENTS events, seed 7)" >&2
  "$BIN" gen --events "$EVENTS" --seed 7 -o - | "$BIN" ingest --lake "$LAKE" --cluster bench --no-progress -
  touch "$LAKE/.complete"
fi
"$BIN" queries --reference-views > "$WORK/reference-views.sql"

"$PY" - "$BIN" "$LAKE" "$ROUNDS" "$DUCK_TIMEOUT" "$WORK/reference-views.sql" "$ONLY" queries <<'PY'
import os, re, subprocess, sys, threading, time

binary, lake, rounds, duck_timeout, views_file, only, qdir = sys.argv[1:8]
rounds, duck_timeout = int(rounds), int(duck_timeout)
views = open(views_file).read()

# Parameters for the questions that name a subject: values present in the
# generated traffic.
PARAMS = {"actor": "alice@example.com",
          "credential": "JTI=7e3f9a52-1b2c-4d5e-8f90-stolen000001"}
# The generator starts at 2026-11-20T08:00:00Z; this day is inside every
# lake of 2M events or more.
DAY = ("2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z")

names = sorted(f[:-4] for f in os.listdir(qdir) if f.endswith(".sql"))
if only:
    names = [n for n in names if n in only.split(",")]

def run_rss(cmd, timeout=None):
    """Wall seconds, peak RSS (MiB), stdout (its last 64 KiB), status, stdout lines."""
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Output is counted as it arrives, keeping only its tail: a child forked
    # while this process held a 763 MB answer inherited that as its peak
    # RSS (the kernel carries the high-water mark across exec).
    chunks = {"out": b"", "err": b"", "lines": 0}
    def pump(name, f):
        while True:
            b = f.read(1 << 20)
            if not b:
                return
            if name == "out":
                chunks["lines"] += b.count(b"\n")
            chunks[name] = (chunks[name] + b)[-(64 << 10):]
    ts = [threading.Thread(target=pump, args=("out", p.stdout)),
          threading.Thread(target=pump, args=("err", p.stderr))]
    for t in ts: t.start()
    deadline = None if not timeout else start + timeout
    while True:
        r = os.wait4(p.pid, os.WNOHANG)
        if r[0] != 0:
            _, status, ru = r
            break
        if deadline and time.monotonic() > deadline:
            p.kill()
            _, status, ru = os.wait4(p.pid, 0)
            for t in ts: t.join()
            p.returncode = -9
            return None, ru.ru_maxrss / 1024, b"", "timeout", 0
        time.sleep(0.005)
    wall = time.monotonic() - start
    for t in ts: t.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        return wall, ru.ru_maxrss / 1024, chunks["err"], "failed", 0
    return wall, ru.ru_maxrss / 1024, chunks["out"], "ok", chunks["lines"]

def auditlake_cmd(name, window):
    cmd = [binary, "query", "--lake", lake, "--format", "csv", "--named", name]
    text = open(os.path.join(qdir, name + ".sql")).read()
    for p, v in PARAMS.items():
        if re.search(r"^-- param: %s\b" % p, text, re.M):
            cmd += ["--param", f"{p}={v}"]
    if window:
        cmd += ["--since", DAY[0], "--until", DAY[1]]
    return cmd

def duck_sql(name, window):
    """The named query rendered for DuckDB, on the reference views."""
    text = open(os.path.join(qdir, name + ".sql")).read()
    history = re.search(r"^-- window: history", text, re.M) is not None
    lit = lambda v: "'" + v.replace("'", "''") + "'"
    since = DAY[0] if window else "1970-01-01T00:00:00Z"
    until = DAY[1] if window else "2100-01-01T00:00:00Z"
    def sub(m):
        k = m.group(1).strip()
        if k == "since": return f"TIMESTAMPTZ {lit(since)}"
        if k == "until": return f"TIMESTAMPTZ {lit(until)}"
        return lit(PARAMS[k])
    body = re.sub(r"\{\{([^}]*)\}\}", sub, text)
    # DataFusion spellings DuckDB reads differently.
    body = re.sub(r"to_timestamp_micros\(('[^']*')\)", r"TIMESTAMPTZ \1", body)
    body = re.sub(r"annotations\['([^']*)'\]", r"map_extract(annotations, '\1')[1]", body)
    where = []
    if window:
        if not history:
            where.append(f"request_received_at >= TIMESTAMPTZ {lit(since)} AND dt >= {lit(since[:10])}")
        where.append(f"request_received_at < TIMESTAMPTZ {lit(until)} AND dt <= {lit(until[:10])}")
    filt = (" WHERE " + " AND ".join(where)) if where else ""
    src = (f"read_parquet('{lake}/**/*.parquet', hive_partitioning = true, "
           "hive_types = {'dt': VARCHAR, 'hour': VARCHAR})")
    return (f"CREATE VIEW audit AS SELECT * FROM {src}{filt};\n" + views + "\n" + body)

DUCK = r'''
import sys, duckdb
con = duckdb.connect()
con.execute("SET threads = 2")
# Unbounded, DuckDB took 20 GB of this 24 GB machine on the 10M-event lake.
con.execute("SET memory_limit = '4GB'")
con.execute("SET enable_progress_bar = false")
stmts = sys.stdin.read()
*setup, last = [s for s in stmts.split(";\n") if s.strip()]
for s in setup:
    con.execute(s)
rows = con.execute(last).fetchall()
print(len(rows))
'''

results = {}  # (name, window, engine) -> list of (wall, rss)
counts = {}
print(f"lake: {lake}: {sum(1 for _, _, fs in os.walk(lake) for f in fs if f.endswith('.parquet'))} Parquet files, {sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(lake) for f in fs if f.endswith('.parquet')) / 1e6:.0f} MB")
print("| query | window | round | engine | wall s | peak RSS MiB | rows |")
print("|---|---|---|---|---|---|---|")
for r in range(1, rounds + 1):
    for i, name in enumerate(names):
        for window in (False, True):
            engines = ["auditlake", "duckdb"] if duck_timeout else ["auditlake"]
            if (r + i) % 2 == 0:
                engines.reverse()
            for e in engines:
                if e == "auditlake":
                    wall, rss, out, st, lines = run_rss(auditlake_cmd(name, window))
                    # The CSV header, then one line per row.
                    rows = max(0, lines - 1) if st == "ok" else None
                else:
                    sqlf = os.path.join(os.path.dirname(views_file), f"duck-{name}-{int(window)}.sql")
                    with open(sqlf, "w") as f:
                        f.write(duck_sql(name, window))
                    cmd = ["bash", "-c", f'exec "$0" -c "$1" < "$2"', sys.executable, DUCK, sqlf]
                    wall, rss, out, st, _ = run_rss(cmd, duck_timeout)
                    rows = int(out.decode().strip()) if st == "ok" else None
                if st == "failed":
                    sys.stderr.write(f"{e} {name} window={window} failed:\n{out.decode()[-2000:]}\n")
                results.setdefault((name, window, e), []).append((wall, rss, st))
                counts.setdefault((name, window), {})[e] = rows
                w = f"{wall:.2f}" if wall is not None else st
                print(f"| {name} | {'1 day' if window else 'all'} | {r} | {e} | {w} | {rss:.0f} | {rows} |", flush=True)

print()
print("| query | window | auditlake wall s | auditlake RSS MiB | DuckDB wall s | DuckDB RSS MiB | DuckDB / auditlake | rows |")
print("|---|---|---|---|---|---|---|---|")
def rng(xs, fmt):
    xs = [x for x in xs if x is not None]
    if not xs: return "—"
    lo, hi = min(xs), max(xs)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else fmt.format(lo) + "–" + fmt.format(hi)
mismatch = False
for name in names:
    for window in (False, True):
        a = results.get((name, window, "auditlake"), [])
        d = results.get((name, window, "duckdb"), [])
        ratios = [dw / aw for (aw, _, _), (dw, _, _) in zip(a, d) if aw and dw]
        c = counts.get((name, window), {})
        if "duckdb" not in c:
            same = "—"
        elif c.get("duckdb") is None or c.get("auditlake") is None:
            same = "(no answer from " + ("DuckDB" if c.get("duckdb") is None else "auditlake") + ")"
        else:
            same = "same" if c["auditlake"] == c["duckdb"] else f"DIFFER {c}"
        if same.startswith("DIFFER"): mismatch = True
        dwall = rng([x[0] for x in d], "{:.2f}")
        if any(x[2] == "timeout" for x in d): dwall += f" (timeouts > {duck_timeout} s)"
        print(f"| {name} | {'1 day' if window else 'all'} | {rng([x[0] for x in a], '{:.2f}')} | {rng([x[1] for x in a], '{:.0f}')} "
              f"| {dwall} | {rng([x[1] for x in d], '{:.0f}')} | {rng(ratios, '{:.1f}×')} | {c.get('auditlake')} {same} |")
failed = any(x[2] == "failed" for v in results.values() for x in v)
sys.exit(1 if (mismatch or failed) else 0)
PY
