"""TieredIndex (model and impl): routing of events to tiers, lower-tier rules, tier continuation.

Upstream's tiered-index scenarios live in ``tests/golden/test_tiered_seeds.py``; these tests pin the rules the
golden cases do not reach (allocation, lower-tier tolerance, branching continuations, dumps).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kvspec.impl
import kvspec.model
from kvspec.errors import BlockNotFound, InvalidBlockSequence, ParentBlockNotFound
from kvspec.events import Cleared, KvCacheEvent, Removed, StorageTier, Stored, StoredBlock
from kvspec.scores import Continuation, LowerTierMatches
from kvspec.stateful.machines.index_events import IndexEvents

DEVICE, HOST, DISK, EXTERNAL = StorageTier.DEVICE, StorageTier.HOST_PINNED, StorageTier.DISK, StorageTier.EXTERNAL
NAMESPACES = pytest.mark.parametrize("ns", [kvspec.model, kvspec.impl], ids=["model", "impl"])


def st_(blocks, parent=None, dp=0):
    return KvCacheEvent(1, Stored(parent, [StoredBlock(e, l) for e, l in blocks]), dp)


def rm(hashes, dp=0):
    return KvCacheEvent(1, Removed(hashes), dp)


def dump_set(index):
    out = set()
    for item in index.dump_events():
        parent = item.event.data.parent_hash
        for b in item.event.data.blocks:
            out.add((item.worker_id, item.event.dp_rank, item.storage_tier, parent, b.block_hash, b.tokens_hash))
            parent = b.block_hash
    return out


def check(index):
    if hasattr(index, "_check"):
        index._check()


@NAMESPACES
def test_lower_tiers_are_allocated_by_their_first_event(ns):
    t = ns.TieredIndex()
    assert t.find_matches_by_tier([11]).lower_tier == {}
    t.apply_event(1, KvCacheEvent(1, Cleared(), 0), HOST)  # Cleared allocates nothing
    assert t.find_matches_by_tier([11]).lower_tier == {}
    t.apply_event(1, rm([5]), DISK)  # a lower-tier removal of an unknown block: ignored, tier allocated
    assert t.find_matches_by_tier([11]).lower_tier == {DISK: LowerTierMatches({}, {})}
    check(t)


@NAMESPACES
def test_device_errors_stay_lower_tiers_are_tolerant(ns):
    t = ns.TieredIndex()
    with pytest.raises(ParentBlockNotFound):
        t.apply_event(1, st_([(101, 12)], parent=100))
    with pytest.raises(BlockNotFound):
        t.apply_event(1, rm([100]))
    t.apply_event(1, st_([(101, 12)], parent=100), HOST)  # parent in no tier: accepted
    t.apply_event(1, rm([555]), HOST)
    before = dump_set(t)
    with pytest.raises(InvalidBlockSequence):
        t.apply_event(1, st_([(102, 13)], parent=102), EXTERNAL)
    assert dump_set(t) == before
    assert EXTERNAL not in t.find_matches_by_tier([11]).lower_tier  # a rejected event allocates nothing
    check(t)


@NAMESPACES
def test_lower_tier_removal_never_cascades(ns):
    """Unlike Dynamo's device tree, Dynamo's lower tiers already behave like the contract (docs/upstream.md R7.2)."""
    t = ns.TieredIndex()
    t.apply_event(1, st_([(100, 11), (101, 12), (102, 13)]), HOST)
    t.apply_event(1, rm([101]), HOST)
    assert t.find_matches_by_tier([11, 12, 13]).lower_tier[HOST].hits == {(1, 0): 1}
    t.apply_event(1, st_([(101, 12)], parent=100), HOST)
    assert t.find_matches_by_tier([11, 12, 13]).lower_tier[HOST].hits == {(1, 0): 3}
    check(t)


@NAMESPACES
def test_remove_worker_and_rank_reach_every_tier(ns):
    t = ns.TieredIndex()
    t.apply_event(1, st_([(100, 11)]))
    t.apply_event(1, st_([(101, 12)], parent=100), HOST)
    t.apply_event(1, st_([(101, 12)], parent=100, dp=1), HOST)
    t.apply_event(1, st_([(102, 13)], parent=101, dp=1), DISK)
    t.remove_worker_dp_rank(1, 0)
    assert {w for (w, r, *_) in dump_set(t)} == {1} and {r for (_, r, *_) in dump_set(t)} == {1}
    t.clear_all_blocks(1)
    assert t.dump_events() == []
    assert set(t.find_matches_by_tier([11, 12, 13]).lower_tier) == {HOST, DISK}
    check(t)


@NAMESPACES
def test_cleared_on_any_tier_clears_the_rank_everywhere(ns):
    t = ns.TieredIndex()
    t.apply_event(1, st_([(100, 11)]))
    t.apply_event(1, st_([(101, 12)], parent=100), HOST)
    t.apply_event(1, st_([(100, 11)], dp=1), DISK)
    t.apply_event(1, KvCacheEvent(2, Cleared(), 0), EXTERNAL)
    assert dump_set(t) == {(1, 1, DISK, None, 100, 11)}
    check(t)


@NAMESPACES
def test_branching_chains_carry_every_end(ns):
    """Two device chains with the same L's (different E's): the host continues from either end."""
    t = ns.TieredIndex()
    t.apply_event(1, st_([(100, 11), (101, 12)]))
    t.apply_event(1, st_([(900, 11), (901, 12)]))
    t.apply_event(1, st_([(902, 13)], parent=901), HOST)
    m = t.find_matches_by_tier([11, 12, 13, 14])
    assert m.device.scores == {(1, 0): 2}
    assert m.lower_tier[HOST] == LowerTierMatches({(1, 0): 1}, {(1, 0): Continuation(3, (902,))})
    check(t)


@NAMESPACES
def test_zero_hit_tiers_pass_the_continuation_on(ns):
    t = ns.TieredIndex()
    t.apply_event(1, st_([(100, 11)]))
    t.apply_event(2, st_([(200, 11)]), HOST)
    t.apply_event(1, st_([(101, 12)], parent=100), DISK)
    m = t.find_matches_by_tier([11, 12])
    assert m.lower_tier[HOST].hits == {(1, 0): 0, (2, 0): 1}
    assert m.lower_tier[HOST].next_continuations[(1, 0)] == Continuation(1, (100,))
    assert m.lower_tier[DISK].hits == {(1, 0): 1, (2, 0): 0}
    assert t.find_matches_by_tier([]).lower_tier[HOST] == LowerTierMatches({}, {})
    assert t.find_matches([11, 12]).scores == {(1, 0): 1}  # find_matches is the device tier only
    check(t)


@NAMESPACES
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_replaying_a_tiered_dump_reproduces_every_tier(ns, data):
    gen = IndexEvents(tiers=(DEVICE, HOST, DISK, EXTERNAL))
    t = ns.TieredIndex()
    for _ in range(data.draw(st.integers(1, 25))):
        draw = gen.draw_store(data) if data.draw(st.integers(0, 2)) else gen.draw_remove(data)
        try:
            t.apply_event(draw.worker_id, draw.event, draw.tier)
            error = None
        except (ParentBlockNotFound, BlockNotFound, InvalidBlockSequence) as e:
            error = type(e).__name__
        gen.record(draw, error)
    check(t)
    fresh = ns.TieredIndex()
    for item in t.dump_events():
        fresh.apply_event(item.worker_id, item.event, item.storage_tier)
    assert dump_set(fresh) == dump_set(t)
    for _ in range(5):
        q = gen.draw_query(data)
        want, got = t.find_matches_by_tier(q), fresh.find_matches_by_tier(q)
        assert got.device == want.device
        for tier, matches in got.lower_tier.items():  # an allocated but empty tier is not dumped
            assert matches == want.lower_tier[tier]
