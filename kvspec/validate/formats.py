"""The recorded formats, read literally into typed :class:`~kvspec.validate.contract.Event` values.

These readers are the reference: every field is checked by hand, every bad input is a
:class:`~kvspec.validate.contract.StreamError` naming its line or record.  The fast readers of
:mod:`kvspec.validate.fast` must produce the same events; on any input they do not expect they
give up and these readers run instead.

* Dynamo ``RouterEvent`` JSON lines: ``{"worker_id", "event": {"event_id", "data", "dp_rank"},
  "storage_tier"}`` with ``data`` one of ``"cleared"``, ``{"cleared": ...}``, ``{"stored":
  {"parent_hash", "blocks": [{"block_hash", ...}]}}``, ``{"removed": {"block_hashes"}}``.
* vLLM / SGLang ``KVEventBatch`` msgpack as the ZMQ publisher sends it: records that are either
  the multipart frames ``[topic, seq (big-endian), payload]`` or a bare payload ``[ts, events,
  dp_rank]``; each event a map tagged ``{"type": "BlockStored", ...}`` or a tagged array
  ``["BlockStored", block_hashes, parent_block_hash, ...]``.  Only a batch's first event carries
  the batch's sequence number.

>>> import io
>>> line = '{"worker_id": 3, "event": {"event_id": 9, "data": {"removed": {"block_hashes": [5]}}}}'
>>> list(parse_dynamo(io.StringIO(line)))
[Event(index=0, worker=3, rank=0, tier='device', seq=9, kind='removed', parent=None, hashes=(5,))]
>>> tier_of_medium("CPU"), as_u64(-1) == 2**64 - 1
('host_pinned', True)
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any

from kvspec.validate.contract import U64, Event, StreamError

__all__ = ["ARRAY_FIELDS", "as_u64", "parse_dynamo", "parse_zmq", "tier_of_medium"]


def _u(value: Any, what: str, where: str) -> int:
    if type(value) is not int:
        raise StreamError(f"{where}: {what} must be an integer, got {value!r}")
    return value


def parse_dynamo(lines: Iterable[str]) -> Iterator[Event]:
    """``RouterEvent`` JSON lines -> events (blank lines skipped)."""
    import json

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
            if type(tier) is not str:
                raise TypeError(f"storage_tier must be a string, got {tier!r}")
            seq = _u(ev["event_id"], "event_id", where)
            rank = _u(ev.get("dp_rank", 0), "dp_rank", where)
            data = ev["data"]
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
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


def tier_of_medium(medium: Any) -> str:
    """The storage tier a vLLM ``medium`` names (``None`` and ``GPU``: the device)."""
    return _MEDIUM_TIER.get(medium, str(medium).lower())


#: field order of the array form (``array_like`` structs, tag first), as msgspec encodes them
ARRAY_FIELDS = {
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
        fields = dict(zip(ARRAY_FIELDS.get(tag, ()), ev[1:]))
    else:
        raise StreamError(f"{where}: not a tagged KV event: {str(ev)[:60]!r}")
    if tag in ("BlockStored", "BlockRemoved") and not isinstance(fields.get("block_hashes"), list):
        raise StreamError(f"{where}: {tag} without a block_hashes list")
    return tag, fields


def as_u64(h: int) -> int:
    """A signed int64 hash as Dynamo's ZMQ relay reads it (two's complement); others unchanged."""
    return h + U64 if -(1 << 63) <= h < 0 else h


def parse_zmq(stream: io.BufferedIOBase, worker: int = 0) -> Iterator[Event]:
    """vLLM / SGLang ``KVEventBatch`` msgpack records -> events (see the module docstring)."""
    try:
        import msgpack
    except ImportError:  # pragma: no cover - msgpack is a dependency
        raise StreamError("reading msgpack streams needs the msgpack package (pip install msgpack)") from None
    unpacker = msgpack.Unpacker(stream, raw=False, strict_map_key=False, max_buffer_size=64 << 20)
    index = 0
    record = 0
    failing = 1  # the record an error is in: the one being read, or the one being checked
    complete = 0  # bytes up to the end of the last complete record
    try:
        for obj in unpacker:
            record += 1
            failing = record
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
                tier = tier_of_medium(fields.get("medium"))
                if tag == "BlockStored":
                    hashes = tuple(as_u64(_u(h, "block hash", where)) for h in fields["block_hashes"])
                    parent = fields.get("parent_block_hash")
                    parent = None if parent is None else as_u64(_u(parent, "parent hash", where))
                    yield Event(index, worker, rank, tier, seq, "stored", parent, hashes)
                elif tag == "BlockRemoved":
                    hashes = tuple(as_u64(_u(h, "block hash", where)) for h in fields["block_hashes"])
                    yield Event(index, worker, rank, tier, seq, "removed", None, hashes)
                elif tag == "AllBlocksCleared":
                    yield Event(index, worker, rank, "device", seq, "cleared")
                else:
                    raise StreamError(f"{where}: unknown event tag {tag!r}")
                index += 1
                seq = None  # one sequence number per batch: only its first event carries it
            failing = record + 1
        if unpacker.tell() != complete:
            raise StreamError(f"record {record + 1}: truncated msgpack data after byte {complete}")
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, IndexError, TypeError) as exc:
        if isinstance(exc, StreamError):
            raise
        raise StreamError(f"record {failing}: not msgpack KVEventBatch data ({type(exc).__name__}: {exc})") from None
