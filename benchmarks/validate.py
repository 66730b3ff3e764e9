"""``kvspec bench validate``: ``kvspec validate`` on large recorded-like streams, both formats.

A worker with a bounded cache (``--capacity`` blocks) serves requests of shared-prefix chains:
stores of new blocks and removes of evicted ones, with event ids, so the stream is clean and the
validator reads every event.  Reported per size: events/s and the peak memory the validator
allocates (``tracemalloc``) — the ratio between two sizes shows that memory follows the cache, not
the stream.  Ratios from one run; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import tracemalloc
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from kvspec.validate import validate_file


def write_stream(path: Path, events: int, fmt: str, capacity: int, seed: int = 0) -> None:
    """A clean stream of ``events`` events from an LRU cache of ``capacity`` blocks."""
    import msgpack

    rng = random.Random(seed)
    held: OrderedDict[int, None] = OrderedDict()
    next_hash = 1
    written = 0
    recent: list[int] = []  # the newest chain ends still held: parents of the next chains
    with path.open("wb") as out:
        while written < events:
            parent = rng.choice(recent) if recent and rng.random() < 0.7 else None
            chain = list(range(next_hash, next_hash + rng.randint(1, 4)))
            next_hash += len(chain)
            evict = max(0, len(held) + len(chain) - capacity)
            victims = []
            for h in held:  # oldest first; stop as soon as enough are found (O(evict))
                if len(victims) == evict:
                    break
                if h != parent:
                    victims.append(h)
            batch = []
            for h in victims:
                del held[h]
                batch.append(("removed", None, [h]))
            batch.append(("stored", parent, chain))
            for h in chain:
                held[h] = None
            recent = [h for h in recent[-7:] if h in held] + [chain[-1]]
            for kind, p, hashes in batch:
                if fmt == "dynamo":
                    data = ({"removed": {"block_hashes": hashes}} if kind == "removed" else
                            {"stored": {"parent_hash": p, "blocks": [{"block_hash": h, "tokens_hash": 1} for h in hashes]}})
                    out.write(json.dumps({"worker_id": 1, "event": {"event_id": written, "data": data}}).encode() + b"\n")
                else:
                    ev = ({"type": "BlockRemoved", "block_hashes": hashes, "medium": "GPU"} if kind == "removed" else
                          {"type": "BlockStored", "block_hashes": hashes, "parent_block_hash": p, "token_ids": [],
                           "block_size": 16, "medium": "GPU"})
                    payload = msgpack.packb([time.time(), [ev], 0])
                    out.write(msgpack.packb([b"", written.to_bytes(8, "big"), payload]))
                written += 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kvspec bench validate")
    parser.add_argument("--events", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--capacity", type=int, default=4096)
    parser.add_argument("--format", choices=["dynamo", "zmq"], nargs="+", default=["dynamo", "zmq"])
    args = parser.parse_args(argv)
    print(f"{'format':8} {'events':>10} {'MB':>7} {'seconds':>8} {'events/s':>10} {'peak MiB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.format:
            for n in args.events:
                path = Path(tmp) / f"s.{fmt}"
                write_stream(path, n, fmt, args.capacity)
                start = time.perf_counter()
                count, violation, _ = validate_file(str(path))
                seconds = time.perf_counter() - start
                assert violation is None, violation
                tracemalloc.start()
                validate_file(str(path))
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                print(f"{fmt:8} {count:>10,} {path.stat().st_size / 1e6:>7.0f} {seconds:>8.1f} "
                      f"{count / seconds:>10,.0f} {peak / 2**20:>9.1f}", flush=True)
    return 0
