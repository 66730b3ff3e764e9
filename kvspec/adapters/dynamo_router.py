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
import atexit
import itertools
import json
import os
import socket
import threading
import time
import types
import weakref
from collections.abc import Sequence
from typing import Any

from kvspec.errors import InvalidArgument, TargetError
from kvspec.events import Cleared, KvCacheEvent, Removed, RouterEvent, StorageTier, Stored
from kvspec.hashing import block_hashes
from kvspec.scores import LowerTierMatches, OverlapScores, TieredMatches
from kvspec.targets import Target, register_target

BLOCK_SIZE = 4
WORKER_ID = 1
SENTINEL_TOKEN = 3_000_000
SENTINEL_HASH_BASE = 2**63 + 2**62
TIMEOUT = 20.0

#: kvspec tier -> the ``medium`` string an engine puts on the wire (kv_router.md §1 from_kv_medium)
MEDIUM = {
    StorageTier.DEVICE: "GPU",
    StorageTier.HOST_PINNED: "CPU_PINNED",
    StorageTier.DISK: "DISK",
    StorageTier.EXTERNAL: "EXTERNAL",
}

#: loopback-only networking for every Dynamo listener (request plane, event plane, system server)
LOOPBACK_ENV = {
    "DYN_TCP_RPC_HOST": "127.0.0.1",
    "DYN_EVENT_PLANE_HOST": "127.0.0.1",
    "DYN_SYSTEM_HOST": "127.0.0.1",
    "DYN_TCP_RESPONSE_STREAM_HOST": "127.0.0.1",
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


# -- the event-loop thread ------------------------------------------------------------------------

_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def _loop() -> asyncio.AbstractEventLoop:
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="kvspec-dynamo-router", daemon=True).start()
            _LOOP = loop
        return _LOOP


def _run(coro: Any, timeout: float = TIMEOUT) -> Any:
    """Run ``coro`` on the harness loop; a hang becomes a :class:`TargetError` after ``timeout``."""
    future = asyncio.run_coroutine_threadsafe(coro, _loop())
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        if os.environ.get("KVSPEC_DEBUG_HANG"):
            import faulthandler
            import sys

            faulthandler.dump_traceback(sys.stderr)
        raise TargetError(f"the Dynamo router did not answer within {timeout}s") from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_HARNESSES: weakref.WeakSet = weakref.WeakSet()
_COUNTER = itertools.count()


@atexit.register
def _close_all() -> None:
    """Shut every runtime down and stop the loop thread *before* the interpreter finalizes.

    Dynamo's runtime threads call back into Python (the loop); a callback that arrives while the
    interpreter is finalizing can abort the process, so quiesce first.
    """
    for harness in list(_HARNESSES):
        harness.close()
    loop = _LOOP
    if loop is not None and loop.is_running():
        loop.call_soon_threadsafe(loop.stop)
        for thread in threading.enumerate():
            if thread.name == "kvspec-dynamo-router":
                thread.join(2.0)
        time.sleep(0.2)


class RouterHarness:
    """One worker (``dp_ranks`` ranks) publishing over ZMQ to one ``KvRouter`` (module docs)."""

    def __init__(self, *, dp_ranks: int = 2, event_threads: int = 1, block_size: int = BLOCK_SIZE,
                 router_config: dict[str, Any] | None = None) -> None:
        for key, value in LOOPBACK_ENV.items():
            os.environ[key] = value
        import zmq  # noqa: PLC0415 - optional dependency of the dynamo extra

        from kvspec.adapters.dynamo import import_core  # noqa: PLC0415

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
        self.runtime, self.router, self.publishers, self.worker_id = _run(self._start())
        _HARNESSES.add(self)

    async def _start(self) -> tuple[Any, Any, list[Any], int]:
        core = self.core
        runtime = core.DistributedRuntime(asyncio.get_running_loop(), "mem", "tcp", event_plane="zmq")
        endpoint = runtime.endpoint(f"kvspec{os.getpid()}x{next(_COUNTER)}.worker.generate")

        async def handler(request: Any, context: Any = None) -> Any:  # never called: routing only
            yield {}

        self._serving = asyncio.ensure_future(endpoint.serve_endpoint(handler))
        config = core.ModelRuntimeConfig()
        config.data_parallel_size = self.dp_ranks
        await core.register_model(core.ModelInput.Tokens, core.ModelType.Completions, endpoint, "kvspec", "kvspec",
                                  worker_type=core.WorkerType.Aggregated, kv_cache_block_size=self.block_size,
                                  skip_model_assets=True, runtime_config=config)
        publishers = []
        for rank in range(self.dp_ranks):
            port = _free_port()
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
        deadline = time.monotonic() + TIMEOUT
        while True:  # wait until the router lists every rank
            rows = (await router.get_overlap_scores([SENTINEL_TOKEN] * self.block_size))["workers"]
            if len(rows) >= self.dp_ranks:
                break
            if time.monotonic() > deadline:
                raise TargetError(f"KvRouter did not discover the worker's {self.dp_ranks} ranks in {TIMEOUT}s")
            await asyncio.sleep(0.005)
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
        return runtime, router, publishers, worker_id

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
            _run(self._await_sentinels(pending))

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

        return _run(ask())["workers"]

    def dump(self) -> list[RouterEvent]:
        """The router's dump (all tiers), parsed, without sentinel blocks."""
        self.sync()
        async def ask() -> Any:
            return await self.router.dump_events()

        raw = json.loads(_run(ask()))
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
        runtime = getattr(self, "runtime", None)
        if runtime is not None:
            try:
                runtime.shutdown()
            except Exception:  # noqa: BLE001
                pass


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
    from kvspec.adapters.dynamo import unavailable_reason as core_reason  # noqa: PLC0415

    reason = core_reason()
    if reason is not None:
        return reason
    try:
        import msgpack  # noqa: F401,PLC0415
        import zmq  # noqa: F401,PLC0415
    except ImportError as exc:
        return f"pyzmq/msgpack not importable ({exc}); pip install 'kvspec[dynamo]'"
    return None


def load_target(event_threads: int = 1) -> Target:
    """``dynamo-router`` (``router_event_threads=1``) / ``dynamo-router-crtc`` (4); empty when unavailable."""
    name = "dynamo-router" if event_threads == 1 else f"dynamo-router-threads{event_threads}"
    reason = unavailable_reason()
    if reason is not None:
        return Target(name, types.SimpleNamespace(), f"unavailable: {reason}", mode="contract")
    from kvspec.adapters.dynamo import engine_version  # noqa: PLC0415

    from kvspec.adapters.dynamo_lanes import laned_index_class  # noqa: PLC0415

    namespace = types.SimpleNamespace(TieredIndex=tiered_index_class(event_threads),
                                      LanedIndex=laned_index_class(event_threads))
    return Target(name, namespace, f"ai-dynamo-runtime {engine_version()} router_event_threads={event_threads}",
                  mode="contract")


register_target("dynamo-router", lambda: load_target(1))
register_target("dynamo-router-threads4", lambda: load_target(4))


class ApproximateRouter:
    """A ``KvRouter`` with ``use_kv_events=False``: routing decisions write the index (``kv_router.md`` §9).

    :meth:`route` calls ``best_worker(tokens, update_indexer=True, ...)``; the router then stores the
    request's blocks under its own chained sequence hashes, which :meth:`dump` exposes — the only
    way to observe Dynamo's sequence hash from Python (exp. S).
    """

    def __init__(self, *, block_size: int = BLOCK_SIZE, event_threads: int = 1) -> None:
        for key, value in LOOPBACK_ENV.items():
            os.environ[key] = value
        from kvspec.adapters.dynamo import import_core  # noqa: PLC0415

        self.core = import_core()
        self.block_size = block_size
        self.event_threads = event_threads
        self.closed = False
        self.runtime, self.router = _run(self._start())
        _HARNESSES.add(self)

    async def _start(self) -> tuple[Any, Any]:
        core = self.core
        runtime = core.DistributedRuntime(asyncio.get_running_loop(), "mem", "tcp", event_plane="zmq")
        endpoint = runtime.endpoint(f"kvspec{os.getpid()}x{next(_COUNTER)}.worker.generate")

        async def handler(request: Any, context: Any = None) -> Any:  # never called: routing only
            yield {}

        self._serving = asyncio.ensure_future(endpoint.serve_endpoint(handler))
        await core.register_model(core.ModelInput.Tokens, core.ModelType.Completions, endpoint, "kvspec", "kvspec",
                                  worker_type=core.WorkerType.Aggregated, kv_cache_block_size=self.block_size,
                                  skip_model_assets=True)
        router = core.KvRouter(endpoint, self.block_size,
                               core.KvRouterConfig(use_kv_events=False, router_event_threads=self.event_threads))
        deadline = time.monotonic() + TIMEOUT
        while not (await router.get_overlap_scores([SENTINEL_TOKEN] * self.block_size))["workers"]:
            if time.monotonic() > deadline:
                raise TargetError(f"KvRouter did not discover its worker within {TIMEOUT}s")
            await asyncio.sleep(0.005)
        return runtime, router

    def route(self, tokens: Sequence[int], *, lora_name: str | None = None, cache_namespace: str | None = None,
              block_mm_infos: Any = None) -> tuple[int, int, int]:
        """``(worker_id, dp_rank, overlap_blocks)`` of ``best_worker``, recording the decision."""
        async def ask() -> Any:
            return await self.router.best_worker(list(tokens), update_indexer=True, lora_name=lora_name,
                                                 cache_namespace=cache_namespace, block_mm_infos=block_mm_infos)

        return tuple(_run(ask()))

    def dump(self) -> list[RouterEvent]:
        async def ask() -> Any:
            return await self.router.dump_events()

        return [RouterEvent.from_dict(item) for item in json.loads(_run(ask()))]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.runtime.shutdown()
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass


def _i64(value: int) -> int:
    """The publisher API takes hashes as i64; Dynamo reinterprets the bits as u64 (kv_router.md §1)."""
    return value - 2**64 if value >= 2**63 else value


def multi_worker_scores(events: Sequence[tuple[int, KvCacheEvent]], query: Sequence[int], *,
                        workers: int = 2, event_threads: int = 4) -> dict[tuple[int, int], int]:
    """Device scores of ``query`` after ``events`` published by ``workers`` distinct workers.

    One process cannot register two workers with in-memory discovery, so this stands up
    ``workers`` runtimes sharing a file-backed discovery store (``DYN_FILE_KV``, a temporary
    directory) and a router on the first.  Events use the publisher API directly (no ZMQ relay);
    worker ``i`` (1-based) of ``events`` is the ``i``-th runtime; rank 0 only.  Used by the
    finding reproducers; the state machines use :class:`RouterHarness` (one worker, several ranks).
    """
    import tempfile  # noqa: PLC0415

    from kvspec.adapters.dynamo import import_core  # noqa: PLC0415

    for key, value in LOOPBACK_ENV.items():
        os.environ[key] = value
    core = import_core()

    async def run(directory: str) -> dict[tuple[int, int], int]:
        os.environ["DYN_FILE_KV"] = directory
        loop = asyncio.get_running_loop()
        runtimes, endpoints = [], []
        name = f"kvspecmw{os.getpid()}x{next(_COUNTER)}.worker.generate"

        async def handler(request: Any, context: Any = None) -> Any:
            yield {}

        try:
            for _ in range(workers):
                runtime = core.DistributedRuntime(loop, "file", "tcp", event_plane="zmq")
                runtimes.append(runtime)
                endpoint = runtime.endpoint(name)
                endpoints.append(endpoint)
                asyncio.ensure_future(endpoint.serve_endpoint(handler))
                await core.register_model(core.ModelInput.Tokens, core.ModelType.Completions, endpoint, "kvspec",
                                          "kvspec", worker_type=core.WorkerType.Aggregated,
                                          kv_cache_block_size=BLOCK_SIZE, skip_model_assets=True)
            publishers = [core.KvEventPublisher(ep, kv_block_size=BLOCK_SIZE) for ep in endpoints]
            router = core.KvRouter(endpoints[0], BLOCK_SIZE,
                                   core.KvRouterConfig(use_kv_events=True, router_event_threads=event_threads))
            ids = {ep.connection_id(): i + 1 for i, ep in enumerate(endpoints)}
            deadline = time.monotonic() + TIMEOUT
            while len((await router.get_overlap_scores(VOCABULARY.tokens(query[:1])))["workers"]) < workers:
                if time.monotonic() > deadline:
                    raise TargetError("KvRouter did not discover every worker")
                await asyncio.sleep(0.01)
            # warm up each publisher with a sentinel until the router shows it (see RouterHarness)
            for i, publisher in enumerate(publishers):
                tokens = [SENTINEL_TOKEN + 1 + i] * BLOCK_SIZE
                while True:
                    publisher.publish_stored(tokens, [BLOCK_SIZE], [_i64(SENTINEL_HASH_BASE + i)])
                    await asyncio.sleep(0.05)
                    rows = (await router.get_overlap_scores(tokens))["workers"]
                    if any(ids.get(r["worker_id"]) == i + 1 and r["device_blocks"] for r in rows):
                        break
                    if time.monotonic() > deadline:
                        raise TargetError("KvRouter never received a publisher's events")
            for worker, event in events:
                data, publisher = event.data, publishers[worker - 1]
                if isinstance(data, Stored):
                    parent = None if data.parent_hash is None else _i64(data.parent_hash)
                    publisher.publish_stored(VOCABULARY.tokens([b.tokens_hash for b in data.blocks]),
                                             [BLOCK_SIZE] * len(data.blocks), [_i64(b.block_hash) for b in data.blocks],
                                             parent_hash=parent)
                elif isinstance(data, Removed):
                    publisher.publish_removed([_i64(h) for h in data.block_hashes])
                await asyncio.sleep(0.1)  # events of different publishers: keep the global order
            await asyncio.sleep(0.3)
            rows = (await router.get_overlap_scores(VOCABULARY.tokens(query)))["workers"]
            return {(ids.get(r["worker_id"], r["worker_id"]), r["dp_rank"]): r["device_blocks"]
                    for r in rows if r["device_blocks"] > 0}
        finally:
            for runtime in runtimes:
                runtime.shutdown()

    with tempfile.TemporaryDirectory(prefix="kvspec-discovery-") as directory:
        return _run(run(directory), timeout=4 * TIMEOUT)
