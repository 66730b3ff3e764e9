"""Cache-status trackers, optimized: same interface and observables as ``kvspec.model.tracker``.

:class:`DedupTracker` keeps a **reverse index**: each tracked block lists the external hashes that
currently map to it, so releasing a block unmaps exactly its own aliases instead of scanning every
mapping (upstream's ``hash_mapping.retain``).

Structures and invariants (asserted by :meth:`DedupTracker._check`):

* ``_blocks: dict[seq_hash, _Entry]`` — every entry has at least one source.
* ``_mapping: dict[ext_hash, seq_hash]`` — every value is a key of ``_blocks``.
* ``_Entry.aliases: set[ext_hash]`` — exactly ``{e : _mapping[e] == seq}`` (the reverse index);
  ``_Entry.first`` is the external hash the block was announced under.
* ``_queue: list`` — events not drained yet.

Complexity (``t`` = tokens in the block, ``a`` = aliases of the released block):

=================  ===========================================
``handle_store``   O(t) hashing + O(1) expected dict/set work
``handle_remove``  O(1), or O(a) when the last source releases
``handle_clear``   O(1) (fresh containers)
``drain_events``   O(1) (swaps the queue)
``num_blocks``     O(1)
=================  ===========================================
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

_DEVICE = StorageTier.DEVICE


class _Entry:
    """One tracked block: holding sources, announced hash, and the external hashes mapped to it."""

    __slots__ = ("sources", "first", "aliases")

    def __init__(self, source: EventSource, first: str):
        self.sources: set[EventSource] = {source}
        self.first = first
        self.aliases: set[str] = set()


class DedupTracker:
    """Deduplicating tracker; rules in ``kvspec.model.tracker.DedupTracker``."""

    def __init__(self) -> None:
        self._blocks: dict[int, _Entry] = {}
        self._mapping: dict[str, int] = {}
        self._queue: list[ConsolidatedEvent] = []

    # -- reverse-index maintenance (the only places that write _mapping) ----------------------

    def _map(self, ext: str, seq: int) -> None:
        """Point ``ext`` at ``seq``, moving it out of the alias set of the block it named before."""
        old = self._mapping.get(ext)
        if old == seq:
            return
        if old is not None:
            self._blocks[old].aliases.discard(ext)
        self._mapping[ext] = seq
        self._blocks[seq].aliases.add(ext)

    def _release(self, seq: int) -> _Entry:
        """Drop block ``seq`` and every external hash mapped to it: O(aliases)."""
        entry = self._blocks.pop(seq)
        mapping = self._mapping
        for ext in entry.aliases:
            del mapping[ext]
        return entry

    # -- interface ------------------------------------------------------------------------------

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
        tokens, _tier = check_store_args(
            block_hash, source, token_ids, parent_hash, block_size, lora_name, tier, data_parallel_rank
        )
        mapping = self._mapping
        parent_seq = mapping.get(parent_hash) if parent_hash is not None else None
        seq = sequence_hash(parent_seq, local_block_hash(tokens))
        entry = self._blocks.get(seq)
        if entry is not None:
            entry.sources.add(source)
            self._map(block_hash, seq)
            return False
        self._blocks[seq] = _Entry(source, block_hash)
        self._map(block_hash, seq)
        # Resolved after mapping block_hash (upstream order): a self-parent resolves to itself.
        resolved = None
        if parent_hash is not None:
            parent_entry = self._blocks.get(mapping.get(parent_hash))
            if parent_entry is not None:
                resolved = parent_entry.first
        self._queue.append(
            ConsolidatedStore(block_hash, resolved, tokens, block_size, lora_name, source.value, _DEVICE)
        )
        return True

    def handle_remove(self, block_hash: str, source: EventSource, tier: StorageTier | None = None) -> bool:
        check_remove_args(block_hash, source, tier)
        seq = self._mapping.get(block_hash)
        if seq is None:
            return False
        entry = self._blocks.get(seq)  # never None while the invariants hold; upstream warns if it is
        if entry is None or source not in entry.sources:
            return False
        sources = entry.sources
        sources.remove(source)
        if sources:
            return False
        self._release(seq)
        self._queue.append(ConsolidatedRemove(entry.first, source.value, _DEVICE))
        return True

    def handle_clear_all(self) -> None:
        self._blocks = {}
        self._mapping = {}
        self._queue.append(ConsolidatedClearAll())

    def drain_events(self) -> list[ConsolidatedEvent]:
        events, self._queue = self._queue, []
        return events

    def num_blocks(self) -> int:
        return len(self._blocks)

    def get_block_sources(self, block_hash: str) -> frozenset[EventSource] | None:
        _external_hash("block_hash", block_hash)
        entry = self._blocks.get(self._mapping.get(block_hash))
        return None if entry is None else frozenset(entry.sources)

    def get_block_tiers(self, block_hash: str) -> frozenset[EventSource] | None:
        """Deprecated upstream alias of :meth:`get_block_sources`."""
        return self.get_block_sources(block_hash)

    def _check(self) -> None:
        """Assert every invariant in the module docstring."""
        for ext, seq in self._mapping.items():
            assert seq in self._blocks, f"{ext!r} maps to untracked block {seq}"
            assert ext in self._blocks[seq].aliases, f"{ext!r} missing from the reverse index of {seq}"
        aliases = 0
        for seq, entry in self._blocks.items():
            assert entry.sources, f"block {seq} has no source"
            assert isinstance(entry.first, str)
            for ext in entry.aliases:
                assert self._mapping.get(ext) == seq, f"stale alias {ext!r} of block {seq}"
            aliases += len(entry.aliases)
        assert aliases == len(self._mapping)


class PassthroughTracker:
    """Forwarding tracker; rules in ``kvspec.model.tracker.PassthroughTracker``.  O(t) store, O(1) rest."""

    def __init__(self) -> None:
        self._queue: list[ConsolidatedEvent] = []

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
        tokens, tier = check_store_args(
            block_hash, source, token_ids, parent_hash, block_size, lora_name, tier, data_parallel_rank
        )
        self._queue.append(ConsolidatedStore(block_hash, parent_hash, tokens, block_size, lora_name, source.value, tier))
        return True

    def handle_remove(self, block_hash: str, source: EventSource, tier: StorageTier | None = None) -> bool:
        tier = check_remove_args(block_hash, source, tier)
        self._queue.append(ConsolidatedRemove(block_hash, source.value, tier))
        return True

    def handle_clear_all(self) -> None:
        self._queue.append(ConsolidatedClearAll())

    def drain_events(self) -> list[ConsolidatedEvent]:
        events, self._queue = self._queue, []
        return events

    def num_blocks(self) -> int:
        return 0

    def _check(self) -> None:
        """Nothing but a queue: it must be a list of events."""
        assert isinstance(self._queue, list)
