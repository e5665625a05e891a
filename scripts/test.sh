#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, checks
# format and lints, builds, runs every test with cargo-nextest (unit,
# property, integration and system tests with the real daemon, swtpm, ptys
# and kill -9), smoke-runs the fuzz targets, and prints the benchmarks'
# ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== yocto checks (flight image: rust-version, crates.inc, oelint-adv, units, board files, parse)"
scripts/check-yocto.sh
echo "== cargo clippy -D warnings"
cargo clippy --quiet --workspace --all-targets -- -D warnings
echo "== cargo build (binaries for the system tests)"
cargo build --quiet --workspace --bins

echo "== cargo nextest"
cargo nextest run --workspace --profile ci

if [ "${SPACENODE_SKIP_FUZZ:-}" != 1 ]; then
  # Every target of payload/fuzz/Cargo.toml (each decoder of uplinked or
  # operator bytes, payload/fuzz/README.md), seeded from
  # payload/fuzz/seeds/<target>/; 10 targets x 15 s.
  echo "== fuzz smoke (${FUZZ_SECONDS:=15} s per target)"
  cargo fuzz --version >/dev/null 2>&1 || cargo install --locked cargo-fuzz
  targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' payload/fuzz/Cargo.toml | grep -vx spacenode-fuzz)
  for target in $targets; do
    corpus=$(mktemp -d)
    cp payload/fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true
    log=$(mktemp)
    # cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable
    # toolchain accept them.
    if ! RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir payload/fuzz "$target" "$corpus" -- \
        -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 >"$log" 2>&1; then
      tail -n 40 "$log"; echo "fuzz target $target FAILED"; exit 1
    fi
    echo "$target: $(grep -E '^Done' "$log")"
    rm -rf "$corpus" "$log"
  done
fi

if [ "${SPACENODE_SKIP_BENCH:-}" != 1 ]; then
  echo "== benchmarks (ratios measured in one run; not timed tests)"
  QUICK=1 cargo bench --quiet -p spacenode-wire --bench throughput
  cargo bench --quiet -p spacenode-chain --bench chain
  cargo bench --quiet -p spacenode-rig --bench ping_rtt
  cargo bench --quiet -p spacenode-rig --bench chain_sync
  QUICK=1 cargo bench --quiet -p spacenode-node --bench cold_start
  cargo bench --quiet -p spacenode-keys --bench tpm
  cargo bench --quiet -p spacenode-btc --bench sign
fi
echo "== all tests passed"
