"""Golden scenarios: the laned index (concurrent event lanes), on ``kvspec.model`` and ``kvspec.impl``.

The seed ``002_99027090f3c0bd19`` runs its tiered scenarios on the concurrent indexer too
(``make_test_concurrent_indexer``: a ``ThreadPoolIndexer`` over ``ConcurrentRadixTreeCompressed``
with two threads, then ``flush_indexer``).  Here each scenario's events are published on their
lanes, applied in several interleavings (every lane stepped one event at a time in turn, lanes in
reverse order, one drain), and at the quiescent point the answer must be the seed's expectation —
the sequential one.  Also the histories of kvspec finding F1 (where Dynamo's concurrent tree
leaks one rank's stale blocks into another's score): the laned index, whatever the interleaving,
answers like the sequential reference.
"""

from __future__ import annotations

import pytest

import kvspec.impl
import kvspec.model
from kvspec.events import KvCacheEvent, Removed, StorageTier, Stored, StoredBlock
from kvspec.hashing import sequence_hashes
from tests.golden.test_tiered_seeds import SEED_CASES

NAMESPACES = pytest.mark.parametrize("ns", [kvspec.model, kvspec.impl], ids=["model", "impl"])
CONCURRENT = sorted(name for name in SEED_CASES if name.startswith("concurrent_") and "remove_worker" not in name)
INTERLEAVINGS = ("drain", "round-robin", "reverse")


def publish(index, steps):
    for _, worker_id, event, tier in steps:
        index.apply_event(worker_id, event, tier)


def interleave(index, how):
    if how == "drain":
        index.drain()
    lanes = sorted(index.pending(), reverse=how == "reverse")
    while index.pending():
        for worker_id, rank in lanes:
            index.step(worker_id, rank, 1 if how == "round-robin" else 10)
    assert index.pending() == {}
    if hasattr(index, "_check"):
        index._check()


@NAMESPACES
@pytest.mark.parametrize("how", INTERLEAVINGS)
@pytest.mark.parametrize("name", CONCURRENT)
def test_concurrent_seed_case(ns, name, how):
    steps, query, device, hits, absent = SEED_CASES[name]
    index = ns.LanedIndex()
    publish(index, steps)
    assert index.find_matches_by_tier(query).device.scores == {}  # nothing applied yet
    interleave(index, how)
    matches = index.find_matches_by_tier(query)
    assert matches.device.scores == device
    for tier, expected in hits.items():
        for worker, count in expected.items():
            assert matches.lower_tier[tier].hits.get(worker) == count
    for tier, workers in absent.items():
        for worker in workers:
            assert worker not in matches.lower_tier.get(tier, type("m", (), {"hits": {}})).hits


def e(*path):
    return sequence_hashes(list(path))[-1]


def stored(path_before, *locals_):
    parent = e(*path_before) if path_before else None
    return Stored(parent, [StoredBlock(e(*path_before, *locals_[: i + 1]), local) for i, local in enumerate(locals_)])


D, B, A, C, X = 41, 42, 43, 44, 45
F1_HISTORIES = {
    "generated": ([(1, stored((), D, B, D, D)), (0, stored((), D, A)), (1, Removed([e(D)]))], [D, B, D, B],
                  {(1, 0): 1}),
    "notes-S3": ([(0, stored((), A, B, C, D)), (1, stored((), A, B, X)), (0, Removed([e(A, B)]))], [A, B, C, D],
                 {(1, 0): 1, (1, 1): 2}),
}


@NAMESPACES
@pytest.mark.parametrize("how", INTERLEAVINGS)
@pytest.mark.parametrize("name", sorted(F1_HISTORIES))
def test_f1_history_is_sequential_whatever_the_interleaving(ns, name, how):
    history, query, expected = F1_HISTORIES[name]
    reference = kvspec.model.TieredIndex()
    index = ns.LanedIndex()
    for i, (rank, data) in enumerate(history, 1):
        reference.apply_event(1, KvCacheEvent(i, data, rank))
        index.apply_event(1, KvCacheEvent(i, data, rank))
    interleave(index, how)
    assert index.find_matches_by_tier(query) == reference.find_matches_by_tier(query)
    assert index.find_matches(query).scores == expected
    assert index.dropped() == 0
