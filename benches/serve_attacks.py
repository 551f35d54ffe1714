#!/usr/bin/env python3
"""Peak RSS of `auditlake serve` under the attacks of issue 19, against its budget.

    python3 benches/serve_attacks.py [-r ROUNDS] [BINARY...]

Attacks (loopback only, bounded):
  gzip   32 concurrent gzip bodies of ~90 KB that inflate to 90 MiB each, while /healthz is
         polled every 100 ms;
  slow   21 connections of one client sending a declared 12 MiB body at 1 byte/s for 20 s,
         while another client posts 24 batches (with the default grace, and with a 60 s grace
         so that only the per-client budget protects the other client).
Each run starts a fresh server (plain HTTP, bearer tokens) with the default budget
(--max-inflight-bytes 512 MiB) and samples its VmRSS every 20 ms. Binaries given together run
side by side, interleaved per round. Prints one Markdown table row per run.
"""
import argparse, gzip, http.client, json, os, socket, subprocess, sys, tempfile, threading, time

BUDGET = 512 << 20  # the default --max-inflight-bytes
TOKEN_A, TOKEN_B = "bench-token-client-a-0123456789", "bench-token-client-b-0123456789"


def event_list(ids):
    ev = lambda i: {"level": "Metadata", "auditID": i, "stage": "ResponseComplete",
                    "requestURI": "/api/v1/pods", "verb": "list", "user": {"username": "alice"},
                    "responseStatus": {"code": 200},
                    "requestReceivedTimestamp": "2026-11-20T08:00:00.000000Z",
                    "stageTimestamp": "2026-11-20T08:00:00.001000Z"}
    return json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                       "items": [ev(i) for i in ids]}).encode()


class Server:
    def __init__(self, binary, work, extra):
        lake = os.path.join(work, "lake")
        tokens = os.path.join(work, "tokens")
        with open(tokens, "w") as f:
            f.write(f"{TOKEN_A} cluster-a\n{TOKEN_B} cluster-b\n")
        self.p = subprocess.Popen(
            [binary, "serve", "--lake", lake, "--listen", "127.0.0.1:0", "--insecure-http",
             "--token-file", tokens, "--flush-seconds", "1"] + extra,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.p.stdout.readline().strip()
        self.port = int(line.rsplit(":", 1)[1])
        self.peak = 0
        self.idle = self.rss()
        self.stop = False
        self.sampler = threading.Thread(target=self.sample, daemon=True)
        self.sampler.start()

    def rss(self):
        try:
            with open(f"/proc/{self.p.pid}/status") as f:
                for l in f:
                    if l.startswith("VmRSS:"):
                        return int(l.split()[1]) << 10
        except OSError:
            pass
        return 0

    def sample(self):
        while not self.stop:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.02)

    def post(self, body, token, headers=None, timeout=60):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        h.update(headers or {})
        try:
            c.request("POST", "/audit", body=body, headers=h)
            return c.getresponse().status
        except OSError as e:
            return type(e).__name__
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.sampler.join()
        self.p.terminate()
        self.p.wait(timeout=60)


def gzip_attack(srv):
    bomb = gzip.compress(b" " * (90 << 20), 9)
    codes, health = [], []
    def one():
        codes.append(srv.post(bomb, TOKEN_A, {"Content-Encoding": "gzip"}))
    ts = [threading.Thread(target=one) for _ in range(32)]
    for t in ts:
        t.start()
    while any(t.is_alive() for t in ts):
        t0 = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        c.request("GET", "/healthz")
        c.getresponse().read()
        health.append(time.monotonic() - t0)
        c.close()
        time.sleep(0.1)
    for t in ts:
        t.join()
    return {"answers": summary(codes), "bomb": f"{len(bomb) // 1000} KB",
            "healthz max ms": round(max(health or [0]) * 1000)}


def slow_attack(srv):
    socks = []
    for _ in range(21):
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall((f"POST /audit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN_A}\r\n"
                   f"Content-Length: {12 << 20}\r\n\r\n[").encode())
        socks.append(s)
    stop = threading.Event()
    def trickle():
        while not stop.is_set():
            for s in socks:
                try:
                    s.send(b" ")
                except OSError:
                    pass
            stop.wait(1)
    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    time.sleep(1)
    codes = [srv.post(event_list([f"b{b}-{i}" for i in range(20)]), TOKEN_B) for b in range(24)]
    stop.wait(max(0, 20 - 1))
    stop.set()
    for s in socks:
        s.close()
    return {"other client": summary(codes)}


def summary(codes):
    out = {}
    for c in codes:
        out[c] = out.get(c, 0) + 1
    return " ".join(f"{k}×{v}" for k, v in sorted(out.items(), key=str))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-r", "--rounds", type=int, default=3)
    ap.add_argument("binaries", nargs="*")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/auditlake-target"))
    binaries = a.binaries or [os.path.join(target, "release", "auditlake")]
    runs = [("gzip", gzip_attack, []), ("slow", slow_attack, []),
            ("slow, 60 s grace", slow_attack, ["--body-grace", "60"])]
    print("| round | binary | attack | idle RSS MiB | peak RSS MiB | budget MiB | result |")
    print("|---|---|---|---|---|---|---|")
    for r in range(a.rounds):
        order = binaries if r % 2 == 0 else list(reversed(binaries))
        for name, attack, extra in runs:
            for b in order:
                with tempfile.TemporaryDirectory() as work:
                    srv = Server(b, work, extra)
                    try:
                        res = attack(srv)
                    finally:
                        srv.close()
                    print(f"| {r + 1} | {os.path.basename(os.path.dirname(os.path.dirname(b))) or b} | {name} | "
                          f"{srv.idle >> 20} | {srv.peak >> 20} | {BUDGET >> 20} | "
                          f"{'; '.join(f'{k}: {v}' for k, v in res.items())} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
