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


def module_names(package: str) -> dict[str, Path]:
    """Dotted names (below the package) of its modules, sub-packages' included: {"report.summary": path}."""
    base = ROOT / package
    out = {}
    for path in base.rglob("*.py"):
        rel = path.relative_to(base).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        if parts:
            out[".".join(parts)] = path
    return out


def package_graph(package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (`from tuner.report import summary` is an edge to
    report.summary and to report's `__init__`, which imports nothing)."""
    mods = module_names(package)
    graph = {}
    for m, path in mods.items():
        deps = set()
        for name in imports_of(path):
            if not name.startswith(f"{package}."):
                continue
            rest = name[len(package) + 1:]
            while rest and rest not in mods:  # `tuner.report.summary.log_summary` -> report.summary
                rest = rest.rpartition(".")[0]
            if rest:
                deps.add(rest)
        graph[m] = deps - {m}
    return graph


# tuner's sub-packages bottom-up: a module imports only modules of its own layer or of those below it.
# The modules at tuner/'s top level are the base (errors, faults, settings) and the CLI on top.
LAYERS = ["base", "tracking", "search", "schedulers", "report", "execution", "cluster", "cli"]
BASE = {"compat", "errors", "faults", "settings"}
CLI = {"cli", "commands", "flags", "train"}
SUB_PACKAGES = {"tracking", "search", "schedulers", "report", "execution", "cluster"}


def layer_of(module: str) -> str:
    head = module.split(".")[0]
    if "." in module or head in SUB_PACKAGES:
        return head
    return "base" if head in BASE else "cli" if head in CLI else f"unplaced:{head}"


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
    assert len(graph) > 30 and "report.summary" in graph and "tracking.callback" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    # the CLI sits on top: nothing imports it
    assert not [m for m, deps in graph.items() if "cli" in deps]


def test_tuner_sub_packages_are_layered():
    """Each module imports only those of its own layer or below: the sub-packages show the architecture."""
    graph = package_graph("tuner")
    unplaced = sorted(m for m in graph if layer_of(m).startswith("unplaced"))
    assert not unplaced, f"modules in no layer: {unplaced} (add them to LAYERS, BASE or CLI)"
    upward = [f"{m} ({layer_of(m)}) imports {d} ({layer_of(d)})" for m, deps in sorted(graph.items())
              for d in sorted(deps) if LAYERS.index(layer_of(d)) > LAYERS.index(layer_of(m))]
    assert not upward, "\n".join(upward)
    # the test itself can fail: an upward edge is caught
    assert LAYERS.index(layer_of("execution.execute")) > LAYERS.index(layer_of("tracking.callback"))


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
