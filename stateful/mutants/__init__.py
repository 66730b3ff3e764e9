"""Self-test mutants: deliberately broken targets that the state machines must catch.

A mutant is the optimized implementation with one planted bug: a subclass of one ``kvspec.impl``
class that overrides exactly the rule it breaks.  Each module in this package defines ``MUTANTS``,
a list of :class:`Mutant`; this package collects them from the modules listed in :data:`MODULES`.
The mutants are a *target family* plugin (:data:`FAMILY`, entry point ``mutant``): the target
registry imports this package only when a ``mutant:...`` target is resolved or listed.  ``--target mutant:<name>`` checks a mutant like any other target, and
``tests/quality/test_mutants.py`` asserts that each one is caught under the ``ci`` profile by the
machines named in ``caught_by``.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable, Mapping

import attrs

from kvspec.errors import TargetError
from kvspec.targets import Target

__all__ = ["FAMILY", "MODULES", "MUTANTS", "Mutant", "drifted", "mutant_target"]


@attrs.frozen
class Mutant:
    """A planted bug.

    ``classes`` maps class names to a zero-argument callable returning the broken class (lazy, so
    listing mutants imports nothing heavy); ``caught_by`` are machine names (or prefixes) that must
    detect it; ``description`` says which rule it breaks, in one line.
    """

    name: str
    description: str
    classes: Mapping[str, Callable[[], type]]
    caught_by: tuple[str, ...]


#: The modules that define mutants, one per machine family they target.
MODULES = ("approx", "index", "lanes", "manager", "offload", "pipeline", "pool", "sglang", "tracker", "vllm")


def _collect() -> dict[str, Mutant]:
    found: dict[str, Mutant] = {}
    for name in MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        for mutant in getattr(module, "MUTANTS", ()):
            if mutant.name in found:
                raise TargetError(f"two mutants named {mutant.name!r}")
            found[mutant.name] = mutant
    return found


class _Registry(Mapping):
    """Mapping of mutant name -> :class:`Mutant`, collected on first use."""

    _cache: dict[str, Mutant] | None = None

    def _all(self) -> dict[str, Mutant]:
        if self._cache is None:
            self._cache = _collect()
        return self._cache

    def __getitem__(self, key: str) -> Mutant:
        return self._all()[key]

    def __iter__(self):
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


MUTANTS: Mapping[str, Mutant] = _Registry()


def drifted(reason: str) -> bool:
    """True when a mutant's failure is its own code breaking — an attribute, a name, a signature
    or the keys of impl's internals it relies on changed — rather than the planted bug: such a
    mutant is "caught" by any machine that calls it, whatever the machine checks, so the quality
    tests refuse it.  A typed error (``BlockNotHeld`` is also a ``KeyError``) is reported under its
    own name, never as ``crash:KeyError``, so it still counts as a catch.

    >>> drifted("pool.release(1): eviction_order(): target <AttributeError: 'X' object has no attribute '_tick'>")
    True
    >>> drifted("error: model none (), target crash:TypeError (f() takes 2 positional arguments but 3 were given)")
    True
    >>> drifted("error: model none (), target crash:KeyError ((3, 7))"), drifted("error: model BlockNotHeld (7), target none ()")
    (True, False)
    """
    kinds = ("AttributeError", "NameError", "TypeError", "KeyError")  # an observer's "<Kind: ...>", a call's "crash:Kind"
    return any(f"<{kind}:" in reason or f"crash:{kind} " in reason for kind in kinds)


def mutant_target(name: str) -> Target:
    """The target ``mutant:<name>``: every ``kvspec.impl`` class, with the mutant's overrides."""
    import kvspec
    import kvspec.impl
    from kvspec._exports import EXPORTS

    if name not in MUTANTS:
        raise TargetError(f"unknown mutant {name!r}; known: {', '.join(sorted(MUTANTS))}")
    mutant = MUTANTS[name]
    namespace = types.SimpleNamespace()
    for class_name in EXPORTS:
        setattr(namespace, class_name, getattr(kvspec.impl, class_name, None))
    for class_name, make in mutant.classes.items():
        setattr(namespace, class_name, make())
    return Target(f"mutant:{name}", namespace, f"{kvspec.__version__}+{name}")


class _Family:
    """The ``mutant:`` target family (entry point ``kvspec.target_families``: ``mutant``)."""

    @staticmethod
    def names() -> list[str]:
        return sorted(MUTANTS)

    @staticmethod
    def load(name: str) -> Target:
        return mutant_target(name)


FAMILY = _Family()
