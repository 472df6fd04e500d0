#!/usr/bin/env python3
"""The house plan, checked: which imports in ``telepty/`` run upward, and which modules
import each other in a circle.

Layers, lowest first (a module may import its own layer and the ones below it; see
docs/architecture.md):

  0 base       telepty/*.py that are not the daemon: errors, clock, config, activity, …;
               and the record types every layer passes around (``*.model``: the session
               and the delivery), which import nothing above them
  1 store      SQLite repositories                  tmux   the only place that runs tmux
  2 pty        PTYs (spawned and the wrap client's terminal)
  3 sessions   the registry, agents, terminals
  4 delivery   engine, transports, screens           bus    the durable log and fan-out
  5 relay      peers and id@host
  6 api        route handlers
  7 daemon     the composition root
  8 cli        the client side (``telepty …``, the wrap client's entry, ``telepty mcp``)

Same-rank packages may import each other only through the exceptions listed in
``ALLOWED``. Imports under ``if TYPE_CHECKING:`` count too: they are not run, but they
are the same dependency (``--runtime`` leaves them out).

Prints every upward import and every cycle; exits 1 when there are more upward imports
than ``--max-upward`` (default 3) or any cycle. ``./scripts/test`` runs it.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "telepty"

RANK = {
    "base": 0, "store": 1, "tmux": 1, "pty": 2, "sessions": 3, "delivery": 4, "bus": 4,
    "relay": 5, "api": 6, "daemon": 7, "cli": 8, "__main__": 8,
}
# Same-rank (or otherwise sanctioned) edges: package → packages it may import.
ALLOWED: dict[str, set[str]] = {
    "bus": {"delivery"},  # the auto-router turns turn_requests into deliveries
    "__main__": {"cli"},  # ``python -m telepty`` is the CLI
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def area(module: str) -> str:
    """The layer a module belongs to: its package, or base for a top-level module."""
    parts = module.split(".")
    if len(parts) < 2 or parts[-1] == "model":
        return "base"
    if len(parts) == 2:
        return parts[1] if parts[1] in RANK else "base"
    return parts[1]


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path, module: str, *, runtime_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"), str(path))
    found: set[str] = set()
    skip: set[int] = set()
    for node in ast.walk(tree):
        if runtime_only and isinstance(node, ast.If) and _type_checking(node):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("telepty"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("telepty"):
                found.add(target)
                # ``from telepty.x import y`` may name a submodule y
                for alias in node.names:
                    found.add(f"{target}.{alias.name}")
    return found


def graph(*, runtime_only: bool = False) -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = defaultdict(set)
    for mod, path in modules.items():
        for target in imports_of(path, mod, runtime_only=runtime_only):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != mod and target != "telepty":
                edges[mod].add(target)
        edges.setdefault(mod, set())
    return edges


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    out = []
    for src, targets in edges.items():
        a = area(src)
        for dst in targets:
            b = area(dst)
            if a == b or b in ALLOWED.get(a, set()):
                continue
            if RANK.get(b, 0) >= RANK.get(a, 0):
                out.append((src, dst))
    return sorted(out)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--max-upward", type=int, default=3)
    ap.add_argument("--runtime", action="store_true", help="leave out imports under TYPE_CHECKING")
    args = ap.parse_args()
    edges = graph(runtime_only=args.runtime)
    up = upward(edges)
    cyc = cycles(edges)
    for src, dst in up:
        print(f"upward: {src} ({area(src)}) imports {dst} ({area(dst)})")
    for comp in cyc:
        print(f"cycle of {len(comp)}: {', '.join(comp)}")
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports, {len(up)} upward "
          f"(at most {args.max_upward}), {len(cyc)} cycle(s)")
    return 0 if len(up) <= args.max_upward and not cyc else 1


if __name__ == "__main__":
    sys.exit(main())
