"""Record a real SGLang KV-event stream on CPU (SGLang 0.5.23's ``RadixCache`` and event types).

``record(path, page_size)`` builds ``RadixCache.create_simulated`` with a counting allocator and
``enable_kv_cache_events=True``, inserts prompts that share prefixes (a node splits), locks and
unlocks one, evicts, and writes one msgpack record per step: ``[topic, seq (8 bytes
big-endian), payload]`` with ``payload`` SGLang's ``KVEventBatch`` encoded by msgspec, as its
``ZmqEventPublisher`` sends it.  SGLang publishes **signed** int64 hashes
(``hash_str_to_int64``); ``kvspec validate`` reports them (``hash-not-u64``).

``python -m kvspec.adapters.sglang.record OUT.msgpack`` writes ``tests/engines/data/sglang.msgpack``.
"""

from __future__ import annotations

import sys
import time
from array import array

__all__ = ["record"]


class CountingAllocator:
    """The allocator ``create_simulated`` needs: counts freed slots, holds no memory."""

    device = "cpu"

    def __init__(self) -> None:
        self.freed = 0

    def free_segment(self, value, start_pos: int = 0) -> None:
        self.freed += len(value) - start_pos

    def free(self, value) -> None:
        self.freed += len(value)


def record(path: str, page_size: int = 2) -> int:
    import msgpack
    import msgspec
    import torch
    from sglang.srt.disaggregation.kv_events import KVEventBatch
    from sglang.srt.mem_cache.base_prefix_cache import EvictParams, InsertParams, MatchPrefixParams
    from sglang.srt.mem_cache.radix_cache import RadixCache, RadixKey

    cache = RadixCache.create_simulated(mock_allocator=CountingAllocator(), page_size=page_size,
                                        enable_kv_cache_events=True)
    encoder = msgspec.msgpack.Encoder()
    frames = []

    def key(tokens):
        return RadixKey(array("q", tokens))

    def publish():
        events = cache.kv_events.take()
        if events:
            payload = encoder.encode(KVEventBatch(ts=time.time(), events=events))
            frames.append([b"", len(frames).to_bytes(8, "big"), payload])

    publish()  # AllBlocksCleared at construction
    for tokens in ([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 9, 9], [7, 7, 8, 8]):
        cache.insert(InsertParams(key=key(tokens), value=torch.arange(len(tokens), dtype=torch.int64)))
        publish()
    node = cache.match_prefix(MatchPrefixParams(key=key([1, 2, 3, 4, 5, 6]))).last_device_node
    cache.inc_lock_ref(node)
    cache.evict(EvictParams(num_tokens=4))  # the unlocked branches go, leaf first
    publish()
    cache.dec_lock_ref(node)
    cache.evict(EvictParams(num_tokens=100))
    publish()
    with open(path, "wb") as out:
        for frame in frames:
            out.write(msgpack.packb(frame, use_bin_type=True))
    return len(frames)


if __name__ == "__main__":
    print(f"{sys.argv[1]}: {record(sys.argv[1])} batches")
