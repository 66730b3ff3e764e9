"""The router contract, one event at a time: the reference the fast path is checked against.

:class:`Checker` states every rule of the contract (see :mod:`kvspec.validate`) on typed
:class:`Event` values; :func:`first_violation` runs it over a stream.  The fast path
(:mod:`kvspec.validate.fast`) decides only that an event breaks no rule and applies its effect; it
hands every other event to :meth:`Checker.feed`, so each rule and each violation message lives here
and nowhere else.

>>> checker = Checker("exact")
>>> checker.feed(Event(0, 1, 0, "device", 0, "stored", None, (7,))) is None
True
>>> checker.feed(Event(1, 1, 0, "device", 1, "removed", None, (8,))).kind
'removed-not-held'
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import attrs

from kvspec.errors import KvSpecError

__all__ = ["MODES", "U64", "Checker", "Event", "StreamError", "Violation", "first_violation"]

#: ``exact``: a block is announced once; ``copies``: per-copy streams, held until as many removes
MODES = ("exact", "copies")
#: wire hashes are u64: ``0 <= h < U64``
U64 = 2**64


class StreamError(KvSpecError, ValueError):
    """The file is not a stream of the format (exit 2)."""


class Event(NamedTuple):
    """One event, reduced to what the contract needs.  ``seq`` is the event id or batch number.
    (A named tuple: the fast path builds the same fields as a plain tuple, ``Event(index, *row)``.)"""

    index: int
    worker: int
    rank: int
    tier: str
    seq: int | None
    kind: str  # stored | removed | cleared
    parent: int | None = None
    hashes: tuple[int, ...] = ()

    @property
    def stream(self) -> tuple[int, int]:
        return (self.worker, self.rank)

    def describe(self) -> str:
        where = f"worker {self.worker} rank {self.rank}" + ("" if self.tier == "device" else f" {self.tier}")
        seq = "" if self.seq is None else f" #{self.seq}"
        if self.kind == "stored":
            return f"[{self.index}] {where}{seq}: Stored(parent={_h(self.parent)}, {[_h(h) for h in self.hashes]})"
        if self.kind == "removed":
            return f"[{self.index}] {where}{seq}: Removed({[_h(h) for h in self.hashes]})"
        return f"[{self.index}] {where}{seq}: Cleared"


def _h(value: int | None) -> str:
    return "None" if value is None else f"{value:#x}" if value >= 0 else str(value)


@attrs.frozen
class Violation:
    kind: str
    index: int
    message: str
    #: the blocks the violation is about (the witness keeps events naming them)
    blocks: tuple[int, ...] = ()


class Checker:
    """Streaming state of the contract: held blocks (with counts) per ``(worker, rank, tier)`` and
    the last event id per ``(worker, rank)``.  Memory: O(blocks held + streams); ``feed`` is
    O(hashes of the event)."""

    def __init__(self, mode: str, gaps: bool = True) -> None:
        self.gaps = gaps
        if mode not in MODES:
            raise StreamError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.held: dict[tuple[int, int, str], dict[int, int]] = {}
        self.last_seq: dict[tuple[int, int], int] = {}
        #: events fed so far (the index of the next event)
        self.events = 0

    def feed(self, e: Event) -> Violation | None:
        """The violation ``e`` commits, or ``None`` after applying its effect."""
        self.events += 1
        if e.seq is not None and self.gaps:
            last = self.last_seq.get(e.stream)
            if last is not None and e.seq != last + 1 and e.seq != last:
                return Violation("gap", e.index, f"{e.describe()}: event id {e.seq} after {last} "
                                 f"(expected {last + 1})", ())
            self.last_seq[e.stream] = e.seq
        for h in ((e.parent,) if e.parent is not None else ()) + e.hashes:
            if not 0 <= h < U64:
                return Violation("hash-not-u64", e.index, f"{e.describe()}: hash {h} is not a u64 "
                                 "(Dynamo's router rejects the event)", (h,))
        held = self.held.setdefault((e.worker, e.rank, e.tier), {})
        if e.kind == "cleared":
            held.clear()
            return None
        if e.kind == "stored":
            if e.parent is not None and e.parent not in held:
                return Violation("parent-not-held", e.index, f"{e.describe()}: parent {_h(e.parent)} is not held "
                                 "(never announced or already removed)", (e.parent,))
            for h in e.hashes:
                if h in held and self.mode == "exact":
                    return Violation("stored-twice", e.index, f"{e.describe()}: block {_h(h)} is already held "
                                     "(announced twice; --mode copies allows per-copy streams)", (h,))
            for h in e.hashes:
                held[h] = held.get(h, 0) + 1
            return None
        for h in e.hashes:
            if h not in held:
                return Violation("removed-not-held", e.index, f"{e.describe()}: block {_h(h)} is not held", (h,))
            held[h] -= 1
            if held[h] == 0:
                del held[h]
        return None


def first_violation(events: Iterable[Event], mode: str = "exact", gaps: bool = True) -> Violation | None:
    """The first violation of the contract in ``events`` (``gaps=False``: event ids not checked)."""
    checker = Checker(mode, gaps)
    for e in events:
        found = checker.feed(e)
        if found is not None:
            return found
    return None
