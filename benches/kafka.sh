#!/usr/bin/env bash
# End-to-end Kafka benchmarks on this machine (broker on loopback, same cores):
#   1. consume: 1,000,000 generated events, one per message, 4 partitions,
#      one `auditlake consume` into an empty lake (--exit-at-end);
#   2. webhook -> Kafka: `auditlake loadgen` (HTTPS + mTLS, EventList of 400,
#      32 in flight) against `auditlake serve --kafka-brokers`, every 2xx after
#      Kafka's delivery reports.
# Prints the tools' own summaries and peak RSS. Usage: bash benches/kafka.sh [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
EVENTS="${1:-1000000}"
cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/auditlake"
WORK="$(mktemp -d)"
PORT=19392
trap 'bash tests/kafka.sh stop "$WORK/broker" >/dev/null 2>&1 || true; kill %1 2>/dev/null || true; rm -rf "$WORK"' EXIT
bash tests/kafka.sh start "$WORK/broker" "$PORT" >/dev/null
BROKERS="127.0.0.1:$PORT"

"$BIN" gen --events "$EVENTS" --seed 1 -o "$WORK/events.jsonl"
"$BIN" produce --brokers "$BROKERS" --topic bench "$WORK/events.jsonl"
# Three runs, each a new consumer group into a new lake (the first one
# also meets a broker whose JIT is still cold).
for run in 1 2 3; do
  echo "== consume, run $run"
  /usr/bin/time -f "peak RSS %M KiB, %P CPU, %e s wall" \
    "$BIN" consume --brokers "$BROKERS" --topic bench --group "bench-$run" --lake "$WORK/lake-$run" \
    --exit-at-end --metrics-listen 127.0.0.1:0
done

echo "== webhook -> Kafka"
bash docker/make-certs.sh "$WORK/certs" >/dev/null 2>&1
"$BIN" serve --listen 127.0.0.1:18543 --tls-cert "$WORK/certs/server.crt" --tls-key "$WORK/certs/server.key" \
  --client-ca "$WORK/certs/ca.crt" --mtls-allow apiserver-a=bench \
  --kafka-brokers "$BROKERS" --kafka-topic relayed > "$WORK/serve.out" 2> "$WORK/serve.err" &
sleep 2
for run in 1 2 3; do
  "$BIN" loadgen --url https://localhost:18543/audit --ca "$WORK/certs/ca.crt" \
    --cert "$WORK/certs/apiserver-a.crt" --key "$WORK/certs/apiserver-a.key" \
    --events 400000 --concurrency 32
done
echo "serve peak RSS $(grep VmHWM /proc/$!/status | awk '{print $2}') KiB"
