"""Golden scenarios: the tiered index (dynamo-llm 1.3.0-dev.1, ``lib/llm/src/kv_router/indexer``
tests) and the tier experiments of ``docs/upstream.md`` R7.5, on ``kvspec.model`` and
``kvspec.impl``.

Every upstream test of the seed is ported except those about the approximate side indexer
(predict-on-route writes): ``concurrent_records_hashed_routing_decision``,
``concurrent_records_precomputed_routing_hashes``,
``event_driven_primary_without_side_skips_route_recording``,
``borrowed_tiered_lookup_matches_owned_with_lower_tier_and_side_overlay``, and the side half of
``side_only_worker_scored_but_not_used_as_lower_tier_anchor`` (its primary-only half is ported).
The ``concurrent_*`` variants run the same scenario on Dynamo's concurrent tree; kvspec has one
index, so they are kept as separate cases only where their scenario differs.

A case is data: events, one query, and the expected device scores and per-tier hits.  Events use
upstream's ``store_event(worker, dp_rank, event_id, prefix, locals, tier)`` helper: the external
hashes are the router's chained sequence hashes of ``prefix + locals`` and the parent is the
sequence hash of the prefix's last block.
"""

from __future__ import annotations

import pytest

import kvspec.impl
import kvspec.model
from kvspec.events import KvCacheEvent, Removed, StorageTier, Stored, StoredBlock
from kvspec.hashing import sequence_hashes

DEVICE, HOST, DISK, EXTERNAL = StorageTier.DEVICE, StorageTier.HOST_PINNED, StorageTier.DISK, StorageTier.EXTERNAL
NAMESPACES = pytest.mark.parametrize("ns", [kvspec.model, kvspec.impl], ids=["model", "impl"])


def store_event(worker_id, dp_rank, event_id, prefix, locals_, tier, e_offset=0):
    """Upstream's ``test_util::store_event``; ``e_offset`` shifts the external hashes (a publisher
    whose E-space disagrees with the device's)."""
    full = sequence_hashes(list(prefix) + list(locals_))
    parent = full[len(prefix) - 1] + e_offset if prefix else None
    blocks = [StoredBlock((e + e_offset) % 2**64, local) for e, local in zip(full[len(prefix):], locals_)]
    return ("apply", worker_id, KvCacheEvent(event_id, Stored(parent, blocks), dp_rank), tier)


def remove_event(worker_id, dp_rank, event_id, path, tier):
    """Remove the block that ends the L-path ``path`` (named by its sequence hash)."""
    return ("apply", worker_id, KvCacheEvent(event_id, Removed([sequence_hashes(path)[-1]]), dp_rank), tier)


def remove_worker(worker_id):
    return ("remove_worker", worker_id)


# name -> (events, query, expected device scores, {tier: expected hits}, {tier: workers absent from hits})
SEED_CASES = {
    "tiered_query_chains_device_host_and_disk": (
        [store_event(7, 0, 1, [], [11, 12], DEVICE),
         store_event(7, 0, 2, [11, 12], [13], HOST),
         store_event(7, 0, 3, [11, 12, 13], [14], DISK)],
        [11, 12, 13, 14], {(7, 0): 2}, {HOST: {(7, 0): 1}, DISK: {(7, 0): 1}}, {},
    ),
    "tiered_query_seeds_lower_tier_only_workers_without_affecting_device_scores": (
        [store_event(10, 0, 1, [], [21], DEVICE),
         store_event(20, 0, 2, [], [21], HOST),
         store_event(30, 0, 3, [], [21], DISK)],
        [21], {(10, 0): 1}, {HOST: {(20, 0): 1}, DISK: {(30, 0): 1}}, {},
    ),
    "tiered_query_only_seeds_matching_root_workers": (
        [store_event(20, 0, 1, [], [31], HOST),
         store_event(21, 0, 2, [], [32], HOST)],
        [31], {}, {HOST: {(20, 0): 1}}, {HOST: [(21, 0)]},
    ),
    "concurrent_tiered_query_chains_device_and_lower_tier_matches": (
        [store_event(7, 0, 1, [], [11, 12], DEVICE),
         store_event(7, 0, 2, [11, 12], [13], HOST)],
        [11, 12, 13], {(7, 0): 2}, {HOST: {(7, 0): 1}}, {},
    ),
    "concurrent_tiered_query_does_not_double_count_device_and_lower_tier_overlap": (
        [store_event(7, 0, 1, [], [11, 12, 13], DEVICE),
         store_event(7, 0, 2, [], [11, 12, 13], HOST)],
        [11, 12, 13], {(7, 0): 3}, {HOST: {(7, 0): 0}}, {},
    ),
    "concurrent_remove_worker_removes_lower_tier_state (before)": (
        [store_event(20, 0, 1, [], [31], HOST)],
        [31], {}, {HOST: {(20, 0): 1}}, {},
    ),
    "concurrent_remove_worker_removes_lower_tier_state (after)": (
        [store_event(20, 0, 1, [], [31], HOST), remove_worker(20)],
        [31], {}, {HOST: {}}, {HOST: [(20, 0)]},
    ),
    # the primary-only half: a host suffix of a worker with no device anchor is never credited
    "side_only_worker_scored_but_not_used_as_lower_tier_anchor (primary only)": (
        [store_event(10, 0, 1, [], [11, 12, 13], DEVICE),
         store_event(10, 0, 2, [11, 12, 13], [14], HOST),
         store_event(20, 0, 3, [11, 12, 13], [14], HOST)],
        [11, 12, 13, 14], {(10, 0): 3}, {HOST: {(10, 0): 1}}, {HOST: [(20, 0)]},
    ),
}

B = [1, 2, 3, 4, 5, 6]  # local hashes of blocks b0..b5 in the router experiments

# docs/upstream.md R7.5 (KvRouter over ZMQ, one worker, dp 0): (device, host hits, disk hits, external hits)
ROUTER_CASES = {
    "T1 dev2 host4 (same chain, same E)": (
        [store_event(1, 0, 1, [], B[:2], DEVICE), store_event(1, 0, 2, [], B[:4], HOST)], B[:4], (2, 2, None, None)),
    "T2 host-only 3, seeded from the root": (
        [store_event(1, 0, 1, [], B[:3], HOST)], B[:3], (0, 3, None, None)),
    "T3 dev2 + host suffix anchored on the device tail": (
        [store_event(1, 0, 1, [], B[:2], DEVICE), store_event(1, 0, 2, B[:2], B[2:4], HOST)], B[:4], (2, 2, None, None)),
    "T4 dev3 host2: no double count": (
        [store_event(1, 0, 1, [], B[:3], DEVICE), store_event(1, 0, 2, [], B[:2], HOST)], B[:3], (3, 0, None, None)),
    "T5 dev1 host2 disk4": (
        [store_event(1, 0, 1, [], B[:1], DEVICE), store_event(1, 0, 2, [], B[:2], HOST),
         store_event(1, 0, 3, [], B[:4], DISK)], B[:4], (1, 1, 2, None)),
    "T6 dev1, host suffix anchored at a missing b1": (
        [store_event(1, 0, 1, [], B[:1], DEVICE), store_event(1, 0, 2, B[:2], B[2:4], HOST)], B[:4], (1, 0, None, None)),
    "T7 host4 disk4, no device": (
        [store_event(1, 0, 1, [], B[:4], HOST), store_event(1, 0, 2, [], B[:4], DISK)], B[:4], (0, 4, 0, None)),
    "T8 disk2 then external continues": (
        [store_event(1, 0, 1, [], B[:2], DISK), store_event(1, 0, 2, B[:2], B[2:3], EXTERNAL)], B[:3], (0, None, 2, 1)),
    "T9 dev2 host3 in another E-space": (
        [store_event(1, 0, 1, [], B[:2], DEVICE), store_event(1, 0, 2, [], B[:3], HOST, e_offset=7)], B[:3], (2, 0, None, None)),
    "T10 dev2 host4, host removes b2": (
        [store_event(1, 0, 1, [], B[:2], DEVICE), store_event(1, 0, 2, [], B[:4], HOST),
         remove_event(1, 0, 3, B[:3], HOST)], B[:4], (2, 0, None, None)),
    "T11 dev2 host3, device removes b1": (
        [store_event(1, 0, 1, [], B[:2], DEVICE), store_event(1, 0, 2, [], B[:3], HOST),
         remove_event(1, 0, 3, B[:2], DEVICE)], B[:3], (1, 2, None, None)),
    "B dev2 host4, device gains b2": (
        [store_event(1, 0, 1, [], B[:2], DEVICE), store_event(1, 0, 2, [], B[:4], HOST),
         store_event(1, 0, 3, B[:2], B[2:3], DEVICE)], B[:4], (3, 1, None, None)),
    "B dev3 host4, device removes b0: host re-seeded from the root": (
        [store_event(1, 0, 1, [], B[:3], DEVICE), store_event(1, 0, 2, [], B[:4], HOST),
         remove_event(1, 0, 3, B[:1], DEVICE)], B[:4], (0, 4, None, None)),
    "C dev[0,1] disk[2,3] host[4,5]: host is walked before disk": (
        [store_event(1, 0, 1, [], B[:2], DEVICE), store_event(1, 0, 2, B[:2], B[2:4], DISK),
         store_event(1, 0, 3, B[:4], B[4:6], HOST)], B, (2, 0, 2, None)),
    "D dev[0,1] host[2] disk[3,4]": (
        [store_event(1, 0, 1, [], B[:2], DEVICE), store_event(1, 0, 2, B[:2], B[2:3], HOST),
         store_event(1, 0, 3, B[:3], B[3:5], DISK)], B[:5], (2, 1, 2, None)),
    "E disk[0,1] external[0..3]": (
        [store_event(1, 0, 1, [], B[:2], DISK), store_event(1, 0, 2, [], B[:4], EXTERNAL)], B[:4], (0, None, 2, 2)),
}


def run(ns, steps):
    index = ns.TieredIndex()
    for step in steps:
        if step[0] == "apply":
            _, worker_id, event, tier = step
            index.apply_event(worker_id, event, tier)
        else:
            index.remove_worker(step[1])
    if hasattr(index, "_check"):
        index._check()
    return index


@NAMESPACES
@pytest.mark.parametrize("name", sorted(SEED_CASES))
def test_seed_case(ns, name):
    steps, query, device, hits, absent = SEED_CASES[name]
    matches = run(ns, steps).find_matches_by_tier(query)
    assert matches.device.scores == device
    assert tuple(matches.device.frequencies) == ()
    for tier, expected in hits.items():
        assert tier in matches.lower_tier, f"{tier} was allocated by an event"
        for worker, count in expected.items():
            assert matches.lower_tier[tier].hits.get(worker) == count
    for tier, workers in absent.items():
        tier_matches = matches.lower_tier.get(tier)
        for worker in workers:
            assert tier_matches is None or worker not in tier_matches.hits
            assert tier_matches is None or worker not in tier_matches.next_continuations


@NAMESPACES
@pytest.mark.parametrize("name", sorted(ROUTER_CASES))
def test_router_experiment(ns, name):
    """``None`` means the tier was never allocated (no event named it)."""
    steps, query, expected = ROUTER_CASES[name]
    matches = run(ns, steps).find_matches_by_tier(query)
    worker = (1, 0)
    got = [matches.device.scores.get(worker, 0)]
    for tier in (HOST, DISK, EXTERNAL):
        got.append(matches.lower_tier[tier].hits.get(worker, 0) if tier in matches.lower_tier else None)
    assert tuple(got) == expected


@NAMESPACES
def test_continuations_carry_the_chain_end(ns):
    """The host walk resumes at the device tail's position and external hash; the disk walk at the host's."""
    steps, query, *_ = SEED_CASES["tiered_query_chains_device_host_and_disk"]
    matches = run(ns, steps).find_matches_by_tier(query)
    seq = sequence_hashes(query)
    host = matches.lower_tier[HOST].next_continuations[(7, 0)]
    disk = matches.lower_tier[DISK].next_continuations[(7, 0)]
    assert (host.position, host.anchors) == (3, (seq[2],))
    assert (disk.position, disk.anchors) == (4, (seq[3],))


@NAMESPACES
def test_cleared_reaches_every_tier(ns):
    """A Cleared event, whatever tier it names, clears that rank everywhere (a ZMQ AllBlocksCleared)."""
    steps = SEED_CASES["tiered_query_chains_device_host_and_disk"][0]
    index = run(ns, steps)
    index.apply_event(7, KvCacheEvent(9, Stored(None, []), 1), HOST)  # another rank: untouched below
    from kvspec.events import Cleared

    index.apply_event(7, KvCacheEvent(10, Cleared(), 0), DISK)
    matches = index.find_matches_by_tier([11, 12, 13, 14])
    assert matches.device.scores == {}
    assert matches.lower_tier[HOST].hits == {} and matches.lower_tier[DISK].hits == {}
    assert index.dump_events() == []
