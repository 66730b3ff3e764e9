"""Planted bugs in the cache-status trackers; ``tracker[dedup]`` / ``tracker[passthrough]`` must catch each.

Several are real upstream history: the older tracker (``tracker.rs`` 607ad3ea) dropped the
external-hash mapping on every per-source remove and passed the parent hash through unresolved;
the Device tagging was added later to stop lower-tier Stores orphaning device children.
"""

from __future__ import annotations

import attrs

from kvspec.stateful.mutants import Mutant


def _sources_before(tracker, block_hash):
    seq = tracker._mapping.get(block_hash)
    return seq, (set(tracker._blocks[seq].sources) if seq is not None else None)


def _drop_mapping_on_first_remove():
    from kvspec.impl.tracker import DedupTracker

    class DropMappingOnFirstRemove(DedupTracker):
        """Older upstream: a per-source remove also unmaps its external hash, orphaning the next
        source's remove of a shared hash."""

        def handle_remove(self, block_hash, source, tier=None):
            seq, before = _sources_before(self, block_hash)
            published = super().handle_remove(block_hash, source, tier)
            if not published and before is not None and source in before:
                self._blocks[seq].aliases.discard(block_hash)
                del self._mapping[block_hash]
            return published

    return DropMappingOnFirstRemove


def _tier_not_normalized():
    from kvspec.impl.tracker import DedupTracker

    class TierNotNormalized(DedupTracker):
        """Publishes the source's own tier instead of Device on Store and Remove."""

        def handle_store(self, block_hash, source, token_ids, parent_hash, block_size, lora_name=None, tier=None,
                         data_parallel_rank=None):
            published = super().handle_store(block_hash, source, token_ids, parent_hash, block_size, lora_name, tier,
                                              data_parallel_rank)
            if published:
                self._queue[-1] = attrs.evolve(self._queue[-1], tier=tier)
            return published

        def handle_remove(self, block_hash, source, tier=None):
            published = super().handle_remove(block_hash, source, tier)
            if published:
                self._queue[-1] = attrs.evolve(self._queue[-1], tier=tier)
            return published

    return TierNotNormalized


def _remove_on_first_source():
    from kvspec.impl.tracker import DedupTracker

    class RemoveOnFirstSource(DedupTracker):
        """Withdraws the block as soon as any one source releases it."""

        def handle_remove(self, block_hash, source, tier=None):
            seq, before = _sources_before(self, block_hash)
            if before is not None and source in before:
                self._blocks[seq].sources = {source}
            return super().handle_remove(block_hash, source, tier)

    return RemoveOnFirstSource


def _parent_not_resolved():
    from kvspec.impl.tracker import DedupTracker

    class ParentNotResolved(DedupTracker):
        """Older upstream: the Store carries the caller's raw parent hash, not the parent's first
        (announced) hash, so a KVBM child hangs under a name the router never saw."""

        def handle_store(self, block_hash, source, token_ids, parent_hash, block_size, lora_name=None, tier=None,
                         data_parallel_rank=None):
            published = super().handle_store(block_hash, source, token_ids, parent_hash, block_size, lora_name, tier,
                                              data_parallel_rank)
            if published:
                self._queue[-1] = attrs.evolve(self._queue[-1], parent_hash=parent_hash)
            return published

    return ParentNotResolved


def _stale_reverse_index():
    from kvspec.impl.tracker import DedupTracker

    class StaleReverseIndex(DedupTracker):
        """Re-pointing an external hash forgets to take it out of the old block's alias set, so
        releasing the old block later unmaps a name that now belongs to another block."""

        def _map(self, ext, seq):
            self._mapping[ext] = seq
            self._blocks[seq].aliases.add(ext)

        def _release(self, seq):
            entry = self._blocks.pop(seq)
            for ext in entry.aliases:
                self._mapping.pop(ext, None)
            return entry

        def _check(self):  # the planted bug breaks the reverse-index invariant; hide it from _check
            pass

    return StaleReverseIndex


def _clear_keeps_mapping():
    from kvspec.impl.tracker import DedupTracker
    from kvspec.tracker_events import ConsolidatedClearAll

    class ClearKeepsMapping(DedupTracker):
        """``handle_clear_all`` forgets blocks but keeps the external-hash mapping: a later store
        under a stale parent hashes at the wrong position.  (Seed test ``test_clear_all`` only
        checks that a remove after the clear fails, which this mutant still gets right.)"""

        def handle_clear_all(self):
            self._blocks = {}
            self._queue.append(ConsolidatedClearAll())

        def _map(self, ext, seq):
            if self._mapping.get(ext, seq) not in self._blocks:
                del self._mapping[ext]  # a stale name is simply overwritten, as a HashMap insert would
            super()._map(ext, seq)

        def _check(self):  # the planted bug breaks the mapping invariant; hide it from _check
            pass

    return ClearKeepsMapping


def _passthrough_dedups():
    from kvspec.impl.tracker import PassthroughTracker

    class PassthroughDedups(PassthroughTracker):
        """Passthrough that silently drops a store identical to the one just before it."""

        _last = None

        def handle_store(self, block_hash, source, token_ids, parent_hash, block_size, lora_name=None, tier=None,
                         data_parallel_rank=None):
            key = (block_hash, source, tuple(token_ids) if isinstance(token_ids, (list, tuple)) else token_ids,
                   parent_hash, block_size, lora_name, tier)
            if key == self._last:
                return False
            published = super().handle_store(block_hash, source, token_ids, parent_hash, block_size, lora_name, tier,
                                              data_parallel_rank)
            self._last = key
            return published

    return PassthroughDedups


MUTANTS = [
    Mutant("tracker-drop-mapping-on-first-remove",
           "a per-source remove unmaps its external hash (older upstream): a shared hash's second remove is lost",
           {"DedupTracker": _drop_mapping_on_first_remove}, ("tracker[dedup]",)),
    Mutant("tracker-tier-not-normalized",
           "dedup Store/Remove carry the source's tier instead of Device",
           {"DedupTracker": _tier_not_normalized}, ("tracker[dedup]",)),
    Mutant("tracker-remove-on-first-source",
           "the block is withdrawn when the first source releases it, not the last",
           {"DedupTracker": _remove_on_first_source}, ("tracker[dedup]",)),
    Mutant("tracker-parent-not-resolved",
           "a Store carries the caller's raw parent hash instead of the parent's first external hash (older upstream)",
           {"DedupTracker": _parent_not_resolved}, ("tracker[dedup]",)),
    Mutant("tracker-stale-reverse-index",
           "re-pointing an external hash leaves it in the old block's alias set; releasing that block unmaps it",
           {"DedupTracker": _stale_reverse_index}, ("tracker[dedup]",)),
    Mutant("tracker-clear-keeps-mapping",
           "clear_all forgets blocks but keeps external-hash mappings, so stale parents change sequence hashes",
           {"DedupTracker": _clear_keeps_mapping}, ("tracker[dedup]",)),
    Mutant("tracker-passthrough-dedups",
           "passthrough drops a store identical to the previous one",
           {"PassthroughTracker": _passthrough_dedups}, ("tracker[passthrough]",)),
]
