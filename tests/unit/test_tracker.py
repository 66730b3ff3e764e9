"""Cache-status trackers beyond the seed: bad input, upstream quirks, the reverse index, hashes."""

import pytest

import kvspec.impl
import kvspec.model
from kvspec import codec
from kvspec.errors import InvalidArgument
from kvspec.events import StorageTier
from kvspec.hashing import block_hashes, sequence_hashes
from kvspec.tracker_events import (
    ConsolidatedClearAll,
    ConsolidatedRemove,
    ConsolidatedStore,
    EventSource,
    local_block_hash,
    sequence_hash,
    tier_from_vllm_medium,
    tier_to_vllm_medium,
    tracker_tier,
)

DEVICE, HOST, DISK, EXTERNAL = StorageTier.DEVICE, StorageTier.HOST_PINNED, StorageTier.DISK, StorageTier.EXTERNAL
VLLM, TRTLLM, KVBM = EventSource.VLLM, EventSource.TRTLLM, EventSource.KVBM
side = pytest.mark.parametrize("ns", [kvspec.model, kvspec.impl], ids=["model", "impl"])
kind = pytest.mark.parametrize("cls", ["DedupTracker", "PassthroughTracker"])


def check(tracker):
    if hasattr(tracker, "_check"):
        tracker._check()


def snapshot(tracker):
    """Everything observable without draining, plus the queue drained into a copy."""
    state = {"num_blocks": tracker.num_blocks()}
    if hasattr(tracker, "get_block_sources"):
        state["sources"] = {h: tracker.get_block_sources(h) for h in ("a", "b", "c", "x")}
    return state


# --- bad input: typed error, nothing changes ------------------------------------------------

BAD_STORES = [
    dict(block_hash=7),
    dict(source="vllm"),
    dict(token_ids=[1, -1]),
    dict(token_ids=[1, 2**32]),
    dict(token_ids=[True]),
    dict(token_ids="abc"),
    dict(token_ids=5),
    dict(parent_hash=3),
    dict(block_size=-1),
    dict(block_size=2.0),
    dict(lora_name=1),
    dict(tier="device"),
    dict(data_parallel_rank=2**31),
    dict(data_parallel_rank="0"),
]


@side
@kind
@pytest.mark.parametrize("bad", BAD_STORES, ids=[next(iter(b)) + "=" + repr(next(iter(b.values()))) for b in BAD_STORES])
def test_bad_store_raises_and_changes_nothing(ns, cls, bad):
    tracker = getattr(ns, cls)()
    tracker.handle_store("a", VLLM, [1, 2], None, 2)
    tracker.handle_store("b", KVBM, [3, 4], "a", 2, tier=HOST)
    before_events = tracker.drain_events()
    before = snapshot(tracker)
    args = dict(block_hash="c", source=TRTLLM, token_ids=[5, 6], parent_hash="b", block_size=2,
                lora_name=None, tier=DEVICE, data_parallel_rank=0)
    args.update(bad)
    with pytest.raises(InvalidArgument):
        tracker.handle_store(**args)
    assert snapshot(tracker) == before
    assert tracker.drain_events() == []
    check(tracker)
    assert before_events  # the setup did publish
    # the same store with good arguments still behaves normally afterwards
    assert tracker.handle_store("c", TRTLLM, [5, 6], "b", 2) is True


@side
@kind
@pytest.mark.parametrize("bad", [dict(block_hash=None), dict(source=1), dict(tier="GPU")])
def test_bad_remove_raises_and_changes_nothing(ns, cls, bad):
    tracker = getattr(ns, cls)()
    tracker.handle_store("a", VLLM, [1, 2], None, 2)
    tracker.drain_events()
    before = snapshot(tracker)
    args = dict(block_hash="a", source=VLLM, tier=None)
    args.update(bad)
    with pytest.raises(InvalidArgument):
        tracker.handle_remove(**args)
    assert snapshot(tracker) == before
    assert tracker.drain_events() == []
    check(tracker)


# --- dedup semantics the seed does not pin --------------------------------------------------


@side
def test_unknown_parent_is_hashed_as_root(ns):
    """An unresolvable parent is treated as no parent: same sequence hash as a root store."""
    tracker = ns.DedupTracker()
    assert tracker.handle_store("a", VLLM, [1, 2], "never-stored", 2)
    assert tracker.drain_events() == [ConsolidatedStore("a", None, (1, 2), 2, None, "vllm", DEVICE)]
    assert not tracker.handle_store("b", KVBM, [1, 2], None, 2)  # same root block
    assert tracker.get_block_sources("a") == {VLLM, KVBM}


@side
def test_parent_resolves_to_first_source_hash(ns):
    """A child stored by KVBM under its own parent name is announced under vLLM's parent name."""
    tracker = ns.DedupTracker()
    tracker.handle_store("v0", VLLM, [1], None, 1)
    tracker.handle_store("k0", KVBM, [1], None, 1, tier=HOST)  # dedup: maps k0 to the same block
    tracker.drain_events()
    assert tracker.handle_store("k1", KVBM, [2], "k0", 1, tier=HOST)
    assert tracker.drain_events() == [ConsolidatedStore("k1", "v0", (2,), 1, None, "kvbm", DEVICE)]


@side
def test_self_parent_quirk(ns):
    """Upstream resolves the parent after mapping the new hash: naming yourself as parent publishes
    ``parent_hash == block_hash`` (a Store the router rejects as an invalid sequence)."""
    tracker = ns.DedupTracker()
    assert tracker.handle_store("a", VLLM, [1], "a", 1)
    assert tracker.drain_events() == [ConsolidatedStore("a", "a", (1,), 1, None, "vllm", DEVICE)]
    # the sequence hash used the *old* mapping (none): it is the root block [1]
    assert not tracker.handle_store("r", KVBM, [1], None, 1)
    check(tracker)


@side
def test_remapped_external_hash_orphans_old_block(ns):
    """Every store re-points its external hash; a block left without any name can only be cleared."""
    tracker = ns.DedupTracker()
    tracker.handle_store("a", VLLM, [1], None, 1)
    tracker.handle_store("a", VLLM, [2], None, 1)  # "a" now names block [2]
    assert tracker.num_blocks() == 2
    assert tracker.handle_remove("a", VLLM) is True
    assert tracker.num_blocks() == 1  # block [1] is unreachable by name
    assert tracker.handle_remove("a", VLLM) is False
    check(tracker)
    events = tracker.drain_events()
    assert events[-1] == ConsolidatedRemove("a", "vllm", DEVICE)
    tracker.handle_clear_all()
    assert tracker.num_blocks() == 0


@side
def test_release_unmaps_every_alias_but_not_remapped_ones(ns):
    tracker = ns.DedupTracker()
    tracker.handle_store("a", VLLM, [1], None, 1)
    tracker.handle_store("b", KVBM, [1], None, 1)
    tracker.handle_store("c", TRTLLM, [1], None, 1)
    tracker.handle_store("c", TRTLLM, [9], None, 1)  # "c" leaves block [1] for block [9]
    check(tracker)
    assert not tracker.handle_remove("a", VLLM)
    assert not tracker.handle_remove("a", TRTLLM)  # TRTLLM still holds [1], by any alias
    assert tracker.handle_remove("b", KVBM)
    check(tracker)
    assert tracker.get_block_sources("a") is None and tracker.get_block_sources("b") is None
    assert tracker.get_block_sources("c") == {TRTLLM}  # still names block [9]


@side
def test_remove_from_source_not_holding_is_a_noop(ns):
    tracker = ns.DedupTracker()
    tracker.handle_store("a", VLLM, [1], None, 1)
    tracker.drain_events()
    assert tracker.handle_remove("a", KVBM, HOST) is False
    assert tracker.get_block_sources("a") == {VLLM}
    assert tracker.drain_events() == []


@side
def test_remove_source_is_the_last_releaser(ns):
    tracker = ns.DedupTracker()
    tracker.handle_store("v", VLLM, [1], None, 1)
    tracker.handle_store("k", KVBM, [1], None, 1, tier=DISK)
    tracker.handle_remove("v", VLLM)
    tracker.handle_remove("k", KVBM, DISK)
    assert tracker.drain_events()[-1] == ConsolidatedRemove("v", "kvbm", DEVICE)


@side
def test_restore_after_release_publishes_again(ns):
    tracker = ns.DedupTracker()
    for _ in range(2):
        assert tracker.handle_store("a", VLLM, [1, 2], None, 2)
        assert tracker.handle_remove("a", VLLM)
    kinds = [type(e).__name__ for e in tracker.drain_events()]
    assert kinds == ["ConsolidatedStore", "ConsolidatedRemove"] * 2


@side
def test_lora_and_dp_rank_do_not_change_identity(ns):
    tracker = ns.DedupTracker()
    assert tracker.handle_store("a", VLLM, [1, 2], None, 2, lora_name="x", data_parallel_rank=1)
    assert not tracker.handle_store("b", KVBM, [1, 2], None, 7, lora_name="y", data_parallel_rank=3)


# --- passthrough ----------------------------------------------------------------------------


@side
def test_passthrough_keeps_raw_parent_and_tier(ns):
    tracker = ns.PassthroughTracker()
    tracker.handle_store("b", KVBM, [3], "unknown", 1, lora_name="l", tier=HOST)
    tracker.handle_store("c", KVBM, [4], None, 1, tier=EXTERNAL)
    tracker.handle_remove("c", KVBM)
    assert tracker.drain_events() == [
        ConsolidatedStore("b", "unknown", (3,), 1, "l", "kvbm", HOST),
        ConsolidatedStore("c", None, (4,), 1, None, "kvbm", DISK),  # External becomes Disk
        ConsolidatedRemove("c", "kvbm", None),
    ]
    assert tracker.num_blocks() == 0


# --- vocabulary -----------------------------------------------------------------------------


def test_event_source_parse_accepts_upstream_spellings_only():
    assert [EventSource.parse(s) for s in ("vllm", "VLLM", "GPU")] == [VLLM] * 3
    assert [EventSource.parse(s) for s in ("trtllm", "TRTLLM", "TensorRT-LLM")] == [TRTLLM] * 3
    assert [EventSource.parse(s) for s in ("kvbm", "KVBM")] == [KVBM] * 2
    for bad in ("Vllm", "gpu", "", None):
        with pytest.raises(InvalidArgument):
            EventSource.parse(bad)
    assert [s.to_str() for s in EventSource] == ["vllm", "trtllm", "kvbm"]


def test_tier_helpers():
    assert tracker_tier(EXTERNAL) is DISK and tracker_tier(None) is None
    assert tier_from_vllm_medium("GPU") is DEVICE
    assert tier_from_vllm_medium("CPU_TIER1") is HOST
    assert tier_from_vllm_medium("CPU_TIER2") is DISK
    assert tier_from_vllm_medium("SHARED") is DISK
    assert tier_from_vllm_medium("WEIRD") is None
    assert [tier_to_vllm_medium(t) for t in (DEVICE, HOST, DISK)] == ["GPU", "CPU_TIER1", "CPU_TIER2"]


def test_tracker_hashes_equal_the_router_chain():
    """The tracker's hashes are the router's (seed 1337 for tokens and for the chain step)."""
    tokens = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    locals_ = [local_block_hash(t) for t in tokens]
    assert locals_ == block_hashes(sum(tokens, []), 4)
    chain, parent = [], None
    for lh in locals_:
        parent = sequence_hash(parent, lh)
        chain.append(parent)
    assert chain == sequence_hashes(locals_)


def test_events_round_trip_through_codec():
    events = [
        ConsolidatedStore("a", None, (1, 2), 2, "l", "vllm", DEVICE),
        ConsolidatedRemove("a", "kvbm", None),
        ConsolidatedClearAll(),
        VLLM,
    ]
    assert codec.decode(codec.encode(events)) == events


def test_impl_check_detects_a_stale_alias():
    tracker = kvspec.impl.DedupTracker()
    tracker.handle_store("a", VLLM, [1], None, 1)
    tracker._check()
    tracker._mapping["ghost"] = next(iter(tracker._blocks))
    with pytest.raises(AssertionError):
        tracker._check()


@side
def test_unknown_parent_reannounces_a_child_as_a_root(ns):
    """Upstream quirk with router consequences: once a parent is gone, a source storing the child
    under the same external hash gets a *root* identity, and the Store re-announces that hash with
    ``parent_hash=None`` — the router re-files the block at position 0 and over-claims a query that
    starts with the child's tokens (nobody holds those tokens at position 0)."""
    tracker = ns.DedupTracker()
    tracker.handle_store("100", TRTLLM, [1, 2], None, 2)
    tracker.handle_store("101", TRTLLM, [3, 4], "100", 2)
    tracker.handle_remove("100", TRTLLM)  # interior eviction; the engine still holds "101"
    tracker.drain_events()
    assert tracker.handle_store("101", KVBM, [3, 4], "100", 2, tier=HOST) is True
    assert tracker.drain_events() == [ConsolidatedStore("101", None, (3, 4), 2, None, "kvbm", DEVICE)]
    assert tracker.num_blocks() == 2  # the engine's (position 1) and KVBM's (root) copies
