"""kvspec's layers, enforced: every import of every module (function-level imports included) points
down or sideways, never up, and no two modules import each other, directly or in a cycle.

The layers are those of ``kvspec/__init__.py``'s docstring.  Module files are found through the
package map in ``pyproject.toml`` (``kvspec.model`` lives in ``model/``, ...), so a new module is
checked without being listed here — only a new *top-level* module of ``kvspec`` needs a layer.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import networkx as nx
import pytest

REPO = Path(__file__).resolve().parents[2]

#: module (or package prefix) -> layer; the longest matching prefix decides
LAYERS = {
    # 0: the shared vocabulary
    "kvspec": 0, "kvspec.errors": 0, "kvspec.hashing": 0, "kvspec.protocol": 0, "kvspec.events": 0,
    "kvspec.scores": 0, "kvspec.sequence": 0, "kvspec.tracker_events": 0, "kvspec.codec": 0,
    "kvspec.vocabulary": 0, "kvspec.checks": 0, "kvspec.escape": 0,
    "kvspec._exports": 0, "kvspec.mooncake": 0, "kvspec.ttl": 0, "kvspec.offload": 0,
    # 1: the spec and its implementation (neither imports the other: see SIBLINGS)
    "kvspec.model": 1, "kvspec.impl": 1,
    "kvspec.frequency": 1,  # the old path of the model's frequency rule, re-exported
    # 2: the target registry; 3: its plugins (adapters, mutants)
    "kvspec.targets": 2,
    "kvspec.adapters": 3, "kvspec.stateful.mutants": 3,
    # 4: conformance engine and machines
    "kvspec.profiles": 4, "kvspec.stateful": 4, "kvspec.stateful.engine": 4, "kvspec.stateful.machines": 5,
    # 6: trace tooling, and the old import paths that re-export it
    "kvspec.stateful.traces": 6, "kvspec.stateful.base": 6, "kvspec.stateful.check": 6,
    "kvspec.stateful.differential": 6, "kvspec.stateful.replay": 6, "kvspec.stateful.trace": 6,
    # 7: the runner (writes failures as traces), and its old path
    "kvspec.stateful.runner": 7, "kvspec.stateful.check": 7, "kvspec.stateful.corpus": 7, "kvspec.testing": 7,
    "kvspec.stateful.fuzz": 7,
    # 8: front ends
    "kvspec.cli": 8, "kvspec.__main__": 8, "kvspec.bench": 8, "kvspec.install": 8, "kvspec.validate": 8,
}

#: same-layer packages that must not import each other
SIBLINGS = [("kvspec.model", "kvspec.impl"), ("kvspec.impl", "kvspec.model")]


def _package_dirs() -> dict[str, Path]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {name: REPO / path for name, path in config["package-dir"].items()}
    for name in config["packages"]:
        if name not in dirs:
            parent, _, leaf = name.rpartition(".")
            dirs[name] = dirs[parent] / leaf
    return dirs


def _modules() -> dict[str, Path]:
    found = {}
    for package, directory in _package_dirs().items():
        for path in directory.glob("*.py"):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """kvspec modules ``name`` imports, anywhere in the file (resolved to known modules)."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names]
            if not any(t in MODULES for t in targets):  # ``from pkg import mod`` needs pkg.mod, not pkg
                targets.append(base)
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def layer_of(name: str) -> int:
    prefix = name
    while prefix not in LAYERS:
        if "." not in prefix:
            raise KeyError(name)
        prefix = prefix.rpartition(".")[0]
    return LAYERS[prefix]


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for name, path in MODULES.items():
        graph.add_node(name)
        for target in _imports(name, path):
            # ``from kvspec import codec`` names the package only to reach a submodule
            if target == "kvspec" and name != "kvspec":
                continue
            graph.add_edge(name, target)
    return graph


GRAPH = import_graph()


def test_every_module_has_a_layer():
    missing = [name for name in MODULES if not _has_layer(name)]
    assert not missing, f"give these modules a layer in LAYERS: {missing}"


def _has_layer(name: str) -> bool:
    try:
        layer_of(name)
    except KeyError:
        return False
    return True


def test_the_graph_sees_the_real_imports():
    """Guard against a walker that finds nothing: known edges must be present."""
    assert GRAPH.has_edge("kvspec.stateful.engine.machine", "kvspec.stateful.engine.differential")
    assert GRAPH.has_edge("kvspec.stateful.traces.report", "kvspec.escape")
    assert GRAPH.has_edge("kvspec.impl.manager", "kvspec.errors")
    assert GRAPH.number_of_edges() > 150


def test_no_upward_import():
    upward = sorted((a, b, layer_of(a), layer_of(b)) for a, b in GRAPH.edges if layer_of(b) > layer_of(a))
    assert not upward, "upward imports (module, imports, its layer, their layer):\n" + "\n".join(map(str, upward))


@pytest.mark.parametrize("source, forbidden", SIBLINGS)
def test_siblings_stay_apart(source, forbidden):
    crossing = [(a, b) for a, b in GRAPH.edges if a.startswith(source) and b.startswith(forbidden)]
    assert not crossing


def test_no_import_cycle():
    cycles = list(nx.simple_cycles(GRAPH))
    assert not cycles, f"import cycles: {cycles[:5]}"
