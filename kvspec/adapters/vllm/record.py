"""Record a real vLLM KV-event stream on CPU: the scheduler's calls, vLLM's own ZMQ publisher.

``record(path, workload)`` drives vLLM's ``KVCacheManager`` through :class:`.prefix_cache.
VllmPrefixCache` (the scheduler's call sequence), hands every step's ``take_events()`` to vLLM's
``ZmqEventPublisher`` as a ``KVEventBatch`` (what ``Scheduler.update_from_output`` does), and
fetches the published frames back through the publisher's own replay socket (ROUTER, on
127.0.0.1), so no frame is lost to ZMQ's slow-joiner race.  The file holds one msgpack record per
batch: the multipart frames ``[topic, seq (8 bytes big-endian), payload]`` exactly as sent.

A workload is a list of operations ``("add", rid, prompt, report_full)``, ``("schedule", rid)``,
``("decode", rid, token)``, ``("free", rid)``, ``("preempt", rid)``.  ``python -m
kvspec.adapters.vllm.record OUT.msgpack clean|copies|full`` writes the recordings kept in
``tests/engines/data``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from kvspec.adapters.vllm import runtime
from kvspec.adapters.vllm.prefix_cache import VllmPrefixCache

__all__ = ["WORKLOADS", "record"]

END_SEQ = (-1).to_bytes(8, "big", signed=True)


def _run(cache: VllmPrefixCache, op: Sequence[Any]) -> None:
    kind, rid, *rest = op
    if kind == "add":
        cache.add_request(rid, list(rest[0]), bool(rest[1]) if len(rest) > 1 else False)
        cache.schedule(rid)
    elif kind == "schedule":
        cache.schedule(rid)
    elif kind == "decode":
        cache.append_token(rid, rest[0])
        cache.schedule(rid)
    elif kind == "free":
        cache.free(rid)
    elif kind == "preempt":
        cache.preempt(rid)
    else:
        raise ValueError(f"unknown operation {kind!r}")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def record(path: str, workload: Sequence[Sequence[Any]], *, num_blocks: int = 8, block_size: int = 4) -> int:
    """Run ``workload``, publish through vLLM's ZMQ publisher, write the frames; returns batches."""
    import msgpack
    import zmq

    kv_events = runtime._m("vllm.distributed.kv_events")
    cache = VllmPrefixCache(num_blocks, block_size)
    publisher = kv_events.ZmqEventPublisher(0, endpoint=f"tcp://127.0.0.1:{_free_port()}",
                                            replay_endpoint=f"tcp://127.0.0.1:{_free_port()}")
    batches = 0
    try:
        for op in workload:
            _run(cache, op)
            events = cache.manager.take_events()
            if events:
                publisher.publish(kv_events.KVEventBatch(ts=time.time(), events=events))
                batches += 1
        deadline = time.time() + 10
        while publisher._event_queue.qsize() and time.time() < deadline:  # publisher thread drains
            time.sleep(0.05)
        replay_endpoint = publisher.get_publisher_config().replay_endpoint
        ctx = zmq.Context.instance()
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(replay_endpoint)
        frames = []
        while len(frames) < batches:  # the publisher may still be sending: ask again from where we are
            dealer.send_multipart((b"", len(frames).to_bytes(8, "big")))
            got = []
            while True:
                if not dealer.poll(5000):
                    raise RuntimeError("vLLM's replay socket did not answer")
                _, topic, seq, payload = dealer.recv_multipart()
                if seq == END_SEQ:
                    break
                got.append([topic, seq, payload])
            frames = got if len(got) > len(frames) else frames
            if len(frames) < batches:
                time.sleep(0.1)
        dealer.close()
    finally:
        publisher.shutdown()
    with open(path, "wb") as out:
        for frame in frames:
            out.write(msgpack.packb(frame, use_bin_type=True))
    return len(frames)


def _prompt(*blocks: str, tail: str = "") -> list[int]:
    """Token ids from letters (block size 4 in the kept workloads)."""
    return [ord(c) for c in "".join(blocks) + tail]


#: clean: sequential requests, no prompt ends on a block boundary, so no hash is cached twice
CLEAN = [
    ("add", "a", _prompt("syst", "emAA", tail="q")), ("decode", "a", 1), ("free", "a"),
    ("add", "b", _prompt("syst", "emBB", tail="r")), ("decode", "b", 2), ("decode", "b", 3), ("free", "b"),
    ("add", "c", _prompt("other", tail="x")), ("free", "c"),
    ("add", "d", _prompt("syst", "emAA", "more", tail="z")), ("free", "d"),
]
#: copies: the same block-aligned prompt twice at once (the second recomputes its last block: a
#: second copy), then enough traffic to evict both copies
COPIES = [
    ("add", "a", _prompt("syst", "emAA")), ("add", "b", _prompt("syst", "emAA")),
    ("free", "a"), ("free", "b"),
    ("add", "c", _prompt("zzzz", "yyyy", "xxxx", "wwww", "vvvv", "uuuu", tail="t")), ("free", "c"),
]
#: full: a client asks kv_cache_report_mode="full": its hit blocks are announced again
FULL = [
    ("add", "a", _prompt("syst", "emAA", tail="q")), ("free", "a"),
    ("add", "b", _prompt("syst", "emAA", tail="r"), True), ("free", "b"),
    ("add", "c", _prompt("zzzz", "yyyy", "xxxx", "wwww", "vvvv", "uuuu", tail="t")), ("free", "c"),
]
WORKLOADS = {"clean": CLEAN, "copies": COPIES, "full": FULL}


if __name__ == "__main__":
    out, name = sys.argv[1], sys.argv[2]
    print(f"{out}: {record(out, WORKLOADS[name])} batches")
