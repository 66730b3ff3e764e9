"""``LanedIndex`` over Dynamo's ``KvRouter``: the ranks' publishers are concurrent lanes.

The ``dynamo-router`` targets' ``TieredIndex`` keeps a global event order (it waits for the router
to apply everything before a different rank publishes).  :class:`LanedIndex` drops that wait: each
data-parallel rank publishes on its own ZMQ socket as soon as the machine hands it an event, so
the router's event threads (``router_event_threads=4``: the concurrent tree) apply the ranks'
streams concurrently, as in a deployment.  ``step`` does nothing (the router interleaves by itself);
``drain`` is the quiescent point (the harness barrier: every published event applied);
``find_matches_by_tier`` answers *without* waiting, so a query between drains races the
publishers.  ``pending`` and ``dropped`` are not observable on a router (empty / 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kvspec.adapters.dynamo import router as dr
from kvspec.adapters.dynamo.runtime import run
from kvspec.events import StorageTier
from kvspec.scores import LowerTierMatches, OverlapScores, TieredMatches

__all__ = ["LanedIndex", "laned_index_class"]


class LanedIndex(dr.TieredIndex):
    """Concurrent per-rank publishing; queries race unless preceded by :meth:`drain`."""

    def _rank(self, worker_id: int, dp_rank: int) -> int:
        if worker_id != dr.WORKER_ID or not 0 <= dp_rank < self.dp_ranks:
            from kvspec.errors import InvalidArgument  # noqa: PLC0415

            raise InvalidArgument(f"the router target has worker {dr.WORKER_ID} with ranks 0..{self.dp_ranks - 1}")
        return dp_rank  # no barrier between ranks: the lanes run concurrently

    def step(self, worker_id: int, dp_rank: int, count: int = 1) -> int:
        return 0

    def drain(self) -> int:
        self.harness.sync()
        return 0

    def pending(self) -> dict:
        return {}

    def dropped(self) -> int:
        return 0

    def racing_rows(self, local_hashes: Sequence[int]) -> list[dict[str, Any]]:
        tokens = dr.VOCABULARY.tokens(local_hashes)

        async def ask() -> Any:
            return await self.harness.router.get_overlap_scores(tokens)

        return run(ask())["workers"]

    def find_matches_by_tier(self, local_hashes: Sequence[int]) -> TieredMatches:
        rows = self.racing_rows(local_hashes)
        device = OverlapScores({self._worker(r): r["device_blocks"] for r in rows if r["device_blocks"] > 0}, ())
        host = {self._worker(r): r["host_pinned_extension_blocks"] for r in rows}
        disk = {self._worker(r): r["disk_extension_blocks"] for r in rows}
        return TieredMatches(device, {StorageTier.HOST_PINNED: LowerTierMatches(host, {}),
                                      StorageTier.DISK: LowerTierMatches(disk, {})})


def laned_index_class(event_threads: int, dp_ranks: int = 3) -> type[LanedIndex]:
    return type(f"LanedIndexThreads{event_threads}", (LanedIndex,), {"event_threads": event_threads,
                                                                    "dp_ranks": dp_ranks})
