#!/usr/bin/env bash
# Profile-guided build of `auditlake`: build it instrumented, run it on
# generated traffic, then build it again with that profile, so the compiler
# lays out and inlines the decode → resolve → Arrow → Parquet path the way
# real runs take it.
#
# Usage: bash benches/pgo.sh [-p PROFILE] [-n EVENTS]
#   -p  cargo profile of both builds (default: dist, what the README measures)
#   -n  events of the training run (default 200000)
# Prints the path of the optimised binary on its last line. Compiler flags
# already in $RUSTFLAGS are kept in both builds, for example
#   RUSTFLAGS="-C target-cpu=x86-64-v3 -C target-feature=+aes,+pclmulqdq" \
#     bash benches/pgo.sh
# for a fleet whose CPUs all have AVX2 (see the README's performance notes).
#
# Needs llvm-profdata of the toolchain's own LLVM (rustup's llvm-tools
# component; installed here when missing). The two builds use their own
# target directories beside $CARGO_TARGET_DIR, because the instrumenting and
# the profile-using compiler flags each rebuild every crate: the first run
# takes two full builds, later runs are incremental. The profile paths stay
# the same from run to run for that reason; cargo does not notice a changed
# profile, so a dependency keeps the profile of its first build until
# "$CARGO_TARGET_DIR-pgo-use" is removed (auditlake itself is rebuilt
# whenever its source changes).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/auditlake-target}"
PROFILE=dist
EVENTS=200000
while getopts "p:n:" opt; do
  case "$opt" in
    p) PROFILE="$OPTARG" ;;
    n) EVENTS="$OPTARG" ;;
    *) echo "usage: bash benches/pgo.sh [-p PROFILE] [-n EVENTS]" >&2; exit 2 ;;
  esac
done
# Cargo puts the `dev` profile's output in target/debug, every other
# profile's in target/<name>.
OUT_DIR="$PROFILE"
[ "$PROFILE" = dev ] && OUT_DIR=debug

HOST="$(rustc -vV | sed -n 's/^host: //p')"
PROFDATA="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
if [ ! -x "$PROFDATA" ]; then
  echo "benches/pgo.sh: installing rustup's llvm-tools for llvm-profdata" >&2
  rustup component add llvm-tools >&2
fi
[ -x "$PROFDATA" ] || { echo "benches/pgo.sh: no llvm-profdata at $PROFDATA" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
RAW="$TARGET-pgo-gen/profraw"
MERGED="$TARGET-pgo-use/auditlake.profdata"
rm -rf "$RAW"
mkdir -p "$TARGET-pgo-use"

echo "benches/pgo.sh: instrumented build (--profile $PROFILE)" >&2
CARGO_TARGET_DIR="$TARGET-pgo-gen" RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$RAW" \
  cargo build --profile "$PROFILE" --locked --bin auditlake --quiet
GEN="$TARGET-pgo-gen/$OUT_DIR/auditlake"

# Training: the ingest path end to end. The webhook and Kafka commands run
# the same decode, resolve, Arrow and Parquet code.
echo "benches/pgo.sh: training run ($EVENTS events)" >&2
"$GEN" gen --events "$EVENTS" --seed 7 -o "$WORK/train.jsonl"
"$GEN" ingest --lake "$WORK/lake" "$WORK/train.jsonl" >&2
"$PROFDATA" merge -o "$MERGED" "$RAW"

echo "benches/pgo.sh: optimised build (--profile $PROFILE)" >&2
CARGO_TARGET_DIR="$TARGET-pgo-use" RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$MERGED" \
  cargo build --profile "$PROFILE" --locked --bin auditlake --quiet
echo "$TARGET-pgo-use/$OUT_DIR/auditlake"
