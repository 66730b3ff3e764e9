"""Planted integration bugs the ``pipeline`` machine must catch (manager -> router consistency)."""

from __future__ import annotations

import attrs

from kvspec.stateful.mutants import Mutant


def _manager_drops_removed():
    from kvspec.events import Removed
    from kvspec.impl.manager import KvManager

    class DropsRemoved(KvManager):
        """Never tells the router about evictions: the router over-claims evicted blocks."""

        def drain_events(self):
            return [e for e in super().drain_events() if not isinstance(e.data, Removed)]

    return DropsRemoved


def _index_merges_ranks():
    from kvspec.impl.tiered import TieredIndex

    class MergesRanks(TieredIndex):
        """Files every event under dp rank 0: a worker's ranks pool their blocks in the router."""

        def apply_event(self, worker_id, event, storage_tier=None):
            event = attrs.evolve(event, dp_rank=0)
            if storage_tier is None:
                return super().apply_event(worker_id, event)
            return super().apply_event(worker_id, event, storage_tier)

    return MergesRanks


MUTANTS = [
    Mutant("pipeline-manager-drops-removed",
           "the manager publishes no Removed on eviction, so the router over-claims",
           {"KvManager": _manager_drops_removed}, ("pipeline",)),
    Mutant("pipeline-index-merges-ranks",
           "the index ignores dp_rank, so one rank's blocks are credited to its sibling",
           {"TieredIndex": _index_merges_ranks}, ("pipeline",)),
]
