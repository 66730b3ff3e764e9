"""Soak: 10^6 operations per structure, retained memory printed at intervals (it must stay flat).

Every structure is driven by an endless stream of *fresh* identities — the case that makes an
unbounded structure grow — while what it legitimately holds stays bounded: pools and managers have
a fixed capacity, the indexes and trackers hold a sliding window of blocks (a worker removes what
it stored a while ago), and published events are drained as a router would.  At each checkpoint
the script collects garbage and prints the memory retained by Python objects (``tracemalloc``)
and the process's resident set (``VmRSS``).  Flat means: the last checkpoints are no larger than
the first ones after warm-up; the table prints the ratio last / first-after-warm-up.

``kvspec bench soak [--ops 1000000] [--side impl|model] [--only NAME] [--checkpoints 10]
[--no-tracemalloc]``.  Memory bounds are stated where the structures are: the pool by its
capacity, the MultiLRU frequency counter by ``2 * sample size`` keys
(:mod:`kvspec.model.frequency`), the indexes and trackers by what their callers hold.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from kvspec.model.eviction import BACKENDS

__all__ = ["WORKLOADS", "main"]

CAPACITY = 256
WINDOW = 256  # blocks an index or tracker worker keeps before removing its oldest


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# --- workloads: each yields once per operation --------------------------------------------------


def pool_ops(side, eviction: str) -> Iterator[None]:
    from kvspec.hashing import Plh

    pool = side.BlockPool(CAPACITY, eviction=eviction, frequency="exact")
    held: list[int] = []
    n = 0
    while True:
        n += 1
        got = pool.allocate_with_evictions(1)
        yield
        if got is None:
            pool.release(held.pop(0))
            yield
            continue
        plh = Plh(n % 7, n, n - 1 if n % 7 else None)
        held.append(pool.register(got[0][0], plh))
        yield
        if n % 3 == 0:
            held += pool.match_blocks([plh])
            yield
        if len(held) > CAPACITY // 2:
            pool.release(held.pop(0))
            yield


def manager_ops(side, eviction: str | None) -> Iterator[None]:
    """``KvManager`` with ``eviction``, or the ``LegacyKvManager`` when ``eviction`` is ``None``."""
    from kvspec.hashing import lineage
    from kvspec.protocol import Deref, FullBlock, PartialBlock, Use

    legacy = eviction is None
    mgr = side.LegacyKvManager(CAPACITY, 16) if legacy else side.KvManager(CAPACITY, 16, eviction=eviction)
    n = 0
    live: list[tuple] = []
    while True:
        n += 1
        shared = [1, 2, 3]  # a hot prefix every request shares
        fresh = [10 * n + i for i in range(4)]
        chain = shared + fresh
        blocks = [FullBlock(h) for h in chain] + [PartialBlock(n)]
        mgr.process(Use(blocks, [h + 1 for h in chain], [] if legacy else lineage(chain)))
        yield
        live.append(tuple(blocks))
        if len(live) > 8:
            mgr.process(Deref(list(live.pop(0))))
            yield
        if n % 16 == 0:
            mgr.drain_events()


def index_ops(side, tiered: bool) -> Iterator[None]:
    from kvspec.events import KvCacheEvent, Removed, StorageTier, Stored, StoredBlock

    idx = side.TieredIndex() if tiered else side.RadixIndex()
    tiers = [StorageTier.DEVICE, StorageTier.HOST_PINNED] if tiered else [None]
    n = 0
    stored: list[tuple[int, Any, list[int]]] = []
    while True:
        n += 1
        worker, tier = n % 4, tiers[n % len(tiers)]
        chain = [4 * n + i for i in range(4)]
        event = KvCacheEvent(n, Stored(None, [StoredBlock(h, h % 97) for h in chain]))
        idx.apply_event(worker, event, *([tier] if tiered else []))
        yield
        stored.append((worker, tier, chain))
        if len(stored) * 4 > WINDOW:
            w, t, old = stored.pop(0)
            idx.apply_event(w, KvCacheEvent(n, Removed(old)), *([t] if tiered else []))
            yield
        if n % 5 == 0:
            if tiered:
                idx.find_matches_by_tier([h % 97 for h in chain])
            else:
                idx.find_matches([h % 97 for h in chain])
            yield


def tracker_ops(side, dedup: bool) -> Iterator[None]:
    from kvspec.tracker_events import EventSource

    tracker = side.DedupTracker() if dedup else side.PassthroughTracker()
    n = 0
    window: list[tuple[str, EventSource]] = []
    while True:
        n += 1
        source = (EventSource.VLLM, EventSource.KVBM)[n % 2]
        name = f"b{n}"
        tracker.handle_store(name, source, [n % 5000, n % 7], f"b{n - 1}" if n % 4 else None, 2)
        yield
        window.append((name, source))
        if len(window) > WINDOW:
            tracker.handle_remove(*window.pop(0))
            yield
        if n % 16 == 0:
            tracker.drain_events()


def native_ops(side) -> Iterator[None]:
    pool = side.NativeBlockPool(CAPACITY)
    n = 0
    while True:
        n += 1
        prefix = [1] if pool.longest_prefix([1]) else []
        ids = pool.acquire(prefix, 2)
        yield
        for copy_id in ids[len(prefix):]:
            pool.cache(copy_id, 1 if n == 1 else n * 2 + copy_id % 2)
            yield
        for copy_id in ids:
            pool.release(copy_id)
            yield
        pool.drain_removed()


#: name -> workload factory taking the side's package
WORKLOADS: dict[str, Callable[[Any], Iterator[None]]] = {
    **{f"BlockPool[{name}]": (lambda side, name=name: pool_ops(side, name)) for name in BACKENDS},
    **{f"KvManager[{name}]": (lambda side, name=name: manager_ops(side, name)) for name in BACKENDS},
    "LegacyKvManager": lambda side: manager_ops(side, None),
    "RadixIndex": lambda side: index_ops(side, tiered=False),
    "TieredIndex": lambda side: index_ops(side, tiered=True),
    "DedupTracker": lambda side: tracker_ops(side, dedup=True),
    "PassthroughTracker": lambda side: tracker_ops(side, dedup=False),
    "NativeBlockPool": native_ops,
}


def soak(name: str, side: Any, ops: int, checkpoints: int, trace: bool) -> list[tuple[int, float, float]]:
    """Run ``ops`` operations of one workload; memory ``(ops done, traced MB, RSS MB)`` per checkpoint."""
    gc.collect()
    if trace:
        tracemalloc.start()
    stream = WORKLOADS[name](side)
    every = max(1, ops // checkpoints)
    points = []
    for done in range(1, ops + 1):
        next(stream)
        if done % every == 0:
            gc.collect()
            traced = tracemalloc.get_traced_memory()[0] / 2**20 if trace else float("nan")
            points.append((done, traced, _rss_mb()))
    stream.close()
    if trace:
        tracemalloc.stop()
    return points


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kvspec bench soak", description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1_000_000)
    parser.add_argument("--checkpoints", type=int, default=10)
    parser.add_argument("--side", choices=["impl", "model"], default="impl")
    parser.add_argument("--only", default="", help="run only workloads whose name contains one of these "
                                                   "comma-separated texts")
    parser.add_argument("--no-tracemalloc", action="store_true", help="RSS only (faster)")
    args = parser.parse_args(list(argv or []))
    side = importlib.import_module(f"kvspec.{args.side}")
    trace = not args.no_tracemalloc
    print(f"soak: {args.ops:,} operations per structure on kvspec.{args.side}, capacity {CAPACITY}, "
          f"window {WINDOW}; retained MB at {args.checkpoints} checkpoints (tracemalloc / RSS)")
    print("| structure | seconds | traced MB at checkpoints | traced last/first* | RSS MB first -> last |")
    print("|---|---|---|---|---|")
    for name in WORKLOADS:
        if not any(part in name for part in args.only.split(",")):
            continue
        start = time.perf_counter()
        points = soak(name, side, args.ops, args.checkpoints, trace)
        seconds = time.perf_counter() - start
        traced = [p[1] for p in points]
        warm = traced[1] if len(traced) > 1 else traced[0]
        ratio = traced[-1] / warm if warm and warm == warm else float("nan")
        print(f"| {name} | {seconds:.0f} | {' '.join(f'{t:.2f}' for t in traced)} | {ratio:.2f} "
              f"| {points[0][2]:.0f} -> {points[-1][2]:.0f} |", flush=True)
    print("* first after warm-up = the second checkpoint")
    return 0
