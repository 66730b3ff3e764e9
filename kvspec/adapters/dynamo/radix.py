"""Target ``dynamo``: NVIDIA Dynamo's Rust router index (``ai-dynamo-runtime`` 1.6.x) as a kvspec target.

What it provides, in ``contract`` mode (``docs/decisions.md`` D3):

* ``RadixIndex`` over ``dynamo._core.RadixTree`` — the device-tier compressed radix tree, the one
  ``KvIndexer`` uses with ``router_event_threads=1``.  Events cross the boundary exactly as Dynamo
  receives them: ``KvCacheEvent.to_json()`` bytes.  Dynamo's errors are mapped to kvspec's types
  (:data:`ERROR_MAP`), dumps are parsed back into :class:`~kvspec.events.RouterEvent`\\ s.
* ``block_hashes`` over ``dynamo._core.compute_block_hash_for_seq`` (same keyword arguments as
  :func:`kvspec.hashing.block_hashes`).

The engine is imported only when the target is resolved.  When the wheel is not importable the
target still resolves — to a namespace that provides no class, with the import error as its
version string — so ``kvspec check --target dynamo`` lists every machine as *skipped* rather than
failing to start or silently passing.

Not exposed by the Python binding, hence not provided: ``match_details`` (Dynamo keeps
``last_matched_hashes`` internal) and a per-rank ``remove_worker_dp_rank`` (emulated here with a
``Cleared`` event of that rank, which is what Dynamo itself does for ``Cleared``, ``docs/upstream.md`` R3.2).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kvspec.adapters.dynamo.runtime import import_core, unavailable_reason
from kvspec.errors import BlockNotFound, InvalidArgument, InvalidBlockSequence, KvSpecError, ParentBlockNotFound
from kvspec.events import Cleared, EventDecodeError, KvCacheEvent, RouterEvent
from kvspec.scores import OverlapScores

__all__ = ["ERROR_MAP", "RadixIndex", "block_hashes", "map_error", "unavailable_reason"]

#: Dynamo's ``KvCacheEventError`` messages (``Failed to apply event: <msg>``) -> kvspec error class
ERROR_MAP = {
    "Failed to find parent block": ParentBlockNotFound,
    "Failed to find block": BlockNotFound,
    "Invalid block sequence": InvalidBlockSequence,
}

def map_error(exc: BaseException) -> KvSpecError | None:
    """The kvspec error for an exception raised by ``RadixTree.apply_event``, or ``None``.

    Dynamo raises ``RuntimeError("Failed to apply event: <msg>")`` for an index error and
    ``ValueError("Failed to deserialize KvCacheEvent: ...")`` for bad JSON (``docs/upstream.md`` R1).
    """
    text = str(exc)
    if isinstance(exc, RuntimeError):
        # longest message first: "Failed to find block" is contained in no other, but be explicit
        for needle in sorted(ERROR_MAP, key=len, reverse=True):
            if needle in text:
                return ERROR_MAP[needle](text)
    if isinstance(exc, ValueError) and "deserialize" in text:
        return EventDecodeError(text)
    return None


class RadixIndex:
    """kvspec's ``RadixIndex`` interface over ``dynamo._core.RadixTree`` (see module docs)."""

    def __init__(self) -> None:
        self._tree = import_core().RadixTree()

    def apply_event(self, worker_id: int, event: KvCacheEvent) -> None:
        self.apply_json(worker_id, event.to_json().encode())

    def apply_json(self, worker_id: int, payload: bytes) -> None:
        """Apply raw event bytes (for wire-level tests); errors mapped as :meth:`apply_event`."""
        try:
            self._tree.apply_event(worker_id, payload)
        except (RuntimeError, ValueError) as exc:
            mapped = map_error(exc)
            if mapped is None:
                raise
            raise mapped from None

    def remove_worker(self, worker_id: int) -> None:
        self._tree.remove_worker(worker_id)

    def clear_all_blocks(self, worker_id: int) -> None:
        self._tree.clear_all_blocks(worker_id)

    def remove_worker_dp_rank(self, worker_id: int, dp_rank: int) -> None:
        """Not in the binding: Dynamo's ``Cleared`` of one rank runs exactly this (``docs/upstream.md`` R3.2)."""
        self.apply_event(worker_id, KvCacheEvent(0, Cleared(), dp_rank))

    def find_matches(self, local_hashes: Sequence[int], early_exit: bool = False) -> OverlapScores:
        result = self._tree.find_matches(list(local_hashes), early_exit)
        return OverlapScores({tuple(w): int(s) for w, s in result.scores.items()}, tuple(result.frequencies))

    def dump_events(self) -> list[RouterEvent]:
        """Dynamo's dump (BFS of the compressed tree), parsed; order follows Dynamo's hash maps."""
        return [RouterEvent.from_dict(json.loads(text)) for text in self._tree.dump_tree_as_events()]


def block_hashes(
    tokens: Sequence[int],
    block_size: int,
    *,
    lora_name: str | None = None,
    cache_namespace: str | None = None,
    is_eagle: bool = False,
    block_mm_infos: Sequence[Any] | None = None,
) -> list[int]:
    """Dynamo's ``compute_block_hash_for_seq`` with kvspec's signature and error types.

    Dynamo requires an ``offsets`` key in every multimodal object; kvspec's hashing ignores
    offsets, so an absent key is filled with ``[]`` here.
    """
    core = import_core()
    infos = None
    if block_mm_infos is not None:
        infos = []
        for info in block_mm_infos:
            if info is None:
                infos.append(None)
                continue
            objects = [{"offsets": [], **obj} for obj in info.get("mm_objects", [])]
            infos.append({**info, "mm_objects": objects})
    try:
        return list(core.compute_block_hash_for_seq(
            list(tokens), block_size, block_mm_infos=infos, lora_name=lora_name, is_eagle=is_eagle,
            cache_namespace=cache_namespace))
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(str(exc)) from None
