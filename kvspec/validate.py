"""``kvspec validate FILE...``: check a KV-event stream recorded from a running engine.

A router (Dynamo's ``KvIndexer``, llm-d, aibrix) trusts each worker's event stream to describe the
blocks the worker holds.  This validator replays a recorded stream against that **router
contract**, per ``(worker, dp rank, storage tier)``:

1. **Parents first.**  A ``Stored`` whose parent is not currently held (never announced, or
   already removed) is a violation: the router cannot attach it (``ParentBlockNotFound``).
2. **Remove what is held.**  A ``Removed`` naming a block that is not held is a violation.
3. **Announce once.**  A ``Stored`` of a block already held is a violation unless the stream's
   mode allows copies (``--mode copies``: vLLM's per-copy events; the block is then held until as
   many removes as stores).
4. **Clears reach only the tier they name**: ``Cleared`` forgets the (worker, rank)'s blocks on
   its tier, nothing else.
5. **No gaps.**  Event ids (Dynamo) or batch sequence numbers (vLLM / SGLang ZMQ frames) increase
   by exactly one per (worker, rank).
6. **Wire hashes are u64** (what Dynamo's JSON events carry); a negative hash in a JSON stream is a
   violation.  In a ZMQ stream a negative int64 (SGLang publishes signed hashes) is read as its
   two's-complement u64, as Dynamo's ZMQ relay does (checked on the 1.6.1 wheel).

Formats (detected from the first byte; ``--format`` forces one):

* ``dynamo`` — JSON lines of ``RouterEvent`` (``{"worker_id", "event": {"event_id", "data",
  "dp_rank"}, "storage_tier"}``), e.g. what ``dump_tree_as_events`` or an event tap writes;
* ``zmq`` — vLLM's (and SGLang's) ``KVEventBatch`` msgpack, as the ZMQ publisher sends it: a
  sequence of msgpack records, each the multipart frames ``[topic, seq (8 bytes big-endian),
  payload]`` or a bare payload ``[ts, events, dp_rank]``; events are tagged arrays
  (maps tagged ``{"type": "BlockStored", "block_hashes", "parent_block_hash", ...}`` as vLLM's
  msgspec structs encode, or tagged arrays ``["BlockStored", hashes, parent, ...]``).  ``--worker N`` names the worker (default 0).

The first violation is printed with a **minimal witness**: the events of its stream that mention
its blocks, then reduced by deleting events while the same violation (same kind, same event)
persists.  Exit status: 0 clean, 1 violation, 2 bad input (one line, never a traceback).

Memory is bounded by the blocks held (one pass; the witness is gathered by a second pass that
keeps only events naming the violation's blocks).

>>> import io
>>> lines = [
...     '{"worker_id": 1, "event": {"event_id": 0, "data": {"stored": {"parent_hash": null,'
...     ' "blocks": [{"block_hash": 7, "tokens_hash": 1}]}}}}',
...     '{"worker_id": 1, "event": {"event_id": 1, "data": {"removed": {"block_hashes": [7]}}}}',
...     '{"worker_id": 1, "event": {"event_id": 2, "data": {"removed": {"block_hashes": [7]}}}}',
... ]
>>> violation = first_violation(parse_dynamo(io.StringIO("\\n".join(lines))), mode="exact")
>>> violation.kind, violation.index
('removed-not-held', 2)
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import attrs

from kvspec.errors import KvSpecError

__all__ = ["Event", "StreamError", "Violation", "first_violation", "main", "minimal_witness", "parse_dynamo",
           "parse_zmq", "validate_file"]

MODES = ("exact", "copies")
U64 = 2**64


class StreamError(KvSpecError, ValueError):
    """The file is not a stream of the format (exit 2)."""


class Event(NamedTuple):
    """One event, reduced to what the contract needs.  ``seq`` is the event id or batch number.
    (A named tuple: a million of them are built per second of validation.)"""

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


# --- the contract ------------------------------------------------------------------------------------


class Checker:
    """Streaming state of the contract: held blocks (with counts in ``copies`` mode) per stream."""

    def __init__(self, mode: str, gaps: bool = True) -> None:
        self.gaps = gaps
        if mode not in MODES:
            raise StreamError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.held: dict[tuple[int, int, str], dict[int, int]] = {}
        self.last_seq: dict[tuple[int, int], int] = {}
        self.events = 0

    def feed(self, e: Event) -> Violation | None:
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


def _same(a: Violation | None, b: Violation) -> bool:
    return a is not None and a.kind == b.kind and a.index == b.index


def _reproduces(events: Sequence[Event], violation: Violation, mode: str) -> bool:
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
            if _reproduces(candidate, violation, mode):
                kept, removed_any = candidate, True
            else:
                i += chunk
        if not removed_any:
            chunk //= 2
    return kept


# --- formats -----------------------------------------------------------------------------------------


def _u(value: Any, what: str, where: str) -> int:
    if type(value) is not int:
        raise StreamError(f"{where}: {what} must be an integer, got {value!r}")
    return value


def parse_dynamo(lines: Iterable[str]) -> Iterator[Event]:
    """``RouterEvent`` JSON lines -> events (blank lines skipped)."""
    index = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            obj = json.loads(line)
            worker = _u(obj["worker_id"], "worker_id", where)
            ev = obj["event"]
            tier = obj.get("storage_tier", "device")
            seq = _u(ev["event_id"], "event_id", where)
            rank = _u(ev.get("dp_rank", 0), "dp_rank", where)
            data = ev["data"]
        except (ValueError, KeyError, TypeError) as exc:
            raise StreamError(f"{where}: not a Dynamo RouterEvent ({type(exc).__name__}: {exc})") from None
        if data == "cleared" or (isinstance(data, dict) and "cleared" in data):
            yield Event(index, worker, rank, tier, seq, "cleared")
        elif isinstance(data, dict) and "stored" in data:
            stored = data["stored"]
            try:
                hashes = tuple(b["block_hash"] for b in stored["blocks"])
                if not all(type(h) is int for h in hashes):
                    raise TypeError("block_hash must be an integer")
                parent = stored.get("parent_hash")
            except (KeyError, TypeError) as exc:
                raise StreamError(f"{where}: bad stored event ({type(exc).__name__}: {exc})") from None
            yield Event(index, worker, rank, tier, seq, "stored", None if parent is None else _u(parent, "parent", where),
                        hashes)
        elif isinstance(data, dict) and "removed" in data:
            try:
                hashes = tuple(data["removed"]["block_hashes"])
                if not all(type(h) is int for h in hashes):
                    raise TypeError("block hashes must be integers")
            except (KeyError, TypeError) as exc:
                raise StreamError(f"{where}: bad removed event ({exc})") from None
            yield Event(index, worker, rank, tier, seq, "removed", None, hashes)
        else:
            raise StreamError(f"{where}: unknown event data {str(data)[:60]!r}")
        index += 1


_MEDIUM_TIER = {None: "device", "GPU": "device", "CPU": "host_pinned", "DISK": "disk", "STORAGE": "external"}



#: field order of the array form (``array_like`` structs, tag first), as msgspec encodes them
_ARRAY_FIELDS = {
    "BlockStored": ("block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id", "medium"),
    "BlockRemoved": ("block_hashes", "medium"),
    "AllBlocksCleared": (),
}


def _event_fields(ev: Any, where: str) -> tuple[str, dict[str, Any]]:
    """``(tag, fields)`` of one event: a map with ``type`` (vLLM's tagged struct) or a tagged array."""
    if isinstance(ev, dict) and isinstance(ev.get("type"), str):
        fields = ev
        tag = ev["type"]
    elif isinstance(ev, list) and ev and isinstance(ev[0], str):
        tag = ev[0]
        fields = dict(zip(_ARRAY_FIELDS.get(tag, ()), ev[1:]))
    else:
        raise StreamError(f"{where}: not a tagged KV event: {str(ev)[:60]!r}")
    if tag in ("BlockStored", "BlockRemoved") and not isinstance(fields.get("block_hashes"), list):
        raise StreamError(f"{where}: {tag} without a block_hashes list")
    return tag, fields


def _as_u64(h: int) -> int:
    """A signed int64 hash as Dynamo's ZMQ relay reads it (two's complement); others unchanged."""
    return h + U64 if -(1 << 63) <= h < 0 else h


def parse_zmq(stream: io.BufferedIOBase, worker: int = 0) -> Iterator[Event]:
    """vLLM / SGLang ``KVEventBatch`` msgpack records -> events (see the module docstring)."""
    try:
        import msgpack
    except ImportError:  # pragma: no cover - msgpack comes with the dynamo extra
        raise StreamError("reading msgpack streams needs the msgpack package (pip install msgpack)") from None
    unpacker = msgpack.Unpacker(stream, raw=False, strict_map_key=False, max_buffer_size=64 << 20)
    index = 0
    record = 0
    complete = 0  # bytes up to the end of the last complete record
    try:
        for obj in unpacker:
            record += 1
            complete = unpacker.tell()
            where = f"record {record}"
            seq = None
            if isinstance(obj, list) and len(obj) == 3 and all(isinstance(f, bytes) for f in obj):
                seq = int.from_bytes(obj[1], "big")
                obj = msgpack.unpackb(obj[2], raw=False, strict_map_key=False)
            if not isinstance(obj, list) or len(obj) < 2 or not isinstance(obj[1], list):
                raise StreamError(f"{where}: not a KVEventBatch [ts, events, dp_rank]")
            rank = obj[2] if len(obj) > 2 and obj[2] is not None else 0
            _u(rank, "data_parallel_rank", where)
            for ev in obj[1]:
                tag, fields = _event_fields(ev, where)
                medium = fields.get("medium")
                tier = _MEDIUM_TIER.get(medium, str(medium).lower())
                if tag == "BlockStored":
                    hashes = tuple(_as_u64(_u(h, "block hash", where)) for h in fields["block_hashes"])
                    parent = fields.get("parent_block_hash")
                    parent = None if parent is None else _as_u64(_u(parent, "parent hash", where))
                    yield Event(index, worker, rank, tier, seq, "stored", parent, hashes)
                elif tag == "BlockRemoved":
                    hashes = tuple(_as_u64(_u(h, "block hash", where)) for h in fields["block_hashes"])
                    yield Event(index, worker, rank, tier, seq, "removed", None, hashes)
                elif tag == "AllBlocksCleared":
                    yield Event(index, worker, rank, "device", seq, "cleared")
                else:
                    raise StreamError(f"{where}: unknown event tag {tag!r}")
                index += 1
                seq = None  # one sequence number per batch: only its first event carries it
        if unpacker.tell() != complete:
            raise StreamError(f"record {record + 1}: truncated msgpack data after byte {complete}")
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, IndexError, TypeError) as exc:
        if isinstance(exc, StreamError):
            raise
        raise StreamError(f"record {record + 1}: not msgpack KVEventBatch data ({type(exc).__name__}: {exc})") from None


def _opener(path: str, fmt: str, worker: int) -> Callable[[], Iterator[Event]]:
    """A function that re-reads ``path`` from the start (the witness needs a second pass)."""
    p = Path(path)
    if not p.is_file():
        raise StreamError(f"{path}: no such file")
    if fmt == "auto":
        with p.open("rb") as f:
            head = f.read(64).lstrip()
        fmt = "dynamo" if head[:1] in (b"{", b"") else "zmq"

    def events() -> Iterator[Event]:
        if fmt == "dynamo":
            with p.open("r", encoding="utf-8", errors="strict") as f:
                try:
                    yield from parse_dynamo(f)
                except UnicodeDecodeError as exc:
                    raise StreamError(f"{path}: not UTF-8 JSON lines ({exc.reason})") from None
        else:
            with p.open("rb") as f:
                yield from parse_zmq(f, worker)

    return events


def validate_file(path: str, *, mode: str = "exact", fmt: str = "auto", worker: int = 0,
                  witness_limit: int = 400, window_limit: int = 20_000) -> tuple[int, Violation | None, list[Event]]:
    """``(events read, first violation or None, minimal witness)`` of one recorded stream."""
    read = _opener(path, fmt, worker)
    checker = Checker(mode)
    violation = None
    for e in read():
        violation = checker.feed(e)
        if violation is not None:
            break
    if violation is None:
        return checker.events, None, []
    from collections import deque

    window: deque[Event] = deque(maxlen=window_limit)
    for e in read():
        window.append(e)
        if e.index == violation.index:
            break
    stream = window[-1].stream
    events = [e for e in window if e.stream == stream]
    relevant = backward_slice(events)
    if not _reproduces(relevant, violation, mode):
        relevant = events  # the slice lost the cause: reduce the whole window
        if not _reproduces(relevant, violation, mode):
            return checker.events, violation, relevant[-1:]  # the cause lies before the window
        if _reproduces(relevant[-witness_limit:], violation, mode):
            relevant = relevant[-witness_limit:]
    return checker.events, violation, minimal_witness(relevant, violation, mode)


def main(paths: Sequence[str], *, mode: str = "exact", fmt: str = "auto", worker: int = 0, out=None) -> int:
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
