"""The product's layout: no import circle inside tuner/, and data flows one way between packages.

Imports are read from the source (every `import` statement, including those inside
functions), so a circle that only closes at run time is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imports_of(path: Path) -> set[str]:
    """Dotted names of every module the file imports (from-imports of a package count its submodules)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def package_graph(package: str) -> dict[str, set[str]]:
    mods = {p.stem for p in (ROOT / package).glob("*.py") if p.stem != "__init__"}
    return {m: {i.split(".")[1] for i in imports_of(ROOT / package / f"{m}.py")
                if i.startswith(f"{package}.") and i.split(".")[1] in mods} - {m} for m in mods}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_tuner_has_no_import_circle():
    graph = package_graph("tuner")
    assert len(graph) > 10
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    # the CLI sits on top: nothing imports it
    assert not [m for m, deps in graph.items() if "cli" in deps]


def test_core_has_no_import_circle_and_no_search_stack():
    core = ROOT / "trainables" / "core"
    mods = {p.stem for p in core.glob("*.py") if p.stem != "__init__"}
    graph = {}
    for m in mods:
        tree = ast.parse((core / f"{m}.py").read_text())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                deps.add(node.module.split(".")[0])
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            for name in names:
                assert name.split(".")[0] not in ("ray", "optuna", "mlflow", "tuner"), f"core/{m}.py imports {name}"
        graph[m] = deps & mods
    assert find_cycle(graph) is None, find_cycle(graph)


def test_data_flows_one_way():
    for path in (ROOT / "trainables").rglob("*.py"):
        assert not [i for i in imports_of(path) if i.split(".")[0] == "tuner"], path
    for path in (ROOT / "search_spaces").rglob("*.py"):
        assert not [i for i in imports_of(path) if i.split(".")[0] in ("tuner", "trainables")], path
    # the Python API (mixtune/) sits on top, beside the CLI: it may import the rest; nothing imports it
    for package in ("tuner", "trainables", "search_spaces"):
        for path in (ROOT / package).rglob("*.py"):
            assert not [i for i in imports_of(path) if i.split(".")[0] == "mixtune"], path
