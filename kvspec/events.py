"""KV events as block managers publish them and routers consume them (Dynamo's wire types).

Value types are frozen attrs classes with a Python-valid ``repr``.  ``to_json()`` / ``from_json()``
speak Dynamo's serde JSON (``docs/upstream.md`` R1), so an event kvspec produces can be fed
to ``dynamo._core.RadixTree.apply_event(worker_id, event.to_json().encode())`` unchanged, and a
dump from Dynamo parses back into :class:`RouterEvent`.

* ``KvCacheEvent(event_id, data, dp_rank=0)`` with ``data`` one of
  ``Stored(parent_hash, blocks)`` (blocks of ``StoredBlock(block_hash, tokens_hash)``),
  ``Removed(block_hashes)`` or ``Cleared()``.
* ``RouterEvent(worker_id, event, storage_tier=StorageTier.DEVICE)``.

JSON details that Dynamo enforces and kvspec mirrors: hashes are bare unsigned 64-bit integers
(negative or larger values are rejected); ``parent_hash`` may be ``null`` or omitted; ``Cleared``
is the string ``"cleared"`` or ``{"cleared": null}``; ``dp_rank`` defaults to 0 and
``storage_tier`` to ``"device"``.  Malformed input raises :class:`EventDecodeError`.
"""

from __future__ import annotations

import enum
import json
from typing import Any, Union

import attrs

from kvspec import checks
from kvspec.errors import KvSpecError

__all__ = [
    "Cleared",
    "EventData",
    "EventDecodeError",
    "KvCacheEvent",
    "Removed",
    "RouterEvent",
    "StorageTier",
    "Stored",
    "StoredBlock",
]


class EventDecodeError(KvSpecError, ValueError):
    """JSON that is not a valid Dynamo event (the binding's ``Failed to deserialize KvCacheEvent``)."""


_u64 = checks.attrs_rule(checks.u64)
_optional_u64 = checks.attrs_rule(checks.optional(checks.u64))
_u32 = checks.attrs_rule(checks.u32)


def _tuple(value):
    """Lists become tuples; anything else is left for the validator to name."""
    return tuple(value) if isinstance(value, list) else value


class StorageTier(enum.Enum):
    """Where a worker holds a block; the router keeps one index per tier."""

    DEVICE = "device"
    HOST_PINNED = "host_pinned"
    DISK = "disk"
    EXTERNAL = "external"

    def __repr__(self) -> str:  # valid Python: StorageTier.DEVICE
        return f"StorageTier.{self.name}"

    @property
    def is_gpu(self) -> bool:
        return self is StorageTier.DEVICE


@attrs.frozen
class StoredBlock:
    """One block of a Stored event: its external (sequence) hash and its local (tokens) hash."""

    block_hash: int = attrs.field(validator=_u64)
    tokens_hash: int = attrs.field(validator=_u64)


@attrs.frozen
class Stored:
    """Blocks newly stored by a worker, chained in order, the first one under ``parent_hash``."""

    parent_hash: int | None = attrs.field(validator=_optional_u64)
    blocks: tuple[StoredBlock, ...] = attrs.field(
        converter=_tuple, validator=checks.attrs_rule(lambda name, v: checks.sequence(name, v, checks.exact(StoredBlock))))


@attrs.frozen
class Removed:
    """Blocks a worker no longer holds, named by external hash."""

    block_hashes: tuple[int, ...] = attrs.field(
        converter=_tuple, validator=checks.attrs_rule(lambda name, v: checks.sequence(name, v, checks.u64)))


@attrs.frozen
class Cleared:
    """The worker (rank) dropped every block."""


EventData = Union[Stored, Removed, Cleared]


@attrs.frozen
class KvCacheEvent:
    """One published event: a per-publisher id, the payload and the publisher's data-parallel rank."""

    event_id: int = attrs.field(validator=_u64)
    data: EventData = attrs.field(validator=checks.attrs_rule(checks.exact((Stored, Removed, Cleared))))
    dp_rank: int = attrs.field(default=0, validator=_u32)

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "data": _data_to_dict(self.data), "dp_rank": self.dp_rank}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, obj: Any) -> KvCacheEvent:
        if not isinstance(obj, dict):
            raise EventDecodeError(f"KvCacheEvent must be an object, got {type(obj).__name__}")
        if "event_id" not in obj or "data" not in obj:
            raise EventDecodeError("KvCacheEvent needs 'event_id' and 'data'")
        return _build(cls, event_id=obj["event_id"], data=_data_from(obj["data"]), dp_rank=obj.get("dp_rank", 0))

    @classmethod
    def from_json(cls, text: str | bytes) -> KvCacheEvent:
        return cls.from_dict(_loads(text))


@attrs.frozen
class RouterEvent:
    """An event as the router sees it: which worker sent it and on which storage tier."""

    worker_id: int = attrs.field(validator=_u64)
    event: KvCacheEvent = attrs.field(validator=checks.attrs_rule(checks.exact(KvCacheEvent)))
    storage_tier: StorageTier = attrs.field(default=StorageTier.DEVICE,
                                            converter=lambda v: checks.enum_member("storage_tier", v, StorageTier))

    def to_dict(self) -> dict[str, Any]:
        return {"worker_id": self.worker_id, "storage_tier": self.storage_tier.value, "event": self.event.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, obj: Any) -> RouterEvent:
        if not isinstance(obj, dict) or "worker_id" not in obj or "event" not in obj:
            raise EventDecodeError("RouterEvent must be an object with 'worker_id' and 'event'")
        tier = obj.get("storage_tier", "device")
        try:
            tier = checks.enum_member("storage_tier", tier, StorageTier)
        except ValueError as exc:
            raise EventDecodeError(str(exc)) from None
        return _build(cls, worker_id=obj["worker_id"], event=KvCacheEvent.from_dict(obj["event"]), storage_tier=tier)

    @classmethod
    def from_json(cls, text: str | bytes) -> RouterEvent:
        return cls.from_dict(_loads(text))


def _loads(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventDecodeError(f"not JSON: {exc}") from None


def _build(cls, **fields):
    try:
        return cls(**fields)
    except (TypeError, ValueError) as exc:
        raise EventDecodeError(f"{cls.__name__}: {exc}") from None


def _data_to_dict(data: EventData) -> Any:
    if isinstance(data, Stored):
        return {
            "stored": {
                "parent_hash": data.parent_hash,
                "blocks": [{"block_hash": b.block_hash, "tokens_hash": b.tokens_hash} for b in data.blocks],
            }
        }
    if isinstance(data, Removed):
        return {"removed": {"block_hashes": list(data.block_hashes)}}
    return "cleared"


def _data_from(obj: Any) -> EventData:
    if obj == "cleared" or obj == {"cleared": None}:
        return Cleared()
    if not isinstance(obj, dict) or len(obj) != 1:
        raise EventDecodeError(f"unknown event data {obj!r}")
    ((tag, body),) = obj.items()
    if tag == "stored" and isinstance(body, dict) and isinstance(body.get("blocks"), list):
        blocks = []
        for block in body["blocks"]:
            if not isinstance(block, dict) or "block_hash" not in block or "tokens_hash" not in block:
                raise EventDecodeError(f"bad stored block {block!r}")
            blocks.append(_build(StoredBlock, block_hash=block["block_hash"], tokens_hash=block["tokens_hash"]))
        return _build(Stored, parent_hash=body.get("parent_hash"), blocks=blocks)
    if tag == "removed" and isinstance(body, dict) and isinstance(body.get("block_hashes"), list):
        return _build(Removed, block_hashes=body["block_hashes"])
    raise EventDecodeError(f"unknown event data {obj!r}")
