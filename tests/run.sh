#!/usr/bin/env bash
# The whole test suite, on a bare machine: installs what the tests need
# (Python packages for the DuckDB / pyarrow cross-checks, Apache Kafka's
# jars for the broker the Kafka tests start with Java), then runs every
# Rust test in release mode. The build goes where `cargo run --release` puts
# it (target/, or $CARGO_TARGET_DIR), so the README's demo and this suite
# share one build.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${AUDITLAKE_CACHE:-$HOME/.cache/auditlake}"
mkdir -p "$CACHE"

# Python with duckdb and pyarrow, in a venv outside the clone.
VENV="$CACHE/venv"
if ! "$VENV/bin/python" -c 'import duckdb, pyarrow' 2>/dev/null; then
  echo "tests/run.sh: installing duckdb and pyarrow into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'duckdb>=1.1' 'pyarrow>=17'
fi
# Apache Spark with Delta Lake: an independent reader of the lake's Delta table
# (tests/delta_spark.py); Delta's jars come from Maven Central on first use (~/.ivy2).
if ! "$VENV/bin/python" -c 'import pyspark, delta' 2>/dev/null; then
  echo "tests/run.sh: installing pyspark and delta-spark into $VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'pyspark==3.5.3' 'delta-spark==3.2.1'
fi
export AUDITLAKE_TEST_PYTHON="$VENV/bin/python"

# A real browser for the HTML report (tests/report.rs): Debian's chromium.
if ! command -v chromium >/dev/null 2>&1; then
  echo "tests/run.sh: installing chromium (Debian package)" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium >/dev/null \
    || { DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium >/dev/null; }
fi

# Apache Kafka's jars (Maven Central, cached under $CACHE) for the tests
# that start a real broker; each such test starts and stops its own.
bash tests/kafka.sh fetch >/dev/null
# SeaweedFS, built once from the Go module proxy, for the tests of lakes on an S3-compatible
# store (tests/s3.rs; tests/s3.sh says why this server).
bash tests/s3.sh fetch >/dev/null
# helm and the manifest validator, built once from the Go module proxy, for tests/helm.rs.
bash tests/helm.sh fetch >/dev/null

cargo test --release --all-targets "$@"
