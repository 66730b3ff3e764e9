"""``kvspec bench validate``: ``kvspec validate`` on large recorded-like streams, every format.

One seeded workload — a worker with a bounded cache (``--capacity`` blocks) serving requests of
shared-prefix chains: stores of new blocks under a held parent, removes of evicted ones, one event
per record — is written in each supported format:

* ``dynamo``: Dynamo ``RouterEvent`` JSON lines (``tokens_hash`` per block, as Dynamo writes);
* ``vllm``: ZMQ frames ``[topic, seq, payload]``, events as maps tagged ``type`` with vLLM 0.33's
  fields (token ids, ``lora_name``, ``extra_keys``, ``group_idx``, ...);
* ``sglang``: the same frames as SGLang publishes them: signed int64 hashes, no dp rank;
* ``zmq-arrays``: frames whose events are tagged arrays (msgspec ``array_like`` structs);
* ``zmq-bare``: bare ``[ts, events, dp_rank]`` payloads, no frames.

Each file is validated in a fresh process, as ``kvspec validate FILE`` runs: the table gives the
validation's wall and CPU seconds and events/s (imports excluded; on a shared machine the CPU
seconds are the steadier figure), the whole process's wall seconds (start-up and imports
included) and its **peak RSS** (the operating system's account of the finished child), whether the
fast path decided (``fast``), and at the smaller sizes the typed reference path's events/s (in a
process of its own; its verdict, window and witness must equal the fast path's) and the speed-up
over it.  Memory follows the blocks held, not the stream: the peak RSS at 10^6 events over that at
10^5 is printed per format, next to the floor (the same process on an empty file).
``--violation`` rows end the largest stream with a remove of a block never stored: the time then
includes the witness.  Figures from one run; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec

__all__ = ["FORMATS", "main", "workload", "write_stream"]

FORMATS = ("dynamo", "vllm", "sglang", "zmq-arrays", "zmq-bare")
BLOCK_SIZE = 16
_MASK = (1 << 64) - 1

#: (kind, parent, hashes): kind "stored" or "removed"
Op = tuple[str, "int | None", list[int]]


def _hash(n: int) -> int:
    """A u64 block hash spread over the whole range (splitmix64 of ``n``), as real hashes are."""
    z = (n * 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def workload(events: int, capacity: int, seed: int = 0) -> Iterator[Op]:
    """A clean stream of exactly ``events`` events from an LRU cache of ``capacity`` blocks."""
    rng = random.Random(seed)
    held: OrderedDict[int, None] = OrderedDict()
    next_block = 1
    written = 0
    recent: list[int] = []  # the newest chain ends still held: parents of the next chains
    while written < events:
        parent = rng.choice(recent) if recent and rng.random() < 0.7 else None
        chain = [_hash(n) for n in range(next_block, next_block + rng.randint(1, 4))]
        next_block += len(chain)
        victims = []
        for h in held:  # oldest first; stop as soon as enough are found (O(evicted))
            if len(victims) == max(0, len(held) + len(chain) - capacity):
                break
            if h != parent:
                victims.append(h)
        for h in victims:
            if written == events:
                return
            del held[h]
            yield ("removed", None, [h])
            written += 1
        if written == events:
            return
        yield ("stored", parent, chain)
        written += 1
        for h in chain:
            held[h] = None
        recent = [h for h in recent[-7:] if h in held] + [chain[-1]]


def _signed(h: int) -> int:
    return h - (1 << 64) if h >= 1 << 63 else h


def _record(fmt: str, seq: int, op: Op, rng: random.Random) -> bytes:
    kind, parent, hashes = op
    if fmt == "dynamo":
        data = ({"removed": {"block_hashes": hashes}} if kind == "removed" else
                {"stored": {"parent_hash": parent,
                            "blocks": [{"block_hash": h, "tokens_hash": h ^ 1} for h in hashes]}})
        return msgspec.json.encode({"worker_id": 1, "storage_tier": "device",
                                    "event": {"event_id": seq, "data": data, "dp_rank": 0}}) + b"\n"
    tokens = [rng.randrange(32_000) for _ in range(BLOCK_SIZE * len(hashes))] if kind == "stored" else []
    if fmt == "sglang":
        hashes = [_signed(h) for h in hashes]
        parent = None if parent is None else _signed(parent)
    if fmt == "zmq-arrays":
        event: object = (["BlockRemoved", hashes, "GPU"] if kind == "removed" else
                         ["BlockStored", hashes, parent, tokens, BLOCK_SIZE, None, "GPU"])
    elif kind == "removed":
        event = {"type": "BlockRemoved", "block_hashes": hashes, "medium": "GPU"}
        if fmt != "sglang":
            event["group_idx"] = 0
    else:
        event = {"type": "BlockStored", "block_hashes": hashes, "parent_block_hash": parent, "token_ids": tokens,
                 "block_size": BLOCK_SIZE, "lora_id": None, "medium": "GPU"}
        if fmt != "sglang":
            event.update(lora_name=None, extra_keys=[None] * len(hashes), group_idx=0,
                         kv_cache_spec_kind="full_attention")
    payload = [1.8e9 + seq / 1e3, [event], None if fmt == "sglang" else 0]
    if fmt == "zmq-bare":
        return msgspec.msgpack.encode(payload)
    return msgspec.msgpack.encode([b"kv-events", seq.to_bytes(8, "big"), msgspec.msgpack.encode(payload)])


def write_stream(path: Path, fmt: str, events: int, capacity: int, violation: bool = False) -> None:
    """``events`` events of the workload in ``fmt`` (plus, with ``violation``, a remove of a block
    never stored)."""
    rng = random.Random(1)
    with path.open("wb") as out:
        seq = 0
        for seq, op in enumerate(workload(events, capacity)):
            out.write(_record(fmt, seq, op, rng))
        if violation:
            out.write(_record(fmt, seq + 1, ("removed", None, [_hash(0)]), rng))


_CHILD = """
import json, sys, time
from kvspec.validate.files import scan, witness_of
path, fast, compare = sys.argv[1], sys.argv[2] != "reference", sys.argv[3] == "1"
start, cpu = time.perf_counter(), time.process_time()
found = scan(path, fast=fast)
witness = witness_of(found)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
digest = None
if compare:  # event by event: no string of the whole window at once (it would count in the peak RSS)
    import hashlib
    h = hashlib.sha256(repr((found.events, found.violation, witness)).encode())
    for e in found.window:
        h.update(repr(e).encode())
    digest = h.hexdigest()
print(json.dumps({"events": found.events, "fast": found.fast, "seconds": seconds, "cpu": cpu, "digest": digest,
                  "violation": None if found.violation is None else found.violation.kind,
                  "witness": len(witness)}))
"""


def measure(path: Path, path_taken: str = "fast", compare: bool = False) -> dict:
    """Validate ``path`` in a fresh process (``path_taken``: ``fast``, or ``reference`` for the
    typed reference path alone; ``compare``: also a digest of the outcome, after the figures are
    taken): its figures, wall seconds and peak RSS (MiB)."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), path_taken, "1" if compare else "0"],
                             stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"validation of {path} failed (exit {child.returncode})")
    figures = json.loads(out)
    figures.update(wall=wall, rss=usage.ru_maxrss / 1024)  # ru_maxrss: KiB on Linux
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kvspec bench validate")
    parser.add_argument("--events", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--capacity", type=int, default=4096, help="blocks the simulated worker holds")
    parser.add_argument("--format", choices=FORMATS, nargs="+", default=list(FORMATS))
    parser.add_argument("--reference-up-to", type=int, default=100_000, metavar="N",
                        help="also time the typed reference path on streams of at most N events")
    parser.add_argument("--violation", choices=FORMATS, nargs="*", default=["dynamo", "vllm"],
                        help="formats whose largest stream also gets a row ending in a violation")
    args = parser.parse_args(argv)
    sizes = sorted(args.events)
    print(f"{'format':17} {'events':>10} {'MB':>5} {'fast':>5} {'seconds':>8} {'cpu s':>6} {'events/s':>10} "
          f"{'process s':>9} {'peak RSS MiB':>12} {'reference ev/s':>14} {'speed-up':>8}", flush=True)
    peaks: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        floor_path = Path(tmp) / "empty"
        floor_path.write_bytes(b"")
        floor = measure(floor_path)["rss"]
        runs = [(fmt, n, False) for fmt in args.format for n in sizes]
        runs += [(fmt, sizes[-1], True) for fmt in args.violation if fmt in args.format]
        for fmt, n, violation in runs:
            path = Path(tmp) / f"stream.{fmt}"
            write_stream(path, fmt, n, args.capacity, violation)
            compare = n <= args.reference_up_to
            m = measure(path, compare=compare)
            m["reference"] = None
            if compare:  # in its own process: each peak RSS is one path's
                ref = measure(path, "reference", compare=True)
                if ref["digest"] != m["digest"]:
                    raise SystemExit(f"{fmt}: the fast and the reference paths disagree")
                m["reference"] = ref["seconds"]
            m["mb"] = path.stat().st_size / 1e6
            path.unlink()
            label = fmt + (" +violation" if violation else "")
            rate = m["events"] / m["seconds"]
            ref = "" if m["reference"] is None else f"{m['events'] / m['reference']:>14,.0f}"
            speedup = "" if m["reference"] is None else f"{m['reference'] / m['seconds']:>7.1f}x"
            print(f"{label:17} {m['events']:>10,} {m['mb']:>5.0f} {'yes' if m['fast'] else 'NO':>5} {m['seconds']:>8.2f} "
                  f"{m['cpu']:>6.2f} {rate:>10,.0f} {m['wall']:>9.2f} {m['rss']:>12.1f} {ref:>14} {speedup:>8}"
                  + (f"  {m['violation']}, witness of {m['witness']}" if violation else ""), flush=True)
            if not violation:
                peaks[fmt, n] = m["rss"]
    print(f"\nfloor (the same process on an empty file): {floor:.1f} MiB peak RSS")
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        for fmt in args.format:
            grow = peaks[fmt, large] - peaks[fmt, small]
            print(f"{fmt:17} peak RSS at {large:,} / at {small:,} events: {peaks[fmt, large] / peaks[fmt, small]:.2f} "
                  f"({grow:+.1f} MiB for {large // small}x the events)")
    return 0
