"""Draws shared by the machines: readable block identities, and choosing among what the model handed out.

**Identities from token paths.**  A path over a small alphabet names a chain of blocks whose
sequence hash *spells* the path: ``(0, 1, 1)`` is the chain ``Plh(0, 11, None)``,
``Plh(1, 112, 11)``, ``Plh(2, 1122, 112)``.  Traces stay readable, chains share prefixes all the
time, and an *impostor* (same ``(position, current)`` as a tree node, another parent) exercises
the lineage-collision rule.

>>> plh_of((0, 1, 1))
Plh(position=2, current=1122, parent=112)
>>> [p.current for p in chain_of((2, 0))]
[13, 131]
>>> path_of(plh_of((0, 2))), path_of(impostor_of((0, 2)))
((0, 2), None)

The identities of a path are computed once per process (:func:`functools.cache`; O(1) after the
first call): a path is a tuple, a :class:`Plh` is frozen, so the shared values cannot change, and
the fuzz mode, which runs the rules many times faster than Hypothesis does, no longer spends a
tenth of its time spelling hashes.

**Choosing.**  Rules pick an existing request, reference or id with :func:`choose` on Hypothesis's
``st.data()`` (as Hypothesis's stateful docs do), so a shrunk counterexample names the element
itself and shrinks towards the first one.  The fuzz mode hands rules a
:class:`~kvspec.stateful.engine.draws.FuzzData` instead, which draws the same uniform choice from its
PRNG without building a strategy per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, TypeVar

from hypothesis import strategies as st

from kvspec.hashing import Plh
from kvspec.stateful.engine.draws import FuzzData

__all__ = ["ALPHABET", "BOOLEANS", "IMPOSTOR_PARENT", "chain_of", "choose", "current_of", "impostor_of", "path_of",
           "plh_of", "shuffled"]

T = TypeVar("T")

#: symbols of the token-path tree; 3 keeps chains short and shared
ALPHABET = 3
#: the parent every impostor claims (no real node has it)
IMPOSTOR_PARENT = 999
#: ``st.booleans()`` built once: for ``data.draw`` in rule bodies (building it costs more than drawing it)
BOOLEANS = st.booleans()


@cache
def current_of(path: tuple[int, ...]) -> int:
    """``(0, 1, 1)`` -> 1122: a readable, prefix-preserving sequence hash."""
    return int("1" + "".join(str(s + 1) for s in path))


@cache
def plh_of(path: tuple[int, ...]) -> Plh:
    """The identity of the last block of ``path``."""
    parent = current_of(path[:-1]) if len(path) > 1 else None
    return Plh(len(path) - 1, current_of(path), parent)


def chain_of(path: tuple[int, ...]) -> list[Plh]:
    """The identities of every block along ``path``, root first (a new list: callers edit it)."""
    return list(_chain(path))


@cache
def _chain(path: tuple[int, ...]) -> tuple[Plh, ...]:
    return tuple(plh_of(path[: i + 1]) for i in range(len(path)))


@cache
def path_of(plh: Plh) -> tuple[int, ...] | None:
    """Inverse of :func:`plh_of` (``None`` for an impostor)."""
    path = tuple(int(d) - 1 for d in str(plh.current)[1:])
    return path if plh_of(path) == plh else None


@cache
def impostor_of(path: tuple[int, ...]) -> Plh:
    """Same lineage key as ``plh_of(path)``, different parent: a fragment collision."""
    return Plh(len(path) - 1, current_of(path), IMPOSTOR_PARENT)


def choose(data: Any, items: Sequence[T]) -> T:
    """One of ``items`` (non-empty), drawn from ``st.data()``; shrinks towards ``items[0]``.

    O(1) in fuzz mode; under Hypothesis O(len(items)) to build the strategy."""
    if type(data) is FuzzData:
        return items[int(data.rng.random() * len(items))]
    return data.draw(st.sampled_from(items))


def shuffled(data: Any, items: Sequence[T]) -> list[T]:
    """``items`` in an order drawn from ``st.data()`` (``st.permutations``; shrinks towards the
    given order).  O(len(items)); in fuzz mode without building a strategy."""
    if type(data) is FuzzData:
        out = list(items)
        data.rng.shuffle(out)
        return out
    return data.draw(st.permutations(items))
