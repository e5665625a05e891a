#!/usr/bin/env bash
# The flight image's checks that run on any machine, in seconds (CI:
# scripts/test.sh, "== yocto checks"; docs/yocto.md, "What is checked where"):
#   rust-version   every crate of Cargo.lock builds with Yocto wrynose's Rust 1.94.1
#   crates.inc     the recipe's crate list matches Cargo.lock
#   oelint-adv     the layer's recipes, bbappends and confs are lint-clean
#   units          systemd-analyze verify on every unit the layer installs
#   board files    one copy of the files both boards install, same paths
#   parse          scripts/yocto-parse.sh: a BitBake parse when $SPACENODE_YOCTO_LAYERS
#                  names the pinned layers; otherwise "skipped"
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
"$PY" scripts/check-msrv.py
"$PY" scripts/gen-crates-inc.py --check
scripts/check-yocto-lint.sh
scripts/check-yocto-units.sh
"$PY" scripts/check-board-files.py
scripts/yocto-parse.sh
