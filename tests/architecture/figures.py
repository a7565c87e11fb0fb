"""Architecture figures of `studio/` (the numbers the closing notes of the re-cut quote), from the import graph.

    python tests/architecture/figures.py [--json]

- the largest module under studio/ui (lines);
- imports of a specific family module from outside studio/families and studio/train;
- import cycles: the strongly connected groups of studio's module graph (each a cycle of two or more modules), with
  imports inside functions counted too (they are real dependencies, only delayed) and type-checking imports not;
- which modules import torch (directly or not) among request, project, export and ui.panels.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STUDIO = ROOT / "studio"
SHARED = {"__init__", "base", "registry", "cells", "samplers", "common", "spec", "params"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(STUDIO.rglob("*.py"))}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """studio modules (and 'torch') that `path` imports anywhere in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        if target.split(".")[0] == "torch":
            found.add("torch")
            return
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target:
            found.add(target)

    skipped = set()  # imports under `if TYPE_CHECKING:` are annotations, not dependencies (as import-linter is set)
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                base = ".".join(up[: len(up) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                add(full if full in known else base)
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, name, known) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of size > 1 (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return sorted(out)


def family_modules() -> list[str]:
    return [f"studio.families.{p.stem}" for p in sorted((STUDIO / "families").glob("*.py")) if p.stem not in SHARED] \
        + [f"studio.families.{p.name}" for p in sorted((STUDIO / "families").iterdir())
           if p.is_dir() and (p / "__init__.py").exists() and p.name not in SHARED]


def family_imports(g: dict[str, set[str]]) -> list[tuple[str, str]]:
    fams = family_modules()
    hits = []
    for mod, deps in g.items():
        if mod.startswith(("studio.families", "studio.train")):
            continue
        for dep in deps:
            if any(dep == f or dep.startswith(f + ".") for f in fams):
                hits.append((mod, dep))
    return sorted(hits)


def reaches_torch(g: dict[str, set[str]], start: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m == "torch":
            return True
        if m in seen:
            continue
        seen.add(m)
        todo.extend(g.get(m, ()))
    return False


def report() -> dict:
    g = graph()
    ui = [(len(p.read_text(encoding="utf-8").splitlines()), module_name(p)) for p in (STUDIO / "ui").rglob("*.py")]
    lines, largest = max(ui)
    torchy = [m for m in sorted(g) if m.startswith(("studio.request", "studio.project", "studio.export",
                                                    "studio.ui.panels")) and reaches_torch(g, m)]
    return {"largest_ui_module": {"module": largest, "lines": lines},
            "family_imports_outside_families": family_imports(g),
            "import_cycles": cycles(g),
            "torch_reached_from": torchy}


def main() -> None:
    data = report()
    if "--json" in sys.argv:
        print(json.dumps(data, indent=1))
        return
    print(f"largest UI module: {data['largest_ui_module']['module']} ({data['largest_ui_module']['lines']} lines)")
    hits = data["family_imports_outside_families"]
    print(f"family module imports outside families/ and train/: {len(hits)}")
    for mod, dep in hits:
        print(f"  {mod} -> {dep}")
    print(f"import cycles: {len(data['import_cycles'])}")
    for group in data["import_cycles"]:
        print(f"  ({len(group)}) {' '.join(group)}")
    print(f"modules of request/project/export/ui.panels that reach torch: {len(data['torch_reached_from'])}")
    for m in data["torch_reached_from"]:
        print(f"  {m}")


if __name__ == "__main__":
    main()
