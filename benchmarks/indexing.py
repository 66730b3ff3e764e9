"""``kvspec bench indexing``: impl vs model ``RadixIndex`` (and Dynamo's ``RadixTree``) on one workload.

Workload (deterministic for a seed): ``workers`` workers (dp rank 0) each store whole request
chains — a shared "system prompt" chain followed by a private suffix — as ``Stored`` events in
chunks of up to 32 blocks, each chunk anchored to the previous one, until ``blocks`` blocks are
held in total (summed over workers).  External hashes are the chained sequence hashes of the
local hashes (consistent across workers, as Dynamo's router assumes).  One in ten chains then
loses a suffix (``Removed``).  Queries: 1,000 sequences, half a stored chain cut at a random point
and extended with unseen blocks, half a shared prefix with a fresh suffix.

Every side gets the same pre-built events and queries (Dynamo gets them pre-serialised to the JSON
bytes its binding parses, so the JSON encoding is not charged to it).  The model is deliberately
slow: its apply phase stops at a time budget, and then the impl is timed on the same prefix of
events for the apply ratio; queries are compared only when the model applied everything, and the
model's queries stop at the budget too (the impl is timed on the same queries).
Output: events/s and queries/s per side and the ratios.  A benchmark, never a timed test.
"""

from __future__ import annotations

import argparse
import random
import time
import tracemalloc
from collections.abc import Sequence

from kvspec.events import KvCacheEvent, Removed, Stored, StoredBlock
from kvspec.hashing import sequence_hashes

CHUNK = 32


def build_workload(total_blocks: int, workers: int, *, seed: int = 0):
    """Return ``(events, queries)``: ``events`` is a list of ``(worker_id, KvCacheEvent)``."""
    rng = random.Random(seed)

    def fresh(n: int) -> list[int]:
        return [rng.getrandbits(64) for _ in range(n)]

    prompts = [fresh(rng.randint(4, 64)) for _ in range(32)]
    events: list[tuple[int, KvCacheEvent]] = []
    ids = [0] * workers
    stored_chains: list[list[int]] = []
    held = 0
    while held < total_blocks:
        worker = rng.randrange(workers)
        local = rng.choice(prompts) + fresh(rng.randint(1, 128))
        seq = sequence_hashes(local)
        parent = None
        for start in range(0, len(local), CHUNK):
            blocks = [StoredBlock(e, h) for e, h in zip(seq[start:start + CHUNK], local[start:start + CHUNK])]
            events.append((worker, KvCacheEvent(ids[worker], Stored(parent, blocks))))
            ids[worker] += 1
            parent = blocks[-1].block_hash
        stored_chains.append(local)
        held += len(local)
        if rng.random() < 0.1:
            cut = rng.randrange(1, len(local))
            events.append((worker, KvCacheEvent(ids[worker], Removed(seq[cut:][::-1]))))
            ids[worker] += 1
    queries = []
    for i in range(1000):
        if i % 2:
            chain = rng.choice(stored_chains)
            queries.append(chain[: rng.randint(1, len(chain))] + fresh(rng.randint(0, 8)))
        else:
            queries.append(rng.choice(prompts) + fresh(rng.randint(1, 16)))
    return events, queries


def _apply_all(index, events, budget: float) -> tuple[int, float]:
    started = time.perf_counter()
    done = 0
    for done, (worker, event) in enumerate(events, 1):
        index.apply_event(worker, event)
        if time.perf_counter() - started > budget:
            break
    return done, time.perf_counter() - started


def _retained_bytes(cls, events) -> int:
    """Bytes still allocated by a fresh index after ``events`` (tracemalloc; a separate pass)."""
    tracemalloc.start()
    index = cls()
    for worker, event in events:
        index.apply_event(worker, event)
    current, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del index
    return current


def _query_all(index, queries, budget: float = float("inf")) -> tuple[int, float]:
    """Run queries until done or ``budget`` seconds; return (queries done, seconds)."""
    started = time.perf_counter()
    done = 0
    for done, query in enumerate(queries, 1):
        index.find_matches(query)
        if time.perf_counter() - started > budget:
            break
    return done, time.perf_counter() - started


def _dynamo_tree():
    try:
        from kvspec.adapters.dynamo.runtime import import_core

        return import_core().RadixTree
    except Exception as exc:  # noqa: BLE001 - optional engine
        print(f"(Dynamo's RadixTree not importable: {type(exc).__name__}: {exc}; pip install 'kvspec[dynamo]')")
        return None


def _dynamo_apply(tree, payloads, n: int) -> float:
    started = time.perf_counter()
    for worker, payload in payloads[:n]:
        tree.apply_event(worker, payload)
    return time.perf_counter() - started


def _dynamo_query(tree, queries) -> float:
    started = time.perf_counter()
    for query in queries:
        tree.find_matches(query, False)
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kvspec bench indexing", description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", default="10000,100000,1000000", help="held blocks, summed over workers")
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds the model may spend applying")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory", action="store_true",
                        help="also measure retained memory of model and impl on the same events (slower)")
    args = parser.parse_args(list(argv or []))
    import kvspec.impl
    import kvspec.model

    dynamo_cls = _dynamo_tree()
    print(f"kvspec bench indexing: RadixIndex, {args.workers} workers, chunks of {CHUNK} blocks, "
          f"1000 queries, model budget {args.budget:.0f}s")
    header = (f"{'blocks':>8} {'events':>7} {'model ev':>8} {'impl ev/s':>10} {'impl q/s':>9} "
              f"{'apply m/i':>9} {'query m/i':>9} {'apply d/i':>9} {'query d/i':>9}")
    print(header)
    print("-" * len(header))
    for total in (int(b) for b in args.blocks.split(",")):
        events, queries = build_workload(total, args.workers, seed=args.seed)
        model = kvspec.model.RadixIndex()
        model_done, model_apply = _apply_all(model, events, args.budget)
        impl = kvspec.impl.RadixIndex()
        _, impl_prefix = _apply_all(impl, events[:model_done], float("inf"))
        _, impl_rest = _apply_all(impl, events[model_done:], float("inf"))
        impl_apply = impl_prefix + impl_rest
        _, impl_query = _query_all(impl, queries)
        query_mi = "  (n/a)"
        if model_done == len(events):  # queries compare equal states only
            asked, model_query = _query_all(model, queries, args.budget)
            _, impl_same = _query_all(impl, queries[:asked])
            query_mi = f"{model_query / impl_same:8.1f}x"
        apply_mi = f"{model_apply / impl_prefix:8.1f}x" if impl_prefix else "-"
        apply_di = query_di = "  (n/a)"
        if dynamo_cls is not None:
            payloads = [(w, e.to_json().encode()) for w, e in events]
            tree = dynamo_cls()
            dyn_apply = _dynamo_apply(tree, payloads, len(payloads))
            dyn_query = _dynamo_query(tree, queries)
            apply_di = f"{dyn_apply / impl_apply:8.2f}x"
            query_di = f"{dyn_query / impl_query:8.2f}x"
        print(f"{total:>8} {len(events):>7} {model_done:>8} {len(events) / impl_apply:>10,.0f} "
              f"{len(queries) / impl_query:>9,.0f} {apply_mi:>9} {query_mi:>9} {apply_di:>9} {query_di:>9}",
              flush=True)
        if args.memory:
            model_bytes = _retained_bytes(kvspec.model.RadixIndex, events[:model_done])
            impl_bytes = _retained_bytes(kvspec.impl.RadixIndex, events[:model_done])
            print(f"{'':>8} memory on the same {model_done} events: model {model_bytes / 2**20:.1f} MiB, "
                  f"impl {impl_bytes / 2**20:.1f} MiB (impl/model {impl_bytes / model_bytes:.2f}x)", flush=True)
    print("m/i: model seconds / impl seconds on the same events or queries (higher = impl faster);")
    print("d/i: Dynamo RadixTree seconds / impl seconds (below 1 = Dynamo faster); '(n/a)': not measured")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
