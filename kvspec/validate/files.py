"""Validating recorded files: format detection, the fast pass with its fallback, the witness pass.

:func:`scan` reads a file once and finds its first violation: by the fast path
(:mod:`kvspec.validate.fast`) unless that path meets input it does not expect, in which case the
reference readers (:mod:`kvspec.validate.formats`) read the file again from the start — the
verdict, the violation and a bad input's error are the reference's either way.
:func:`validate_file` adds the minimal witness: a second pass keeps a window of the events before
the violation (typed events are built only there), then :mod:`kvspec.validate.witness` reduces it.
Memory: the checker's held blocks, one chunk of rows and the window — never the stream.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs

from kvspec.validate.contract import Checker, Event, StreamError, Violation
from kvspec.validate.fast import NotFast, Row, check_rows, dynamo_rows, zmq_rows
from kvspec.validate.formats import parse_dynamo, parse_zmq
from kvspec.validate.witness import backward_slice, minimal_witness, reproduces

__all__ = ["FORMATS", "Scan", "detect_format", "main", "scan", "validate_file", "witness_of"]

#: ``--format`` choices: ``auto`` looks at the first byte (``{``: Dynamo JSON lines, else msgpack)
FORMATS = ("auto", "dynamo", "zmq")


@attrs.frozen
class Scan:
    """One pass over a file: events read (up to and including the violation), the first violation,
    and whether the fast path decided (``False``: the reference readers did)."""

    events: int
    violation: Violation | None
    fast: bool


def detect_format(path: str, fmt: str = "auto") -> str:
    """``dynamo`` or ``zmq`` for ``path`` (a missing file is a :class:`StreamError`)."""
    p = Path(path)
    if not p.is_file():
        raise StreamError(f"{path}: no such file")
    if fmt not in FORMATS:
        raise StreamError(f"format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "auto":
        with p.open("rb") as f:
            head = f.read(64).lstrip()
        fmt = "dynamo" if head[:1] in (b"{", b"") else "zmq"
    return fmt


def _reference_events(path: str, fmt: str, worker: int) -> Iterator[Event]:
    if fmt == "dynamo":
        with open(path, encoding="utf-8", errors="strict") as f:
            try:
                yield from parse_dynamo(f)
            except UnicodeDecodeError as exc:
                raise StreamError(f"{path}: not UTF-8 JSON lines ({exc.reason})") from None
    else:
        with open(path, "rb") as f:
            yield from parse_zmq(f, worker)


def _fast_rows(path: str, fmt: str, worker: int) -> Iterator[list[Row]]:
    with open(path, "rb") as f:
        yield from (dynamo_rows(f) if fmt == "dynamo" else zmq_rows(f, worker))


def _fast_events(path: str, fmt: str, worker: int, start: int) -> Iterator[Event]:
    """The fast readers' events from index ``start`` on (earlier chunks are skipped whole)."""
    index = 0
    for rows in _fast_rows(path, fmt, worker):
        if index + len(rows) <= start:
            index += len(rows)
            continue
        for row in rows:
            if index >= start:
                yield Event(index, *row)
            index += 1


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector: the fast path allocates rows and Structs by the million and
    never a reference cycle, and the collector's passes over each fresh chunk cost about a quarter
    of the time (reference counting still frees everything at once)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def scan(path: str, *, mode: str = "exact", fmt: str = "auto", worker: int = 0, fast: bool = True) -> Scan:
    """The first violation in ``path`` (``fast=False``: by the reference readers only)."""
    fmt = detect_format(path, fmt)
    checker = Checker(mode)
    if fast:
        try:
            with _no_cycle_collection():
                violation = check_rows(checker, _fast_rows(path, fmt, worker))
            return Scan(checker.events, violation, True)
        except NotFast:
            checker = Checker(mode)
    for e in _reference_events(path, fmt, worker):
        violation = checker.feed(e)
        if violation is not None:
            return Scan(checker.events, violation, False)
    return Scan(checker.events, None, False)


def validate_file(path: str, *, mode: str = "exact", fmt: str = "auto", worker: int = 0,
                  witness_limit: int = 400, window_limit: int = 20_000,
                  fast: bool = True) -> tuple[int, Violation | None, list[Event]]:
    """``(events read, first violation or None, minimal witness)`` of one recorded stream."""
    found = scan(path, mode=mode, fmt=fmt, worker=worker, fast=fast)
    witness = witness_of(path, found, mode=mode, fmt=fmt, worker=worker, witness_limit=witness_limit,
                         window_limit=window_limit)
    return found.events, found.violation, witness


def witness_of(path: str, found: Scan, *, mode: str = "exact", fmt: str = "auto", worker: int = 0,
               witness_limit: int = 400, window_limit: int = 20_000) -> list[Event]:
    """The minimal witness of ``found``'s violation (``[]`` if none), from a window of the
    ``window_limit`` events up to it, read by the path that found it."""
    violation = found.violation
    if violation is None:
        return []
    fmt = detect_format(path, fmt)
    start = max(0, violation.index - window_limit + 1)
    events = _fast_events(path, fmt, worker, start) if found.fast else _reference_events(path, fmt, worker)
    window: deque[Event] = deque(maxlen=window_limit)
    with _no_cycle_collection():
        for e in events:
            window.append(e)
            if e.index == violation.index:
                break
        events.close()
    stream = window[-1].stream
    same_stream = [e for e in window if e.stream == stream]
    relevant = backward_slice(same_stream)
    if not reproduces(relevant, violation, mode):
        relevant = same_stream  # the slice lost the cause: reduce the whole window
        if not reproduces(relevant, violation, mode):
            return relevant[-1:]  # the cause lies before the window
        if reproduces(relevant[-witness_limit:], violation, mode):
            relevant = relevant[-witness_limit:]
    return minimal_witness(relevant, violation, mode)


def main(paths: Sequence[str], *, mode: str = "exact", fmt: str = "auto", worker: int = 0, out=None) -> int:
    """``kvspec validate``: report each file; 1 if any has a violation, else 0 (bad input raises
    :class:`StreamError`, which the command line prints as one line with exit 2)."""
    import sys

    out = out or sys.stdout
    status = 0
    for path in paths:
        count, violation, witness = validate_file(path, mode=mode, fmt=fmt, worker=worker)
        if violation is None:
            print(f"{path}: OK, {count:,} events, no violation ({mode} mode)", file=out)
            continue
        status = 1
        print(f"{path}: VIOLATION {violation.kind} at event {violation.index} ({count:,} events read)", file=out)
        print(f"  {violation.message}", file=out)
        print(f"  minimal witness ({len(witness)} events):", file=out)
        for e in witness:
            print(f"    {e.describe()}", file=out)
    return status
