"""``kvspec bench lifecycle``: impl vs model ``KvManager`` on one recorded workload.

Workload (deterministic for a seed): requests built from a pool of shared "system prompt" chains
plus a private suffix and a partial tail, admitted with their creation signal, decoded to the end
(Promote + partial Use at every block boundary) and released; about ``capacity // 80`` requests
live at once, so the pinned set stays under half the capacity while the inactive pool fills up and
evicts constantly.  Every size has the same shape per block: ``capacity // 20`` requests (about
1.85 blocks touched per block of capacity), ``capacity // 200`` shared prefixes.  The operation
list is recorded once (driving the impl) and then replayed, identically, on a fresh model manager
and a fresh impl manager.

Method: one untimed warm-up replay, then ``--rounds`` timed rounds; a round replays the whole list
on a fresh manager as many times as it takes to touch ``--min-blocks`` blocks (so a small size is
not timed on a few milliseconds).  The figure is *process CPU time per block touched*, median
[min-max] over the rounds, so the per-block cost can be compared from 1k to 1M blocks; the last
lines give the ratio of the largest to the smallest size explicitly.  "GC paused" is the same
replay with the cyclic GC disabled (interleaved with the normal one): the difference is the GC's
share.  "dict floor" is the same access pattern on the cheapest Python structure there is — a
dict of ints holding at most ``capacity`` sequence hashes, the oldest dropped first — with no other
work: its growth from 1k to 1M blocks is what CPython's memory hierarchy charges for a few random
lookups into a ``capacity``-sized table, a floor no manager built of Python dicts avoids.  The model is deliberately slow (linear scans): it replays a
prefix of the list until its time budget runs out, the impl is timed on exactly the same prefix
(interleaved, same rounds), and the model/impl ratio is printed only when that prefix holds at
least ``--min-ops`` operations *and* reaches the steady state (as many blocks touched as the pool
holds, so eviction is running) — otherwise it says why.  ``--callgrind`` adds instructions per
block (valgrind; the difference of a run that replays and one that only loads the operations).
A benchmark, never a timed test.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import deque
from collections.abc import Sequence

from kvspec.bench.measure import Spread, fmt_ratio, fmt_us, ratio
from kvspec.protocol import Deref, FullBlock, Promote, Use
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
    requests = max(2 * concurrency, capacity // 20)  # touches ~2x the capacity: fills the pool, then churns
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


def replay(namespace, capacity: int, ops: Sequence, eviction: str) -> None:
    """Apply ``ops`` to a fresh manager (events drained every 64 operations)."""
    manager = namespace.KvManager(capacity, BLOCK_SIZE, eviction=eviction)
    process, drain = manager.process, manager.drain_events
    for done, op in enumerate(ops, 1):
        process(op)
        if done % 64 == 0:
            drain()
    drain()


def repeated(run, times: int):
    """``run`` called ``times`` times in a row (one timed round)."""
    def rounds() -> None:
        for _ in range(times):
            run()
    return rounds


def block_keys(ops: Sequence) -> list[int]:
    """One int per block touched, in order: a full block's hash, a partial's uuid, a Promote's hash."""
    keys: list[int] = []
    for op in ops:
        if isinstance(op, Promote):
            keys.append(op.seq_hash)
        else:
            keys.extend(b.hash if isinstance(b, FullBlock) else b.uuid for b in op.blocks)
    return keys


def dict_floor(capacity: int, keys: Sequence[int]) -> None:
    """The access pattern on a bare dict: look each key up, add a missing one, drop the oldest past ``capacity``."""
    held: dict[int, None] = {}
    order: deque[int] = deque()
    for key in keys:
        if key not in held:
            held[key] = None
            order.append(key)
            if len(held) > capacity:
                del held[order.popleft()]


def model_prefix(capacity: int, ops: Sequence, budget: float, eviction: str) -> int:
    """How many operations the model replays within ``budget`` CPU seconds."""
    import kvspec.model

    manager = kvspec.model.KvManager(capacity, BLOCK_SIZE, eviction=eviction)
    started = time.process_time()
    done = 0
    for done, op in enumerate(ops, 1):
        manager.process(op)
        if done % 64 == 0:
            manager.drain_events()
        if time.process_time() - started > budget:
            break
    return done


def without_gc(run):
    """``run`` with the cyclic garbage collector paused (to separate its share of the time)."""
    def paused() -> None:
        gc.disable()
        try:
            run()
        finally:
            gc.enable()
    return paused


def timed_rounds(sides: dict, rounds: int) -> dict[str, list[float]]:
    """CPU seconds per round for each side (``name -> callable``), one warm-up each, rotating order."""
    names = list(sides)
    for name in names:
        sides[name]()
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            gc.collect()
            started = time.process_time()
            sides[name]()
            out[name].append(time.process_time() - started)
    return out


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


# -- callgrind -----------------------------------------------------------------------------

def _callgrind_child(argv: Sequence[str]) -> int:
    """``--callgrind-child FILE replay|load``: load pickled (capacity, eviction, ops, repeat); maybe replay."""
    import kvspec.impl

    path, mode = argv
    with open(path, "rb") as f:
        capacity, eviction, ops, repeat = pickle.load(f)
    if mode == "replay":
        for _ in range(repeat):
            replay(kvspec.impl, capacity, ops, eviction)
    return 0


#: the cache ``--cachegrind`` simulates (fixed, so the count does not depend on the host, and on
#: this shared machine on nobody else's load): 32 KiB I1, 48 KiB D1, 32 MiB last level, 64-byte lines
CACHE_MODEL = ("--I1=32768,8,64", "--D1=49152,12,64", "--LL=33554432,16,64")


def _valgrind_counts(tool: Sequence[str], path: str, labels: Sequence[str]) -> list[int] | None:
    """Run the child under valgrind ``tool`` for ``replay`` and ``load``; the replay's excess of each label."""
    counts = []
    for mode in ("replay", "load"):
        cmd = ["valgrind", *tool, sys.executable, "-m", "kvspec.bench.lifecycle", "--callgrind-child", path, mode]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=7200, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        found = {}
        for line in done.stderr.splitlines():
            for label in labels:
                if f" {label}:" in line and label not in found:
                    found[label] = int(line.split(":", 1)[1].split()[0].replace(",", ""))
        if len(found) != len(labels):
            return None
        counts.append([found[label] for label in labels])
    return [r - l for r, l in zip(*counts)]


def _pickled(capacity: int, ops: Sequence, eviction: str, tmp: str, repeat: int = 1) -> str:
    path = os.path.join(tmp, "ops.pickle")
    with open(path, "wb") as f:
        pickle.dump((capacity, eviction, list(ops), repeat), f)
    return path


def instructions_per_block(capacity: int, ops: Sequence, eviction: str) -> float | None:
    """(instructions of a run that replays - of a run that only loads) / blocks touched (callgrind)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = _pickled(capacity, ops, eviction, tmp)
        got = _valgrind_counts(["--tool=callgrind", "--callgrind-out-file=/dev/null"], path, ["Collected"])
    return None if got is None else got[0] / blocks_in(ops)


def cache_misses_per_block(capacity: int, ops: Sequence, eviction: str,
                           repeat: int = 1) -> tuple[float, float, float] | None:
    """Instructions, D1 misses and last-level misses per block touched, on :data:`CACHE_MODEL` (cachegrind;
    the replay runs ``repeat`` times, fresh managers, like one timed round).

    Instruction counts flat across sizes while the simulated misses per block grow is the
    measurement that says the growing time is the memory hierarchy, not more work per block.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = _pickled(capacity, ops, eviction, tmp, repeat)
        got = _valgrind_counts(["--tool=cachegrind", "--cache-sim=yes", "--cachegrind-out-file=/dev/null",
                                *CACHE_MODEL], path, ["I   refs", "D1  misses", "LL misses"])
    return None if got is None else tuple(count / (blocks_in(ops) * repeat) for count in got)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv if argv is not None else sys.argv[1:])
    if argv[:1] == ["--callgrind-child"]:
        return _callgrind_child(argv[1:])
    parser = argparse.ArgumentParser(prog="kvspec bench lifecycle", description=__doc__.splitlines()[0])
    parser.add_argument("--capacities", default="1000,10000,100000,1000000")
    parser.add_argument("--eviction", default="lineage", choices=sorted(BACKENDS))
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per capacity")
    parser.add_argument("--min-blocks", type=int, default=200_000,
                        help="blocks a timed round touches at least (small sizes replay several times)")
    parser.add_argument("--budget", type=float, default=10.0, help="CPU seconds the model may spend per capacity")
    parser.add_argument("--min-ops", type=int, default=200, help="fewest operations a ratio may rest on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="1k, 10k and 100k blocks, 2 rounds")
    parser.add_argument("--memory", action="store_true",
                        help="also measure retained memory of both sides on the same operations (slower)")
    parser.add_argument("--callgrind", action="store_true",
                        help="also count instructions per block with valgrind (slow: minutes per capacity)")
    parser.add_argument("--cachegrind", action="store_true",
                        help="also count instructions, D1 and last-level cache misses per block on a fixed "
                             "simulated cache (valgrind; slower still)")
    args = parser.parse_args(argv)
    if args.quick:
        args.capacities, args.rounds = "1000,10000,100000", 2
    import kvspec.impl
    import kvspec.model

    print(f"kvspec bench lifecycle: KvManager, eviction={args.eviction}, block size {BLOCK_SIZE}, "
          f"{args.rounds} rounds, model budget {args.budget:.0f} CPU s per capacity")
    print("impl us/block: process CPU time per block touched, median [min-max] over rounds; "
          "GC paused: the same replay with the cyclic GC disabled (interleaved); "
          "dict floor: the same keys on a bare dict of at most capacity ints")
    header = (f"{'capacity':>9} {'ops':>9} {'blocks':>10} {'impl us/block':>22} {'GC paused':>22} "
              f"{'dict floor':>19} {'model ops':>9} {'model/impl':>10}" + ("  instr/block" if args.callgrind else "")
              + ("  cachegrind instr / D1 miss / LL miss per block" if args.cachegrind else ""))
    print(header)
    print("-" * len(header))
    medians: dict[int, float] = {}
    paused_medians: dict[int, float] = {}
    floor_medians: dict[int, float] = {}
    for capacity in (int(c) for c in args.capacities.split(",")):
        ops = record_workload(capacity, seed=args.seed, eviction=args.eviction)
        blocks = blocks_in(ops)
        times_per_round = -(-args.min_blocks // blocks)
        keys = block_keys(ops)

        def run_impl(ops=ops, capacity=capacity) -> None:
            replay(kvspec.impl, capacity, ops, args.eviction)

        def run_floor(keys=keys, capacity=capacity) -> None:
            dict_floor(capacity, keys)

        times = timed_rounds({"impl": repeated(run_impl, times_per_round),
                              "no gc": without_gc(repeated(run_impl, times_per_round)),
                              "floor": repeated(run_floor, times_per_round)}, args.rounds)
        touched = blocks * times_per_round
        per_block, no_gc, floor = (Spread(tuple(t / touched for t in times[name]), args.rounds * touched)
                                   for name in ("impl", "no gc", "floor"))
        medians[capacity] = per_block.median
        paused_medians[capacity] = no_gc.median
        floor_medians[capacity] = floor.median
        done = model_prefix(capacity, ops, args.budget, args.eviction)
        prefix = ops[:done]
        prefix_blocks = blocks_in(prefix)
        why = ""
        value = None
        if done < args.min_ops:
            why = f"(model did {done} ops < {args.min_ops})"
        elif prefix_blocks < capacity:
            why = f"(model prefix touches {prefix_blocks:,} < {capacity:,} blocks: pool not yet full)"
        else:
            pair = timed_rounds({name: (lambda ns=ns, prefix=prefix: replay(ns, capacity, prefix, args.eviction))
                                 for name, ns in (("model", kvspec.model), ("impl", kvspec.impl))},
                                args.rounds)
            value = ratio(Spread(tuple(pair["model"]), args.rounds * done),
                          Spread(tuple(pair["impl"]), args.rounds * done), args.min_ops)
        instr = ""
        if args.callgrind:
            count = instructions_per_block(capacity, ops, args.eviction)
            instr = f"  {'n/a' if count is None else f'{count:,.0f}'}"
        if args.cachegrind:
            sim = cache_misses_per_block(capacity, ops, args.eviction, times_per_round)
            instr += "  n/a" if sim is None else f"  {sim[0]:,.0f} / {sim[1]:.1f} / {sim[2]:.1f}"
        print(f"{capacity:>9} {len(ops):>9,} {blocks:>10,} {fmt_us(per_block):>22} {fmt_us(no_gc):>22} "
              f"{fmt_us(floor):>19} {done:>9,} {fmt_ratio(value, 10)}{instr} {why}", flush=True)
        if args.memory:
            model_bytes = retained_bytes(kvspec.model, capacity, prefix, args.eviction)
            impl_bytes = retained_bytes(kvspec.impl, capacity, prefix, args.eviction)
            print(f"{'':>9} memory on the same {done} ops: model {model_bytes / 2**20:.1f} MiB, "
                  f"impl {impl_bytes / 2**20:.1f} MiB ({model_bytes / impl_bytes:.2f}x)", flush=True)
        del ops, prefix, keys
    if len(medians) > 1:
        small, large = min(medians), max(medians)
        print(f"per-block time, {large:,} / {small:,} blocks: impl {medians[large] / medians[small]:.2f}x "
              f"(+{(medians[large] - medians[small]) * 1e6:.2f} us); GC paused "
              f"{paused_medians[large] / paused_medians[small]:.2f}x "
              f"(+{(paused_medians[large] - paused_medians[small]) * 1e6:.2f} us); dict floor "
              f"{floor_medians[large] / floor_medians[small]:.2f}x "
              f"(+{(floor_medians[large] - floor_medians[small]) * 1e6:.2f} us)")
        low, high = min(medians, key=medians.get), max(medians, key=medians.get)
        print(f"impl per-block time spread: {medians[high] / medians[low]:.2f}x "
              f"(slowest {high:,} blocks / fastest {low:,} blocks)")
    print("model/impl: model CPU seconds / impl CPU seconds over the same prefix of operations "
          "(higher = impl faster)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
