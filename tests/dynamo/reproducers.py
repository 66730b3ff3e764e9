"""Reproducers of Dynamo findings that need more than the state machines' harness (tests only).

:func:`multi_worker_scores` stands up several *workers* (the router harness has one worker with
several ranks) to show finding F1 across distinct workers.  Workers start exactly as the targets
start theirs (:func:`kvspec.adapters.dynamo.runtime.start_worker`).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Sequence

from kvspec.adapters.dynamo.router import BLOCK_SIZE, SENTINEL_HASH_BASE, SENTINEL_TOKEN, VOCABULARY
from kvspec.adapters.dynamo.runtime import TIMEOUT, Worker, endpoint_name, import_core, run, start_worker
from kvspec.errors import TargetError
from kvspec.events import KvCacheEvent, Removed, Stored

__all__ = ["multi_worker_scores"]


def _i64(value: int) -> int:
    """The publisher API takes hashes as i64; Dynamo reinterprets the bits as u64 (``docs/upstream.md`` R1)."""
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
    core = import_core()

    async def run_all(directory: str) -> dict[tuple[int, int], int]:
        os.environ["DYN_FILE_KV"] = directory
        started: list[Worker] = []
        name = endpoint_name("kvspecmw")
        try:
            for _ in range(workers):
                started.append(await start_worker(core, block_size=BLOCK_SIZE, discovery="file", name=name))
            endpoints = [w.endpoint for w in started]
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
            for worker in started:
                worker.shutdown()

    with tempfile.TemporaryDirectory(prefix="kvspec-discovery-") as directory:
        return run(run_all(directory), timeout=4 * TIMEOUT)
