"""Upstream ``kv_consolidator/tracker.rs`` (dynamo-llm 1.3.0-dev.1, ``docs/upstream.md`` M7): every upstream test, ported one to one.

Each test runs against the reference model and the implementation.  Upstream's
``handle_store(hash, source, tokens, parent, block_size, lora, tier, dp_rank)`` keeps its argument
order; ``Some(x)`` is ``x`` and ``None`` is ``None``.  Where upstream only counted events, the
port also pins the event's content when the seed's comments state it (marked "stronger").
"""

import pytest

import kvspec.impl
import kvspec.model
from kvspec.events import StorageTier
from kvspec.tracker_events import (
    ConsolidatedClearAll,
    ConsolidatedRemove,
    ConsolidatedStore,
    EventSource,
    local_block_hash,
    sequence_hash,
)

DEVICE, HOST = StorageTier.DEVICE, StorageTier.HOST_PINNED
VLLM, TRTLLM, KVBM = EventSource.VLLM, EventSource.TRTLLM, EventSource.KVBM

SIDES = [kvspec.model, kvspec.impl]
side = pytest.mark.parametrize("ns", SIDES, ids=["model", "impl"])


def dedup(ns):
    return ns.DedupTracker()


def _checked(tracker):
    check = getattr(tracker, "_check", None)
    if check is not None:
        check()
    return tracker


@side
def test_first_store_publishes(ns):
    tracker = dedup(ns)
    should_publish = tracker.handle_store("hash1", VLLM, [1, 2, 3], None, 3, None, DEVICE, None)
    assert should_publish
    assert tracker.num_blocks() == 1
    assert len(tracker.drain_events()) == 1
    _checked(tracker)


@side
def test_duplicate_store_no_publish(ns):
    tracker = dedup(ns)
    tracker.handle_store("hash1", VLLM, [1, 2, 3], None, 3, None, DEVICE, None)
    tracker.drain_events()
    should_publish = tracker.handle_store("hash1", VLLM, [1, 2, 3], None, 3, None, DEVICE, None)
    assert not should_publish
    assert len(tracker.drain_events()) == 0
    _checked(tracker)


@side
def test_multi_source_store(ns):
    tracker = dedup(ns)
    tracker.handle_store("vllm_hash1", VLLM, [1, 2, 3], None, 3, None, DEVICE, None)
    tracker.drain_events()
    should_publish = tracker.handle_store("kvbm_hash1", KVBM, [1, 2, 3], None, 3, None, HOST, None)
    assert not should_publish
    sources = tracker.get_block_tiers("vllm_hash1")
    assert len(sources) == 2
    assert sources == {VLLM, KVBM}  # stronger: which two
    _checked(tracker)


@side
def test_dedup_normalizes_tier_to_device(ns):
    tracker = dedup(ns)
    tracker.handle_store("kvbm_hash1", KVBM, [1, 2, 3], None, 3, None, HOST, None)
    events = tracker.drain_events()
    assert len(events) == 1, "first store from any source must publish"
    assert isinstance(events[0], ConsolidatedStore)
    assert events[0].tier == DEVICE, "dedup must collapse the source tier to Device on the wire"

    should_publish = tracker.handle_store("trtllm_hash1", TRTLLM, [1, 2, 3], None, 3, None, DEVICE, None)
    assert not should_publish
    assert len(tracker.drain_events()) == 0

    tracker.handle_remove("trtllm_hash1", TRTLLM, DEVICE)
    assert len(tracker.drain_events()) == 0, "trtllm release must not publish: KVBM still owns the block"

    kvbm_remove = tracker.handle_remove("kvbm_hash1", KVBM, HOST)
    assert kvbm_remove, "last-source release must publish"
    events = tracker.drain_events()
    assert len(events) == 1
    assert isinstance(events[0], ConsolidatedRemove)
    assert events[0].tier == DEVICE, "dedup must collapse the source tier to Device on the REMOVE wire"
    # stronger: the wire names the first source's hash, the source is the last releaser
    assert events[0] == ConsolidatedRemove("kvbm_hash1", "kvbm", DEVICE)
    _checked(tracker)


@side
def test_remove_from_single_source_publishes(ns):
    tracker = dedup(ns)
    tracker.handle_store("hash1", VLLM, [1, 2, 3], None, 3, None, DEVICE, None)
    tracker.drain_events()
    should_publish = tracker.handle_remove("hash1", VLLM, DEVICE)
    assert should_publish
    assert tracker.num_blocks() == 0
    events = tracker.drain_events()
    assert len(events) == 1
    assert isinstance(events[0], ConsolidatedRemove)
    assert events[0].tier == DEVICE
    _checked(tracker)


@side
def test_shared_block_hash_across_sources_two_removes_succeed(ns):
    tracker = dedup(ns)
    shared = "shared_hash"
    tracker.handle_store(shared, TRTLLM, [1, 2, 3], None, 3, None, DEVICE, None)
    tracker.handle_store(shared, KVBM, [1, 2, 3], None, 3, None, HOST, None)
    tracker.drain_events()

    trtllm_remove = tracker.handle_remove(shared, TRTLLM, DEVICE)
    assert not trtllm_remove, "first remove must not publish: KVBM still owns the block"
    _checked(tracker)
    kvbm_remove = tracker.handle_remove(shared, KVBM, HOST)
    assert kvbm_remove, "second remove must resolve via the still-present hash_mapping entry and publish"

    events = tracker.drain_events()
    assert len(events) == 1, "exactly one REMOVE published at end-of-life"
    assert tracker.num_blocks() == 0
    _checked(tracker)


@side
def test_remove_from_multi_source_no_publish(ns):
    tracker = dedup(ns)
    tracker.handle_store("vllm_hash1", VLLM, [1, 2, 3], None, 3, None, DEVICE, None)
    tracker.handle_store("kvbm_hash1", KVBM, [1, 2, 3], None, 3, None, HOST, None)
    tracker.drain_events()

    should_publish = tracker.handle_remove("vllm_hash1", VLLM, DEVICE)
    assert not should_publish
    assert tracker.num_blocks() == 1
    assert len(tracker.drain_events()) == 0

    should_publish = tracker.handle_remove("kvbm_hash1", KVBM, HOST)
    assert should_publish
    assert tracker.num_blocks() == 0
    _checked(tracker)


@side
def test_sequence_hash_first_block(ns):
    tracker = dedup(ns)
    should_publish = tracker.handle_store("block1", VLLM, [1, 2, 3, 4], None, 4, None, DEVICE, None)
    assert should_publish
    assert tracker.num_blocks() == 1
    assert len(tracker.drain_events()) == 1


@side
def test_sequence_hash_with_parent(ns):
    tracker = dedup(ns)
    tracker.handle_store("block1", VLLM, [1, 2, 3, 4], None, 4, None, DEVICE, None)
    tracker.drain_events()
    should_publish = tracker.handle_store("block2", VLLM, [5, 6, 7, 8], "block1", 4, None, DEVICE, None)
    assert should_publish
    assert tracker.num_blocks() == 2
    # stronger: the Store is anchored to the parent's announced hash
    assert tracker.drain_events() == [ConsolidatedStore("block2", "block1", (5, 6, 7, 8), 4, None, "vllm", DEVICE)]
    _checked(tracker)


@side
def test_same_tokens_different_position_different_blocks(ns):
    tracker = dedup(ns)
    tracker.handle_store("block1", VLLM, [1, 2, 3, 4], None, 4, None, DEVICE, None)
    tracker.drain_events()
    should_publish = tracker.handle_store("block2", VLLM, [1, 2, 3, 4], "block1", 4, None, DEVICE, None)
    assert should_publish
    assert tracker.num_blocks() == 2


@side
def test_clear_all(ns):
    tracker = dedup(ns)
    tracker.handle_store("block1", VLLM, [1, 2, 3, 4], None, 4, None, DEVICE, None)
    tracker.handle_store("block2", KVBM, [5, 6, 7, 8], None, 4, None, HOST, None)
    assert tracker.num_blocks() == 2
    tracker.handle_clear_all()
    assert tracker.num_blocks() == 0
    should_publish = tracker.handle_remove("block1", VLLM, DEVICE)
    assert not should_publish
    # stronger: two Stores then ClearAll, nothing for the failed remove
    assert [type(e) for e in tracker.drain_events()] == [ConsolidatedStore, ConsolidatedStore, ConsolidatedClearAll]
    _checked(tracker)


@side
def test_deduplication_across_sources_with_parent(ns):
    tracker = dedup(ns)
    tracker.handle_store("vllm_parent", VLLM, [1, 2, 3, 4], None, 4, None, DEVICE, None)
    tracker.drain_events()
    tracker.handle_store("vllm_child", VLLM, [5, 6, 7, 8], "vllm_parent", 4, None, DEVICE, None)
    tracker.drain_events()
    should_publish = tracker.handle_store("kvbm_child", KVBM, [5, 6, 7, 8], "vllm_parent", 4, None, HOST, None)
    assert not should_publish
    assert tracker.num_blocks() == 2
    _checked(tracker)


@side
def test_remove_non_existent_block(ns):
    tracker = dedup(ns)
    should_publish = tracker.handle_remove("non_existent", VLLM, DEVICE)
    assert not should_publish
    assert tracker.num_blocks() == 0


def test_compute_local_block_hash_deterministic():
    hash1 = local_block_hash([1, 2, 3, 4])
    hash2 = local_block_hash([1, 2, 3, 4])
    hash3 = local_block_hash([1, 2, 3, 5])
    assert hash1 == hash2
    assert hash1 != hash3


@side
def test_lora_name_round_trip_through_tracker(ns):
    tracker = dedup(ns)
    should_publish = tracker.handle_store("hash_lora", VLLM, [1, 2, 3, 4], None, 4, "my-adapter", DEVICE, None)
    assert should_publish
    events = tracker.drain_events()
    assert len(events) == 1
    assert isinstance(events[0], ConsolidatedStore)
    assert events[0].lora_name == "my-adapter"
    assert events[0].token_ids == (1, 2, 3, 4)
    assert events[0].tier == DEVICE


@side
def test_lora_name_none_for_base_model(ns):
    tracker = dedup(ns)
    tracker.handle_store("hash_base", VLLM, [1, 2, 3, 4], None, 4, None, DEVICE, None)
    events = tracker.drain_events()
    assert len(events) == 1
    assert isinstance(events[0], ConsolidatedStore)
    assert events[0].lora_name is None
    assert events[0].tier == DEVICE


def test_compute_sequence_hash_deterministic():
    block_hash1 = local_block_hash([1, 2, 3, 4])
    block_hash2 = local_block_hash([5, 6, 7, 8])
    seq_hash1 = sequence_hash(None, block_hash1)
    assert seq_hash1 == block_hash1
    assert sequence_hash(seq_hash1, block_hash2) == sequence_hash(seq_hash1, block_hash2)
    different_parent = local_block_hash([9, 10, 11, 12])
    assert sequence_hash(seq_hash1, block_hash2) != sequence_hash(different_parent, block_hash2)


@side
def test_passthrough_tracker_forwards_duplicate_store(ns):
    tracker = ns.PassthroughTracker()
    assert tracker.handle_store("hash1", VLLM, [1, 2, 3], None, 3, None, DEVICE, None)
    assert tracker.handle_store("hash1", VLLM, [1, 2, 3], None, 3, None, DEVICE, None)
    events = tracker.drain_events()
    assert len(events) == 2
    assert events[0] == events[1]  # stronger: forwarded unchanged


@side
def test_passthrough_tracker_remove_and_clear(ns):
    tracker = ns.PassthroughTracker()
    assert tracker.handle_remove("hash1", KVBM, HOST)
    tracker.handle_clear_all()
    events = tracker.drain_events()
    assert len(events) == 2
    assert isinstance(events[0], ConsolidatedRemove) and events[0].tier == HOST
    assert isinstance(events[1], ConsolidatedClearAll)
    assert tracker.num_blocks() == 0
