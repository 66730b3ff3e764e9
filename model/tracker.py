"""Reference model of the KV-event cache-status tracker (``docs/upstream.md`` M7).

The engine (vLLM or TensorRT-LLM) publishes events for the blocks it holds on the GPU; KVBM
publishes events for the copies it holds in host memory or on disk.  The router must see *one*
stream: a block is announced when the first source gets it and withdrawn when the last source
lets it go.  Two trackers share one interface:

* :class:`DedupTracker` — deduplicates by content and position (the sequence hash), see its rules.
* :class:`PassthroughTracker` — forwards everything unchanged.

Interface (upstream's ``CacheStatusTracker`` trait, same names):
``handle_store(block_hash, source, token_ids, parent_hash, block_size, lora_name=None, tier=None,
data_parallel_rank=None) -> bool``, ``handle_remove(block_hash, source, tier=None) -> bool``,
``handle_clear_all()``, ``drain_events() -> list``, ``num_blocks() -> int``.  The ``bool`` says
whether an event was queued.  External hashes are strings (the subscriber stringifies the
engine's u64 hashes).  Bad input raises :class:`kvspec.errors.InvalidArgument` and changes
nothing (rules in :mod:`kvspec.tracker_events`).
"""

from __future__ import annotations

from kvspec import checks
from kvspec.events import StorageTier
from kvspec.tracker_events import (
    ConsolidatedClearAll,
    ConsolidatedEvent,
    ConsolidatedRemove,
    ConsolidatedStore,
    EventSource,
    check_remove_args,
    check_store_args,
    local_block_hash,
    sequence_hash,
)

__all__ = ["DedupTracker", "PassthroughTracker"]

_external_hash = checks.exact(str)  # external hashes are strings (the subscriber stringifies them)


class _Block:
    """What the tracker knows of one block: which sources hold it, and the hash it was announced under."""

    def __init__(self, source: EventSource, first_block_hash: str):
        self.sources: set[EventSource] = {source}
        self.first_block_hash = first_block_hash


class DedupTracker:
    """Deduplicating tracker (upstream ``DedupCacheStatusTracker``).

    State: ``blocks`` (sequence hash -> sources and first external hash), ``hash_mapping``
    (external hash -> sequence hash) and the queue of events not yet drained.

    Rules:

    1. **Identity is content plus position.**  A store's sequence hash is computed from its tokens
       and its parent's sequence hash, found through ``hash_mapping``; an unknown parent (or none)
       makes it a root.  Sources name the same block with different external hashes, so the
       external hash cannot be the identity.
    2. **Store once.**  The first store of a sequence hash, from any source, queues a Store; later
       stores (another source, or the same one again) only add the source and map their external
       hash — every store maps its external hash, re-pointing it if it named another block.
    3. **Remove once.**  A remove resolves the external hash, drops that source, and queues a Remove
       only when no source is left; then the block and *every* external hash mapped to it go.  A
       per-source remove keeps the mapping, because sources may share one external hash (KVBM
       republishing TRT-LLM's chain) and the next source's remove must still resolve.
    4. **One name on the wire.**  Store and Remove carry the *first* source's external hash; the
       Store's parent is the parent block's first external hash (``None`` if unresolvable).
    5. **One tier on the wire.**  Both are tagged ``Device`` whatever the source's tier: the router
       dispatches by tier, and a lower-tier Store would orphan every later device child.
    6. **Warn paths answer False.**  Removing an unknown external hash, or from a source that does
       not hold the block, changes nothing and queues nothing.
    7. ``handle_clear_all`` forgets every block and mapping and queues ClearAll.

    Upstream quirk kept (rule 2 then 4): the parent is resolved *after* this store's external hash
    is mapped, so a store naming itself as parent publishes ``parent_hash == block_hash``.
    """

    def __init__(self) -> None:
        self.blocks: dict[int, _Block] = {}
        self.hash_mapping: dict[str, int] = {}
        self.event_queue: list[ConsolidatedEvent] = []

    def handle_store(
        self,
        block_hash: str,
        source: EventSource,
        token_ids,
        parent_hash: str | None,
        block_size: int,
        lora_name: str | None = None,
        tier: StorageTier | None = None,
        data_parallel_rank: int | None = None,
    ) -> bool:
        """Record that ``source`` holds the block; True iff a Store was queued (rules 1, 2, 4, 5)."""
        token_ids, _tier = check_store_args(
            block_hash, source, token_ids, parent_hash, block_size, lora_name, tier, data_parallel_rank
        )
        parent_sequence_hash = self.hash_mapping.get(parent_hash) if parent_hash is not None else None
        seq = sequence_hash(parent_sequence_hash, local_block_hash(token_ids))

        if seq in self.blocks:
            self.blocks[seq].sources.add(source)
            self.hash_mapping[block_hash] = seq
            return False

        self.blocks[seq] = _Block(source, block_hash)
        self.hash_mapping[block_hash] = seq
        resolved_parent = None
        if parent_hash is not None and parent_hash in self.hash_mapping:
            resolved_parent = self.blocks[self.hash_mapping[parent_hash]].first_block_hash
        self.event_queue.append(
            ConsolidatedStore(
                block_hash=block_hash,
                parent_hash=resolved_parent,
                token_ids=token_ids,
                block_size=block_size,
                lora_name=lora_name,
                source=source.to_str(),
                tier=StorageTier.DEVICE,
            )
        )
        return True

    def handle_remove(self, block_hash: str, source: EventSource, tier: StorageTier | None = None) -> bool:
        """Record that ``source`` dropped the block; True iff a Remove was queued (rules 3-6).

        ``tier`` is checked but otherwise ignored, as upstream does.
        """
        check_remove_args(block_hash, source, tier)
        seq = self.hash_mapping.get(block_hash)
        if seq is None:
            return False  # upstream: warn "not in hash_mapping"
        block = self.blocks.get(seq)
        if block is None or source not in block.sources:
            return False  # upstream: warn "block not tracked" / "source wasn't present"
        block.sources.remove(source)
        if block.sources:
            return False  # other sources still hold it; hash_mapping[block_hash] stays (rule 3)
        del self.blocks[seq]
        self.hash_mapping = {ext: s for ext, s in self.hash_mapping.items() if s != seq}
        self.event_queue.append(
            ConsolidatedRemove(block_hash=block.first_block_hash, source=source.to_str(), tier=StorageTier.DEVICE)
        )
        return True

    def handle_clear_all(self) -> None:
        """Forget everything and queue ClearAll (rule 7)."""
        self.blocks.clear()
        self.hash_mapping.clear()
        self.event_queue.append(ConsolidatedClearAll())

    def drain_events(self) -> list[ConsolidatedEvent]:
        """The queued events, oldest first; the queue is empty afterwards."""
        events, self.event_queue = self.event_queue, []
        return events

    def num_blocks(self) -> int:
        """Number of distinct blocks (sequence hashes) held by at least one source."""
        return len(self.blocks)

    def get_block_sources(self, block_hash: str) -> frozenset[EventSource] | None:
        """Sources holding the block that ``block_hash`` maps to, or ``None`` if it maps to nothing."""
        _external_hash("block_hash", block_hash)
        seq = self.hash_mapping.get(block_hash)
        if seq is None or seq not in self.blocks:
            return None
        return frozenset(self.blocks[seq].sources)

    def get_block_tiers(self, block_hash: str) -> frozenset[EventSource] | None:
        """Deprecated upstream alias of :meth:`get_block_sources` (it returns sources, not tiers)."""
        return self.get_block_sources(block_hash)


class PassthroughTracker:
    """Forwarding tracker (upstream ``PassthroughCacheStatusTracker``).

    Rule: every store and remove is queued as given — external hash, raw parent, tier, duplicates
    and removes of never-stored hashes included — and answers True; ``handle_clear_all`` queues
    ClearAll.  It tracks nothing, so ``num_blocks()`` is always 0.  Used when the engine already
    publishes a consistent stream and deduplication would only hide it.
    """

    def __init__(self) -> None:
        self.event_queue: list[ConsolidatedEvent] = []

    def handle_store(
        self,
        block_hash: str,
        source: EventSource,
        token_ids,
        parent_hash: str | None,
        block_size: int,
        lora_name: str | None = None,
        tier: StorageTier | None = None,
        data_parallel_rank: int | None = None,
    ) -> bool:
        token_ids, tier = check_store_args(
            block_hash, source, token_ids, parent_hash, block_size, lora_name, tier, data_parallel_rank
        )
        self.event_queue.append(
            ConsolidatedStore(block_hash, parent_hash, token_ids, block_size, lora_name, source.to_str(), tier)
        )
        return True

    def handle_remove(self, block_hash: str, source: EventSource, tier: StorageTier | None = None) -> bool:
        tier = check_remove_args(block_hash, source, tier)
        self.event_queue.append(ConsolidatedRemove(block_hash, source.to_str(), tier))
        return True

    def handle_clear_all(self) -> None:
        self.event_queue.append(ConsolidatedClearAll())

    def drain_events(self) -> list[ConsolidatedEvent]:
        events, self.event_queue = self.event_queue, []
        return events

    def num_blocks(self) -> int:
        return 0
