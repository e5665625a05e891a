#!/usr/bin/env python3
"""Reads yocto/kas/spacenode-cm4.yml (and the files it includes) for
scripts/yocto-parse.sh: the pinned layer repositories and the settings a
kas build would write into local.conf, without kas itself (a BitBake
parse needs neither kas nor network).

    scripts/yocto-kas.py repos KAS_FILE       # name url branch commit layer,... per line
    scripts/yocto-kas.py conf KAS_FILE        # MACHINE, DISTRO and local_conf_header

Needs PyYAML (python3-yaml), as kas does.
"""

import sys
from pathlib import Path

import yaml


def repo_root(path: Path) -> Path:
    """The repository a kas file is in: kas resolves includes from its root."""
    for parent in path.resolve().parents:
        if (parent / ".git").exists():
            return parent
    return path.resolve().parent


def load(path: Path) -> dict:
    """The kas file merged over its includes (kas's own order: includes first)."""
    doc = yaml.safe_load(path.read_text()) or {}
    merged: dict = {}
    for inc in (doc.get("header") or {}).get("includes") or []:
        merge(merged, load(repo_root(path) / inc))
    merge(merged, doc)
    return merged


def merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("repos", "conf"):
        print(__doc__, file=sys.stderr)
        return 2
    kas = load(Path(sys.argv[2]))
    if sys.argv[1] == "repos":
        for name, repo in (kas.get("repos") or {}).items():
            repo = repo or {}
            layers = [
                layer
                for layer, state in (repo.get("layers") or {".": None}).items()
                if state not in ("disabled", "excluded")
            ]
            print(name, repo.get("url", "-"), repo.get("branch", "-"), repo.get("commit", "-"), ",".join(layers) or "-")
    else:
        print(f'MACHINE = "{kas["machine"]}"')
        print(f'DISTRO = "{kas["distro"]}"')
        for _, text in sorted((kas.get("local_conf_header") or {}).items()):
            print(text.rstrip("\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
