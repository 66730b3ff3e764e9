"""``kvspec bench indexing``: impl ``RadixIndex`` vs Dynamo's ``RadixTree`` (and the model) on one workload.

Workload (deterministic for a seed): ``workers`` workers (dp rank 0) each store whole request
chains — one of 32 shared "system prompt" chains (4-64 blocks) followed by a private suffix (1-128
blocks) — as ``Stored`` events of up to 32 blocks, each anchored to the previous one, until
``blocks`` (worker, block) pairs are held in total (a prompt a worker already holds adds nothing).  External hashes are the chained sequence
hashes of the local hashes (consistent across workers, as Dynamo's router assumes).  One chain in
ten then loses a suffix (``Removed``, leaf first).  Three query sets of 64-block queries:

* **hit** — the first 64 blocks of a stored chain its worker still holds whole (the other
  workers match the shared prompt part);
* **shared** — a shared prompt followed by fresh blocks up to 64;
* **miss** — 64 fresh blocks.

Method: every side gets the same pre-built events and queries (Dynamo gets the JSON bytes its
binding parses, pre-serialised, so encoding is not charged to it; its queries read ``.scores``).
Apply: each round builds a fresh index per side from all events, sides interleaved, rounds
repeated — at least ``--apply-rounds`` (5) and at least ``--apply-events`` (50,000) events per side,
so a small workload is built more often (123 builds of 409 events at 10^4 blocks); reported per
event, median [min-max] over the builds.  Dropping the previous build of a side is timed apart and printed
as *teardown* (per event of the build dropped): an index whose nodes form reference cycles is
not freed when dropped but left to a later full collection, which no timed build would pay for,
so teardown is kept out of apply on every side and shown on its own.  Queries: one untimed warm-up pass per side, then rounds in which
every side answers the whole set, in an order rotating per round; reported per query as
``median [min-max]`` over the rounds.  A ratio is the quotient of medians and is printed only
when both sides rest on at least ``--min-ops`` operations.  The model is slow by design: it
answers the first queries of each set that fit its time budget.  When Dynamo is installed the
process is pinned to one CPU (as ``taskset -c 0``) unless ``--no-pin``: Dynamo's binding hands
each call to a second thread, and pinned it stays in its fast mode — the comparison most
favourable to Dynamo.

Memory (unless ``--no-memory``): tracemalloc is started *before* the workload's hash integers are
created; the events are applied to a fresh index, then the events and queries are deleted and
the garbage collected, so what is still traced is everything the index retains, hash integers
included.  Dynamo's tree lives in Rust: its figure is the process's RSS growth while applying
the pre-serialised events (approximate).  Figures are per (worker, block) pair held.

Floor: a fourth apply side that is not an index (:class:`FloorIndex`): the argument checks every
index runs as written (the acyclic-batch rule's set of names included), then one dict store per
stored block (its local hash as the value) and one pop per removed block, in a map per worker.
An index that finds blocks by hash — removal names them by hash — does about that much in
Python; it can get under the floor only by deciding a check with less work (the implementation's
trie decides the acyclic-batch rule by filing the chain, without the set), so where the floor
is near Dynamo's time, little is left for any index structure.

GC share: one more impl build from the same events, with the time the cyclic garbage collector
spends in its collections (``gc.callbacks``, CPU time) summed and divided by the build's time —
the share of apply that is GC, with the other sides' indexes and the events alive, as in the
timed builds.

``--callgrind`` adds instruction counts per query (valgrind, noise-free, one size).  A benchmark
prints numbers; it never asserts on time.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import subprocess
import sys
import tracemalloc
from collections.abc import Sequence

from kvspec import checks
from kvspec.bench.measure import Spread, fmt_ratio, fmt_us, interleaved, pin_to_one_core, ratio
from kvspec.events import KvCacheEvent, Removed, Stored, StoredBlock
from kvspec.hashing import sequence_hashes

CHUNK = 32
QUERY_LENGTH = 64
QUERY_SETS = ("hit", "shared", "miss")


def build_workload(total_blocks: int, workers: int, *, seed: int = 0, queries: int = 500):
    """Return ``(events, query_sets)``: events are ``(worker_id, KvCacheEvent)``; query sets map
    ``hit`` / ``shared`` / ``miss`` to lists of 64-block local-hash lists (see module docs)."""
    rng = random.Random(seed)

    def fresh(n: int) -> list[int]:
        return [rng.getrandbits(64) for _ in range(n)]

    prompts = [fresh(rng.randint(4, 64)) for _ in range(32)]
    events: list[tuple[int, KvCacheEvent]] = []
    ids = [0] * workers
    whole: list[list[int]] = []  # chains of >= 64 blocks still held whole by their worker
    held: list[set[int]] = [set() for _ in range(workers)]  # external hashes each worker holds
    pairs = 0
    while pairs < total_blocks:
        worker = rng.randrange(workers)
        local = rng.choice(prompts) + fresh(rng.randint(1, 128))
        seq = sequence_hashes(local)
        parent = None
        for start in range(0, len(local), CHUNK):
            blocks = [StoredBlock(e, h) for e, h in zip(seq[start:start + CHUNK], local[start:start + CHUNK])]
            events.append((worker, KvCacheEvent(ids[worker], Stored(parent, blocks))))
            ids[worker] += 1
            parent = blocks[-1].block_hash
        cut = len(local)
        if rng.random() < 0.1:
            cut = rng.randrange(1, len(local))
            events.append((worker, KvCacheEvent(ids[worker], Removed(seq[cut:][::-1]))))
            ids[worker] += 1
        pairs -= len(held[worker])
        held[worker].update(seq[:cut])
        held[worker].difference_update(seq[cut:])
        pairs += len(held[worker])
        if cut >= QUERY_LENGTH:
            whole.append(local[:QUERY_LENGTH])
    sets = {
        "hit": [rng.choice(whole) for _ in range(queries)] if whole else [],
        "shared": [],
        "miss": [fresh(QUERY_LENGTH) for _ in range(queries)],
    }
    for _ in range(queries):
        prompt = rng.choice(prompts)
        sets["shared"].append(prompt + fresh(QUERY_LENGTH - len(prompt)))
    return events, sets


# -- sides ---------------------------------------------------------------------------------

def _dynamo_tree_class():
    try:
        from kvspec.adapters.dynamo.runtime import engine_version, import_core

        return import_core().RadixTree, engine_version()
    except Exception as exc:  # noqa: BLE001 - optional engine
        print(f"(Dynamo's RadixTree not importable: {type(exc).__name__}: {exc}; pip install 'kvspec[dynamo]')")
        return None, None


class FloorIndex:
    """The floor of ``apply`` (module docs): checks, then one dict operation per named block.  Not
    an index (it answers no query); O(k) per event."""

    def __init__(self) -> None:
        self.held: dict[tuple[int, int], dict[int, int]] = {}

    def apply_event(self, worker_id: int, event: KvCacheEvent) -> None:
        names = checks.device_event(worker_id, event, KvCacheEvent)
        worker = (worker_id, event.dp_rank)
        blocks = self.held.get(worker)
        if blocks is None:
            blocks = self.held[worker] = {}
        data = event.data
        if names is not None:
            blocks.update(zip(names, map(_tokens_hash, data.blocks)))
        elif isinstance(data, Removed):
            for name in data.block_hashes:
                blocks.pop(name, None)
        else:
            blocks.clear()


def _tokens_hash(block: StoredBlock) -> int:
    return block.tokens_hash


def _apply_batch(cls, events, keep: list):
    def batch() -> int:
        index = cls()
        apply = index.apply_event
        for worker, event in events:
            apply(worker, event)
        keep[:] = [index]
        return len(events)
    return batch


def timed_builds(sides: dict, kept: dict, rounds: int) -> tuple[dict[str, Spread], dict[str, Spread]]:
    """Apply timing: ``rounds`` fresh builds per side, sides in an order rotating per round, each
    build timed (CPU time) per event; dropping the previous build of a side is timed apart
    (``teardown``, per event), so apply is the events' cost alone on every side.  Returns
    ``(apply, teardown)`` spreads."""
    import time

    names = list(sides)
    builds: dict[str, list[float]] = {name: [] for name in names}
    drops: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            batch, n = sides[name]
            started = time.process_time()
            kept[name].clear()  # the previous build, freed here: teardown, not apply
            drops[name].append((time.process_time() - started) / n)
            started = time.process_time()
            batch()
            builds[name].append((time.process_time() - started) / n)
    spreads = {name: Spread(tuple(builds[name]), rounds * sides[name][1]) for name in names}
    # the first round frees nothing: teardown rests on the later rounds
    teardown = {name: Spread(tuple(drops[name][1:]) or (0.0,), (rounds - 1) * sides[name][1]) for name in names}
    return spreads, teardown


def _query_batch(index, queries):
    find = index.find_matches

    def batch() -> int:
        for query in queries:
            find(query)
        return len(queries)
    return batch


def _dynamo_query_batch(tree, queries):
    find = tree.find_matches

    def batch() -> int:
        for query in queries:
            find(query, False).scores  # noqa: B018 - reading the scores is part of a query
        return len(queries)
    return batch


def _impl_class(path: str | None):
    """``kvspec.impl.RadixIndex``, or ``RadixIndex`` from the module file ``path``."""
    if path is None:
        import kvspec.impl

        return kvspec.impl.RadixIndex
    import importlib.util

    spec = importlib.util.spec_from_file_location("kvspec_bench_impl", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(f"impl: RadixIndex from {path}")
    return module.RadixIndex


def _pairs(model) -> int:
    return sum(len(blocks) for blocks in model._held.values())


def gc_share(cls, events) -> tuple[float, list[int]]:
    """One more build of ``cls`` from ``events`` with the cyclic GC's own CPU time measured
    (``gc.callbacks``): ``(share of the build spent in collections, collections per generation)``."""
    import time

    spent, counts, started = [0.0], [0, 0, 0], [0.0]

    def watch(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.process_time()
        else:
            spent[0] += time.process_time() - started[0]
            counts[info["generation"]] += 1

    gc.callbacks.append(watch)
    try:
        began = time.process_time()
        index = cls()
        apply = index.apply_event
        for worker, event in events:
            apply(worker, event)
        total = time.process_time() - began
    finally:
        gc.callbacks.remove(watch)
    del index
    return spent[0] / total if total else 0.0, counts


# -- holes ----------------------------------------------------------------------------------

def hole_events(below: int, workers: int, seed: int = 1):
    """Events building one chain of ``below + 2`` blocks held by ``workers`` workers, and the
    Removed / Stored pair that opens and refills a hole at its second block (``below`` held
    blocks under it)."""
    rng = random.Random(seed)
    local = [rng.getrandbits(64) for _ in range(below + 2)]
    seq = sequence_hashes(local)
    build = []
    for worker in range(workers):
        parent = None
        for start in range(0, len(local), CHUNK):
            blocks = [StoredBlock(e, h) for e, h in zip(seq[start:start + CHUNK], local[start:start + CHUNK])]
            build.append((worker, KvCacheEvent(0, Stored(parent, blocks))))
            parent = blocks[-1].block_hash
    remove = KvCacheEvent(0, Removed([seq[1]]))
    refill = KvCacheEvent(0, Stored(seq[0], [StoredBlock(seq[1], local[1])]))
    return build, remove, refill


def hole_table(sizes: Sequence[int], workers: Sequence[int], rounds: int, dynamo_cls, impl_cls) -> None:
    """Cost of opening and refilling a hole above ``n`` held blocks (remove + re-store, per pair)."""
    import kvspec.impl
    import kvspec.model

    print("\n  interior hole: remove one block with N held blocks below it, then store it again "
          "(us per remove+refill pair, median [min-max])")
    for n in sizes:
        for w in workers:
            build, remove, refill = hole_events(n, w)
            sides = {}
            for name, cls, payload in (("impl", impl_cls, None), ("model", kvspec.model.RadixIndex, None),
                                       ("Dynamo", dynamo_cls, "json")):
                if cls is None:
                    continue
                index = cls()
                if payload:
                    for worker, event in build:
                        index.apply_event(worker, event.to_json().encode())
                    pair = (remove.to_json().encode(), refill.to_json().encode())
                else:
                    for worker, event in build:
                        index.apply_event(worker, event)
                    pair = (remove, refill)

                def batch(index=index, pair=pair) -> int:
                    for _ in range(50):
                        index.apply_event(0, pair[0])
                        index.apply_event(0, pair[1])
                    return 50
                sides[name] = (batch, 50)
            spreads = interleaved(sides, rounds)
            print(f"    N={n:>6,}, {w:>2} workers holding the chain: "
                  + ", ".join(f"{name} {fmt_us(spread)}" for name, spread in spreads.items()), flush=True)


# -- memory --------------------------------------------------------------------------------

def retained_bytes(cls, total: int, workers: int, seed: int) -> tuple[int, int]:
    """(bytes the index retains, pairs held), tracing from before the workload exists (module docs)."""
    import kvspec.model

    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    events, sets = build_workload(total, workers, seed=seed)
    index = cls()
    for worker, event in events:
        index.apply_event(worker, event)
    pairs = None
    if cls is kvspec.model.RadixIndex:
        pairs = _pairs(index)
    del events, sets
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del index
    return current - base, pairs or 0


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def dynamo_rss_bytes(tree_cls, payloads) -> int | None:
    """RSS growth while a fresh Dynamo tree applies ``payloads`` (approximate; Linux only)."""
    try:
        gc.collect()
        before = _rss()
        tree = tree_cls()
        for worker, payload in payloads:
            tree.apply_event(worker, payload)
        after = _rss()
        del tree
        return after - before
    except OSError:
        return None


# -- callgrind -----------------------------------------------------------------------------

def _callgrind_child(argv: Sequence[str]) -> int:
    """``--callgrind-child SIDE BLOCKS SET N WORKERS SEED``: build, then answer N queries."""
    side, total, name, n, workers, seed = argv
    events, sets = build_workload(int(total), int(workers), seed=int(seed))
    queries = sets[name][: int(n)]
    if side == "dynamo":
        from kvspec.adapters.dynamo.runtime import import_core

        index = import_core().RadixTree()
        for worker, event in events:
            index.apply_event(worker, event.to_json().encode())
        for query in queries:
            index.find_matches(query, False).scores  # noqa: B018
    else:
        import kvspec.impl

        index = kvspec.impl.RadixIndex()
        for worker, event in events:
            index.apply_event(worker, event)
        for query in queries:
            index.find_matches(query)
    return 0


def _instructions(args: list[str]) -> int | None:
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
           "-m", "kvspec.bench.indexing", "--callgrind-child", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split(":")[-1].strip())
    return None


def callgrind_table(total: int, workers: int, seed: int, n: int, sides: Sequence[str]) -> None:
    """Instructions per query: (run with n queries - run with none) / n, per side and query set."""
    print(f"\ninstructions per query (valgrind callgrind, {total:,} blocks, {n} queries per set, "
          "difference of two runs)")
    base = {side: _instructions([side, str(total), QUERY_SETS[0], "0", str(workers), str(seed)]) for side in sides}
    for name in QUERY_SETS:
        row = []
        for side in sides:
            full = _instructions([side, str(total), name, str(n), str(workers), str(seed)])
            empty = base[side]
            row.append(f"{side} {'n/a' if full is None or empty is None else f'{(full - empty) / n:,.0f}'}")
        print(f"  {name:>6}: " + ", ".join(row), flush=True)


# -- main ----------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv if argv is not None else sys.argv[1:])
    if argv[:1] == ["--callgrind-child"]:
        return _callgrind_child(argv[1:])
    parser = argparse.ArgumentParser(prog="kvspec bench indexing", description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", default="10000,100000,1000000", help="held pairs, summed over workers")
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--queries", type=int, default=500, help="queries per set")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per query set")
    parser.add_argument("--apply-rounds", type=int, default=5, help="fewest fresh builds per side for the apply figure")
    parser.add_argument("--apply-events", type=int, default=50_000,
                        help="fewest events per side for the apply figure: small sizes get more builds")
    parser.add_argument("--model-budget", type=float, default=3.0, help="seconds the model may spend per query set")
    parser.add_argument("--model-max", type=int, default=100_000,
                        help="largest size at which the model answers queries (its query is O(pairs held))")
    parser.add_argument("--min-ops", type=int, default=200, help="fewest operations a ratio may rest on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin to when Dynamo is installed")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    parser.add_argument("--no-memory", action="store_true", help="skip the retained-memory pass")
    parser.add_argument("--memory", action="store_true", help="(default) measure retained memory per pair")
    parser.add_argument("--quick", action="store_true", help="10k and 100k blocks, fewer queries and rounds")
    parser.add_argument("--callgrind", type=int, nargs="?", const=10000, default=None, metavar="BLOCKS",
                        help="also count instructions per query with valgrind at BLOCKS (default 10000)")
    parser.add_argument("--impl-file", help=argparse.SUPPRESS)  # an older impl module, for before/after runs
    args = parser.parse_args(argv)
    impl_cls = _impl_class(args.impl_file)
    if args.quick:
        args.blocks, args.queries, args.rounds, args.apply_rounds, args.apply_events = "10000,100000", 200, 5, 2, 10_000
    import kvspec.impl
    import kvspec.model

    dynamo_cls, dynamo_version = _dynamo_tree_class()
    pinned = pin_to_one_core(None if args.no_pin or dynamo_cls is None else args.cpu)
    print(f"kvspec bench indexing: RadixIndex, {args.workers} workers, {QUERY_LENGTH}-block queries, "
          f"{args.queries} per set, {args.rounds} rounds, events of up to {CHUNK} blocks")
    if dynamo_cls is not None:
        print(f"Dynamo {dynamo_version} dynamo._core.RadixTree; process {pinned}: Dynamo's binding runs "
              "each call on a second thread, and pinned it stays in its fast mode, the comparison most "
              "favourable to Dynamo")
    print("times: process CPU time (all threads), median [min-max] over rounds (model: over single "
          "queries, up to --model-max blocks); ratio = quotient of medians, '-' when a side rests on "
          f"fewer than {args.min_ops} operations (count in brackets)")
    apply_rows = []
    for total in (int(b) for b in args.blocks.split(",")):
        events, sets = build_workload(total, args.workers, seed=args.seed, queries=args.queries)
        payloads = [(w, e.to_json().encode()) for w, e in events]
        kept = {"impl": [], "model": [], "dynamo": [], "floor": []}
        sides = {
            "impl": (_apply_batch(impl_cls, events, kept["impl"]), len(events)),
            "model": (_apply_batch(kvspec.model.RadixIndex, events, kept["model"]), len(events)),
            "floor": (_apply_batch(FloorIndex, events, kept["floor"]), len(events)),
        }
        if dynamo_cls is not None:
            sides["dynamo"] = (_apply_batch(dynamo_cls, payloads, kept["dynamo"]), len(events))
        builds = max(args.apply_rounds, -(-args.apply_events // len(events)))
        applied, teardown = timed_builds(sides, kept, builds)
        impl, model = kept["impl"][0], kept["model"][0]
        pairs = _pairs(model)
        print(f"\n{total:,} blocks: {len(events):,} events, {pairs:,} (worker, block) pairs held")
        print(f"  apply per event, us: impl {fmt_us(applied['impl'])}, model {fmt_us(applied['model'])}"
              + (f", Dynamo {fmt_us(applied['dynamo'])}" if "dynamo" in applied else "")
              + f"  ({builds} builds x {len(events):,} events per side)")
        print(f"  apply floor (checks + one dict store per block, module docs), us: {fmt_us(applied['floor'])}"
              + (f"; floor/Dynamo {applied['floor'].median / applied['dynamo'].median:.2f}" if "dynamo" in applied else ""))
        print(f"  teardown (dropping a built index) per event, us: impl {fmt_us(teardown['impl'])}, "
              f"model {fmt_us(teardown['model'])}"
              + (f", Dynamo {fmt_us(teardown['dynamo'])}" if "dynamo" in teardown else ""))
        apply_rows.append((total, applied))
        share, counts = gc_share(impl_cls, events)
        print(f"  cyclic GC during one more impl build: {share:.1%} of its apply time "
              f"(collections per generation {counts[0]}/{counts[1]}/{counts[2]})")
        header = f"  {'set':>6}  {'impl us':>22}  {'Dynamo us':>22}  {'Dyn/impl':>8}  {'model us':>22}  {'model/impl':>10}"
        print(header)
        for name in QUERY_SETS:
            queries = sets[name]
            if not queries:
                print(f"  {name:>6}  (no queries of this kind in the workload)")
                continue
            sides = {"impl": (_query_batch(impl, queries), len(queries))}
            if dynamo_cls is not None:
                sides["dynamo"] = (_dynamo_query_batch(kept["dynamo"][0], queries), len(queries))
            spreads = interleaved(sides, args.rounds)
            model_spread = _model_spread(model, queries, args.model_budget) if total <= args.model_max else None
            d_i = ratio(spreads.get("dynamo"), spreads["impl"], args.min_ops)
            m_i = ratio(model_spread, spreads["impl"], args.min_ops)
            model_text = fmt_us(model_spread) if model_spread else "-"
            print(f"  {name:>6}  {fmt_us(spreads['impl']):>22}  {fmt_us(spreads.get('dynamo')):>22}  "
                  f"{fmt_ratio(d_i, 8)}  {model_text:>22}  {fmt_ratio(m_i, 10)}"
                  f"  (impl {spreads['impl'].ops:,}"
                  + (f", Dynamo {spreads['dynamo'].ops:,}" if "dynamo" in spreads else "")
                  + f", model {model_spread.ops if model_spread else 0:,} queries)", flush=True)
        del kept, impl, model, sides
        if not args.no_memory:
            gc.collect()
            model_bytes, held = retained_bytes(kvspec.model.RadixIndex, total, args.workers, args.seed)
            impl_bytes, _ = retained_bytes(impl_cls, total, args.workers, args.seed)
            dyn = dynamo_rss_bytes(dynamo_cls, payloads) if dynamo_cls is not None else None
            dyn_text = f", Dynamo ~{dyn / held:.0f} B (RSS growth)" if dyn is not None and held else ""
            print(f"  memory per pair: model {model_bytes / held:.0f} B, impl {impl_bytes / held:.0f} B "
                  f"(impl/model {impl_bytes / model_bytes:.2f}x){dyn_text}; everything retained, "
                  "hash ints included", flush=True)
        del events, sets, payloads
        gc.collect()
    hole_table((100, 1000, 10000), (1, 64), 3 if args.quick else 5, dynamo_cls, impl_cls)
    if args.callgrind:
        callgrind_table(args.callgrind, args.workers, args.seed, 200,
                        ["impl"] + (["dynamo"] if dynamo_cls is not None else []))
    print("\nDyn/impl: Dynamo median / impl median (above 1 = impl faster); model/impl likewise.")
    return 0


def _model_spread(model, queries, budget: float) -> Spread | None:
    """Time the model (CPU time) on the first queries that fit ``budget`` seconds, after a warm-up;
    its spread is over single queries, not rounds."""
    import time

    find = model.find_matches
    started = time.process_time()
    find(queries[0])
    first = time.process_time() - started
    n = max(1, min(len(queries), int(budget / max(first, 1e-9))))
    times = []
    for query in queries[:n]:
        t0 = time.process_time()
        find(query)
        times.append(time.process_time() - t0)
    return Spread(tuple(times), n)


if __name__ == "__main__":
    raise SystemExit(main())
