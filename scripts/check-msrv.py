#!/usr/bin/env python3
"""Every crate the workspace builds must build with the flight toolchain.

The flight image is built by Yocto wrynose, whose Rust is 1.94.1 (oe-core's
rust_1.94.1.bb; issue 14: no second toolchain in the image build). This
reads `cargo metadata --format-version 1 --locked` (every package of
Cargo.lock that the workspace resolves, for every target) and fails when

- a workspace member declares no rust-version, or one above FLIGHT_RUST
  (the workspace's is in Cargo.toml [workspace.package]);
- any dependency declares a rust-version above FLIGHT_RUST. To fix one,
  pin the last release that fits: `cargo update -p NAME --precise VERSION`.

A dependency that declares no rust-version at all is listed, not failed:
cargo itself does not hold such a crate to any version, most of them are
small and old, and refusing them would refuse crates the flight toolchain
builds. The proof for those is the flight build itself (docs/yocto.md,
"Rust version"). Run from anywhere in the repository:

    scripts/check-msrv.py [--verbose]
"""

import json
import subprocess
import sys
from pathlib import Path

FLIGHT_RUST = (1, 94, 1)
REPO = Path(__file__).resolve().parent.parent


def parse(version: str) -> tuple[int, int, int]:
    """A rust-version ("1.94" or "1.94.1") as a comparable triple."""
    parts = [int(p) for p in version.split(".")]
    while len(parts) < 3:
        parts.append(0)
    return (parts[0], parts[1], parts[2])


def main() -> int:
    verbose = "--verbose" in sys.argv[1:]
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--offline"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        # --offline first (CI has the registry cache); retry online once.
        out = subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"], cwd=REPO, capture_output=True, text=True
        )
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        print("error: cargo metadata --locked failed", file=sys.stderr)
        return 1
    meta = json.loads(out.stdout)
    members = set(meta["workspace_members"])
    flight = ".".join(map(str, FLIGHT_RUST))
    too_new, undeclared, members_bad = [], [], []
    for pkg in meta["packages"]:
        rv = pkg.get("rust_version")
        name = f"{pkg['name']} {pkg['version']}"
        if pkg["id"] in members:
            if rv is None or parse(rv) > FLIGHT_RUST:
                members_bad.append(f"{name}: rust-version {rv or 'not declared'}")
        elif rv is None:
            undeclared.append(name)
        elif parse(rv) > FLIGHT_RUST:
            too_new.append(f"{name}: rust-version {rv}")
    ok = not too_new and not members_bad
    for line in members_bad:
        print(f"error: workspace member {line} (must declare at most {flight})", file=sys.stderr)
    for line in too_new:
        print(f"error: {line} > {flight} (cargo update -p NAME --precise <an older version>)", file=sys.stderr)
    if undeclared and (verbose or not ok):
        print(f"note: {len(undeclared)} dependencies declare no rust-version: {', '.join(sorted(undeclared))}")
    declared = len(meta["packages"]) - len(undeclared)
    status = "ok" if ok else "FAILED"
    print(
        f"msrv {status}: {len(meta['packages'])} packages, {declared} declare a rust-version"
        f" (all <= {flight} required), {len(undeclared)} declare none (listed with --verbose)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
