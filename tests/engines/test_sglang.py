"""SGLang 0.5.23: its real RadixCache's KV events, and what reaches a Dynamo router.

Skipped, with the install hint, without SGLang (``kvspec install-engine sglang``) or, for the
router test, without Dynamo (``pip install 'kvspec[dynamo]'``).
"""

from __future__ import annotations

from array import array

import pytest

from kvspec.adapters.sglang import ENGINE

REASON = ENGINE.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"SGLang: {REASON}")


def sglang_cache(page_size):
    from sglang.srt.mem_cache.radix_cache import RadixCache

    from kvspec.adapters.sglang.record import CountingAllocator

    cache = RadixCache.create_simulated(mock_allocator=CountingAllocator(), page_size=page_size,
                                        enable_kv_cache_events=True)
    assert [type(e).__name__ for e in cache.kv_events.take()] == ["AllBlocksCleared"]
    return cache


def insert(cache, tokens):
    import torch
    from sglang.srt.mem_cache.base_prefix_cache import InsertParams
    from sglang.srt.mem_cache.radix_cache import RadixKey

    cache.insert(InsertParams(key=RadixKey(array("q", tokens)), value=torch.arange(len(tokens))))


def wire(cache):
    import msgspec

    return [msgspec.to_builtins(e) | {"type": type(e).__name__} for e in cache.kv_events.take()]


#: 8 tokens whose two page hashes (page size 4) are both negative as SGLang publishes them
NEGATIVE = [70 + j for j in range(8)]


def test_sglang_publishes_signed_hashes_and_splits_silently():
    cache = sglang_cache(4)
    insert(cache, NEGATIVE)
    insert(cache, NEGATIVE[:4] + [1, 2, 3, 4])  # splits the node after the first page: no event
    first, second = wire(cache)
    assert all(h < 0 for h in first["block_hashes"])
    assert first["parent_block_hash"] is None and len(first["block_hashes"]) == 2
    assert second["parent_block_hash"] == first["block_hashes"][0] and len(second["block_hashes"]) == 1


def test_signed_hashes_reach_a_dynamo_router_as_u64_and_stay_consistent():
    """Dynamo 1.6.1's ZMQ relay reads SGLang's int64 hashes as u64 (two's complement): stores are
    scored, the evicted node leaves the router, the dump shows the u64 values."""
    from kvspec.adapters.dynamo import router as dynamo_router

    reason = dynamo_router.unavailable_reason()
    if reason is not None:
        pytest.skip(f"Dynamo router: {reason}")
    from sglang.srt.mem_cache.base_prefix_cache import EvictParams

    cache = sglang_cache(dynamo_router.BLOCK_SIZE)
    tokens = NEGATIVE + [1, 2, 3, 4]
    insert(cache, NEGATIVE)
    insert(cache, tokens)
    stored = wire(cache)
    harness = dynamo_router.RouterHarness(dp_ranks=1)
    try:
        harness.publish(0, stored)
        assert harness.overlap(tokens)[0]["device_blocks"] == 3
        dumped = {b.block_hash for e in harness.dump() for b in e.event.data.blocks}
        assert dumped == {h % 2**64 for e in stored for h in e["block_hashes"]}
        cache.evict(EvictParams(num_tokens=100))
        harness.publish(0, wire(cache))
        rows = harness.overlap(tokens)
        assert not rows or rows[0]["device_blocks"] == 0
    finally:
        harness.close()


@pytest.mark.parametrize("name", ["sglang-radix-cache", "sglang-router"])
def test_machine_passes_against_real_sglang(name):
    from kvspec.stateful.engine.registry import find_machines
    from kvspec.stateful.runner import check_machine
    from kvspec.targets import resolve

    (spec,) = [s for s in find_machines([name]) if s.name == name]
    target = resolve("sglang")
    assert target.provided() == ["SglangRadixCache"]
    result = check_machine(spec, target, profile="ci", progress_every=None)
    assert result.status == "passed", result.reason
    assert result.steps > 500
