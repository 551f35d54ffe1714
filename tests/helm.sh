#!/usr/bin/env bash
# The chart's tools, built once from the Go module proxy into the cache:
#   - helm (helm.sh/helm/v4), for `helm lint` and `helm template` of charts/auditlake;
#   - tests/k8s-validate, which decodes rendered manifests strictly into the Kubernetes,
#     cert-manager and Prometheus-operator Go types (k8s-validate/main.go says why not
#     kubeconform).
#
#   tests/helm.sh fetch     build both if needed; print their paths, helm first
set -euo pipefail
HELM_VERSION="${AUDITLAKE_HELM_VERSION:-v4.3.2}"
CACHE="${AUDITLAKE_CACHE:-$HOME/.cache/auditlake}"
HERE="$(cd "$(dirname "$0")" && pwd)"
HELM="$CACHE/helm-$HELM_VERSION/helm"
# The validator is rebuilt when its source changes.
SUM="$(cat "$HERE/k8s-validate/main.go" "$HERE/k8s-validate/go.mod" "$HERE/k8s-validate/go.sum" | sha256sum | cut -c1-16)"
VALIDATE="$CACHE/k8s-validate-$SUM/k8s-validate"

fetch() {
  mkdir -p "$CACHE"
  exec 9>"$CACHE/helm-fetch.lock"
  flock 9
  command -v go >/dev/null || { echo "tests/helm.sh: go is not installed (it builds helm and k8s-validate)" >&2; exit 1; }
  export GOPATH="$CACHE/go" GOFLAGS=-mod=mod
  if [ ! -x "$HELM" ]; then
    echo "tests/helm.sh: building helm $HELM_VERSION (a few minutes, once)" >&2
    GOBIN="$(dirname "$HELM")" go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  fi
  if [ ! -x "$VALIDATE" ]; then
    echo "tests/helm.sh: building k8s-validate" >&2
    (cd "$HERE/k8s-validate" && go build -o "$VALIDATE" .)
  fi
  echo "$HELM"
  echo "$VALIDATE"
}

case "${1:-}" in
  fetch) fetch ;;
  *) echo "usage: tests/helm.sh fetch" >&2; exit 2 ;;
esac
