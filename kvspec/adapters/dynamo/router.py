"""Target ``dynamo-router``: Dynamo's ``KvRouter`` fed by KV events over ZMQ, as a real engine feeds it.

A :class:`RouterHarness` stands up, inside this process and on loopback only, what a deployment
has: a ``DistributedRuntime`` (in-memory discovery, TCP request plane, ZMQ event plane), one served
worker endpoint registered with ``data_parallel_size = dp_ranks``, one ``KvEventPublisher`` per
data-parallel rank relaying from a pyzmq ``PUB`` socket bound on ``127.0.0.1`` (the vLLM/SGLang
wire format: ``[topic, seq (u64 big-endian), msgpack([ts, [events], dp_rank])]``), and a
``KvRouter`` with ``router_event_threads`` 1 (``KvIndexer`` over the ``RadixTree``) or >1 (the
concurrent tree, ``ConcurrentRadixTreeCompressed``).  Everything runs on one private event-loop
thread; every wait is bounded; :meth:`RouterHarness.close` (also called at interpreter exit)
shuts the runtime down.

``TieredIndex`` (the class this target provides, in ``contract`` mode) maps kvspec's interface onto
the harness:

* ``apply_event(worker_id, event, storage_tier)`` publishes the event as the engine would: a
  ``BlockStored`` carries the blocks' **tokens** (the router recomputes each local hash from them),
  so local hashes must come from :data:`VOCABULARY` (block contents whose hash kvspec knows);
  the tier becomes the ``medium`` (``GPU``, ``CPU_PINNED``, ``DISK``, ``EXTERNAL``); ``Cleared``
  becomes ``AllBlocksCleared``.  The router never reports an index error (it logs and drops), so
  ``apply_event`` never raises for one.
* ``find_matches_by_tier(local_hashes)`` waits until the router has applied every published event
  (a *barrier*: a sentinel block per touched rank and tier, polled until visible), then asks
  ``get_overlap_scores``.  The router reports per worker ``device_blocks``,
  ``host_pinned_extension_blocks`` and ``disk_extension_blocks`` (disk **plus** external); the
  result is a :class:`~kvspec.scores.TieredMatches` whose ``lower_tier`` has ``HOST_PINNED`` and
  ``DISK`` (= disk + external) hits only, ``next_continuations`` empty (not on the wire).
* Worker ids: the router names its one worker by the runtime's connection id; the adapter
  presents it as worker id :data:`WORKER_ID` (1), dp ranks ``0..dp_ranks-1``.

Limits: one worker id per harness (several dp ranks), since the binding's publisher cannot
impersonate another registered worker; so the concurrent tree's per-worker lanes all carry one
worker.  Sentinel blocks (tokens >= ``SENTINEL_TOKEN``) are filtered from dumps and never queried
by machines.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Sequence
from typing import Any

from kvspec.adapters.dynamo import runtime
from kvspec.adapters.dynamo.runtime import TIMEOUT, free_port, import_core, run, start_worker, track, wait_until
from kvspec.errors import InvalidArgument, TargetError
from kvspec.events import Cleared, KvCacheEvent, Removed, RouterEvent, StorageTier, Stored
from kvspec.hashing import block_hashes
from kvspec.scores import LowerTierMatches, OverlapScores, TieredMatches

__all__ = ["BLOCK_SIZE", "MEDIUM", "SENTINEL_HASH_BASE", "SENTINEL_TOKEN", "VOCABULARY", "WORKER_ID",
           "ApproximateRouter", "BlockVocabulary", "RouterHarness", "TieredIndex", "tiered_index_class",
           "unavailable_reason"]

BLOCK_SIZE = 4
WORKER_ID = 1
SENTINEL_TOKEN = 3_000_000
SENTINEL_HASH_BASE = 2**63 + 2**62

#: kvspec tier -> the ``medium`` string an engine puts on the wire (``docs/upstream.md`` R1, ``from_kv_medium``)
MEDIUM = {
    StorageTier.DEVICE: "GPU",
    StorageTier.HOST_PINNED: "CPU_PINNED",
    StorageTier.DISK: "DISK",
    StorageTier.EXTERNAL: "EXTERNAL",
}

class BlockVocabulary:
    """Block contents with known local hashes: content ``c`` is ``block_size`` tokens from ``1000*(c+1)``."""

    def __init__(self, block_size: int = BLOCK_SIZE, size: int = 32) -> None:
        self.block_size = block_size
        self.tokens_of: dict[int, tuple[int, ...]] = {}
        self.locals: list[int] = []
        for c in range(size):
            tokens = tuple(1000 * (c + 1) + j for j in range(block_size))
            (local,) = block_hashes(tokens, block_size)
            self.tokens_of[local] = tokens
            self.locals.append(local)

    def tokens(self, local_hashes: Sequence[int]) -> list[int]:
        out: list[int] = []
        for local in local_hashes:
            if local not in self.tokens_of:
                raise InvalidArgument(f"local hash {local} is not in the router vocabulary (dynamo_router.VOCABULARY)")
            out.extend(self.tokens_of[local])
        return out


VOCABULARY = BlockVocabulary()


class RouterHarness:
    """One worker (``dp_ranks`` ranks) publishing over ZMQ to one ``KvRouter`` (module docs)."""

    def __init__(self, *, dp_ranks: int = 2, event_threads: int = 1, block_size: int = BLOCK_SIZE,
                 router_config: dict[str, Any] | None = None) -> None:
        import zmq  # noqa: PLC0415 - optional dependency of the dynamo extra

        self.core = import_core()
        self.block_size = block_size
        self.dp_ranks = dp_ranks
        self.event_threads = event_threads
        #: extra ``KvRouterConfig`` settings (e.g. ``router_predicted_ttl_secs`` for a side index)
        self.router_config = dict(router_config or {})
        self.closed = False
        self._zmq = zmq
        self._ctx = zmq.Context.instance()
        self._pubs: list[Any] = []
        self._seq = [0] * dp_ranks
        self._dirty: set[tuple[int, StorageTier]] = set()
        self._sentinels = itertools.count(1)
        self._sentinel_hashes: set[int] = set()
        self.worker = None
        self.router, self.publishers, self.worker_id = run(self._start())
        track(self)

    async def _start(self) -> tuple[Any, list[Any], int]:
        core = self.core
        self.worker = await start_worker(core, block_size=self.block_size, dp_ranks=self.dp_ranks)
        endpoint = self.worker.endpoint
        publishers = []
        for rank in range(self.dp_ranks):
            port = free_port()
            # XPUB, not PUB: it reports the relay's subscription, so nothing is published before
            # the relay listens (a PUB drops early messages, and the router then sees a sequence
            # gap, a "transport discontinuity", and stops applying that source's events)
            pub = self._ctx.socket(self._zmq.XPUB)
            pub.setsockopt(self._zmq.LINGER, 0)
            pub.bind(f"tcp://127.0.0.1:{port}")
            self._pubs.append(pub)
            publishers.append(core.KvEventPublisher(endpoint, kv_block_size=self.block_size, dp_rank=rank,
                                                    zmq_endpoint=f"tcp://127.0.0.1:{port}"))
        for rank, pub in enumerate(self._pubs):
            deadline = time.monotonic() + TIMEOUT
            while not pub.poll(0, self._zmq.POLLIN):
                if time.monotonic() > deadline:
                    raise TargetError(f"the KV event relay of rank {rank} did not subscribe within {TIMEOUT}s")
                await asyncio.sleep(0.002)
            pub.recv()  # the subscription message
        router = core.KvRouter(endpoint, self.block_size,
                               core.KvRouterConfig(use_kv_events=True, router_event_threads=self.event_threads,
                                                   **self.router_config))
        self.router = router
        worker_id = endpoint.connection_id()

        async def every_rank_listed() -> bool:
            rows = (await router.get_overlap_scores([SENTINEL_TOKEN] * self.block_size))["workers"]
            return len(rows) >= self.dp_ranks

        await wait_until(every_rank_listed, f"KvRouter did not discover the worker's {self.dp_ranks} ranks")
        deadline = time.monotonic() + TIMEOUT
        # The router subscribes to each rank's relayed events some time after it lists the rank;
        # events published before that are lost.  Warm up: publish a sentinel per rank until the
        # router shows it, so that every event of the run itself is received.
        for rank in range(self.dp_ranks):
            while True:
                tokens = self._sentinel(rank, StorageTier.DEVICE)
                try:
                    await self._await_sentinels({(rank, StorageTier.DEVICE): tokens}, timeout=0.05)
                    break
                except TargetError:
                    if time.monotonic() > deadline:
                        raise TargetError(f"KvRouter never received events of rank {rank} within {TIMEOUT}s") from None
        self._dirty.clear()
        return router, publishers, worker_id

    # -- publishing ------------------------------------------------------------------------------

    def publish(self, dp_rank: int, events: list[dict[str, Any]]) -> None:
        """Send one engine batch on rank ``dp_rank``'s socket (sequence numbers contiguous)."""
        import msgpack  # noqa: PLC0415

        self._seq[dp_rank] += 1
        payload = msgpack.packb([time.time(), events, dp_rank])
        self._pubs[dp_rank].send_multipart([b"", self._seq[dp_rank].to_bytes(8, "big"), payload])
        for event in events:
            medium = event.get("medium")
            tiers = [t for t, m in MEDIUM.items() if m == medium] or [StorageTier.DEVICE]
            self._dirty.add((dp_rank, tiers[0]))

    def stored(self, dp_rank: int, tier: StorageTier, parent: int | None, hashes: Sequence[int],
               tokens: Sequence[int]) -> None:
        self.publish(dp_rank, [{"type": "BlockStored", "block_hashes": list(hashes), "parent_block_hash": parent,
                                "token_ids": list(tokens), "block_size": self.block_size, "medium": MEDIUM[tier]}])

    def removed(self, dp_rank: int, tier: StorageTier, hashes: Sequence[int]) -> None:
        self.publish(dp_rank, [{"type": "BlockRemoved", "block_hashes": list(hashes), "medium": MEDIUM[tier]}])

    def cleared(self, dp_rank: int) -> None:
        self.publish(dp_rank, [{"type": "AllBlocksCleared"}])

    # -- synchronisation -------------------------------------------------------------------------

    def sync(self) -> None:
        """Barrier: every event published so far has been applied by the router.

        Events of one publisher are applied in order; per touched (rank, tier) a fresh sentinel
        root block is stored behind them and polled until the router reports it.
        """
        pending = {}
        for rank, tier in sorted(self._dirty, key=lambda x: (x[0], x[1].value)):
            pending[(rank, tier)] = self._sentinel(rank, tier)
        self._dirty.clear()
        if pending:
            run(self._await_sentinels(pending))

    def _sentinel(self, rank: int, tier: StorageTier) -> list[int]:
        """Publish a fresh sentinel root block on ``rank`` and ``tier``; return its tokens."""
        k = next(self._sentinels)
        tokens = [SENTINEL_TOKEN + k] * self.block_size
        e = SENTINEL_HASH_BASE + k
        self._sentinel_hashes.add(e)
        self.stored(rank, tier, None, [e], tokens)
        return tokens

    async def _await_sentinels(self, pending: dict[tuple[int, StorageTier], list[int]],
                               timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        field = {StorageTier.DEVICE: "device_blocks", StorageTier.HOST_PINNED: "host_pinned_extension_blocks",
                 StorageTier.DISK: "disk_extension_blocks", StorageTier.EXTERNAL: "disk_extension_blocks"}
        while pending:
            for (rank, tier), tokens in list(pending.items()):
                rows = (await self.router.get_overlap_scores(tokens))["workers"]
                if any(r["dp_rank"] == rank and r[field[tier]] >= 1 for r in rows):
                    del pending[(rank, tier)]
            if pending:
                if time.monotonic() > deadline:
                    raise TargetError(f"KvRouter did not apply published events within {timeout}s: {sorted(pending)}")
                await asyncio.sleep(0.002)

    # -- queries ---------------------------------------------------------------------------------

    def overlap(self, tokens: Sequence[int]) -> list[dict[str, Any]]:
        self.sync()

        async def ask() -> Any:  # the binding needs a running loop when the call is made
            return await self.router.get_overlap_scores(list(tokens))

        return run(ask())["workers"]

    def dump(self) -> list[RouterEvent]:
        """The router's dump (all tiers), parsed, without sentinel blocks."""
        self.sync()
        async def ask() -> Any:
            return await self.router.dump_events()

        raw = json.loads(run(ask()))
        out = []
        for item in raw:
            event = RouterEvent.from_dict(item)
            data = event.event.data
            if isinstance(data, Stored):
                blocks = [b for b in data.blocks if b.block_hash not in self._sentinel_hashes]
                if not blocks:
                    continue
                event = RouterEvent(event.worker_id, KvCacheEvent(event.event.event_id, Stored(data.parent_hash, blocks),
                                                                  event.event.dp_rank), event.storage_tier)
            out.append(event)
        return out

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for publisher in getattr(self, "publishers", []):
            try:
                publisher.shutdown()
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        for pub in self._pubs:
            pub.close(0)
        if self.worker is not None:
            self.worker.shutdown()


class TieredIndex:
    """kvspec's ``TieredIndex`` interface over a :class:`RouterHarness` (module docs).

    ``TieredIndex(dp_ranks, event_threads)``; the target binds defaults through a subclass.
    """

    dp_ranks = 3
    event_threads = 1

    def __init__(self) -> None:
        self.harness = RouterHarness(dp_ranks=self.dp_ranks, event_threads=self.event_threads)
        self._last_rank: int | None = None

    def _rank(self, worker_id: int, dp_rank: int) -> int:
        if worker_id != WORKER_ID or not 0 <= dp_rank < self.dp_ranks:
            raise InvalidArgument(f"the router target has worker {WORKER_ID} with ranks 0..{self.dp_ranks - 1}, "
                                  f"not ({worker_id}, {dp_rank})")
        if self._last_rank is not None and self._last_rank != dp_rank:
            self.harness.sync()  # keep the global order of events across publishers
        self._last_rank = dp_rank
        return dp_rank

    def apply_event(self, worker_id: int, event: KvCacheEvent, storage_tier: StorageTier = StorageTier.DEVICE) -> None:
        tier = StorageTier(storage_tier)
        rank = self._rank(worker_id, event.dp_rank)
        data = event.data
        if isinstance(data, Stored):
            tokens = VOCABULARY.tokens([b.tokens_hash for b in data.blocks])
            self.harness.stored(rank, tier, data.parent_hash, [b.block_hash for b in data.blocks], tokens)
        elif isinstance(data, Removed):
            self.harness.removed(rank, tier, data.block_hashes)
        elif isinstance(data, Cleared):
            self.harness.cleared(rank)

    def _rows(self, local_hashes: Sequence[int]) -> list[dict[str, Any]]:
        return self.harness.overlap(VOCABULARY.tokens(local_hashes))

    def _worker(self, row: dict[str, Any]) -> tuple[int, int]:
        return (WORKER_ID if row["worker_id"] == self.harness.worker_id else row["worker_id"], row["dp_rank"])

    def find_matches(self, local_hashes: Sequence[int], early_exit: bool = False) -> OverlapScores:
        rows = self._rows(local_hashes)
        return OverlapScores({self._worker(r): r["device_blocks"] for r in rows if r["device_blocks"] > 0}, ())

    def find_matches_by_tier(self, local_hashes: Sequence[int]) -> TieredMatches:
        rows = self._rows(local_hashes)
        device = OverlapScores({self._worker(r): r["device_blocks"] for r in rows if r["device_blocks"] > 0}, ())
        host = {self._worker(r): r["host_pinned_extension_blocks"] for r in rows}
        disk = {self._worker(r): r["disk_extension_blocks"] for r in rows}
        return TieredMatches(device, {StorageTier.HOST_PINNED: LowerTierMatches(host, {}),
                                      StorageTier.DISK: LowerTierMatches(disk, {})})

    def dump_events(self) -> list[RouterEvent]:
        out = []
        for event in self.harness.dump():
            worker = WORKER_ID if event.worker_id == self.harness.worker_id else event.worker_id
            out.append(RouterEvent(worker, event.event, event.storage_tier))
        return out

    def close(self) -> None:
        self.harness.close()


def tiered_index_class(event_threads: int, dp_ranks: int = 3) -> type[TieredIndex]:
    return type(f"TieredIndexThreads{event_threads}", (TieredIndex,), {"event_threads": event_threads,
                                                                       "dp_ranks": dp_ranks})


def unavailable_reason() -> str | None:
    """Why the router targets cannot run here (the wheel, pyzmq or msgpack missing), or ``None``."""
    return runtime.unavailable_reason("zmq", "msgpack")


class ApproximateRouter:
    """A ``KvRouter`` with ``use_kv_events=False``: routing decisions write the index (``docs/upstream.md`` R9).

    :meth:`route` calls ``best_worker(tokens, update_indexer=True, ...)``; the router then stores the
    request's blocks under its own chained sequence hashes, which :meth:`dump` exposes — the only
    way to observe Dynamo's sequence hash from Python (exp. S).
    """

    def __init__(self, *, block_size: int = BLOCK_SIZE, event_threads: int = 1) -> None:
        self.core = import_core()
        self.block_size = block_size
        self.event_threads = event_threads
        self.closed = False
        self.worker, self.router = run(self._start())
        track(self)

    async def _start(self) -> tuple[Any, Any]:
        core = self.core
        worker = await start_worker(core, block_size=self.block_size)
        router = core.KvRouter(worker.endpoint, self.block_size,
                               core.KvRouterConfig(use_kv_events=False, router_event_threads=self.event_threads))

        async def worker_listed() -> bool:
            return bool((await router.get_overlap_scores([SENTINEL_TOKEN] * self.block_size))["workers"])

        await wait_until(worker_listed, "KvRouter did not discover its worker")
        return worker, router

    def route(self, tokens: Sequence[int], *, lora_name: str | None = None, cache_namespace: str | None = None,
              block_mm_infos: Any = None) -> tuple[int, int, int]:
        """``(worker_id, dp_rank, overlap_blocks)`` of ``best_worker``, recording the decision."""
        async def ask() -> Any:
            return await self.router.best_worker(list(tokens), update_indexer=True, lora_name=lora_name,
                                                 cache_namespace=cache_namespace, block_mm_infos=block_mm_infos)

        return tuple(run(ask()))

    def dump(self) -> list[RouterEvent]:
        async def ask() -> Any:
            return await self.router.dump_events()

        return [RouterEvent.from_dict(item) for item in json.loads(run(ask()))]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.worker.shutdown()
