"""The fast path: typed decoding with msgspec into plain rows, and the contract checked on rows.

A stream of 10^6 events must be validated in seconds.  Building a dict per JSON line and a typed
event per event costs microseconds each, so this path:

* decodes with ``msgspec`` straight into small Structs (C code checks every field's type: a hash
  must be an int, a tier a string), a chunk of JSON lines or one msgpack record at a time, and
  turns each event into a **row**: the fields of :class:`~kvspec.validate.contract.Event` without
  its index, as a plain tuple (``Event(index, *row)`` is the typed event);
* checks rows with :func:`check_rows`, which decides only that an event breaks no rule and applies
  its effect, on the :class:`~kvspec.validate.contract.Checker`'s own state; any other event (a
  gap, a repeated id, a negative hash, a parent not held, ...) is handed to ``Checker.feed``,
  which states the rules and writes the violation.

The readers give up (:class:`NotFast`) on anything they do not expect — a decode error, a field of
another type, a carriage return inside a line, bytes that are not UTF-8 — and the caller then runs
the reference readers of :mod:`kvspec.validate.formats` from the start: so bad input gets exactly
the reference's error, and the verdict does not depend on the path taken.  One difference is
deliberate: msgspec skips the fields of a msgpack record that the contract does not read (token
ids, LoRA names, ...) without decoding them, as vLLM's own msgspec decoder does, so malformed text
inside such a field (bytes that are not UTF-8, a map keyed by an array) passes here, where the
reference reader, which decodes every value, rejects the record.  JSON lines are read in full by
both.  Memory is one chunk of rows (``CHUNK_BYTES`` of JSON lines, ``CHUNK_ROWS`` rows of msgpack)
plus the checker's held blocks.

>>> import io
>>> lines = io.BytesIO(b'{"worker_id": 1, "event": {"event_id": 0, "data": {"stored": {"parent_hash": null,'
...                    b' "blocks": [{"block_hash": 7, "tokens_hash": 1}]}}}}\\n')
>>> [rows] = dynamo_rows(lines)
>>> rows
[(1, 0, 'device', 0, 'stored', None, (7,))]
>>> from kvspec.validate.contract import Checker
>>> checker = Checker("exact")
>>> check_rows(checker, [rows + [(1, 0, "device", 1, "removed", None, (8,))]]).kind
'removed-not-held'
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, ClassVar, Literal

import msgspec
from msgspec import UNSET, Struct, UnsetType

from kvspec.validate.contract import U64, Checker, Event, Violation
from kvspec.validate.formats import as_u64, tier_of_medium

__all__ = ["CHUNK_BYTES", "CHUNK_ROWS", "NotFast", "Row", "check_rows", "dynamo_rows", "zmq_rows"]

#: ``(worker, rank, tier, seq, kind, parent, hashes)``: an event's fields after its index
Row = tuple[int, int, str, "int | None", str, "int | None", tuple[int, ...]]

#: bytes of JSON lines decoded at once (cut at a line end)
CHUNK_BYTES = 1 << 18
#: rows of a msgpack stream handed to the check at once
CHUNK_ROWS = 1 << 12


class NotFast(Exception):
    """The fast reader met input it does not expect: the reference readers decide."""


# --- Dynamo RouterEvent JSON lines ------------------------------------------------------------------


class _Block(Struct, gc=False):
    block_hash: int


class _Stored(Struct, gc=False):
    blocks: list[_Block]
    parent_hash: int | None = None


class _Removed(Struct, gc=False):
    block_hashes: tuple[int, ...]


class _Data(Struct, gc=False):
    """``{"stored": ...}``, ``{"removed": ...}`` or ``{"cleared": ...}`` (a clear wins, then a store)."""

    cleared: Any = UNSET
    stored: _Stored | UnsetType = UNSET
    removed: _Removed | UnsetType = UNSET


class _KvEvent(Struct, gc=False):
    event_id: int
    data: Literal["cleared"] | _Data
    dp_rank: int = 0


class _RouterEvent(Struct, gc=False):
    worker_id: int
    event: _KvEvent
    storage_tier: str = "device"


_LINE = msgspec.json.Decoder(_RouterEvent)


def _lines_chunks(stream: BinaryIO) -> Iterator[bytes]:
    """Whole lines, about ``CHUNK_BYTES`` at a time; gives up where Python's text reading (universal
    newlines, strict UTF-8) would see other lines or other text than ``bytes.split(b"\\n")``."""
    rest = b""
    while True:
        block = stream.read(CHUNK_BYTES)
        if block:
            buf = rest + block
            cut = buf.rfind(b"\n") + 1
            chunk, rest = buf[:cut], buf[cut:]
        else:
            chunk, rest = rest, b""
        if chunk:
            if b"\r" in chunk and chunk.count(b"\r") != chunk.count(b"\r\n"):
                raise NotFast("a carriage return that does not end a line")
            if not chunk.isascii():
                try:
                    chunk.decode("utf-8")
                except UnicodeDecodeError:
                    raise NotFast("not UTF-8") from None
            yield chunk
        if not block:
            return


def dynamo_rows(stream: BinaryIO) -> Iterator[list[Row]]:
    """Rows of a ``RouterEvent`` JSON-lines stream, one list per chunk of lines.  Each line is
    decoded alone: one JSON value per line, as the reference reads them (``decode_lines`` would
    also accept a value spread over lines)."""
    decode = _LINE.decode
    for chunk in _lines_chunks(stream):
        rows: list[Row] = []
        append = rows.append
        for line in chunk.split(b"\n"):
            if not line:
                continue
            try:
                r = decode(line)
            except msgspec.DecodeError as exc:
                if line.strip():
                    raise NotFast(str(exc)) from None
                continue  # a blank line
            ev = r.event
            data = ev.data
            if data.__class__ is str or data.cleared is not UNSET:
                append((r.worker_id, ev.dp_rank, r.storage_tier, ev.event_id, "cleared", None, ()))
            elif data.stored is not UNSET:
                stored = data.stored
                blocks = stored.blocks
                hashes = (blocks[0].block_hash,) if len(blocks) == 1 else tuple([b.block_hash for b in blocks])
                append((r.worker_id, ev.dp_rank, r.storage_tier, ev.event_id, "stored", stored.parent_hash, hashes))
            elif data.removed is not UNSET:
                append((r.worker_id, ev.dp_rank, r.storage_tier, ev.event_id, "removed", None,
                        data.removed.block_hashes))
            else:
                raise NotFast("unknown event data")
        yield rows


# --- vLLM / SGLang KVEventBatch msgpack -------------------------------------------------------------


class _StoredMap(Struct, tag="BlockStored", tag_field="type", gc=False):
    kind: ClassVar[str] = "stored"
    block_hashes: tuple[int, ...]
    parent_block_hash: int | None = None
    medium: str | None = None


class _RemovedMap(Struct, tag="BlockRemoved", tag_field="type", gc=False):
    kind: ClassVar[str] = "removed"
    parent_block_hash: ClassVar[None] = None
    block_hashes: tuple[int, ...]
    medium: str | None = None


class _ClearedMap(Struct, tag="AllBlocksCleared", tag_field="type", gc=False):
    kind: ClassVar[str] = "cleared"
    medium: str | None = None  # read (and so type-checked) by the reference reader, then ignored


class _BatchOfMaps(Struct, array_like=True, gc=False):
    ts: Any
    events: list[_StoredMap | _RemovedMap | _ClearedMap]
    rank: int | None = None


class _StoredArray(Struct, tag="BlockStored", array_like=True, gc=False):
    kind: ClassVar[str] = "stored"
    block_hashes: tuple[int, ...]
    parent_block_hash: int | None = None
    # not read: skipped like a map's unknown fields (``Raw``: not decoded)
    token_ids: msgspec.Raw = msgspec.Raw()
    block_size: msgspec.Raw = msgspec.Raw()
    lora_id: msgspec.Raw = msgspec.Raw()
    medium: str | None = None


class _RemovedArray(Struct, tag="BlockRemoved", array_like=True, gc=False):
    kind: ClassVar[str] = "removed"
    parent_block_hash: ClassVar[None] = None
    block_hashes: tuple[int, ...]
    medium: str | None = None


class _ClearedArray(Struct, tag="AllBlocksCleared", array_like=True, gc=False):
    kind: ClassVar[str] = "cleared"


class _BatchOfArrays(Struct, array_like=True, gc=False):
    ts: Any
    events: list[_StoredArray | _RemovedArray | _ClearedArray]
    rank: int | None = None


_BATCH_TYPES = (_BatchOfMaps, _BatchOfArrays)
_BATCH_DECODERS = tuple(msgspec.msgpack.Decoder(t) for t in _BATCH_TYPES)


def _batch(payload: Any, first: int) -> tuple[int, _BatchOfMaps | _BatchOfArrays]:
    """A record's payload (msgpack bytes, or a bare record already unpacked) as a typed batch,
    trying the batch type ``first`` first; ``(the type that fitted, the batch)``."""
    for which in (first, 1 - first):
        try:
            if payload.__class__ is bytes:
                return which, _BATCH_DECODERS[which].decode(payload)
            return which, msgspec.convert(payload, _BATCH_TYPES[which])
        except msgspec.ValidationError:
            continue
        except msgspec.DecodeError as exc:  # not msgpack at all: no other type will do
            raise NotFast(str(exc)) from None
    raise NotFast("not a KVEventBatch of tagged maps or tagged arrays")


#: msgpack markers of a 3-element array and of bin data: how a ZMQ frames record begins
_ARRAY3, _BIN = 0x93, (0xC4, 0xC5, 0xC6)
_READ = 1 << 20


def _is_frames(obj: Any) -> bool:
    return obj.__class__ is list and len(obj) == 3 and obj[0].__class__ is bytes and obj[1].__class__ is bytes \
        and obj[2].__class__ is bytes


def _records(stream: BinaryIO, msgpack: Any) -> Iterator[tuple[int | None, Any]]:
    """``(sequence number or None, payload)`` per record, the payload as msgpack bytes (or, for a
    bare record in a stream of frames, already unpacked).  A stream that begins with frames is
    unpacked record by record (frames are three byte strings: cheap); a stream of bare payloads is
    only skipped over by the unpacker and each record's bytes are cut from the buffer, so that
    msgspec decodes them typed, once."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=64 << 20)
    data = stream.read(_READ)
    if len(data) >= 2 and data[0] == _ARRAY3 and data[1] in _BIN:
        # Truncation is judged by the end of the last *complete* record: the C unpacker's ``tell()``
        # also counts the bytes of a record it has begun and not finished, so after a cut record it
        # equals the bytes fed and cannot tell a clean end from a truncated one.
        fed = complete = 0
        while data:
            unpacker.feed(data)
            fed += len(data)
            for obj in unpacker:
                complete = unpacker.tell()
                yield (int.from_bytes(obj[1], "big"), obj[2]) if _is_frames(obj) else (None, obj)
            data = stream.read(_READ)
        if complete != fed:
            raise NotFast("truncated")
        return
    unpacker.feed(data)
    base = start = 0  # file offsets of data[0] (bytes fed, not yet consumed) and of the next record
    while True:
        while True:
            try:
                unpacker.skip()  # after OutOfData, the next skip() goes on with the same record
            except msgpack.OutOfData:
                break
            end = unpacker.tell()
            yield None, data[start - base:end - base]
            start = end
        block = stream.read(_READ)
        if not block:
            break
        data, base = data[start - base:] + block, start
        unpacker.feed(block)
    if start != base + len(data):
        raise NotFast("truncated")


def zmq_rows(stream: BinaryIO, worker: int = 0) -> Iterator[list[Row]]:
    """Rows of a ``KVEventBatch`` msgpack stream, about ``CHUNK_ROWS`` per list."""
    try:
        import msgpack
    except ImportError:  # pragma: no cover - the reference reader says what to install
        raise NotFast("no msgpack") from None
    tiers: dict[Any, str] = {None: "device", "GPU": "device"}
    rows: list[Row] = []
    append = rows.append
    which = 0  # the batch type that fitted the last record: a stream keeps to one
    try:
        decode = _BATCH_DECODERS[which].decode
        for seq, payload in _records(stream, msgpack):
            try:
                batch = decode(payload)  # the common case, without a call of _batch
            except (msgspec.ValidationError, TypeError):
                which, batch = _batch(payload, which)
                decode = _BATCH_DECODERS[which].decode
            rank = 0 if batch.rank is None else batch.rank
            for ev in batch.events:
                kind = ev.kind
                if kind == "cleared":
                    append((worker, rank, "device", seq, kind, None, ()))
                else:
                    medium = ev.medium
                    tier = tiers.get(medium) or tiers.setdefault(medium, tier_of_medium(medium))
                    parent = ev.parent_block_hash
                    if parent is not None and parent < 0:
                        parent = as_u64(parent)
                    hashes = ev.block_hashes
                    if hashes and min(hashes) < 0:
                        hashes = tuple([as_u64(h) for h in hashes])
                    append((worker, rank, tier, seq, kind, parent, hashes))
                seq = None  # one sequence number per batch: only its first event carries it
            if len(rows) >= CHUNK_ROWS:
                yield rows
                rows = []
                append = rows.append
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as exc:
        raise NotFast(str(exc)) from None
    yield rows


# --- the contract on rows ---------------------------------------------------------------------------


def check_rows(checker: Checker, chunks: Iterable[list[Row]]) -> Violation | None:
    """Feed ``chunks`` of rows to ``checker``; the first violation, or ``None``.

    An event that plainly breaks no rule — its id follows the last one (or is the first, or has
    none), a store of u64 blocks not held (any, with copies) under a held parent or none, a
    remove of distinct held blocks, a clear — is applied here exactly as ``Checker.feed`` would;
    any other event goes to ``Checker.feed``.  O(hashes) per event, like ``feed``."""
    held_by, last_seq = checker.held, checker.last_seq
    exact, gaps = checker.mode == "exact", checker.gaps
    index = checker.events
    none = object()
    worker_now: Any = none
    rank_now: Any = none
    tier_now: Any = none
    held: dict[int, int] = {}
    stream = (0, 0)
    for rows in chunks:
        for row in rows:
            worker, rank, tier, seq, kind, parent, hashes = row
            if worker != worker_now or rank != rank_now or tier != tier_now:
                worker_now, rank_now, tier_now = worker, rank, tier
                held = held_by.setdefault((worker, rank, tier), {})
                stream = (worker, rank)
            fine = True
            if seq is not None and gaps:
                last = last_seq.get(stream)
                fine = last is None or seq == last + 1
            if not fine:
                pass
            elif kind == "stored":
                if parent is not None and parent not in held:
                    fine = False
                else:
                    for h in hashes:
                        if h < 0 or h >= U64 or (exact and h in held):
                            fine = False
                            break
                    else:
                        for h in hashes:
                            held[h] = held.get(h, 0) + 1
            elif kind == "removed":
                if len(hashes) == 1:
                    h = hashes[0]
                    count = held.get(h)
                    if count is None:
                        fine = False
                    elif count == 1:
                        del held[h]
                    else:
                        held[h] = count - 1
                elif all(h in held for h in hashes) and len(set(hashes)) == len(hashes):
                    for h in hashes:
                        count = held[h]
                        if count == 1:
                            del held[h]
                        else:
                            held[h] = count - 1
                else:
                    fine = False
            else:
                held.clear()
            if fine:
                if seq is not None and gaps:
                    last_seq[stream] = seq
            else:
                checker.events = index
                found = checker.feed(Event(index, *row))
                if found is not None:
                    return found
            index += 1
    checker.events = index
    return None
