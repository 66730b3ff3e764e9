"""The public API, pinned: what ``import kvspec`` offers, that model and impl offer the same classes
with the same signatures, that every import a generated bug report makes resolves, and that the
import paths of earlier releases keep working."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import kvspec
import kvspec.impl
import kvspec.model
from kvspec._exports import EXPORTS
from kvspec.stateful.traces.report import build_report

REGRESSIONS = Path(__file__).resolve().parents[1] / "regressions"

PINNED = {
    "__version__",
    "BlockNotFound", "BlockNotHeld", "BlockStateError", "DuplicateLineage", "IndexEventError",
    "InvalidArgument", "InvalidBlockSequence", "InvalidParent", "KvSpecError", "LengthMismatch",
    "ParentBlockNotFound", "PoolExhausted", "ReplayStalled", "TargetError", "TraceError",
    "UnknownPartialBlock",
    "Plh", "block_hashes", "sequence_hashes",
    "Deref", "Destroy", "FullBlock", "PartialBlock", "Promote", "Use",
    "Cleared", "KvCacheEvent", "Removed", "RouterEvent", "StorageTier", "Stored", "StoredBlock",
    "OverlapScores", "TieredMatches",
    "canonical",
}


def test_kvspec_all_is_pinned():
    assert set(kvspec.__all__) == PINNED
    for name in kvspec.__all__:
        assert getattr(kvspec, name) is not None


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    out = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") and name != "__init__":
            continue
        if callable(member) and not isinstance(member, type):
            try:
                out[name] = inspect.signature(member)
            except (TypeError, ValueError):
                continue
    return out


def _shape(signature: inspect.Signature) -> list[tuple]:
    """Names, kinds and defaults: what a caller can see (annotations are documentation)."""
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_model_and_impl_offer_the_same_class(name):
    model_cls, impl_cls = getattr(kvspec.model, name), getattr(kvspec.impl, name)
    model_methods, impl_methods = _public_methods(model_cls), _public_methods(impl_cls)
    assert set(model_methods) == set(impl_methods), name
    for method, signature in model_methods.items():
        assert _shape(signature) == _shape(impl_methods[method]), f"{name}.{method}"


def test_packages_list_the_same_classes():
    assert kvspec.model.__all__ == kvspec.impl.__all__ == sorted(EXPORTS)


def _imports_of(source: str) -> list[tuple[str, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
    return found


@pytest.mark.parametrize("trace", sorted(REGRESSIONS.glob("*.json"))[:40], ids=lambda p: p.stem)
def test_every_import_of_a_generated_report_resolves(trace):
    source = build_report(str(trace), "impl").test_source
    imports = _imports_of(source)
    assert any(module in ("kvspec.targets", "kvspec.stateful.replay") for module, _ in imports)
    for module, name in imports:
        loaded = importlib.import_module(module)
        if name is not None:
            assert hasattr(loaded, name), f"from {module} import {name}"


#: import paths earlier releases (and the bug reports they generated) use -> where the object lives
OLD_PATHS = {
    ("kvspec.stateful.replay", "assert_replays_clean"): "kvspec.stateful.traces.replay",
    ("kvspec.stateful.replay", "replay_trace"): "kvspec.stateful.traces.replay",
    ("kvspec.stateful.trace", "load_trace"): "kvspec.stateful.traces.schema",
    ("kvspec.stateful.trace", "write_trace"): "kvspec.stateful.traces.schema",
    ("kvspec.stateful.differential", "Differential"): "kvspec.stateful.engine.differential",
    ("kvspec.stateful.differential", "Step"): "kvspec.stateful.engine.differential",
    ("kvspec.stateful.base", "MachineSpec"): "kvspec.stateful.engine.machine",
    ("kvspec.stateful.base", "find_machines"): "kvspec.stateful.engine.registry",
    ("kvspec.stateful.check", "check_machine"): "kvspec.stateful.runner",
    ("kvspec.codec", "canonical"): "kvspec.codec",
    ("kvspec.targets", "resolve"): "kvspec.targets",
}


@pytest.mark.parametrize(("old", "name"), sorted(OLD_PATHS))
def test_old_import_paths_keep_working(old, name):
    assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(OLD_PATHS[old, name]), name)
