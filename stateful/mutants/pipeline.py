"""Planted integration bugs the ``pipeline`` machine must catch (manager -> router consistency).

A manager that forgets its Removed events is ``forget-removed`` (``stateful/mutants/manager.py``);
here only what needs several ranks of one worker feeding one index.
"""

from __future__ import annotations

import attrs

from kvspec.stateful.mutants import Mutant


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
    Mutant("pipeline-index-merges-ranks",
           "the index ignores dp_rank, so one rank's blocks are credited to its sibling",
           {"TieredIndex": _index_merges_ranks}, ("pipeline",)),
]
