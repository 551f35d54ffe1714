# Shared by the benchmark scripts: `source benches/lib.sh` after `cd` to the repository root.

# bench_binary SCRIPT [BINARY]: set BIN to BINARY, or build the release binary when it is empty;
# exit 2 naming SCRIPT when BIN is not an executable (a typo in a path would otherwise fail later,
# in the middle of a round, with a less clear message).
bench_binary() {
  local script="$1"
  BIN="${2:-}"
  if [ -z "$BIN" ]; then
    cargo build --release --bin auditlake --quiet
    BIN="$CARGO_TARGET_DIR/release/auditlake"
  fi
  [ -x "$BIN" ] || { echo "$script: $BIN is not an executable" >&2; exit 2; }
}
