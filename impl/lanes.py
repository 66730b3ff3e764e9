"""Optimized laned index: one deque per lane over the optimized tiered index.

Same contract as ``kvspec.model.lanes`` (read it).  ``lanes[(worker_id, dp_rank)]`` is a deque of
queued ``(event, tier)``; stepping a lane pops from its left, O(1) plus the event's own cost;
``drain`` interleaves the lanes **round-robin** (one event per lane per turn) — a different
interleaving from the model's lane-by-lane drain, on purpose: the result must not depend on it.

Invariants (``_check``): no empty deque is kept; the queued count equals the sum of the deques;
plus the tiered index's own ``_check``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from kvspec import checks
from kvspec.errors import KvSpecError
from kvspec.events import KvCacheEvent, RouterEvent, StorageTier
from kvspec.impl.tiered import TieredIndex
from kvspec.scores import OverlapScores, TieredMatches

__all__ = ["LanedIndex"]


class LanedIndex:
    """Per-lane deques in front of a :class:`TieredIndex` (contract: ``kvspec.model.lanes``)."""

    def __init__(self) -> None:
        self._index = TieredIndex()
        self._lanes: dict[tuple[int, int], deque] = {}
        self._queued = 0
        self._dropped = 0

    def apply_event(self, worker_id: int, event: KvCacheEvent, storage_tier: StorageTier = StorageTier.DEVICE) -> None:
        checks.queued_event(event, KvCacheEvent)
        lane = self._lanes.get((worker_id, event.dp_rank))
        if lane is None:
            lane = self._lanes[(worker_id, event.dp_rank)] = deque()
        lane.append((event, StorageTier(storage_tier)))
        self._queued += 1

    def _apply(self, key: tuple[int, int]) -> None:
        lane = self._lanes[key]
        event, tier = lane.popleft()
        if not lane:
            del self._lanes[key]
        self._queued -= 1
        try:
            self._index.apply_event(key[0], event, tier)
        except KvSpecError:
            self._dropped += 1

    def step(self, worker_id: int, dp_rank: int, count: int = 1) -> int:
        checks.lane_count(count)
        done = 0
        key = (worker_id, dp_rank)
        while done < count and key in self._lanes:
            self._apply(key)
            done += 1
        return done

    def drain(self) -> int:
        """Round-robin over the lanes until all are empty: O(queued events)."""
        done = 0
        while self._lanes:
            for key in list(self._lanes):
                self._apply(key)
                done += 1
        return done

    def pending(self) -> dict[tuple[int, int], int]:
        return {key: len(lane) for key, lane in sorted(self._lanes.items())}

    def dropped(self) -> int:
        return self._dropped

    def find_matches(self, local_hashes: Sequence[int], early_exit: bool = False) -> OverlapScores:
        return self._index.find_matches(local_hashes, early_exit)

    def find_matches_by_tier(self, local_hashes: Sequence[int]) -> TieredMatches:
        return self._index.find_matches_by_tier(local_hashes)

    def dump_events(self) -> list[RouterEvent]:
        return self._index.dump_events()

    def _check(self) -> None:
        assert all(self._lanes.values()), "an empty lane is kept"
        assert self._queued == sum(len(lane) for lane in self._lanes.values()), "queued count out of sync"
        check = getattr(self._index, "_check", None)
        if check is not None:
            check()
