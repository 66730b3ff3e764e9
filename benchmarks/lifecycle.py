"""``kvspec bench lifecycle``: impl vs model ``KvManager`` on one recorded workload.

Workload (deterministic for a seed): requests built from a pool of shared "system prompt" chains
plus a private suffix and a partial tail, admitted with their creation signal, decoded to the end
(Promote + partial Use at every block boundary) and released; about ``capacity // 80`` requests
live at once, so the pinned set stays under half the capacity while the inactive pool fills up and
evicts constantly.  The operation list is recorded once (driving the impl) and then replayed,
identically, on a fresh model manager and a fresh impl manager.

The model is deliberately slow (linear scans); a replay stops when its time budget runs out, and
the impl is then timed over exactly the same prefix of operations, so the ratio always compares
equal work.  Output: one row per capacity with operations, blocks touched, seconds per side and
the model/impl speed ratio.  A benchmark, never a timed test.
"""

from __future__ import annotations

import argparse
import random
import time
import tracemalloc
from collections.abc import Sequence

from kvspec.protocol import Deref, Promote, Use
from kvspec.sequence import ActiveSequence, IdSource
from kvspec.model.eviction import BACKENDS

BLOCK_SIZE = 16


def record_workload(capacity: int, *, seed: int = 0, eviction: str = "lineage") -> list:
    """Drive an impl manager with generated requests and return the operations it accepted."""
    from kvspec.impl import KvManager

    rng = random.Random(seed)
    ids = IdSource(seed)
    vocabulary = 50_000
    prefixes = [[rng.randrange(vocabulary) for _ in range(BLOCK_SIZE * rng.randint(2, 12))]
                for _ in range(max(4, capacity // 200))]
    concurrency = max(2, capacity // 80)
    requests = max(200, 3 * capacity // 20)
    manager = KvManager(capacity, BLOCK_SIZE, eviction=eviction)
    ops: list = []

    def apply(op) -> None:
        n = manager.process(op)
        if isinstance(op, Use) and n != len(op.blocks):
            raise RuntimeError("workload over-subscribed the manager; lower the concurrency")
        ops.append(op)

    live: list[ActiveSequence] = []
    admitted = 0
    while admitted < requests or live:
        while admitted < requests and len(live) < concurrency:
            prompt = rng.choice(prefixes) + [rng.randrange(vocabulary) for _ in range(rng.randint(1, 16 * BLOCK_SIZE))]
            seq = ActiveSequence(prompt, BLOCK_SIZE, rng.randint(1, 4 * BLOCK_SIZE), rng=ids)
            signal = seq.take_creation_signal()
            if signal is not None:
                apply(signal)
            live.append(seq)
            admitted += 1
        seq = live[rng.randrange(len(live))]
        for _ in range(rng.randint(1, 2 * BLOCK_SIZE)):
            for op in seq.generate():
                apply(op)
            if seq.is_finished:
                live.remove(seq)
                break
        manager.drain_events()
    return ops


def replay(namespace, capacity: int, ops: Sequence, budget: float, eviction: str) -> tuple[int, float]:
    """Apply ``ops`` to a fresh manager until done or ``budget`` seconds; return (ops done, seconds)."""
    manager = namespace.KvManager(capacity, BLOCK_SIZE, eviction=eviction)
    started = time.perf_counter()
    done = 0
    for done, op in enumerate(ops, 1):
        manager.process(op)
        if done % 64 == 0:
            manager.drain_events()
        if time.perf_counter() - started > budget:
            break
    manager.drain_events()
    return done, time.perf_counter() - started


def retained_bytes(namespace, capacity: int, ops: Sequence, eviction: str) -> int:
    """Bytes still allocated by a fresh manager after ``ops`` (tracemalloc; a separate, slower pass)."""
    tracemalloc.start()
    manager = namespace.KvManager(capacity, BLOCK_SIZE, eviction=eviction)
    for op in ops:
        manager.process(op)
    manager.drain_events()
    current, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del manager
    return current


def blocks_in(ops: Sequence) -> int:
    return sum(len(op.blocks) if isinstance(op, (Use, Deref)) else 1 for op in ops if isinstance(op, (Use, Deref, Promote)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kvspec bench lifecycle", description=__doc__.splitlines()[0])
    parser.add_argument("--capacities", default="1000,10000,100000")
    parser.add_argument("--eviction", default="lineage", choices=sorted(BACKENDS))
    parser.add_argument("--budget", type=float, default=20.0, help="seconds the model may spend per capacity")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory", action="store_true",
                        help="also measure retained memory of both sides on the same operations (slower)")
    args = parser.parse_args(list(argv or []))
    import kvspec.impl
    import kvspec.model

    print(f"kvspec bench lifecycle: KvManager, eviction={args.eviction}, block size {BLOCK_SIZE}, "
          f"model budget {args.budget:.0f}s per capacity")
    header = f"{'capacity':>9} {'ops':>8} {'blocks':>9} {'model ops':>9} {'model s':>8} {'impl s':>8} " \
             f"{'impl ops/s':>11} {'model/impl':>10}"
    print(header)
    print("-" * len(header))
    for capacity in (int(c) for c in args.capacities.split(",")):
        ops = record_workload(capacity, seed=args.seed, eviction=args.eviction)
        model_done, model_seconds = replay(kvspec.model, capacity, ops, args.budget, args.eviction)
        impl_done, impl_seconds = replay(kvspec.impl, capacity, ops[:model_done], float("inf"), args.eviction)
        full_done, full_seconds = replay(kvspec.impl, capacity, ops, float("inf"), args.eviction)
        ratio = model_seconds / impl_seconds if impl_seconds > 0 else float("inf")
        memory = ""
        if args.memory:
            model_bytes = retained_bytes(kvspec.model, capacity, ops[:model_done], args.eviction)
            impl_bytes = retained_bytes(kvspec.impl, capacity, ops[:model_done], args.eviction)
            memory = f"  memory model {model_bytes / 2**20:.1f} MiB, impl {impl_bytes / 2**20:.1f} MiB " \
                     f"({model_bytes / impl_bytes:.2f}x)"
        print(f"{capacity:>9} {len(ops):>8} {blocks_in(ops):>9} {model_done:>9} {model_seconds:>8.2f} "
              f"{impl_seconds:>8.2f} {full_done / full_seconds:>11,.0f} {ratio:>9.1f}x{memory}", flush=True)
    print("model/impl: model seconds / impl seconds over the same prefix of operations (higher = impl faster)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
