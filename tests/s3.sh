#!/usr/bin/env bash
# An S3-compatible server for the tests and benchmarks: SeaweedFS (Apache-2.0) built from the Go
# module proxy, run as one `weed server` (master, volume, filer and S3 gateway) on loopback.
#
# Why SeaweedFS and not s3proxy: the lake's concurrent commits are puts with
# `If-None-Match: *`, and they are only safe if, of several racing puts of one new key, exactly
# one wins. s3proxy 3.0.0 (filesystem backend) refuses a conditional overwrite when requests come
# one after another, but checks and then writes: of 8 racing puts, all 8 won (2 of 8 with 4 Jetty
# threads), and a three-writer lake lost a commit. SeaweedFS let exactly one of 8 win in 10 of
# 10 rounds. tests/s3.rs asserts both properties before relying on them.
#
#   tests/s3.sh fetch             build `weed` once (about 7 minutes on 2 cores); print its path
#   tests/s3.sh start DIR PORT    start a server whose S3 API is on 127.0.0.1:PORT (its
#                                 other ports are PORT+1..PORT+3, their gRPC ports +10000),
#                                 data under DIR; prints its pid once the API answers
#   tests/s3.sh bucket DIR NAME   create bucket NAME on the server started in DIR
#   tests/s3.sh stop DIR          stop the server started in DIR
#
# Credentials: access key `auditlake`, secret `auditlake-secret`, region us-east-1.
set -euo pipefail
VERSION="${AUDITLAKE_SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
CACHE="${AUDITLAKE_CACHE:-$HOME/.cache/auditlake}"
WEED="$CACHE/seaweedfs-$VERSION/weed"

fetch() {
  if [ -x "$WEED" ]; then echo "$WEED"; return; fi
  mkdir -p "$CACHE"
  exec 9>"$CACHE/seaweedfs-fetch.lock"
  flock 9
  if [ -x "$WEED" ]; then echo "$WEED"; return; fi
  command -v go >/dev/null || { echo "tests/s3.sh: go is not installed (it builds SeaweedFS)" >&2; exit 1; }
  export GOPATH="$CACHE/go" GOFLAGS=-mod=mod
  local src work
  # `go install …@version` refuses a module with replace directives: build it in a copy.
  src="$(go mod download -json "github.com/seaweedfs/seaweedfs@$VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  work="$(mktemp -d)"
  cp -r "$src" "$work/src"
  chmod -R u+w "$work/src"
  mkdir -p "$(dirname "$WEED")"
  (cd "$work/src" && go build -o "$WEED.tmp" ./weed >&2)
  mv "$WEED.tmp" "$WEED"
  rm -rf "$work"
  echo "$WEED"
}

start() {
  local dir="$1" port="$2" weed
  weed="$(fetch)"
  mkdir -p "$dir/data"
  cat > "$dir/s3.json" <<JSON
{"identities": [{"name": "auditlake",
  "credentials": [{"accessKey": "auditlake", "secretKey": "auditlake-secret"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
  echo "$((port + 3))" > "$dir/filer.port"
  nohup "$weed" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$dir/data" \
    -master.port=$((port + 1)) -volume.port=$((port + 2)) -filer.port=$((port + 3)) \
    -s3 -s3.port="$port" -s3.config="$dir/s3.json" \
    -master.volumeSizeLimitMB=64 -volume.max=0 >> "$dir/weed.log" 2>&1 &
  local pid=$!
  echo "$pid" > "$dir/weed.pid"
  for _ in $(seq 1 120); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "tests/s3.sh: weed exited; see $dir/weed.log" >&2; tail -20 "$dir/weed.log" >&2; exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null \
      && (exec 3<>"/dev/tcp/127.0.0.1/$((port + 3))") 2>/dev/null; then
      echo "$pid"; return
    fi
    sleep 0.25
  done
  echo "tests/s3.sh: SeaweedFS did not start in 30 s; see $dir/weed.log" >&2
  kill "$pid" 2>/dev/null || true
  exit 1
}

bucket() {
  local dir="$1" name="$2" code
  # A bucket is a directory under the filer's /buckets.
  for _ in $(seq 1 40); do
    code="$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$(cat "$dir/filer.port")/buckets/$name/" || true)"
    case "$code" in 200|201) return 0 ;; esac
    sleep 0.25
  done
  echo "tests/s3.sh: could not create bucket $name (filer answered $code)" >&2
  exit 1
}

stop() {
  local dir="$1"
  [ -f "$dir/weed.pid" ] || return 0
  local pid; pid="$(cat "$dir/weed.pid")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || { rm -f "$dir/weed.pid"; return 0; }; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/weed.pid"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start "$2" "$3" ;;
  bucket) bucket "$2" "$3" ;;
  stop) stop "$2" ;;
  *) echo "usage: tests/s3.sh fetch | start DIR PORT | bucket DIR NAME | stop DIR" >&2; exit 2 ;;
esac
