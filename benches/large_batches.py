#!/usr/bin/env python3
"""Peak RSS of `auditlake serve` taking kube-apiserver's largest batches (issue 22 §4).

    python3 benches/large_batches.py [-r ROUNDS] [-b BATCHES] [BINARY]

Each batch is an EventList of 400 RequestResponse events, each with a 300 KiB request object
(about 120 MiB: the batch kube-apiserver sends with truncation off, which it drops whole after
a 413). Two ways to take them, side by side in every round (alternating which goes first):
  spill    the defaults: bodies over --spill-body (8 MiB) are streamed into the write-ahead log;
  memory   --spill-body 0 with --max-inflated-body and --max-inflight-bytes raised so the same
           batch fits in memory (what raising the limit cost before bodies could spill);
and each again with --sort-memory-mb 64, since the lake writer's rows are the rest of the peak.
A fresh server (plain HTTP, loopback, bearer token) takes BATCHES batches one after another;
its VmRSS is sampled every 20 ms. Reported: peak RSS, seconds until the last 2xx, seconds until
every event is committed to the lake (from /metrics), and the answers.
"""
import argparse, json, os, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_attacks import Server, TOKEN_A, summary  # noqa: E402

EVENTS, PAD = 400, 300 << 10


def batch(n):
    pad = "x" * PAD
    ev = lambda i: {"level": "RequestResponse", "auditID": f"b{n}-{i}", "stage": "ResponseComplete",
                    "requestURI": "/api/v1/namespaces/prod/configmaps", "verb": "create",
                    "user": {"username": "alice"}, "objectRef": {"resource": "configmaps"},
                    "requestObject": {"kind": "ConfigMap", "data": {"blob": pad}},
                    "responseStatus": {"code": 201},
                    "requestReceivedTimestamp": "2026-11-20T08:00:00.000000Z",
                    "stageTimestamp": "2026-11-20T08:00:00.001000Z"}
    return json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                       "items": [ev(i) for i in range(EVENTS)]}).encode()


def committed(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("auditlake_parquet_rows_committed_total "):
                return int(float(line.split()[1]))
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-r", "--rounds", type=int, default=2)
    ap.add_argument("-b", "--batches", type=int, default=3)
    ap.add_argument("binary", nargs="?")
    a = ap.parse_args()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/auditlake-target"))
    binary = a.binary or os.path.join(target, "release", "auditlake")
    body = batch(0)
    memory = ["--spill-body", "0", "--max-inflated-body", str(256 << 20),
              "--max-inflight-bytes", str(1 << 30)]
    # The lake writer holds up to --sort-memory-mb of rows per segment (256 MiB): with 64 the
    # part of the peak that is the writer's shows.
    modes = [("spill", []), ("memory", memory),
             ("spill, sort 64 MiB", ["--sort-memory-mb", "64"]),
             ("memory, sort 64 MiB", memory + ["--sort-memory-mb", "64"])]
    print(f"batches of {EVENTS} events, {len(body) / (1 << 20):.1f} MiB each")
    print("| round | mode | peak RSS MiB | idle RSS MiB | last 2xx s | all committed s | answers |")
    print("|---|---|---|---|---|---|---|")
    for r in range(a.rounds):
        order = modes if r % 2 == 0 else list(reversed(modes))
        for name, extra in order:
            with tempfile.TemporaryDirectory() as work:
                srv = Server(binary, work, extra)
                try:
                    t0 = time.monotonic()
                    codes = [srv.post(body.replace(b'"b0-', f'"b{n}-'.encode()), TOKEN_A, timeout=300)
                             for n in range(a.batches)]
                    acked = time.monotonic() - t0
                    want = EVENTS * sum(1 for c in codes if c == 200)
                    while committed(srv.port) < want and time.monotonic() - t0 < 600:
                        time.sleep(0.2)
                    done = time.monotonic() - t0
                finally:
                    srv.close()
                print(f"| {r + 1} | {name} | {srv.peak >> 20} | {srv.idle >> 20} | {acked:.1f} | "
                      f"{done:.1f} | {summary(codes)} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
