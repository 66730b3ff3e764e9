"""The minimal witness of a violation: the fewest events of its stream that still fail the same way.

A witness is a subsequence of the events before the violation, ending with the violating event,
that fails with the same kind at the same event when replayed from an empty state.  It is found in
two steps: a backward slice keeps the events the violating one can depend on (those naming its
blocks, transitively), then chunks are deleted while the violation persists (delta debugging), so
no single event can be dropped from the result.

>>> from kvspec.validate.contract import Event, first_violation
>>> events = [Event(0, 1, 0, "device", None, "stored", None, (1,)),
...           Event(1, 1, 0, "device", None, "stored", None, (2,)),
...           Event(2, 1, 0, "device", None, "removed", None, (1,)),
...           Event(3, 1, 0, "device", None, "stored", 1, (3,))]
>>> violation = first_violation(events)
>>> violation.kind
'parent-not-held'
>>> [e.index for e in minimal_witness(events, violation, "exact")]
[0, 2, 3]
"""

from __future__ import annotations

from collections.abc import Sequence

from kvspec.validate.contract import Event, Violation, first_violation

__all__ = ["backward_slice", "minimal_witness", "reproduces"]


def _same(a: Violation | None, b: Violation) -> bool:
    return a is not None and a.kind == b.kind and a.index == b.index


def reproduces(events: Sequence[Event], violation: Violation, mode: str) -> bool:
    """Whether ``events`` fail exactly like ``violation``; a witness of anything but a gap may skip
    event ids (deleting events must not turn every witness into a gap)."""
    return _same(first_violation(events, mode, gaps=violation.kind == "gap"), violation)


def backward_slice(events: Sequence[Event]) -> list[Event]:
    """The events the last one can depend on: walking back, keep every event that names a block
    already in the slice (as a block or a parent), every clear, and the event just before each kept
    event id (a gap needs its predecessor); kept events add their blocks and parent to the slice."""
    last = events[-1]
    blocks = set(last.hashes) | ({last.parent} if last.parent is not None else set())
    kept = [last]
    need_prev = last.seq is not None
    for e in reversed(events[:-1]):
        names = set(e.hashes) | ({e.parent} if e.parent is not None else set())
        if e.kind == "cleared" or names & blocks or need_prev:
            kept.append(e)
            blocks |= names
            need_prev = False
    kept.reverse()
    return kept


def minimal_witness(events: Sequence[Event], violation: Violation, mode: str) -> list[Event]:
    """Fewest events (a subsequence of ``events``, ending with the violating one) that still fail
    the same way: chunks are deleted while the same violation at the same event persists."""
    assert events and events[-1].index == violation.index
    kept = list(events)
    chunk = max(1, len(kept) // 2)
    while chunk >= 1:
        i, removed_any = 0, False
        while i < len(kept) - 1:
            candidate = kept[:i] + kept[min(i + chunk, len(kept) - 1):]
            if reproduces(candidate, violation, mode):
                kept, removed_any = candidate, True
            else:
                i += chunk
        if not removed_any:
            chunk //= 2
    return kept
