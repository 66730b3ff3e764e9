"""Golden scenarios: the approximate (predict-on-route) indexer, on ``kvspec.model`` and ``kvspec.impl``.

Ported from the seed ``002_99027090f3c0bd19`` (the router's ``Indexer`` tests that record routing
decisions) and from upstream's pruning tests (``PruneManager`` and the approximate ``KvIndexer``):
expiry, refresh on re-insertion, prune order and size, ``remove_worker``.  Upstream sleeps on a
wall clock; here the clock is explicit (``advance``), one tick standing for upstream's
millisecond-scale sleeps, and the TTLs are scaled accordingly.  Upstream's ``tokens`` are turned
into local hashes with :func:`kvspec.hashing.block_hashes` (byte-compatible with Dynamo).
"""

from __future__ import annotations

import pytest

import kvspec.impl
import kvspec.model
from kvspec.errors import InvalidArgument, InvalidConfiguration
from kvspec.events import StorageTier
from kvspec.hashing import block_hashes, sequence_hashes
from tests.golden.test_tiered_seeds import store_event

DEVICE, HOST = StorageTier.DEVICE, StorageTier.HOST_PINNED
NAMESPACES = pytest.mark.parametrize("ns", [kvspec.model, kvspec.impl], ids=["model", "impl"])


def check(index):
    if hasattr(index, "_check"):
        index._check()
    return index


def apply(index, step):
    _, worker_id, event, tier = step
    index.apply_event(worker_id, event, tier)


# -- the seed's Indexer tests ---------------------------------------------------------------------


@NAMESPACES
def test_concurrent_records_hashed_routing_decision(ns):
    """A primary approximate indexer (no KV events) scores a routed one-block request."""
    indexer = ns.RouterIndexer(use_kv_events=False, router_ttl=60)
    assert indexer.records_routing_decisions()
    local = block_hashes([1, 2, 3, 4], 4)
    indexer.record_routing_decision(7, 0, local)
    assert check(indexer).find_matches_by_tier(local).device.scores == {(7, 0): 1}


@NAMESPACES
def test_concurrent_records_precomputed_routing_hashes(ns):
    indexer = ns.RouterIndexer(use_kv_events=False, router_ttl=60)
    indexer.record_routing_decision(7, 0, [91, 92])
    assert check(indexer).find_matches_by_tier([91, 92]).device.scores == {(7, 0): 2}


@NAMESPACES
def test_event_driven_primary_without_side_skips_route_recording(ns):
    indexer = ns.RouterIndexer(use_kv_events=True)
    assert not indexer.records_routing_decisions()
    local = block_hashes([1, 2, 3, 4], 4)
    assert indexer.record_routing_decision(7, 0, local) == []
    assert (7, 0) not in check(indexer).find_matches_by_tier(local).device.scores


@NAMESPACES
def test_side_only_worker_scored_but_not_used_as_lower_tier_anchor(ns):
    indexer = ns.RouterIndexer(use_kv_events=True, router_predicted_ttl=60)
    assert indexer.records_routing_decisions()
    apply(indexer, store_event(10, 0, 1, [], [11, 12, 13], DEVICE))
    apply(indexer, store_event(10, 0, 2, [11, 12, 13], [14], HOST))
    apply(indexer, store_event(20, 0, 3, [11, 12, 13], [14], HOST))
    indexer.record_routing_decision(20, 0, [11, 12, 13])
    matches = check(indexer).find_matches_by_tier([11, 12, 13, 14])
    assert matches.device.scores == {(10, 0): 3, (20, 0): 3}
    host = matches.lower_tier[HOST]
    assert host.hits.get((10, 0)) == 1
    assert host.hits.get((20, 0), 0) == 0
    assert (20, 0) not in host.next_continuations


@NAMESPACES
def test_borrowed_tiered_lookup_matches_owned_with_lower_tier_and_side_overlay(ns):
    indexer = ns.RouterIndexer(use_kv_events=True, router_predicted_ttl=60)
    apply(indexer, store_event(10, 0, 1, [], [11, 12], DEVICE))
    apply(indexer, store_event(10, 0, 2, [11, 12], [13], HOST))
    indexer.record_routing_decision(20, 0, [11, 12, 13])
    matches = check(indexer).find_matches_by_tier([11, 12, 13])
    assert matches.device.scores == {(10, 0): 2, (20, 0): 3}
    assert matches.lower_tier[HOST].hits == {(10, 0): 1}
    assert indexer.find_matches([11, 12, 13]).scores == matches.device.scores


@NAMESPACES
def test_primary_approximate_with_side_is_refused(ns):
    """``router_predicted_ttl_secs`` requires ``use_kv_events=true`` (the seed's ``Indexer::new``)."""
    with pytest.raises(InvalidConfiguration):
        ns.RouterIndexer(use_kv_events=False, router_ttl=60, router_predicted_ttl=5)
    assert issubclass(InvalidConfiguration, InvalidArgument)


@NAMESPACES
def test_side_index_is_never_dumped(ns):
    indexer = ns.RouterIndexer(use_kv_events=True, router_predicted_ttl=60)
    indexer.record_routing_decision(20, 0, [11, 12])
    assert indexer.dump_events() == []
    primary = ns.RouterIndexer(use_kv_events=False, router_ttl=60)
    primary.record_routing_decision(20, 0, [11, 12])
    dumped = [(b.block_hash, b.tokens_hash) for ev in primary.dump_events() for b in ev.event.data.blocks]
    assert dumped == list(zip(sequence_hashes([11, 12]), [11, 12]))


@NAMESPACES
def test_kv_events_refused_without_kv_events(ns):
    indexer = ns.RouterIndexer(use_kv_events=False, router_ttl=60)
    with pytest.raises(InvalidArgument):
        apply(indexer, store_event(10, 0, 1, [], [11], DEVICE))
    assert indexer.dump_events() == []


# -- upstream's pruning tests (PruneManager, approximate KvIndexer) -------------------------------


@NAMESPACES
def test_prune_manager_expiry(ns):
    index = ns.ApproxIndex(ttl=50, max_tree_size=2**64 - 1, prune_target_ratio=0.5)
    index.record_routing_decision(0, 0, [1, 2, 3])
    assert index.size() == 3
    expired = index.advance(70)
    assert len(expired) == 3 and index.size() == 0 and check(index).entries() == []


@NAMESPACES
def test_prune_manager_update_resets_ttl(ns):
    index = ns.ApproxIndex(ttl=50)
    index.record_routing_decision(0, 0, [42])
    first = index.entries()[0].expiry
    index.advance(25)
    index.record_routing_decision(0, 0, [42])
    second = index.entries()[0].expiry
    assert second > first
    assert index.advance(30) == []  # past the first expiry, before the refreshed one
    assert [e.block_hash for e in index.advance(30)] == [42]
    check(index)


@NAMESPACES
def test_approx_kv_indexer_basic_flow(ns):
    index = ns.ApproxIndex(ttl=200)
    local = block_hashes([1, 2, 3, 4], 4)
    assert index.find_matches(local).scores == {}
    index.record_routing_decision(0, 0, local)
    assert index.find_matches(local).scores == {(0, 0): 1}
    index.advance(250)
    assert check(index).find_matches(local).scores == {}


@NAMESPACES
def test_remove_worker(ns):
    index = ns.ApproxIndex(ttl=5000)
    local = block_hashes([10, 11, 12, 13], 4)
    index.record_routing_decision(7, 0, local)
    assert (7, 0) in index.find_matches(local).scores
    index.remove_worker(7)
    assert (7, 0) not in check(index).find_matches(local).scores
    assert index.entries() == []  # the timers go with the blocks


@NAMESPACES
def test_remove_worker_preserves_other_workers(ns):
    index = ns.ApproxIndex(ttl=5000)
    local = block_hashes([100, 101, 102, 103], 4)
    index.record_routing_decision(30, 0, local)
    index.record_routing_decision(31, 0, local)
    assert index.find_matches(local).scores == {(30, 0): 1, (31, 0): 1}
    index.remove_worker(30)
    assert check(index).find_matches(local).scores == {(31, 0): 1}


@NAMESPACES
def test_remove_worker_dp_rank_keeps_other_ranks(ns):
    index = ns.ApproxIndex(ttl=5000)
    index.record_routing_decision(30, 0, [5])
    index.record_routing_decision(30, 1, [5])
    index.remove_worker_dp_rank(30, 0)
    assert check(index).find_matches([5]).scores == {(30, 1): 1}
    assert [(e.worker_id, e.dp_rank) for e in index.entries()] == [(30, 1)]


@NAMESPACES
def test_common_prefix_overlap(ns):
    index = ns.ApproxIndex(ttl=5000)
    index.record_routing_decision(11, 0, block_hashes([1, 2, 3, 4], 4))
    assert index.find_matches(block_hashes([1, 2, 3, 4, 5, 6, 7, 8], 4)).scores == {(11, 0): 1}


@NAMESPACES
def test_multiple_workers_same_block(ns):
    index = ns.ApproxIndex(ttl=5000)
    local = block_hashes([9, 8, 7, 6], 4)
    index.record_routing_decision(21, 0, local)
    index.record_routing_decision(22, 0, local)
    assert check(index).find_matches(local).scores == {(21, 0): 1, (22, 0): 1}


@NAMESPACES
def test_prune_manager_no_prune_when_within_bounds(ns):
    index = ns.ApproxIndex(ttl=10_000, max_tree_size=100, prune_target_ratio=0.5)
    for i in range(50):
        index.record_routing_decision(0, 0, [i])
    assert index.prune() == [] and index.size() == 50


@NAMESPACES
def test_prune_manager_prune_removes_oldest_first(ns):
    """15 entries, max 10, ratio 0.5: the 10 oldest go, the 5 newest stay."""
    index = ns.ApproxIndex(ttl=10_000, max_tree_size=10, prune_target_ratio=0.5)
    pruned = []
    for i in range(1, 16):
        pruned += index.record_routing_decision(i, 0, [i])  # distinct workers: one root block each
        index.advance(1)
    # upstream calls prune(15) once; here pruning is reactive: at the 11th entry (11 > 10) it keeps 5
    assert [e.worker_id for e in pruned] == [1, 2, 3, 4, 5, 6]
    assert sorted(e.worker_id for e in check(index).entries()) == [7, 8, 9, 10, 11, 12, 13, 14, 15]


@NAMESPACES
def test_prune_manager_prune_reinsertion_updates_position(ns):
    index = ns.ApproxIndex(ttl=10_000, max_tree_size=10, prune_target_ratio=0.4)
    for i in range(1, 11):
        index.record_routing_decision(i, 0, [i])
        index.advance(1)
    index.record_routing_decision(1, 0, [1])  # refreshed: now the newest
    index.record_routing_decision(11, 0, [11])  # 11 > 10 entries: prune down to 4
    assert sorted(e.worker_id for e in check(index).entries()) == [1, 9, 10, 11]


@NAMESPACES
def test_block_entry_ordering_deepest_first(ns):
    """Equal expiries: the deeper block goes first (upstream ``test_block_entry_ordering``)."""
    index = ns.ApproxIndex(ttl=100, max_tree_size=3, prune_target_ratio=0.5)
    pruned = index.record_routing_decision(0, 0, [100, 50, 7, 8])  # 4 > 3: keep 1
    assert [e.position for e in pruned] == [3, 2, 1]
    assert [e.position for e in check(index).entries()] == [0]
    assert index.find_matches([100, 50]).scores == {(0, 0): 1}


@NAMESPACES
def test_approx_indexer_e2e_pruning(ns):
    """max 5, ratio 0.4 (target 2): the 6th one-block request prunes the 4 oldest."""
    index = ns.ApproxIndex(ttl=60_000, max_tree_size=5, prune_target_ratio=0.4)
    requests = [block_hashes([i * 10, i * 10 + 1, i * 10 + 2, i * 10 + 3], 4) for i in range(6)]
    for local in requests[:5]:
        assert index.record_routing_decision(42, 0, local) == []
        index.advance(1)
    for local in requests[:5]:
        assert index.find_matches(local).scores == {(42, 0): 1}
    pruned = index.record_routing_decision(42, 0, requests[5])
    assert len(pruned) == 4
    for local in requests[:4]:
        assert index.find_matches(local).scores.get((42, 0), 0) == 0
    for local in requests[4:]:
        assert check(index).find_matches(local).scores == {(42, 0): 1}


@NAMESPACES
@pytest.mark.parametrize("args", [(0,), (-1,), (1.5,), (10, -1), (10, 5, 1.5), (10, 5, -0.1), (True,)])
def test_bad_construction(ns, args):
    with pytest.raises(InvalidArgument):
        ns.ApproxIndex(*args)


@NAMESPACES
def test_bad_input_changes_nothing(ns):
    index = ns.ApproxIndex(ttl=10)
    index.record_routing_decision(1, 0, [5, 6])
    before = (index.entries(), index.now(), index.dump_events())
    for call in (lambda: index.advance(-1), lambda: index.record_routing_decision(1, 0, [5, -6]),
                 lambda: index.record_routing_decision(-1, 0, [5]), lambda: index.record_routing_decision(1, 0, "ab")):
        with pytest.raises(InvalidArgument):
            call()
    assert (index.entries(), index.now(), index.dump_events()) == before
