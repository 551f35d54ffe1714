#!/usr/bin/env bash
# `ingest --follow` against a one-off `ingest` of the same lines, side by side.
#
# The follower reads a live audit.log that a writer (this script) appends to as fast as it can
# and rotates every --rotate-mb, lumberjack-style (rename, new file, every other copy gzipped).
# Measured: the wall time from the first line written to the last line committed (seen in
# `auditlake_parquet_rows_committed_total`, polled every 50 ms; the lake is counted after), how
# long after the writer's last write that was, the follower's peak RSS (VmHWM), and the largest
# lag seen in `auditlake_follow_unread_bytes`. The one-off ingest reads the same lines from one
# file. The writer (Python) writes far faster than any apiserver, so it, not the follower, often
# sets the pace: the figure that matters is the time from its last write to the last commit.
#
# The project VM's speed drifts by up to 2x between periods, so the two are only compared
# within a round; the order alternates from round to round.
#
# Usage: bash benches/follow.sh [-n EVENTS] [-r ROUNDS] [-m ROTATE_MB] [-w DIR] [BINARY]
#   -n  events to generate (default 1000000, seed 1)
#   -r  rounds (default 3)
#   -m  rotate the live file at this size (default 100, as --audit-log-maxsize)
#   -w  work directory (default: a new temporary one, removed at the end)
#   BINARY  the auditlake executable (default: builds --release)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

EVENTS=1000000
ROUNDS=3
ROTATE_MB=100
WORK=""
while getopts "n:r:m:w:" opt; do
  case "$opt" in
    n) EVENTS="$OPTARG" ;;
    r) ROUNDS="$OPTARG" ;;
    m) ROTATE_MB="$OPTARG" ;;
    w) WORK="$OPTARG" ;;
    *) echo "usage: bash benches/follow.sh [-n EVENTS] [-r ROUNDS] [-m ROTATE_MB] [-w DIR] [BINARY]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
source benches/lib.sh
bench_binary benches/follow.sh "${1:-}"
if [ -z "$WORK" ]; then
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
INPUT="$WORK/events-$EVENTS.jsonl"
if [ ! -s "$INPUT" ]; then
  "$BIN" gen --events "$EVENTS" --seed 1 -o "$INPUT.tmp"
  mv "$INPUT.tmp" "$INPUT"
fi

python3 - "$BIN" "$INPUT" "$EVENTS" "$ROUNDS" "$ROTATE_MB" "$WORK" <<'PY'
import gzip, os, shutil, signal, socket, subprocess, sys, threading, time, urllib.request

bin_, path, events, rounds, rotate_mb, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
size = os.path.getsize(path)
# A file's identity is its first line: the generator repeats some events exactly (retries),
# which the apiserver never does, so repeats are dropped here.
seen, lines = set(), []
with open(path, "rb") as f:
    for l in f:
        if l.strip() and l not in seen:
            seen.add(l)
            lines.append(l if l.endswith(b"\n") else l + b"\n")
del seen
print(f"input: {path}, {len(lines):,} distinct lines of {events:,} events, {size / 1e6:,.1f} MB; rotation every {rotate_mb} MB")

def count(lake):
    if not os.path.isdir(os.path.join(lake, "_delta_log")):
        return 0
    out = subprocess.run([bin_, "query", "--lake", lake, "--format", "csv", "SELECT count(*) FROM audit"],
                         capture_output=True, check=True).stdout.decode().split()
    return int(out[-1])

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def write_and_rotate(logs):
    live = os.path.join(logs, "audit.log")
    f = open(live, "wb")
    written, n = 0, 0
    for l in lines:
        f.write(l)
        written += len(l)
        if written >= rotate_mb << 20:
            f.close()
            n += 1
            copy = os.path.join(logs, f"audit-2026-12-02T10-{n:02}-00.000.log")
            os.rename(live, copy)
            f = open(live, "wb")
            if n % 2 == 0:
                with open(copy, "rb") as src, gzip.open(copy + ".gz", "wb", compresslevel=1) as dst:
                    shutil.copyfileobj(src, dst)
                os.remove(copy)
            written = 0
    f.close()

def follow_round():
    logs, lake = os.path.join(work, "logs"), os.path.join(work, "follow-lake")
    for d in (logs, lake):
        shutil.rmtree(d, ignore_errors=True)
    os.makedirs(logs)
    port = free_port()
    with open(os.path.join(work, "follow.stderr"), "wb") as errf:
        p = subprocess.Popen([bin_, "ingest", "--follow", "--lake", lake, "--no-progress", "--flush-seconds", "1",
                              "--metrics-listen", f"127.0.0.1:{port}", os.path.join(logs, "audit.log")],
                             stderr=errf, stdout=subprocess.DEVNULL)
        lag, rows = [0], [0]
        def watch():
            while p.poll() is None:
                try:
                    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                    for l in text.splitlines():
                        if l.startswith("auditlake_follow_unread_bytes{"):
                            lag[0] = max(lag[0], int(float(l.split()[-1])))
                        elif l.startswith("auditlake_parquet_rows_committed_total "):
                            rows[0] = int(float(l.split()[-1]))
                except Exception:
                    pass
                time.sleep(0.05)
        t = threading.Thread(target=watch, daemon=True); t.start()
        time.sleep(0.5)
        start = time.monotonic()
        write_and_rotate(logs)
        wrote = time.monotonic() - start
        while rows[0] < len(lines):
            time.sleep(0.02)
        hwm = 0
        with open(f"/proc/{p.pid}/status") as st:
            for l in st:
                if l.startswith("VmHWM:"):
                    hwm = int(l.split()[1]) / 1024
        wall = time.monotonic() - start
        p.send_signal(signal.SIGTERM)
        _, status, _ = os.wait4(p.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("ingest --follow failed:\n" + open(os.path.join(work, "follow.stderr")).read())
    n = count(lake)
    assert n == len(lines), f"follow stored {n} of {len(lines)}"
    return wall, wrote, hwm, lag[0]

def ingest_round():
    lake = os.path.join(work, "ingest-lake")
    shutil.rmtree(lake, ignore_errors=True)
    one = os.path.join(work, "one.log")
    if not os.path.exists(one):
        with open(one, "wb") as f:
            f.writelines(lines)
    # Through a fresh interpreter: a child forked from this script (which holds every line)
    # would count this script's pages in its peak RSS.
    wrap = ("import os, sys\npid = os.fork()\nif pid == 0:\n    os.execv(sys.argv[1], sys.argv[1:])\n"
            "_, st, ru = os.wait4(pid, 0)\nprint(ru.ru_maxrss)\nsys.exit(os.waitstatus_to_exitcode(st))")
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-c", wrap, bin_, "ingest", "--lake", lake, "--no-progress", one],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - start
    assert r.returncode == 0, "ingest failed"
    rss = int(r.stdout.split()[-1]) / 1024
    n = count(lake)
    assert n == len(lines), f"ingest stored {n} of {len(lines)}"
    return wall, rss

print("| round | run | wall, first line written to last committed | last commit after the last write | events/s | peak RSS | most unread bytes seen |")
print("|---|---|---|---|---|---|---|")
ratios, behind = [], []
for r in range(1, rounds + 1):
    got = {}
    for kind in (["follow", "ingest"] if r % 2 else ["ingest", "follow"]):
        if kind == "follow":
            wall, wrote, rss, lag = follow_round()
            got[kind] = wall
            behind.append(wall - wrote)
            print(f"| {r} | follow | {wall:.2f} s | {wall - wrote:.2f} s | {len(lines) / wall:,.0f} | {rss:,.0f} MiB | {lag / 1e6:,.1f} MB |")
        else:
            wall, rss = ingest_round()
            got[kind] = wall
            print(f"| {r} | ingest | {wall:.2f} s | | {len(lines) / wall:,.0f} | {rss:,.0f} MiB | |")
    ratios.append(got["follow"] / got["ingest"])
ratios.sort()
behind.sort()
print(f"follow / ingest wall: {', '.join(f'{v:.2f}' for v in ratios)} (median {ratios[len(ratios) // 2]:.2f})")
print(f"last commit after the writer's last write: {', '.join(f'{v:.2f}' for v in behind)} s")
PY
