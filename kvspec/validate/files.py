"""Validating recorded files: format detection, the fast pass with its fallback, the witness pass.

:func:`scan` reads a file once and finds its first violation: by the fast path
(:mod:`kvspec.validate.fast`) unless that path meets input it does not expect, in which case the
reference readers (:mod:`kvspec.validate.formats`) read the file again from the start — the
verdict, the violation and a bad input's error are the reference's either way.  The same pass
keeps the window of events before the violation (the last chunks of rows; typed events are built
only for them), from which :func:`witness_of` cuts the minimal witness
(:mod:`kvspec.validate.witness`).  Memory: the checker's held blocks, the last chunks of rows and
the window — never the stream.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "stream.jsonl")
>>> with open(path, "w") as f:
...     _ = f.write('{"worker_id": 1, "event": {"event_id": 0, "data": {"removed": {"block_hashes": [5]}}}}\\n')
>>> found = scan(path)
>>> found.violation.kind, found.fast, [e.index for e in witness_of(found)]
('removed-not-held', True, [0])
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
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
    whether the fast path decided (``False``: the reference readers did), and the window of events
    up to the violation that its witness is cut from."""

    events: int
    violation: Violation | None
    fast: bool
    window: tuple[Event, ...] = attrs.field(default=(), repr=False)


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


def _utf8_lines(path: str, lines: Iterable[str]) -> Iterator[str]:
    """``lines`` (read with ``surrogateescape``), each found to be UTF-8 when it is reached.

    A line's text is judged with its JSON, line by line: a violation before the first line that is
    not UTF-8 is the verdict.  (Strict decoding would judge the bytes the text reader buffers ahead,
    about 8 KiB, so the verdict would hang on a buffer size; the fast path, which stops at the
    violation, could not agree with it.)"""
    for number, line in enumerate(lines, 1):
        if not line.isascii():
            try:  # the line's own bytes again, strictly
                line.encode("utf-8", "surrogateescape").decode("utf-8")
            except UnicodeDecodeError as exc:
                raise StreamError(f"{path}: line {number}: not UTF-8 ({exc.reason})") from None
        yield line


def _reference_events(path: str, fmt: str, worker: int) -> Iterator[Event]:
    if fmt == "dynamo":
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            yield from parse_dynamo(_utf8_lines(path, f))
    else:
        with open(path, "rb") as f:
            yield from parse_zmq(f, worker)


def _fast_rows(path: str, fmt: str, worker: int) -> Iterator[list[Row]]:
    with open(path, "rb") as f:
        yield from (dynamo_rows(f) if fmt == "dynamo" else zmq_rows(f, worker))


class _RecentChunks:
    """The chunks of rows passing through, keeping the newest and, before it, the last ones that
    hold at least ``keep`` rows: the window a witness is cut from, kept without a cost per row."""

    def __init__(self, chunks: Iterator[list[Row]], keep: int) -> None:
        self._chunks, self._keep = chunks, keep
        self.kept: deque[list[Row]] = deque()
        self.kept_rows = 0
        self.passed_rows = 0

    def __iter__(self) -> Iterator[list[Row]]:
        for rows in self._chunks:
            self.kept.append(rows)
            self.kept_rows += len(rows)
            self.passed_rows += len(rows)
            # drop the oldest chunk while the chunks before this one still hold ``keep`` rows
            while len(self.kept) > 1 and self.kept_rows - len(rows) - len(self.kept[0]) >= self._keep:
                self.kept_rows -= len(self.kept.popleft())
            yield rows

    def events(self, last: int, limit: int) -> tuple[Event, ...]:
        """The typed events of the ``limit`` rows up to index ``last`` (inclusive)."""
        index = self.passed_rows - self.kept_rows
        window = []
        for rows in self.kept:
            for row in rows:
                if last - limit < index <= last:
                    window.append(Event(index, *row))
                index += 1
        return tuple(window)


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


def scan(path: str, *, mode: str = "exact", fmt: str = "auto", worker: int = 0, fast: bool = True,
         window_limit: int = 20_000) -> Scan:
    """The first violation in ``path`` and the ``window_limit`` events up to it, in one pass
    (``fast=False``: by the reference readers only)."""
    fmt = detect_format(path, fmt)
    checker = Checker(mode)
    if fast:
        try:
            with _no_cycle_collection():
                recent = _RecentChunks(_fast_rows(path, fmt, worker), window_limit)
                violation = check_rows(checker, recent)
                window = () if violation is None else recent.events(violation.index, window_limit)
            return Scan(checker.events, violation, True, window)
        except NotFast:
            checker = Checker(mode)
    events = _reference_events(path, fmt, worker)
    window_: deque[Event] = deque(maxlen=window_limit)
    for e in events:
        window_.append(e)
        violation = checker.feed(e)
        if violation is not None:
            events.close()
            return Scan(checker.events, violation, False, tuple(window_))
    return Scan(checker.events, None, False)


def validate_file(path: str, *, mode: str = "exact", fmt: str = "auto", worker: int = 0,
                  witness_limit: int = 400, window_limit: int = 20_000,
                  fast: bool = True) -> tuple[int, Violation | None, list[Event]]:
    """``(events read, first violation or None, minimal witness)`` of one recorded stream."""
    found = scan(path, mode=mode, fmt=fmt, worker=worker, fast=fast, window_limit=window_limit)
    return found.events, found.violation, witness_of(found, mode=mode, witness_limit=witness_limit)


def witness_of(found: Scan, *, mode: str = "exact", witness_limit: int = 400) -> list[Event]:
    """The minimal witness of ``found``'s violation (``[]`` if none), cut from its window: the
    events of the violation's (worker, rank), sliced backward, then reduced."""
    violation = found.violation
    if violation is None:
        return []
    stream = found.window[-1].stream
    same_stream = [e for e in found.window if e.stream == stream]
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
