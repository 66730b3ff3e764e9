"""Targets: what the state machines check against the reference model.

A *target* is any module or object that exposes some of the model's class names (``BlockPool``,
``KvManager``, ``LegacyKvManager``, ``RadixIndex``, ``TieredIndex``, ``DedupTracker``, ...) with
the model's interface.  ``--target`` accepts

* a registered name: ``impl`` (the optimized implementation), ``model`` (the model against
  itself, a sanity check), and every plugin: entry points of the ``kvspec.targets`` group
  (kvspec's adapters ``dynamo``, ``dynamo-router``, ..., and any installed package's) and of the
  ``kvspec.target_families`` group (``mutant:<name>``, the self-test mutants).  A plugin is
  imported only when one of its targets is resolved, so this module imports nothing above it;
* an import path ``package.module`` or ``package.module:attribute`` for a user's own adapter; the
  namespace may set ``KVSPEC_MODE = "contract"`` to be checked against the documented contract.

Machines whose classes a target lacks are skipped, and reported as skipped.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import attrs

from kvspec.errors import TargetError

__all__ = [
    "FAMILIES_GROUP", "KNOWN_CLASSES", "TARGETS_GROUP", "Target", "is_registered", "register_target",
    "registered_targets", "resolve"
]

#: Every class name a target may provide, in the order machines are listed.
KNOWN_CLASSES = (
    "BlockPool",
    "KvManager",
    "LegacyKvManager",
    "RadixIndex",
    "TieredIndex",
    "DedupTracker",
    "PassthroughTracker",
    "ApproxIndex",
    "RouterIndexer",
    "OffloadKvManager",
    "LanedIndex",
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


#: Targets registered in this process (``register_target``), beside the built-in two.
_REGISTRY: dict[str, Callable[[], Target]] = {
    "impl": _module_target("impl", "kvspec.impl"),
    "model": _module_target("model", "kvspec.model"),
}

#: Entry-point group of named targets: ``name = "module:load_target"`` (a zero-argument callable).
TARGETS_GROUP = "kvspec.targets"
#: Entry-point group of target families: ``prefix = "module:FAMILY"``, an object with ``names()``
#: and ``load(name)``; its targets are called ``prefix:name`` (kvspec's mutants: ``mutant:...``).
FAMILIES_GROUP = "kvspec.target_families"


def register_target(name: str, loader: Callable[[], Target]) -> None:
    """Register a named target in this process; ``loader`` is called lazily and may raise :class:`TargetError`.

    Installed packages register with an entry point instead (see the module docstring).
    """
    _REGISTRY[name] = loader


def _plugins(group: str) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=group)}


def registered_targets() -> list[str]:
    """Every target name ``--target`` accepts without an import path (family members included)."""
    names = set(_REGISTRY) | set(_plugins(TARGETS_GROUP))
    for prefix, entry in sorted(_plugins(FAMILIES_GROUP).items()):
        names.update(f"{prefix}:{member}" for member in entry.load().names())
    return sorted(names)


def is_registered(name: str) -> bool:
    """Whether ``name`` is a registered target (the only targets a trace file may name)."""
    if name in _REGISTRY or name in _plugins(TARGETS_GROUP):
        return True
    prefix, sep, member = name.partition(":")
    family = _plugins(FAMILIES_GROUP).get(prefix) if sep else None
    return family is not None and member in family.load().names()


def resolve(spec: str | Target) -> Target:
    """Turn a ``--target`` argument into a :class:`Target`.

    A registered name loads its plugin; anything else is an import path ``module[:attribute]``
    (a user's adapter).  An import path that does not import says why, and that the module must be
    importable from the current directory (``PYTHONPATH=.``) or installed.
    """
    if isinstance(spec, Target):
        return spec
    if spec in _REGISTRY:
        return _REGISTRY[spec]()
    plugins = _plugins(TARGETS_GROUP)
    if spec in plugins:
        return _load(plugins[spec], spec)()
    prefix, sep, member = spec.partition(":")
    family = _plugins(FAMILIES_GROUP).get(prefix) if sep else None
    if family is not None:
        return _load(family, prefix).load(member)
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TargetError(f"unknown target {spec!r}: {exc}. A registered name (kvspec list) or an importable "
                          f"module path is expected; for a module in the current directory run with PYTHONPATH=. "
                          f"(or pip install -e your package)") from None
    namespace = module
    for part in filter(None, attribute.split(".")):
        try:
            namespace = getattr(namespace, part)
        except AttributeError:
            raise TargetError(f"{module_name} has no attribute {attribute!r}") from None
    version = getattr(namespace, "__version__", None) or getattr(module, "__version__", "unknown")
    mode = getattr(namespace, "KVSPEC_MODE", "exact")
    if mode not in ("exact", "contract"):
        raise TargetError(f"{spec}: KVSPEC_MODE must be 'exact' or 'contract', not {mode!r}")
    return Target(spec, namespace, str(version), mode=mode)


def _load(entry: Any, name: str) -> Any:
    try:
        return entry.load()
    except ImportError as exc:
        raise TargetError(f"target {name!r}: its plugin {entry.value} does not import ({exc})") from None
