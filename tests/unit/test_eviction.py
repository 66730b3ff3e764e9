"""Inactive-pool backends on their own (docs/upstream.md P10, upstream's lineage/mod.rs and backend tests),
for both :mod:`kvspec.model.eviction` and :mod:`kvspec.impl.eviction`."""

import random

import pytest

from kvspec.errors import DuplicateLineage, InvalidArgument
from kvspec.frequency import ExactFrequency
from kvspec.hashing import Plh
from kvspec.impl import eviction as impl_eviction
from kvspec.model import eviction as model_eviction

MODULES = [pytest.param(model_eviction, id="model"), pytest.param(impl_eviction, id="impl")]


@pytest.fixture(params=MODULES)
def ev(request):
    return request.param


def chain(*currents, start=0, parent=None):
    out, prev = [], parent
    for offset, cur in enumerate(currents):
        out.append(Plh(start + offset, cur, prev))
        prev = cur
    return out


def backends(ev):
    return {
        "tick": ev.LineageIndex("tick"),
        "fifo": ev.LineageIndex("fifo"),
        "lru": ev.LruIndex(),
        "multi_lru": ev.MultiLruIndex(ExactFrequency()),
    }


def check(backend):
    getattr(backend, "_check", lambda: None)()


def drain(backend):
    out = []
    while len(backend):
        out.append(backend.evict()[0])
        check(backend)
    return out


# --- common contract (P10.0, P13) ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tick", "fifo", "lru", "multi_lru"])
def test_contract(ev, name):
    backend = backends(ev)[name]
    plhs = [Plh(0, i) for i in range(5)]
    for i, p in enumerate(plhs):
        backend.insert(p, i)
    assert len(backend) == 5
    assert backend.remove(plhs[1]) == 1 and backend.remove(plhs[3]) == 3
    assert len(backend) == 3
    with pytest.raises(KeyError):
        backend.remove(plhs[1])
    assert backend.order() == [plhs[0], plhs[2], plhs[4]]  # all roots: release order
    assert backend.evict() == (plhs[0], 0)
    assert drain(backend) == [plhs[2], plhs[4]]


# --- lineage graph (P10.1, P13) ----------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["tick", "fifo"])
def test_single_root(ev, policy):
    backend = ev.LineageIndex(policy)
    (p,) = chain(1)
    backend.insert(p, 7)
    assert len(backend) == 1 and backend.evict() == (p, 7) and len(backend) == 0
    check(backend)


@pytest.mark.parametrize("policy", ["tick", "fifo"])
@pytest.mark.parametrize("child_first", [False, True])
def test_two_chain_evicts_child_then_parent(ev, policy, child_first):
    parent, child = chain(1, 2)
    backend = ev.LineageIndex(policy)
    for p, i in ([(child, 1), (parent, 0)] if child_first else [(parent, 0), (child, 1)]):
        backend.insert(p, i)
        check(backend)
    assert drain(backend) == [child, parent]


@pytest.mark.parametrize("policy", ["tick", "fifo"])
def test_two_five_chains_keep_two_leaves(ev, policy):
    backend = ev.LineageIndex(policy)
    xs, ys = chain(*range(10, 15)), chain(*range(20, 25))
    for i, p in enumerate(xs + ys):
        backend.insert(p, i)
    order = drain(backend)
    # each chain leaves leaf-first
    assert [p for p in order if p in xs] == xs[::-1] and [p for p in order if p in ys] == ys[::-1]


def test_deep_chain_and_lone_deep_block(ev):
    backend = ev.LineageIndex("tick")
    deep = chain(*range(1000, 2000))
    for i, p in enumerate(deep):
        backend.insert(p, i)
    assert backend.evict()[0] == deep[-1]
    assert backend.order()[0] == deep[-2]
    check(backend)
    lone = ev.LineageIndex("tick")
    p = Plh(100, 5, 4)
    lone.insert(p, 0)
    assert lone.remove(p) == 0 and len(lone) == 0
    nodes = lone.nodes if hasattr(lone, "nodes") else lone._nodes
    assert nodes == {}  # no ghost residue


def test_impostor_misses_and_collision_refused(ev):
    backend = ev.LineageIndex("tick")
    real, impostor = Plh(3, 9, 8), Plh(3, 9, 7)
    backend.insert(real, 0)
    with pytest.raises(KeyError):
        backend.remove(impostor)
    with pytest.raises(DuplicateLineage):
        backend.insert(impostor, 1)
    assert len(backend) == 1 and backend.order() == [real]


def test_tick_vs_fifo_releaf(ev):
    """Tick: a re-leafed parent keeps its old tick; Fifo: it goes to the tail."""
    a, b = chain(1, 2)
    x = chain(3)[0]
    for policy, expected in (("tick", [b, a, x]), ("fifo", [b, x, a])):
        backend = ev.LineageIndex(policy)
        for i, p in enumerate((a, b, x)):
            backend.insert(p, i)
        assert backend.order() == expected
        assert drain(backend) == expected


def test_tick_reinserted_node_gets_new_tick(ev):
    """TickPolicy test: removed then re-inserted goes to the end (order 1, 2, 0)."""
    backend = ev.LineageIndex("tick")
    p0, p1, p2 = (Plh(0, i) for i in range(3))
    for i, p in enumerate((p0, p1, p2)):
        backend.insert(p, i)
    backend.remove(p0)
    backend.insert(p0, 0)
    assert backend.order() == [p1, p2, p0]


def test_resurrected_interior_becomes_linked_ghost(ev):
    a, b, c = chain(1, 2, 3)
    backend = ev.LineageIndex("tick")
    for i, p in enumerate((a, b, c)):
        backend.insert(p, i)
    assert backend.remove(b) == 1
    assert len(backend) == 2 and backend.order() == [c, a]  # a protected by ghost b
    backend.insert(b, 1)  # ghost promoted: keeps links, fresh tick
    assert backend.order() == [c, b, a]
    check(backend)


def test_placeholder_ghost_is_not_linked_upward(ev):
    """Rule 4: with b absent, ghost b (created for c) is not a child of a."""
    a, b, c = chain(1, 2, 3)
    backend = ev.LineageIndex("tick")
    backend.insert(a, 0)
    backend.insert(c, 2)
    assert backend.order() == [a, c]
    backend.insert(b, 1)  # promotion links b under a
    assert backend.order() == [c, b, a]


def test_order_does_not_mutate(ev):
    backend = ev.LineageIndex("fifo")
    plhs = chain(1, 2, 3) + chain(4, 5)
    for i, p in enumerate(plhs):
        backend.insert(p, i)
    first = backend.order()
    assert backend.order() == first and len(backend) == 5
    assert drain(backend) == first


# --- MultiLRU ------------------------------------------------------------------------------------


def test_tier_thresholds(ev):
    assert [ev.tier_for(c, (3, 8, 15)) for c in (0, 2, 3, 7, 8, 14, 15)] == [0, 0, 1, 1, 2, 2, 3]


def test_multi_lru_needs_tracker_and_sane_thresholds(ev):
    with pytest.raises(InvalidArgument):
        ev.MultiLruIndex(None)
    with pytest.raises(InvalidArgument):
        ev.MultiLruIndex(ExactFrequency(), (3, 3, 15))
    with pytest.raises(InvalidArgument):
        ev.MultiLruIndex(ExactFrequency(), (0, 8, 15))


def test_multi_lru_cold_before_warm(ev):
    tracker = ExactFrequency()
    backend = ev.MultiLruIndex(tracker)
    hot, warm, cold = Plh(0, 1), Plh(0, 2), Plh(0, 3)
    for _ in range(15):
        tracker.touch(hot)
    for _ in range(3):
        tracker.touch(warm)
    for i, p in enumerate((hot, warm, cold)):
        backend.insert(p, i)
    assert backend.order() == [cold, warm, hot]
    assert drain(backend) == [cold, warm, hot]


# --- model == impl on random operation sequences -------------------------------------------------


@pytest.mark.parametrize("name", ["tick", "fifo", "lru", "multi_lru"])
@pytest.mark.parametrize("seed", range(5))
def test_model_and_impl_agree_on_random_sequences(name, seed):
    rng = random.Random(seed)
    tracker_m, tracker_i = ExactFrequency(), ExactFrequency()
    model = backends(model_eviction)[name] if name != "multi_lru" else model_eviction.MultiLruIndex(tracker_m)
    impl = backends(impl_eviction)[name] if name != "multi_lru" else impl_eviction.MultiLruIndex(tracker_i)
    universe = []
    for first in range(1, 4):
        for second in range(1, 4):
            universe += chain(first, first * 10 + second, first * 100 + second * 10 + 1)
    universe = sorted(set(universe))
    inside: set = set()
    for step in range(400):
        choice = rng.random()
        if choice < 0.5:
            p = rng.choice(universe)
            if p not in inside:
                touches = rng.randrange(4)
                for t in (tracker_m, tracker_i):
                    for _ in range(touches):
                        t.touch(p)
                model.insert(p, step)
                impl.insert(p, step)
                inside.add(p)
        elif choice < 0.75 and inside:
            p = rng.choice(sorted(inside))
            assert model.remove(p) == impl.remove(p)
            inside.discard(p)
        elif inside:
            got = model.evict()
            assert impl.evict() == got
            inside.discard(got[0])
        assert model.order() == impl.order()
        assert len(model) == len(impl) == len(inside)
        impl._check()


def test_impl_tick_heap_stays_bounded_under_resurrection_churn():
    """Release/match cycles leave stale queue entries; compaction keeps the queue O(n)."""
    backend = impl_eviction.LineageIndex("tick")
    keep, churn = Plh(0, 1), Plh(0, 2)
    backend.insert(keep, 0)
    for _ in range(500):
        backend.insert(churn, 1)
        backend.remove(churn)
        backend._check()
    assert backend._queue_len() <= 2 * backend._node_count() + 33
    backend.insert(churn, 1)
    assert backend.order() == [keep, churn]


@pytest.mark.parametrize("policy", ["tick", "fifo"])
def test_recycled_node_id_does_not_inherit_a_stale_queue_entry(policy):
    """The impl reuses a removed node's id; the old queue entry (its old tick) must not make the new
    node evictable out of turn: the oldest remaining leaf still goes first, as in the model."""
    first, second, late = Plh(0, 1), Plh(0, 2), Plh(0, 3)
    impl = impl_eviction.LineageIndex(policy)
    model = model_eviction.LineageIndex(policy)
    for backend in (impl, model):
        backend.insert(first, 0)
        backend.insert(second, 1)
        backend.remove(first)  # its id is spare; its entry, older than second's, stays queued
        backend.insert(late, 2)  # takes first's id
    impl._check()
    assert impl.order() == model.order() == [second, late]
    assert impl.evict() == model.evict() == (second, 1)
    impl._check()
