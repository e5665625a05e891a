#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, checks
# format and lints, builds, runs every test with cargo-nextest (unit,
# property, integration and system tests with the real daemon, swtpm, ptys
# and kill -9), smoke-runs the fuzz targets, and prints the benchmarks'
# ratios.
#
# One compilation serves the lints, the tests and the benchmarks (README,
# "Tests": the time breakdown): clippy-driver compiles our crates as the
# workspace wrapper (lints denied as errors, exactly `cargo clippy
# --all-targets -- -D warnings`) and produces the binaries the tests run,
# and the benchmarks run in the same optimised dev profile instead of a
# second, release-built copy of every dependency.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
t_start=$(date +%s)
phase_start=$t_start
phases=()
phase() {
  local now; now=$(date +%s)
  [ -n "${phase_name:-}" ] && phases+=("$(printf '%-44s %5ss' "$phase_name" $((now - phase_start)))")
  phase_name=$1; phase_start=$now
  echo "== $1"
}

phase "install dependencies"
scripts/install-deps.sh
# The virtual board's base rootfs (debootstrap: network and dpkg bound, a
# few minutes from scratch) is built while the CPU-bound compilation runs;
# tests/vm.rs waits for it through the cache's lock.
vm_base_log=$(mktemp)
if [ "$(id -u)" = 0 ] && command -v debootstrap >/dev/null; then
  tests/vm/build-image.sh --base-only >"$vm_base_log" 2>&1 &
  vm_base_pid=$!
fi

phase "cargo fmt --check"
cargo fmt --all -- --check
phase "structure checks (import circles, functions over 150 lines; scripts/structure-allowlist.txt)"
python3 scripts/check-structure.py
phase "yocto checks (flight image: rust-version, crates.inc, oelint-adv, units, board files, parse)"
scripts/check-yocto.sh

# A clean checkout gains nothing from incremental compilation.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
RUSTC_WORKSPACE_WRAPPER=$(command -v clippy-driver)
export RUSTC_WORKSPACE_WRAPPER
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
phase "build every target with clippy -D warnings"
cargo build --quiet --workspace --all-targets

if [ -n "${vm_base_pid:-}" ]; then
  wait "$vm_base_pid" || { cat "$vm_base_log"; echo "virtual board base rootfs FAILED"; exit 1; }
  tail -n 1 "$vm_base_log"
fi

phase "cargo nextest"
cargo nextest run --workspace --profile ci

if [ "${SPACENODE_SKIP_FUZZ:-}" != 1 ]; then
  # Every target of payload/fuzz/Cargo.toml (each decoder of uplinked or
  # operator bytes, payload/fuzz/README.md), seeded from
  # payload/fuzz/seeds/<target>/; 10 targets x 15 s.
  phase "fuzz build (cargo-fuzz, sanitizer-instrumented; its own workspace)"
  cargo fuzz --version >/dev/null 2>&1 || cargo install --quiet --locked cargo-fuzz
  # cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable
  # toolchain accept them. Its own flags, not clippy's wrapper.
  fuzz() { env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS RUSTC_BOOTSTRAP=1 cargo fuzz "$@"; }
  fuzz build --fuzz-dir payload/fuzz
  phase "fuzz smoke (${FUZZ_SECONDS:=15} s per target)"
  targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' payload/fuzz/Cargo.toml | grep -vx spacenode-fuzz)
  for target in $targets; do
    corpus=$(mktemp -d)
    cp payload/fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true
    log=$(mktemp)
    if ! fuzz run --fuzz-dir payload/fuzz "$target" "$corpus" -- \
        -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 >"$log" 2>&1; then
      tail -n 40 "$log"; echo "fuzz target $target FAILED"; exit 1
    fi
    echo "$target: $(grep -E '^Done' "$log")"
    rm -rf "$corpus" "$log"
  done
fi

if [ "${SPACENODE_SKIP_BENCH:-}" != 1 ]; then
  phase "benchmarks (ratios measured in one run; not timed tests)"
  # The dev profile of the tests' build (Cargo.toml: opt-level 1, the
  # dependencies at 2): only the bench targets themselves are compiled here.
  bench() { cargo bench --quiet --profile dev --workspace --bench "$@"; }
  QUICK=1 bench throughput
  bench chain
  bench ping_rtt
  bench chain_sync
  QUICK=1 bench cold_start
  bench tpm
  bench sign
fi
phase "done"
echo "== time per phase"
printf '%s\n' "${phases[@]}"
printf '%-44s %5ss\n' "total" $(( $(date +%s) - t_start ))
echo "== all tests passed"
