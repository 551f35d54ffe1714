#!/usr/bin/env bash
# Make a throw-away CA, a server certificate for auditlake and client
# certificates for kube-apiserver, for trying auditlake out.
# Usage: docker/make-certs.sh [OUT_DIR] [SERVER_NAME...]
# Default OUT_DIR is ./certs, default server names: localhost 127.0.0.1
# auditlake.auditlake.svc.
set -euo pipefail
out="${1:-./certs}"
shift || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(localhost 127.0.0.1 auditlake.auditlake.svc auditlake.auditlake.svc.cluster.local)
mkdir -p "$out"
cd "$out"
san=""
for n in "${names[@]}"; do
  if [[ "$n" =~ ^[0-9.]+$ ]]; then san="${san:+$san,}IP:$n"; else san="${san:+$san,}DNS:$n"; fi
done
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
  -subj "/CN=auditlake-ca" -keyout ca.key -out ca.crt 2>/dev/null
leaf() { # name cn ext
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
    -keyout "$1.key" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
    -extfile <(printf '%s\n' "$3") -out "$1.crt" 2>/dev/null
  rm -f "$1.csr"
}
leaf server auditlake "subjectAltName=$san
extendedKeyUsage=serverAuth"
leaf apiserver-a apiserver-a "extendedKeyUsage=clientAuth"
leaf apiserver-b apiserver-b "extendedKeyUsage=clientAuth"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > token
printf '%s cluster-token\n' "$(cat token)" > tokens
chmod 600 ./*.key token tokens
echo "wrote $(pwd): ca.crt server.{crt,key} apiserver-a.{crt,key} apiserver-b.{crt,key} token tokens"
