#!/usr/bin/env bash
# Installs everything spacenode needs on a Debian 12 machine (run as root):
# Debian packages, the Rust toolchain if missing, cargo-nextest, and the
# Python venv (.venv) with the independent implementations the tests check
# our formats against. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
PACKAGES=(
  build-essential pkg-config clang libclang-dev git curl ca-certificates
  python3 python3-venv python3-pip
  swtpm swtpm-tools tpm2-tools libtss2-dev
  socat sqlite3 gdb
  systemd qemu-system-x86 debootstrap e2fsprogs util-linux
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "== apt-get install ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "== installing the Rust toolchain (rustup)"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "== cargo install cargo-nextest"
  cargo install --locked cargo-nextest
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import spacepackets, cryptography, cobs, crc32c, bdkpython, embit, oelint_adv, yaml' 2>/dev/null; then
  echo "== python venv (.venv) with the interop packages"
  python3 -m venv .venv
  .venv/bin/pip install -q -r tests/python/requirements.txt
fi
echo "== dependencies ready"
