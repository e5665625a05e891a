#!/usr/bin/env python3
"""One copy of the board's system files, installed alike by both boards.

The flight image (yocto/meta-spacenode) and the virtual board
(tests/vm/build-image.sh) must install the same unit, sysusers entry,
config template, watchdog, journald and RAUC configuration (issue 14,
item 6): the files in SHARED below, each from its one place in the
repository, at the same path on both boards. Fails when

- the virtual board does not install a shared file from the repository to
  its path (`install ... "$REPO/SRC" "$STAGE/DEST"`);
- the layer does not take it from the repository (the daemon's recipe
  from its externalsrc tree `${S}/SRC`, other recipes from a FILESEXTRAPATHS
  into the repository's directory) or installs it elsewhere;
- any other file of the repository has the same content as a shared file,
  or the same directory and file name under yocto/ or tests/vm/ (a copy
  that would diverge).

    scripts/check-board-files.py
"""

import hashlib
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAYER = REPO / "yocto/meta-spacenode"
VM = REPO / "tests/vm/build-image.sh"

# repository file -> path on the board (both boards)
SHARED = {
    "systemd/spacenoded.service": "/usr/lib/systemd/system/spacenoded.service",
    "systemd/sysusers.d/spacenode.conf": "/usr/lib/sysusers.d/spacenode.conf",
    "systemd/spacenoded.toml.example": "/usr/share/spacenode/spacenoded.toml.example",
    "systemd/system.conf.d/watchdog.conf": "/etc/systemd/system.conf.d/watchdog.conf",
    "systemd/journald.conf.d/spacenode.conf": "/etc/systemd/journald.conf.d/spacenode.conf",
    "systemd/rauc/system.conf": "/usr/lib/rauc/system.conf",
}

# BitBake's directory variables, as oe-core's bitbake.conf sets them for an
# usrmerge distro.
BB_DIRS = {
    "${systemd_system_unitdir}": "/usr/lib/systemd/system",
    "${systemd_unitdir}": "/usr/lib/systemd",
    "${nonarch_libdir}": "/usr/lib",
    "${datadir}": "/usr/share",
    "${sysconfdir}": "/etc",
    "${bindir}": "/usr/bin",
}

# Files a bbappend hands to the other layer's recipe, which installs them:
# (bbappend, file name) -> path on the board. meta-rauc's rauc-conf.bb
# installs file://system.conf as ${nonarch_libdir}/rauc/system.conf.
APPENDED = {
    ("recipes-core/rauc/rauc-conf.bbappend", "system.conf"): "/usr/lib/rauc/system.conf",
}


def expand(path: str) -> str:
    for var, value in BB_DIRS.items():
        path = path.replace(var, value)
    return path


def vm_installs() -> dict[str, str]:
    """repository file -> board path, from build-image.sh's install lines."""
    found = {}
    for m in re.finditer(r'install\b[^\n]*?"\$REPO/([^"]+)"\s+"\$STAGE(/[^"]+)"', VM.read_text()):
        found[m.group(1)] = m.group(2)
    return found


def layer_installs() -> dict[str, list[str]]:
    """repository file -> board paths, from the layer's recipes and bbappends."""
    found: dict[str, list[str]] = {}
    for recipe in sorted(list(LAYER.rglob("*.bb")) + list(LAYER.rglob("*.bbappend"))):
        text = recipe.read_text()
        rel = recipe.relative_to(LAYER).as_posix()
        # Where `${S}/X` and file://X come from in this recipe.
        if re.search(r'^EXTERNALSRC\s*=\s*"\$\{SPACENODE_REPO\}"', text, re.M):
            bases = [""]
        else:
            bases = [
                b.strip("/") + "/"
                for extra in re.findall(r'^FILESEXTRAPATHS\S*\s*:?=\s*"([^"]*)"', text, re.M)
                for b in re.findall(r"\$\{SPACENODE_REPO\}/([^:]*)", extra)
            ]
        for src, dst in re.findall(r"install\s+(?:-\S+\s+(?:\S+\s+)?)*\$\{S\}/(\S+)\s+\$\{D\}(\S+)", text):
            for base in bases:
                if (REPO / base / src).is_file():
                    found.setdefault(base + src, []).append(expand(dst))
                    break
        for (append, name), dst in APPENDED.items():
            if rel == append:
                for base in bases:
                    if (REPO / base / name).is_file():
                        found.setdefault(base + name, []).append(dst)
    return found


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard"], capture_output=True, text=True, check=True
    )
    return [f for f in out.stdout.splitlines() if (REPO / f).is_file()]


def main() -> int:
    errors = []
    vm = vm_installs()
    layer = layer_installs()
    for src, dst in SHARED.items():
        if not (REPO / src).is_file():
            errors.append(f"{src}: missing from the repository")
            continue
        if vm.get(src) != dst:
            errors.append(f"{src}: tests/vm/build-image.sh installs it at {vm.get(src, 'nowhere')}, expected {dst}")
        if layer.get(src) != [dst]:
            errors.append(f"{src}: yocto/meta-spacenode installs it at {layer.get(src, 'nowhere')}, expected [{dst}]")
    digests = {hashlib.sha256((REPO / s).read_bytes()).hexdigest(): s for s in SHARED if (REPO / s).is_file()}
    # A copy keeps its directory's name too: journald.conf.d/spacenode.conf.
    names = {"/".join(Path(s).parts[-2:]): s for s in SHARED}
    for f in tracked_files():
        if f in SHARED:
            continue
        digest = hashlib.sha256((REPO / f).read_bytes()).hexdigest()
        if digest in digests:
            errors.append(f"{f}: a copy of {digests[digest]} (keep one copy; reference it)")
        name = "/".join(Path(f).parts[-2:])
        if name in names and f.startswith(("yocto/", "tests/vm/")):
            errors.append(f"{f}: same name as the shared {names[name]} (a copy that would diverge?)")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        print("board files: the flight layer and the virtual board diverge (above)", file=sys.stderr)
        return 1
    print(f"board files: {len(SHARED)} shared files, one copy each, same path on the flight image and the virtual board")
    return 0


if __name__ == "__main__":
    sys.exit(main())
