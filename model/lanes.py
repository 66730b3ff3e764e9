"""Reference model of an index fed by concurrent event lanes (Dynamo's multi-threaded router).

A router with several event threads applies the events of different publishers — workers, or the
data-parallel ranks of one worker — concurrently: each publisher's events in order (a *lane*),
the lanes interleaved however the threads run.  :class:`LanedIndex` makes the interleaving
explicit: ``apply_event`` only queues the event on its lane ``(worker_id, dp_rank)``;
``step(worker_id, dp_rank, count)`` applies the next ``count`` events of one lane and ``drain()``
applies every queued event (a *quiescent point*: nothing in flight).  Queries answer on what has
been applied so far.  The rules:

* **Lanes are independent.**  Every block belongs to one worker rank and every event names its
  own rank, so an event's effect (and whether the index rejects it) depends only on the earlier
  events of its lane.  Hence at every quiescent point the index equals the *sequential* index
  that applied every event in publish order — whatever the interleaving.  Why it matters: a
  concurrent tree that shares structure between ranks must not let one lane's event change
  another rank's answer (kvspec finding F1 is such a leak).
* **During a race** a rank's count, on every tier and cumulatively, never exceeds the longest
  query prefix whose blocks the rank ever *published* as stored: an index cannot credit a block
  nobody announced.
* The index never reports an error to the publisher (as a router): an event rejected when its
  lane reaches it is dropped and counted (``dropped``).

``drain`` applies lane by lane, in lane order; the implementation interleaves lanes round-robin,
and the state machines compare the two, so any cross-lane leak shows as a divergence.
"""

from __future__ import annotations

from collections.abc import Sequence

from kvspec import checks
from kvspec.errors import KvSpecError
from kvspec.events import KvCacheEvent, RouterEvent, StorageTier
from kvspec.model.tiered import TieredIndex
from kvspec.scores import OverlapScores, TieredMatches

__all__ = ["LanedIndex"]


class LanedIndex:
    """A tiered index whose events wait on per-rank lanes until stepped or drained (module docs)."""

    def __init__(self) -> None:
        self._index = TieredIndex()
        self._lanes: dict[tuple[int, int], list[tuple[KvCacheEvent, StorageTier]]] = {}
        self._dropped = 0

    def apply_event(self, worker_id: int, event: KvCacheEvent, storage_tier: StorageTier = StorageTier.DEVICE) -> None:
        """Queue ``event`` on the lane of ``(worker_id, event.dp_rank)``."""
        checks.queued_event(event, KvCacheEvent)
        self._lanes.setdefault((worker_id, event.dp_rank), []).append((event, StorageTier(storage_tier)))

    def _apply(self, lane: tuple[int, int]) -> None:
        event, tier = self._lanes[lane].pop(0)
        if not self._lanes[lane]:
            del self._lanes[lane]
        try:
            self._index.apply_event(lane[0], event, tier)
        except KvSpecError:
            self._dropped += 1

    def step(self, worker_id: int, dp_rank: int, count: int = 1) -> int:
        """Apply the next ``count`` events of one lane; returns how many it applied."""
        checks.lane_count(count)
        done = 0
        while done < count and (worker_id, dp_rank) in self._lanes:
            self._apply((worker_id, dp_rank))
            done += 1
        return done

    def drain(self) -> int:
        """Apply every queued event (lane by lane); returns how many."""
        done = 0
        for lane in sorted(self._lanes):
            while lane in self._lanes:
                self._apply(lane)
                done += 1
        return done

    def pending(self) -> dict[tuple[int, int], int]:
        """Queued events per lane (lanes with none are absent)."""
        return {lane: len(events) for lane, events in sorted(self._lanes.items())}

    def dropped(self) -> int:
        """Events the index rejected when their lane reached them."""
        return self._dropped

    def find_matches(self, local_hashes: Sequence[int], early_exit: bool = False) -> OverlapScores:
        return self._index.find_matches(local_hashes, early_exit)

    def find_matches_by_tier(self, local_hashes: Sequence[int]) -> TieredMatches:
        return self._index.find_matches_by_tier(local_hashes)

    def dump_events(self) -> list[RouterEvent]:
        return self._index.dump_events()
