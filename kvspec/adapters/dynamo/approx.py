"""Target ``dynamo-approx``: Dynamo's ``KvRouter`` without KV events, its index written by routing decisions.

With ``use_kv_events=False`` the router's primary index is approximate: ``best_worker(tokens,
update_indexer=True)`` stores the request's blocks under the chosen worker, and they expire after
``router_ttl_secs``.  :class:`ApproxRouterHarness` stands one up (one worker, one rank, loopback
only, as :mod:`kvspec.adapters.dynamo.router` does) with any ``KvRouterConfig`` settings.

``RouterIndexer`` (the class this target provides, in ``contract`` mode) maps kvspec's interface:

* ``RouterIndexer(False, router_ttl, router_predicted_ttl)``: ``router_ttl_secs = router_ttl *
  TICK`` seconds; Dynamo's refusal of a predicted TTL without KV events (a ``ValueError``) becomes
  :class:`~kvspec.errors.InvalidConfiguration`.  ``max_tree_size`` and the prune ratio are not
  settable in the 1.6.1 wheel: only the defaults are accepted (pruning never happens at this size).
* ``record_routing_decision(1, 0, local_hashes)``: ``best_worker`` on the tokens of the local
  hashes (from the router vocabulary) with ``update_indexer=True``; the one worker is ``(1, 0)``.
* ``advance(ticks)``: sleeps until ``ticks`` more ticks of wall time have passed since the
  harness started (absolute deadlines, so step overhead does not accumulate).  Expiry runs on
  Dynamo's own clock: an entry whose expiry tick *is* the current tick may or may not be gone
  yet, which is why this target is held to a contract (``kvspec.stateful.machines.approx_contract``).
* ``find_matches`` / ``find_matches_by_tier``: ``get_overlap_scores``; ``dump_events``: the
  router's dump.  ``prune``, ``advance`` and ``record_routing_decision`` return ``[]`` (Dynamo
  reports nothing).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from kvspec.adapters.dynamo.router import BLOCK_SIZE, SENTINEL_TOKEN, VOCABULARY
from kvspec.adapters.dynamo.runtime import endpoint_name, import_core, run, start_worker, track, wait_until
from kvspec.errors import InvalidArgument, InvalidConfiguration
from kvspec.events import RouterEvent
from kvspec.scores import OverlapScores, TieredMatches
from kvspec.ttl import DEFAULT_MAX_TREE_SIZE, DEFAULT_PRUNE_TARGET_RATIO, PruneConfig

__all__ = ["TICK", "ApproxRouterHarness", "RouterIndexer"]

#: wall-clock seconds per kvspec tick
TICK = 0.25
WORKER = (1, 0)


class ApproxRouterHarness:
    """A ``KvRouter`` with ``config`` settings and one registered worker (one rank), on loopback."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.core = import_core()
        self.config = dict(config)
        self.block_size = BLOCK_SIZE
        self.closed = False
        self.worker = None
        self.router, self.worker_id = run(self._start())
        track(self)

    async def _start(self) -> tuple[Any, int]:
        core = self.core
        self.worker = await start_worker(core, block_size=self.block_size, name=endpoint_name("kvspecapprox"))
        try:
            router = core.KvRouter(self.worker.endpoint, self.block_size, core.KvRouterConfig(**self.config))
        except ValueError as exc:
            self.close()
            raise InvalidConfiguration(str(exc)) from None

        async def worker_listed() -> bool:
            return bool((await router.get_overlap_scores([SENTINEL_TOKEN] * self.block_size))["workers"])

        await wait_until(worker_listed, "KvRouter did not discover its worker")
        return router, self.worker.endpoint.connection_id()

    def route(self, tokens: Sequence[int]) -> tuple[int, int, int]:
        async def ask() -> Any:
            return await self.router.best_worker(list(tokens), update_indexer=True)

        return tuple(run(ask()))

    def overlap(self, tokens: Sequence[int]) -> list[dict[str, Any]]:
        async def ask() -> Any:
            return await self.router.get_overlap_scores(list(tokens))

        return run(ask())["workers"]

    def dump(self) -> list[RouterEvent]:
        async def ask() -> Any:
            return await self.router.dump_events()

        return [RouterEvent.from_dict(item) for item in json.loads(run(ask()))]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.worker is not None:
            self.worker.shutdown()


class RouterIndexer:
    """kvspec's ``RouterIndexer`` over an :class:`ApproxRouterHarness` (primary approximate mode)."""

    def __init__(self, use_kv_events: bool = True, router_ttl: int = 120, router_predicted_ttl: int | None = None,
                 max_tree_size: int = DEFAULT_MAX_TREE_SIZE,
                 prune_target_ratio: float = DEFAULT_PRUNE_TARGET_RATIO) -> None:
        PruneConfig(router_ttl, max_tree_size, prune_target_ratio)
        if (max_tree_size, prune_target_ratio) != (DEFAULT_MAX_TREE_SIZE, DEFAULT_PRUNE_TARGET_RATIO):
            raise InvalidArgument("the 1.6.1 wheel does not expose max_tree_size or the prune ratio")
        if use_kv_events and router_predicted_ttl is None:
            raise InvalidArgument("this target covers the approximate primary (use_kv_events=False)")
        config: dict[str, Any] = {"use_kv_events": use_kv_events, "router_ttl_secs": router_ttl * TICK,
                                  "router_event_threads": 1}
        if router_predicted_ttl is not None:
            config["router_predicted_ttl_secs"] = router_predicted_ttl * TICK
        self.harness = ApproxRouterHarness(config)
        self._now = 0
        self._start = time.monotonic()

    def _tokens(self, local_hashes: Sequence[int]) -> list[int]:
        return VOCABULARY.tokens(local_hashes)

    def records_routing_decisions(self) -> bool:
        return True

    def record_routing_decision(self, worker_id: int, dp_rank: int, local_hashes: Sequence[int]) -> list:
        if (worker_id, dp_rank) != WORKER:
            raise InvalidArgument(f"the approximate router target has one worker {WORKER}")
        if local_hashes:
            self.harness.route(self._tokens(local_hashes))
        return []

    def advance(self, ticks: int) -> list:
        if isinstance(ticks, bool) or not isinstance(ticks, int) or ticks < 0:
            raise InvalidArgument(f"ticks must be an integer >= 0, got {ticks!r}")
        self._now += ticks
        delay = self._start + self._now * TICK - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return []

    def prune(self) -> list:
        return []

    def _scores(self, local_hashes: Sequence[int]) -> dict[tuple[int, int], int]:
        rows = self.harness.overlap(self._tokens(local_hashes)) if local_hashes else []
        return {WORKER: r["device_blocks"] for r in rows if r["device_blocks"] > 0}

    def find_matches(self, local_hashes: Sequence[int], early_exit: bool = False) -> OverlapScores:
        return OverlapScores(self._scores(local_hashes), ())

    def find_matches_by_tier(self, local_hashes: Sequence[int]) -> TieredMatches:
        return TieredMatches(self.find_matches(local_hashes), {})

    def dump_events(self) -> list[RouterEvent]:
        return [RouterEvent(WORKER[0], e.event, e.storage_tier) for e in self.harness.dump()]

    def now(self) -> int:
        return self._now

    def close(self) -> None:
        self.harness.close()
