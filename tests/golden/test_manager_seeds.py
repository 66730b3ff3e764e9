"""Golden scenarios: every upstream test of the G1 mocker KvManager (dynamo-mocker
1.2.0 and a later main revision, ``lib/mocker/src/kv_manager/kvbm_backend.rs``; the ``kvbm-offload`` tests are
out of scope), replayed on both ``kvspec.model`` and ``kvspec.impl``.

Each scenario is data: a list of steps, interpreted by :func:`replay`.  Steps:

* ``("process", op, expected_return)``;
* ``("raises", op, ErrorClass)`` — where upstream panics: kvspec raises the typed error and the
  manager's observable state (and event stream) is exactly unchanged;
* ``("events", [("stored", parent, [hashes]) | ("removed", [hashes]), ...])`` — drain and compare;
* ``("observe", method, expected)`` — call an observer (``active_refcounts`` compares as a dict);
* ``("sequence", name, seq_factory)`` / ``("seq", name, method, *args)`` — drive an
  :class:`~kvspec.sequence.ActiveSequence` and feed its signals to the manager (``"seq_process"``).

Differences from upstream because of kvspec decision D6 (parent anchoring, docs/decisions.md) cannot show here: every
upstream scenario stores its new blocks as a suffix of the Use.  ``test_interior_hit_*`` below pin
down where kvspec and upstream differ.
"""

from __future__ import annotations

import pytest

import kvspec.impl
import kvspec.model
from kvspec.errors import BlockNotHeld, DuplicateLineage, InvalidParent, LengthMismatch, UnknownPartialBlock
from kvspec.events import Removed, Stored
from kvspec.hashing import Plh
from kvspec.protocol import Deref, FullBlock, PartialBlock, Promote, Use
from kvspec.sequence import ActiveSequence, IdSource

NAMESPACES = pytest.mark.parametrize("ns", [kvspec.model, kvspec.impl], ids=["model", "impl"])


def plh(v: int) -> Plh:
    """Upstream's ``plh(v) = PositionalLineageHash::new(v, None, 0)``."""
    return Plh(0, v, None)


_LINEAGE = {0: (None, 0), 1: (0, 1), 2: (1, 2), 3: (2, 3), 4: (3, 4), 5: (1, 2), 6: (5, 3), 7: (2, 3),
            8: (7, 4), 9: (8, 5), 10: (None, 0), 11: (10, 1), 12: (11, 2), 13: (None, 0)}


def lineage_plh(i: int) -> Plh:
    """Upstream's ``lineage_plh``: chains 0-1-2-3-4, 1-5-6, 2-7-8-9, 10-11-12, 13."""
    parent, position = _LINEAGE[i]
    return Plh(position, i, parent)


def use_full(h: int, p: Plh) -> Use:
    return Use([FullBlock(h)], [], [p])


def use_ids(ids, make_plh=plh) -> Use:
    return Use([FullBlock(i) for i in ids], [], [make_plh(i) for i in ids])


def deref_ids(ids) -> Deref:
    return Deref([FullBlock(i) for i in ids])


def _simplify(events):
    out = []
    for e in events:
        if isinstance(e.data, Stored):
            out.append(("stored", e.data.parent_hash, [b.block_hash for b in e.data.blocks]))
        elif isinstance(e.data, Removed):
            out.append(("removed", list(e.data.block_hashes)))
        else:
            out.append(("other", e.data))
    return out


OBSERVERS = ("num_active_blocks", "num_active_block_refs", "num_inactive_blocks", "active_refcounts",
             "eviction_order")


def _observe(mgr):
    return {name: getattr(mgr, name)() for name in OBSERVERS}


def replay(ns, steps, *, capacity, block_size=16, **kwargs):
    mgr = ns.KvManager(capacity, block_size, **kwargs)
    seqs = {}
    all_events = []
    for step in steps:
        kind = step[0]
        if kind == "process":
            _, op, expected = step
            assert mgr.process(op) == expected, f"process({op!r})"
        elif kind == "raises":
            _, op, error = step
            before = _observe(mgr)
            with pytest.raises(error):
                mgr.process(op)
            assert _observe(mgr) == before, "a rejected operation changed the manager"
            assert mgr.drain_events() == [], "a rejected operation published events"
        elif kind == "events":
            events = mgr.drain_events()
            all_events.extend(events)
            assert _simplify(events) == step[1]
        elif kind == "observe":
            _, name, expected = step
            assert getattr(mgr, name)() == expected, name
        elif kind == "sequence":
            _, name, factory = step
            seqs[name] = factory()
        elif kind == "seq_process":
            # ("seq_process", name, method, args, expected_returns or None)
            _, name, method, args, expected = step
            signals = getattr(seqs[name], method)(*args)
            if signals is None:
                signals = []
            elif not isinstance(signals, list):
                signals = [signals]
            got = [mgr.process(s) for s in signals]
            if expected is not None:
                assert got == expected, f"{name}.{method}{args}"
        elif kind == "seq":
            _, name, method, *args = step
            getattr(seqs[name], method)(*args)
        elif kind == "custom":
            step[1](mgr, seqs)
        else:  # pragma: no cover - a typo in a scenario
            raise AssertionError(f"unknown step {kind}")
    rest = mgr.drain_events()
    all_events.extend(rest)
    ids = [e.event_id for e in all_events]
    assert ids == list(range(len(ids))), "event ids must count from 0 without gaps"
    if hasattr(mgr, "_check"):
        mgr._check()
    return mgr, seqs


# --- the upstream scenarios -------------------------------------------------------------------

SCENARIOS = {
    "test_use_single_full_block": (dict(capacity=10), [
        ("process", use_full(1, plh(100)), 1),
        ("observe", "num_active_blocks", 1),
    ]),
    # upstream panics on short token_ids before mutating; kvspec: LengthMismatch, nothing changes
    "use_rejects_short_token_ids_before_mutating_state": (dict(capacity=10, block_size=4), [
        ("raises", Use([FullBlock(1), FullBlock(2)], [101, 102], [plh(100), plh(200)], [[1, 2, 3, 4]]),
         LengthMismatch),
        ("observe", "num_active_blocks", 0),
        ("observe", "active_refcounts", {}),
        ("events", []),
    ]),
    "test_duplicate_use_bumps_refcount": (dict(capacity=10), [
        ("process", use_full(1, plh(100)), 1),
        ("process", use_full(1, plh(100)), 1),
        ("observe", "num_active_blocks", 1),
        ("observe", "num_active_block_refs", 2),
    ]),
    "test_capacity_exhaustion_returns_partial": (dict(capacity=4), [
        *[("process", use_full(i, plh(i + 100)), 1) for i in range(4)],
        ("process", use_full(4, plh(500)), 0),
    ]),
    "test_deref_returns_to_inactive": (dict(capacity=4), [
        ("process", use_full(1, plh(100)), 1),
        ("process", deref_ids([1]), 1),
        ("observe", "num_active_blocks", 0),
        ("observe", "num_inactive_blocks", 1),
    ]),
    # a Plh hit under another sequence hash pins the same block under the new hash (no Stored)
    "test_inactive_reuse_via_match_blocks": (dict(capacity=10), [
        ("process", use_full(1, plh(100)), 1),
        ("process", deref_ids([1]), 1),
        ("process", use_full(2, plh(100)), 1),
        ("observe", "active_refcounts", {2: 1}),
        ("observe", "num_active_blocks", 1),
        ("events", [("stored", None, [1])]),
    ]),
    "test_eviction_frees_inactive_for_new_allocation": (dict(capacity=4), [
        *[("process", use_full(i, plh(i + 100)), 1) for i in range(4)],
        *[("process", deref_ids([i]), 1) for i in range(4)],
        *[("process", use_full(i, plh(i + 1000)), 1) for i in range(10, 14)],
        ("observe", "num_active_blocks", 4),
    ]),
    "test_promote_basic": (dict(capacity=10), [
        ("process", Use([PartialBlock(7)], [], []), 1),
        ("process", Promote(7, 42, None, 0, plh(500)), 1),
        ("observe", "num_active_blocks", 1),
        ("observe", "num_active_block_refs", 1),
        ("observe", "active_refcounts", {42: 1}),
        ("events", [("stored", None, [42])]),
    ]),
    # upstream: panic "Promote: partial block not found"
    "test_promote_nonexistent_panics": (dict(capacity=10), [
        ("raises", Promote(99, 42, None, 0, plh(500)), UnknownPartialBlock),
    ]),
    "test_deref_partial_returns_to_reset": (dict(capacity=10), [
        ("process", Use([PartialBlock(7)], [], []), 1),
        ("observe", "num_active_block_refs", 1),
        ("process", Deref([PartialBlock(7)]), 1),
        ("observe", "num_active_block_refs", 0),
        ("observe", "num_active_blocks", 0),
        ("observe", "num_inactive_blocks", 0),
    ]),
    "test_failure_on_max_capacity": (dict(capacity=10), [
        ("process", use_ids(range(10)), 10),
        ("observe", "num_active_blocks", 10),
        ("process", use_ids([10]), 0),
    ]),
    "test_block_lifecycle_stringent": (dict(capacity=10, eviction="lineage"), [
        ("process", use_ids([0, 1, 2, 3, 4], lineage_plh), 5),
        ("events", [("stored", None, [0, 1, 2, 3, 4])]),
        ("process", use_ids([0, 1, 5, 6], lineage_plh), 4),
        ("events", [("stored", 1, [5, 6])]),
        ("observe", "active_refcounts", {0: 2, 1: 2, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1}),
        ("observe", "num_active_blocks", 7),
        ("observe", "num_active_block_refs", 9),
        ("process", deref_ids([4, 3, 2, 1, 0]), 1),
        ("events", []),
        ("observe", "active_refcounts", {0: 1, 1: 1, 5: 1, 6: 1}),
        ("observe", "num_inactive_blocks", 3),
        ("process", deref_ids([6, 5, 1, 0]), 1),
        ("events", []),
        ("observe", "active_refcounts", {}),
        ("observe", "num_inactive_blocks", 7),
        ("process", use_ids([0, 1, 2, 7, 8, 9], lineage_plh), 6),
        ("events", [("stored", 2, [7, 8, 9])]),
        ("observe", "active_refcounts", {0: 1, 1: 1, 2: 1, 7: 1, 8: 1, 9: 1}),
        ("observe", "num_inactive_blocks", 4),
        ("process", use_ids([10, 11, 12], lineage_plh), 3),
        ("events", [("stored", None, [10, 11, 12]), ("removed", [4, 3, 6])]),
        ("observe", "num_active_blocks", 9),
        ("observe", "eviction_order", [5]),
        ("process", use_ids([13], lineage_plh), 1),
        ("events", [("stored", None, [13]), ("removed", [5])]),
        ("observe", "num_active_blocks", 10),
        ("observe", "num_inactive_blocks", 0),
    ]),
    "test_inactive_hit_does_not_republish_stored": (dict(capacity=4), [
        ("process", use_full(1, plh(100)), 1),
        ("process", deref_ids([1]), 1),
        ("process", use_full(1, plh(100)), 1),
        ("events", [("stored", None, [1])]),
    ]),
    "test_stored_suffix_anchors_to_last_reused_block": (dict(capacity=8), [
        ("process", use_ids([10, 11]), 2),
        ("process", deref_ids([10]), 1),
        ("process", deref_ids([11]), 1),
        ("events", [("stored", None, [10, 11])]),
        ("process", use_ids([10, 11, 12]), 3),
        ("events", [("stored", 11, [12])]),
    ]),
    "test_shared_prefix_distinct_vs_refcount": (dict(capacity=8), [
        ("process", use_ids([10, 11, 12]), 3),
        ("observe", "num_active_blocks", 3),
        ("observe", "num_active_block_refs", 3),
        ("process", use_ids([10, 11, 13]), 3),
        ("observe", "num_active_blocks", 4),
        ("observe", "num_active_block_refs", 6),
    ]),
    # capacity 2 with {10, 11} inactive: exactly one of them is evicted (kvspec: 10, the older)
    "test_eviction_emits_exact_removed_event": (dict(capacity=2), [
        ("process", use_ids([10, 11]), 2),
        ("process", deref_ids([10]), 1),
        ("process", deref_ids([11]), 1),
        ("observe", "num_active_blocks", 0),
        ("observe", "num_inactive_blocks", 2),
        ("events", [("stored", None, [10, 11])]),
        ("process", use_full(12, plh(12)), 1),
        ("events", [("stored", None, [12]), ("removed", [10])]),
    ]),
}


@NAMESPACES
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_upstream_scenario(ns, name):
    kwargs, steps = SCENARIOS[name]
    replay(ns, steps, **kwargs)


@NAMESPACES
@pytest.mark.parametrize("eviction", ["lru", "multi_lru"])
def test_eviction_backend_lru_and_multi_lru(ns, eviction):
    steps = [
        *[("process", use_full(i, plh(i + 100)), 1) for i in range(4)],
        *[("process", deref_ids([i]), 1) for i in range(4)],
        *[("process", use_full(i, plh(i + 1000)), 1) for i in range(10, 14)],
        ("observe", "num_active_blocks", 4),
        ("events", [("stored", None, [i]) for i in range(4)]
         + [e for i in range(4) for e in (("stored", None, [10 + i]), ("removed", [i]))]),
    ]
    replay(ns, steps, capacity=4, eviction=eviction)


@NAMESPACES
def test_prefill_cost_no_overlap(ns):
    mgr = ns.KvManager(10, 16)
    seq = ActiveSequence(list(range(35)), 16, 10, True, rng=IdSource(0))
    cost = mgr.prefill_cost(seq)
    assert cost.new_blocks == len(seq.unique_blocks) == 3
    assert cost.new_tokens == 35
    assert cost.cached_tokens == 0 and cost.active_cached_tokens == 0


@NAMESPACES
def test_chunked_prefill_parent_hash(ns):
    """512 tokens in 2 chunks of 256 (bs 64): two Stored; the second anchored to U[3]."""
    mgr = ns.KvManager(256, 64)
    seq = ActiveSequence(list(range(512)), 64, 100, True, rng=IdSource(0))
    assert mgr.process(seq.prepare_allocation(256)) == 4
    seq.commit_allocation(256)
    assert mgr.process(seq.prepare_allocation(512)) == 4
    seq.commit_allocation(512)
    events = mgr.drain_events()
    assert len(events) == 2
    assert events[0].data.parent_hash is None
    assert events[1].data.parent_hash == seq.unique_blocks[3].hash
    assert [b.block_hash for e in events for b in e.data.blocks] == [b.hash for b in seq.unique_blocks]
    assert [b.tokens_hash for e in events for b in e.data.blocks] == list(seq.block_hashes)


@NAMESPACES
def test_repreempt_after_partial_recompute_only_frees_reallocated_blocks(ns):
    mgr = ns.KvManager(16, 4)
    seq = ActiveSequence(list(range(6)), 4, 16, True, rng=IdSource(0))
    assert mgr.process(seq.take_creation_signal()) == 2
    for _ in range(3):
        for signal in seq.generate():
            mgr.process(signal)
        if seq.generated_tokens < seq.max_output_tokens:
            seq.commit_allocation(len(seq))
    assert mgr.num_active_blocks() == 3
    for signal in seq.reset_with_signal():
        mgr.process(signal)
    assert mgr.num_active_blocks() == 0
    mgr.drain_events()
    prompt_only = seq.prepare_allocation(seq.num_input_tokens)
    assert mgr.process(prompt_only) == 2
    seq.commit_allocation(seq.num_input_tokens)
    assert mgr.num_active_blocks() == 2
    assert mgr.drain_events() == [], "re-prefill of cached blocks publishes nothing"
    second = seq.reset_with_signal()
    assert len(second) == 2
    for signal in second:
        mgr.process(signal)
    assert mgr.num_active_blocks() == 0


@NAMESPACES
def test_random_plh_stable_across_preempt_retry(ns):
    mgr = ns.KvManager(8, 16)
    seq = ActiveSequence(list(range(64)), 16, 100, False, rng=IdSource(3))
    assert mgr.process(seq.take_creation_signal()) == 4
    assert mgr.num_active_blocks() == 4
    for signal in seq.reset_with_signal():
        mgr.process(signal)
    assert (mgr.num_active_blocks(), mgr.num_inactive_blocks()) == (0, 4)
    assert mgr.process(seq.take_creation_signal()) == 4
    assert (mgr.num_active_blocks(), mgr.num_inactive_blocks()) == (4, 0)
    stored = [e for e in mgr.drain_events() if isinstance(e.data, Stored)]
    assert len(stored) == 1, "a preempted request re-matches its own blocks"
    # ... but never another request's (random identities)
    other = ActiveSequence(list(range(64)), 16, 100, False, rng=IdSource(4))
    assert mgr.prefill_cost(other).cached_tokens == 0


# --- docs/upstream.md M3.4 worked example and kvspec's deliberate differences ---------------


@NAMESPACES
def test_worked_example_mocker_spec_3_4(ns):
    """docs/upstream.md M3.4 with the seed-1337 chain (docs/decisions.md D2)."""
    mgr = ns.KvManager(8, 4)
    seq = ActiveSequence([0, 1, 2, 3, 4, 5], 4, 3, True, output_tokens=[6, 7, 8], rng=IdSource(0))
    seq0, seq1 = 9143094415614847814, 9510318385840434533
    assert mgr.process(seq.take_creation_signal()) == 2
    assert _simplify(mgr.drain_events()) == [("stored", None, [seq0])]
    assert seq.generate() == [] and seq.generate() == []
    signals = seq.generate()
    assert [type(s).__name__ for s in signals] == ["Promote", "Use", "Deref", "Deref", "Deref"]
    for s in signals[:2]:
        mgr.process(s)
    assert _simplify(mgr.drain_events()) == [("stored", seq0, [seq1])]
    seq.commit_allocation(len(seq))
    for s in seq.reset_with_signal():
        mgr.process(s)
    assert mgr.process(seq.prepare_allocation(6)) == 2
    assert mgr.drain_events() == [], "two inactive hits, no Stored"


@NAMESPACES
def test_interior_hit_anchoring_kvspec_vs_upstream(ns):
    """Decision 6.  [A, B] stored, released root first under LRU, then A evicted: B inactive, A gone.

    ``Use([A, B, C])``: A new, B an inactive hit, C new.  Upstream publishes ONE event
    ``Stored([A, C], parent=B)`` (files A under B and C under B's position wrongly chained after A);
    kvspec publishes ``Stored([A], None)`` then ``Stored([C], parent=B)``.
    """
    a, b, c, x, y = 1, 2, 3, 8, 9
    pa, pb, pc, px, py = Plh(0, a, None), Plh(1, b, a), Plh(2, c, b), Plh(0, x, None), Plh(0, y, None)
    steps = [
        ("process", Use([FullBlock(a), FullBlock(b)], [], [pa, pb]), 2),
        ("process", Use([FullBlock(x)], [], [px]), 1),
        # release order A, X, B: under LRU the root A is the oldest
        ("process", Deref([FullBlock(a)]), 1),
        ("process", Deref([FullBlock(x)]), 1),
        ("process", Deref([FullBlock(b)]), 1),
        ("process", Use([FullBlock(y)], [], [py]), 1),  # evicts A; B stays inactive
        ("process", Deref([FullBlock(y)]), 1),
        ("events", [("stored", None, [a, b]), ("stored", None, [x]), ("stored", None, [y]), ("removed", [a])]),
        ("process", Use([FullBlock(a), FullBlock(b), FullBlock(c)], [], [pa, pb, pc]), 3),
        # upstream: [("stored", b, [a, c]), ("removed", [x, y])]
        ("events", [("stored", None, [a]), ("stored", b, [c]), ("removed", [x, y])]),
    ]
    replay(ns, steps, capacity=3, eviction="lru")


@NAMESPACES
def test_block_evicted_and_restored_by_the_same_use(ns):
    """kvspec's net-event rule.  Capacity 2, [P, Q] inactive, P released first (the LRU victim).

    ``Use([X, P])`` with X new: X's slot evicts P (the oldest), then P misses and is stored again.
    Upstream: ``Stored([X, P])`` then ``Removed([P])`` — the router forgets P, which the worker holds.
    kvspec: P was registered before and after the Use, so the router is told nothing about it:
    ``Stored([X])`` only, and P anchors nothing new.
    """
    p, q, x = 5, 6, 7
    pp, pq, px = Plh(0, p, None), Plh(0, q, None), Plh(0, x, None)
    steps = [
        ("process", Use([FullBlock(p), FullBlock(q)], [], [pp, pq]), 2),
        ("process", Deref([FullBlock(p)]), 1),
        ("process", Deref([FullBlock(q)]), 1),
        ("events", [("stored", None, [p, q])]),
        ("process", Use([FullBlock(x), FullBlock(p)], [], [px, pp]), 2),
        ("events", [("stored", None, [x]), ("removed", [q])]),
        ("observe", "active_refcounts", {x: 1, p: 1}),
        ("observe", "num_inactive_blocks", 0),
    ]
    replay(ns, steps, capacity=2, eviction="lru")


# --- kvspec's typed errors (upstream panics or is silent) --------------------------------------


@NAMESPACES
def test_bad_input_is_rejected_and_changes_nothing(ns):
    p1, p2, p3 = plh(1), plh(2), plh(3)
    steps = [
        ("process", Use([FullBlock(1), FullBlock(2), PartialBlock(50)], [11, 12], [p1, p2]), 3),
        ("events", [("stored", None, [1, 2])]),
        # 3rd block of a Deref batch is not held
        ("raises", Deref([FullBlock(1), FullBlock(2), FullBlock(3)]), BlockNotHeld),
        # named more times than held
        ("raises", Deref([FullBlock(1), FullBlock(1)]), BlockNotHeld),
        ("raises", Deref([PartialBlock(50), PartialBlock(50)]), BlockNotHeld),
        ("raises", Deref([PartialBlock(51)]), BlockNotHeld),
        # lengths
        ("raises", Use([FullBlock(3)], [], []), LengthMismatch),
        ("raises", Use([FullBlock(3)], [1, 2], [p3]), LengthMismatch),
        ("raises", Use([FullBlock(3)], [], [p3], [[1], [2]]), LengthMismatch),
        # a partial parent
        ("raises", Use([FullBlock(3)], [], [p3], None, PartialBlock(50)), InvalidParent),
        # a Plh whose lineage key collides with a live identity
        ("raises", Use([FullBlock(3)], [], [Plh(0, 1, 77)]), DuplicateLineage),
        # ... or with another Plh of the same Use (3rd block)
        ("raises", Use([FullBlock(3), FullBlock(4), FullBlock(5)], [], [p3, plh(4), Plh(0, 4, 8)]),
         DuplicateLineage),
        ("raises", Promote(51, 9, None, None, plh(9)), UnknownPartialBlock),
        ("raises", Promote(50, 9, None, None, Plh(0, 2, 5)), DuplicateLineage),
        ("observe", "active_refcounts", {1: 1, 2: 1}),
        ("observe", "num_active_block_refs", 3),
        # a held block named with another Plh: an active hit, the Plh is ignored (upstream)
        ("process", Use([FullBlock(1)], [], [plh(1234)]), 1),
        ("observe", "active_refcounts", {1: 2, 2: 1}),
        # the same full block twice in one Use: stored once, two references.  Upstream anchors the
        # Use's Stored to its last reused block, which is the block itself: Stored(parent=6, [6]).
        ("process", Use([FullBlock(6), FullBlock(6)], [], [plh(6), plh(6)]), 2),
        ("events", [("stored", None, [6])]),
        ("observe", "active_refcounts", {1: 2, 2: 1, 6: 2}),
    ]
    replay(ns, steps, capacity=8)


@NAMESPACES
@pytest.mark.parametrize("args", [(0, 16), (-1, 16), (4, 0), (4, -3)])
def test_bad_construction(ns, args):
    from kvspec.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        ns.KvManager(*args)
