#!/usr/bin/env python3
"""Structure checks for the spacenode workspace (CI step "== structure checks").

Two rules, both from issue 17 ("Done when"):

1. No import circles.
   * Between crates: the `[dependencies]` (and build-dependencies) of every
     crate of the workspace on each other.
   * Inside each crate: one node per source file (`src/a/b.rs` and
     `src/a/b/mod.rs` are module `a::b`), one edge per `crate::...` or
     `super::...` path in non-test code (use lines and paths in
     expressions), resolved to the deepest file that holds it. An edge
     between a module and its own ancestor or descendant does not count:
     a parent declares and re-exports its children and a child uses its
     parent's types, which is how Rust modules are built; a circle is two
     rooms that lean on each other (`node::sign` <-> `node::eth`), possibly
     through others.
2. No function longer than MAX_FN_LINES lines (signature line to closing
   brace) in the flight crates' sources (FLIGHT_SRC), test modules
   (`#[cfg(test)] mod ...`) excluded.

What still breaks a rule on purpose is listed in ALLOWLIST, one entry a
line with its reason after ` -- `:

    long <path>::<fn> -- reason
    circle <crate>: <module> <module> ... -- reason

Entries that no longer match anything are reported (not a failure) so they
can be removed. Exit status 1 if anything not allowed is found.

Python 3.11 standard library only.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWLIST = ROOT / "scripts" / "structure-allowlist.txt"
MAX_FN_LINES = 150
FLIGHT_SRC = [f"payload/{c}/src" for c in ("wire", "chain", "keys", "policy", "btc", "eth", "node")]
SKIP_DIRS = {"target", ".git", "node_modules"}


# --------------------------------------------------------------- lexing


def blank_non_code(text: str) -> str:
    """Comments, string and char literals replaced by spaces (newlines
    kept), so braces and paths inside them do not count."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(keep_newlines(text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 300]) and not is_ident_char(text, i - 1):
            m = re.match(r'r(#*)"', text[i:])
            assert m is not None
            end = text.find('"' + m.group(1), i + len(m.group(0)))
            j = n if end < 0 else end + 1 + len(m.group(1))
            out.append(keep_newlines(text[i:j]))
            i = j
        elif c == '"' or (c == "b" and nxt == '"' and not is_ident_char(text, i - 1)):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(keep_newlines(text[i:j]))
            i = j
        elif c == "'":
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\x[0-9a-fA-F]{2}|\\.|[^\\'\n])'", text[i:])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:  # a lifetime or label
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def keep_newlines(s: str) -> str:
    return "".join("\n" if ch == "\n" else " " for ch in s)


def is_ident_char(text: str, i: int) -> bool:
    return i >= 0 and (text[i].isalnum() or text[i] == "_")


def matching_brace(code: str, open_at: int) -> int:
    depth = 0
    for j in range(open_at, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(code) - 1


TEST_MOD = re.compile(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{")


def strip_test_modules(code: str) -> str:
    """Blanks `#[cfg(test)] mod x { ... }` blocks (newlines kept)."""
    while True:
        m = TEST_MOD.search(code)
        if not m:
            return code
        end = matching_brace(code, m.end() - 1)
        code = code[: m.start()] + keep_newlines(code[m.start(): end + 1]) + code[end + 1:]


# --------------------------------------------------------------- crates


def workspace_crates() -> dict[str, Path]:
    """Package name -> crate directory, for every Cargo.toml with a
    [package] outside target directories."""
    crates = {}
    for toml in sorted(ROOT.rglob("Cargo.toml")):
        if SKIP_DIRS & set(toml.relative_to(ROOT).parts):
            continue
        try:
            data = tomllib.loads(toml.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue
        name = data.get("package", {}).get("name")
        if name:
            crates[name] = toml.parent
    return crates


def crate_deps(crates: dict[str, Path]) -> dict[str, set[str]]:
    deps: dict[str, set[str]] = {}
    for name, d in crates.items():
        data = tomllib.loads((d / "Cargo.toml").read_text())
        names: set[str] = set()
        tables = [data.get("dependencies", {}), data.get("build-dependencies", {})]
        for target in data.get("target", {}).values():
            tables += [target.get("dependencies", {}), target.get("build-dependencies", {})]
        for table in tables:
            for key, spec in table.items():
                pkg = spec.get("package", key) if isinstance(spec, dict) else key
                if pkg in crates and pkg != name:
                    names.add(pkg)
        deps[name] = names
    return deps


# --------------------------------------------------------------- modules


def module_of(src: Path, f: Path) -> tuple[str, ...]:
    parts = list(f.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return tuple(parts)


def expand_use(tree: str) -> list[str]:
    """`crate::{a::{b, c}, d}` -> [crate::a::b, crate::a::c, crate::d]."""
    tree = re.sub(r"\s+", "", tree)
    brace = tree.find("{")
    if brace < 0:
        return [tree]
    prefix, inner = tree[:brace], tree[brace + 1: tree.rfind("}")]
    items, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(inner[start:i])
            start = i + 1
    items.append(inner[start:])
    out = []
    for item in items:
        if item:
            out += [prefix + p for p in expand_use(item)]
    return out


USE_STMT = re.compile(r"\buse\s+([^;]+);")
INLINE_PATH = re.compile(r"(?<![\w:])((?:crate|super|self)(?:::(?:super|\w+))+)")


def paths_in(code: str) -> list[str]:
    paths = []
    for m in USE_STMT.finditer(code):
        for p in expand_use(m.group(1)):
            paths.append(re.sub(r"\bas\b.*$", "", p))
    rest = USE_STMT.sub(lambda m: keep_newlines(m.group(0)), code)
    paths += [m.group(1) for m in INLINE_PATH.finditer(rest)]
    return paths


def resolve(path: str, here: tuple[str, ...], is_dir_module: bool,
            modules: set[tuple[str, ...]]) -> tuple[str, ...] | None:
    segs = [s for s in path.split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        base: list[str] = []
        segs = segs[1:]
    elif segs[0] in ("super", "self"):
        # A file module `a/b.rs` is `a::b`: `super` is `a`. A directory
        # module `a/mod.rs` is `a` too: `super` is its parent.
        base = list(here)
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super" and base:
                base.pop()
            segs = segs[1:]
    else:
        return None
    best = tuple(base)
    cur = list(base)
    for s in segs:
        cur.append(s)
        if tuple(cur) in modules:
            best = tuple(cur)
        else:
            break
    return best if best in modules else None


def related(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return a[: len(b)] == b or b[: len(a)] == a


def module_graph(src: Path) -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    files = [f for f in src.rglob("*.rs") if not (f.parent == src and f.name == "main.rs")
             and "bin" not in f.relative_to(src).parts[:1]]
    modules = {module_of(src, f) for f in files}
    graph: dict[tuple[str, ...], set[tuple[str, ...]]] = {m: set() for m in modules}
    for f in files:
        here = module_of(src, f)
        code = strip_test_modules(blank_non_code(f.read_text(errors="replace")))
        for p in paths_in(code):
            target = resolve(p, here, f.name == "mod.rs", modules)
            if target is not None and target != here and not related(here, target):
                graph[here].add(target)
    return graph


def cycles(graph: dict) -> list[list]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict = {}
    low: dict = {}
    stack: list = []
    on: set = set()
    out: list[list] = []
    counter = [0]

    def visit(v) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


# --------------------------------------------------------------- functions


FN_START = re.compile(
    r"^[ \t]*(?:pub(?:\([^)]*\))?\s+)?(?:(?:const|async|unsafe|extern(?:\s+\"\w+\")?)\s+)*fn\s+(\w+)",
    re.M,
)


def long_functions(path: Path) -> list[tuple[str, int, int]]:
    code = strip_test_modules(blank_non_code(path.read_text(errors="replace")))
    found = []
    for m in FN_START.finditer(code):
        # The body opens at the first `{` outside the signature's
        # parentheses/generics; a `;` first means a declaration.
        j, depth = m.end(), 0
        while j < len(code):
            ch = code[j]
            if ch in "([<":
                depth += 1
            elif ch in ")]>" and not (ch == ">" and code[j - 1] == "-"):
                depth -= 1
            elif ch == ";" and depth <= 0:
                j = -1
                break
            elif ch == "{" and depth <= 0:
                break
            j += 1
        if j < 0 or j >= len(code):
            continue
        end = matching_brace(code, j)
        first = code.count("\n", 0, m.start()) + 1
        last = code.count("\n", 0, end) + 1
        lines = last - first + 1
        if lines > MAX_FN_LINES:
            found.append((m.group(1), first, lines))
    return found


# --------------------------------------------------------------- main


def load_allowlist() -> dict[str, str]:
    allowed = {}
    if not ALLOWLIST.exists():
        return allowed
    for n, raw in enumerate(ALLOWLIST.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entry, sep, reason = line.partition(" -- ")
        if not sep or not reason.strip():
            print(f"{ALLOWLIST.name}:{n}: entry without a reason (`... -- why`): {line}")
            sys.exit(2)
        allowed[normalise(entry)] = reason.strip()
    return allowed


def normalise(entry: str) -> str:
    kind, _, rest = entry.strip().partition(" ")
    if kind == "circle":
        crate, _, mods = rest.partition(":")
        return f"circle {crate.strip()}: " + " ".join(sorted(mods.split()))
    return f"{kind} {rest.strip()}"


def main() -> int:
    allowed = load_allowlist()
    used: set[str] = set()
    failures: list[str] = []

    def report(entry: str, detail: str) -> None:
        key = normalise(entry)
        if key in allowed:
            used.add(key)
            print(f"allowed: {detail} ({allowed[key]})")
        else:
            failures.append(detail)

    crates = workspace_crates()
    for comp in cycles(crate_deps(crates)):
        report("circle crates: " + " ".join(comp), "crate circle: " + " <-> ".join(comp))
    for name, d in sorted(crates.items()):
        src = d / "src"
        if not src.is_dir():
            continue
        graph = module_graph(src)
        for comp in cycles(graph):
            names = ["::".join(m) or "crate" for m in comp]
            detail = f"import circle in {name}: " + " <-> ".join(names)
            report(f"circle {name}: " + " ".join(names), detail)
    for rel in FLIGHT_SRC:
        for f in sorted((ROOT / rel).rglob("*.rs")):
            if "tests" in f.relative_to(ROOT / rel).parts:
                continue
            for fn, line, lines in long_functions(f):
                path = f.relative_to(ROOT).as_posix()
                report(f"long {path}::{fn}",
                       f"function over {MAX_FN_LINES} lines: {path}:{line} {fn} ({lines} lines)")
    for stale in sorted(set(allowed) - used):
        print(f"note: allowlist entry matches nothing any more, remove it: {stale}")
    for f in failures:
        print(f"FAIL {f}")
    if failures:
        print(f"structure checks: {len(failures)} problem(s); fix them or, for code another "
              f"change owns, list them in {ALLOWLIST.relative_to(ROOT)} with a reason")
        return 1
    print("structure checks: no import circles, no function over "
          f"{MAX_FN_LINES} lines outside the allowlist")
    return 0


if __name__ == "__main__":
    sys.exit(main())
