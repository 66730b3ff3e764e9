"""Targets: what the state machines check against the reference model.

A *target* is any module or object that exposes some of the model's class names (``BlockPool``,
``KvManager``, ``LegacyKvManager``, ``RadixIndex``, ``TieredIndex``, ``DedupTracker``, ...) with
the model's interface.  ``--target`` accepts

* a registered name: ``impl`` (the optimized implementation), ``model`` (the model against
  itself, a sanity check), ``mutant:<name>`` (a deliberately broken variant, see
  ``kvspec.stateful.mutants``), and whatever optional adapters register themselves (``dynamo``);
* an import path ``package.module`` or ``package.module:attribute`` for a user's own adapter.

Machines whose classes a target lacks are skipped, and reported as skipped.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import attrs

from kvspec.errors import TargetError

#: Every class name a target may provide, in the order machines are listed.
KNOWN_CLASSES = (
    "BlockPool",
    "KvManager",
    "LegacyKvManager",
    "RadixIndex",
    "TieredIndex",
    "DedupTracker",
    "PassthroughTracker",
    "NativeBlockPool",
    "VllmPrefixCache",
    "EventDedupFilter",
    "SglangRadixCache",
)


@attrs.frozen
class Target:
    """A resolved target: its name, the namespace holding its classes, and a version string."""

    name: str
    namespace: Any = attrs.field(repr=False)
    version: str = "unknown"
    #: Machines compare exactly (``"exact"``) or against the documented contract (``"contract"``,
    #: for third-party engines whose internal structure legitimately differs).
    mode: str = "exact"

    def provides(self, class_name: str) -> bool:
        return getattr(self.namespace, class_name, None) is not None

    def get(self, class_name: str) -> Any:
        cls = getattr(self.namespace, class_name, None)
        if cls is None:
            raise TargetError(f"target {self.name!r} does not provide {class_name}")
        return cls

    def provided(self) -> list[str]:
        return [c for c in KNOWN_CLASSES if self.provides(c)]


def _kvspec_version() -> str:
    from kvspec import __version__

    return __version__


def _module_target(name: str, module_name: str) -> Callable[[], Target]:
    def load() -> Target:
        return Target(name, importlib.import_module(module_name), _kvspec_version())

    return load


_REGISTRY: dict[str, Callable[[], Target]] = {
    "impl": _module_target("impl", "kvspec.impl"),
    "model": _module_target("model", "kvspec.model"),
}


def register_target(name: str, loader: Callable[[], Target]) -> None:
    """Register a named target; ``loader`` is called lazily and may raise :class:`TargetError`."""
    _REGISTRY[name] = loader


def registered_targets() -> list[str]:
    _load_optional_registrations()
    names = sorted(_REGISTRY)
    try:
        from kvspec.stateful.mutants import MUTANTS

        names += [f"mutant:{m}" for m in sorted(MUTANTS)]
    except ImportError:
        pass
    return names


def _load_optional_registrations() -> None:
    """Optional adapters register on import; importing them never requires their engine."""
    for module in ("kvspec.adapters",):
        try:
            importlib.import_module(module)
        except ImportError:
            pass


def resolve(spec: str | Target) -> Target:
    """Turn a ``--target`` argument into a :class:`Target`."""
    if isinstance(spec, Target):
        return spec
    _load_optional_registrations()
    if spec in _REGISTRY:
        return _REGISTRY[spec]()
    if spec.startswith("mutant:"):
        from kvspec.stateful.mutants import mutant_target

        return mutant_target(spec.split(":", 1)[1])
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        known = ", ".join(registered_targets())
        raise TargetError(f"unknown target {spec!r} ({exc}); registered targets: {known}") from None
    namespace = module
    for part in filter(None, attribute.split(".")):
        try:
            namespace = getattr(namespace, part)
        except AttributeError:
            raise TargetError(f"{module_name} has no attribute {attribute!r}") from None
    version = getattr(namespace, "__version__", None) or getattr(module, "__version__", "unknown")
    return Target(spec, namespace, str(version))
