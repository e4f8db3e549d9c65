"""Module import graph of src/noisyseg: cycles and back-arrows (imports against the layer order).

    python tools/import_graph.py [SRC]      # default: src/noisyseg

Every ``import`` / ``from ... import`` of a noisyseg module counts, at module level or inside
a function (a lazy import is still an arrow). Cycles are the strongly connected components of
more than one module. A back-arrow is an import of a module whose layer is above the
importer's; the layers are :data:`LAYERS`, from docs/architecture.md (cli on top, io and its base types at\nthe bottom).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LAYERS: list[tuple[str, ...]] = [  # bottom first
    ("noisyseg", "errors", "files", "runinfo"),
    ("metaimage", "itkio"),
    ("io",),
    ("config", "data", "metrics", "noise", "report"),
    ("nets",),
    ("methods",),
    ("engine",),
    ("api",),
    ("modelnoise",),
    ("audit", "demo"),
    ("benchmark",),
    ("cli",),
]


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else module  # "noisyseg" itself: its __init__
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    return -1


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, name: str, modules: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                up = up[: len(up) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):  # a package's own __init__ is not an arrow
                out.add(t)
    return out


def sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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


def main(src: str = "src/noisyseg") -> int:
    root = Path(src)
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph = {m: imports(p, m, set(files)) for m, p in files.items()}
    cycles = sccs(graph)
    pairs = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if a in graph[b]})
    back = sorted((a, b) for a in graph for b in graph[a] if layer(b) > layer(a) >= 0)
    unknown = sorted({m for m in graph if layer(m) < 0})
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} import arrows")
    print(f"cycles (strongly connected components): {len(cycles)}")
    for c in cycles:
        print("  " + " <-> ".join(c))
    print(f"modules importing each other: {len(pairs)}")
    for a, b in pairs:
        print(f"  {a} <-> {b}")
    print(f"back-arrows (to a higher layer): {len(back)}")
    for a, b in back:
        print(f"  {a} -> {b}")
    top = lambda m: ".".join(m.split(".")[:2])  # noqa: E731
    packages: dict[str, set[str]] = {}
    for a, targets in graph.items():
        packages.setdefault(top(a), set()).update(top(b) for b in targets if top(b) != top(a))
    package_cycles = sccs(packages)
    print(f"cycles between top-level modules and packages: {len(package_cycles)}")
    for c in package_cycles:
        print("  " + " <-> ".join(c))
    if unknown:
        print("modules of no layer:", ", ".join(unknown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
