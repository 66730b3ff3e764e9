"""Golden BlockPool scenarios from upstream (docs/upstream.md P10.1, P13, P14), on model AND impl.

Each expectation below is derived in the spec from upstream's rules or copied from upstream's own
tests (``lib/kvbm-logical/src/manager/tests.rs``, ``lineage/mod.rs``, the mocker's lifecycle
scenario); the section is named per test.
"""

import pytest

import kvspec.impl
import kvspec.model
from kvspec.frequency import ExactFrequency
from kvspec.hashing import Plh

NAMESPACES = [pytest.param(kvspec.model, id="model"), pytest.param(kvspec.impl, id="impl")]


@pytest.fixture(params=NAMESPACES)
def ns(request):
    return request.param


def chain(*currents, start=0, parent=None):
    """Plhs of a chain of sequence hashes ``currents`` starting at position ``start``."""
    out, prev = [], parent
    for offset, cur in enumerate(currents):
        out.append(Plh(start + offset, cur, prev))
        prev = cur
    return out


def take(pool, plh):
    """Allocate one block (evicting if needed) and register it; returns (held id, evicted)."""
    (block_id,), evicted = pool.allocate_with_evictions(1)
    return pool.register(block_id, plh), evicted


# --- P14: the mocker lifecycle scenario ---------------------------------------------------------

PARENT = {0: None, 1: 0, 2: 1, 3: 2, 4: 3, 5: 1, 6: 5, 7: 2, 8: 7, 9: 8, 10: None, 11: 10, 12: 11, 13: None}


def _depth(i):
    return 0 if PARENT[i] is None else 1 + _depth(PARENT[i])


MOCKER_PLH = {i: Plh(_depth(i), i, PARENT[i]) for i in PARENT}


class Mocker:
    """The mocker's use of the pool (docs/upstream.md P14): clone if held, else match, else allocate+register."""

    def __init__(self, pool):
        self.pool, self.held, self.ids, self.evicted = pool, {}, {}, []

    def use(self, blocks):
        for b in blocks:
            if b in self.held:
                self.held[b] += 1
                continue
            hit = self.pool.match_blocks([MOCKER_PLH[b]])
            if hit:
                self.ids[b] = hit[0]
            else:
                self.ids[b], evicted = take(self.pool, MOCKER_PLH[b])
                self.evicted += [p.current for p in evicted]
            self.held[b] = 1

    def deref(self, blocks):
        for b in blocks:
            self.held[b] -= 1
            if not self.held[b]:
                del self.held[b]
                self.pool.release(self.ids[b])


@pytest.mark.parametrize(
    "eviction, order_after_derefs, evicted",
    [
        ("lineage", [4, 3, 2, 6, 5, 1, 0], [4, 3, 6, 5]),  # Tick: 3 re-leafs at its old tick t1 < t3
        ("lineage_fifo", [4, 6, 3, 5, 2, 1, 0], [4, 6, 3, 5]),  # Fifo: 3 re-leafs behind 6
        ("lru", [4, 3, 2, 6, 5, 1, 0], [4, 3, 6, 5]),  # release order minus the resurrected 0, 1, 2
    ],
)
def test_mocker_lifecycle_scenario(ns, eviction, order_after_derefs, evicted):
    pool = ns.BlockPool(10, eviction=eviction)
    m = Mocker(pool)
    m.use([0, 1, 2, 3, 4])
    m.use([0, 1, 5, 6])
    assert [m.ids[b] for b in (0, 1, 2, 3, 4, 5, 6)] == [0, 1, 2, 3, 4, 5, 6]
    assert m.held == {0: 2, 1: 2, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1}  # mocker-side clones
    assert pool.refcounts() == {i: 1 for i in range(7)}  # one pool reference per block
    assert pool.free_blocks() == [7, 8, 9]
    m.deref([4, 3, 2, 1, 0])
    m.deref([6, 5, 1, 0])
    assert [p.current for p in pool.eviction_order()] == order_after_derefs
    assert pool.inactive_len() == 7 and pool.available_blocks() == 10
    m.use([0, 1, 2, 7, 8, 9])  # 0, 1, 2 resurrected; 7, 8, 9 from the free list
    assert [m.ids[b] for b in (7, 8, 9)] == [7, 8, 9] and m.evicted == []
    assert pool.inactive_len() == 4
    m.use([10, 11, 12])
    m.use([13])
    assert m.evicted == evicted
    assert pool.available_blocks() == 0 and pool.inactive_len() == 0


def test_mocker_scenario_single_allocate_call(ns):
    """P14: ``allocate(3)`` in one call evicts 4, 3, 6 too (the victim is re-queried each time)."""
    pool = ns.BlockPool(10)
    m = Mocker(pool)
    m.use([0, 1, 2, 3, 4])
    m.use([0, 1, 5, 6])
    m.deref([4, 3, 2, 1, 0])
    m.deref([6, 5, 1, 0])
    m.use([0, 1, 2, 7, 8, 9])
    ids, evicted = pool.allocate_with_evictions(3)
    assert [p.current for p in evicted] == [4, 3, 6]
    assert ids == [4, 3, 6]  # the evicted slots themselves, in eviction order


# --- P10.1 / P13: lineage orders ------------------------------------------------------------


def _release_in_order(ns, eviction, plhs):
    pool = ns.BlockPool(len(plhs) + 1, eviction=eviction)
    ids = [take(pool, p)[0] for p in plhs]
    for block_id in ids:
        pool.release(block_id)
    return pool


@pytest.mark.parametrize("eviction, expected", [("lineage", "BAYX"), ("lineage_fifo", "BYAX"), ("lru", "ABXY")])
def test_interleaved_chains(ns, eviction, expected):
    """lineage/mod.rs: chains A->B and X->Y inserted A, B, X, Y: Tick B,A,Y,X; Fifo B,Y,A,X."""
    a, b = chain(ord("A"), ord("B"))
    x, y = chain(ord("X"), ord("Y"))
    pool = _release_in_order(ns, eviction, [a, b, x, y])
    assert "".join(chr(p.current) for p in pool.eviction_order()) == expected
    evicted = pool.allocate_with_evictions(5)[1]  # 1 free slot + 4 victims
    assert "".join(chr(p.current) for p in evicted) == expected


@pytest.mark.parametrize("eviction, expected", [("lineage", ["X2", "X1", "X0", "Y0"]),
                                                ("lineage_fifo", ["X2", "Y0", "X1", "X0"])])
def test_worked_example(ns, eviction, expected):
    """P10.1 worked example: X0->X1->X2 released forward, then root Y0."""
    names = {100: "X0", 101: "X1", 102: "X2", 200: "Y0"}
    pool = _release_in_order(ns, eviction, chain(100, 101, 102) + chain(200))
    assert [names[p.current] for p in pool.eviction_order()] == expected


def test_two_chain_child_first_even_if_inserted_first(ns):
    """lineage/mod.rs: the child is evicted before its parent, whatever the insertion order."""
    parent, child = chain(1, 2)
    pool = ns.BlockPool(3)
    c = take(pool, child)[0]
    p = take(pool, parent)[0]
    pool.release(c)
    pool.release(p)
    assert pool.eviction_order() == [child, parent]


def test_active_middle_block_does_not_protect_ancestors(ns):
    """P10.1 rule 4 (upstream quirk): A->B->C, B active, A and C inactive: A is a leaf too, and
    being older it goes first.  When B is released, its ghost is promoted and A is protected."""
    a, b, c = chain(1, 2, 3)
    pool = ns.BlockPool(4)
    ia, ib, ic = (take(pool, p)[0] for p in (a, b, c))
    pool.release(ia)
    pool.release(ic)
    assert pool.eviction_order() == [a, c]
    pool.release(ib)
    assert pool.eviction_order() == [c, b, a]


def test_resurrected_interior_node_keeps_protecting(ns):
    """P10.1 rule 5: matching an interior node leaves a ghost that keeps its links."""
    a, b, c = chain(1, 2, 3)
    pool = _release_in_order(ns, "lineage", [a, b, c])
    (ib,) = pool.match_blocks([b])
    assert pool.eviction_order() == [c, a]  # A still protected through ghost B
    pool.release(ib)  # B re-enters with a fresh (newest) tick
    assert pool.eviction_order() == [c, b, a]


# --- P13: manager tests ------------------------------------------------------------------


def test_allocate_and_drop_restores_available(ns):
    pool = ns.BlockPool(10)
    ids = pool.allocate(4)
    assert ids == [0, 1, 2, 3] and pool.available_blocks() == 6
    for block_id in ids:
        pool.release_mutable(block_id)
    assert pool.available_blocks() == 10
    assert pool.allocate(10) == [4, 5, 6, 7, 8, 9, 0, 1, 2, 3]  # freed ids reused oldest-freed first


def test_allocate_too_many_and_zero(ns):
    pool = ns.BlockPool(3)
    assert pool.allocate(4) is None and pool.available_blocks() == 3
    assert pool.allocate(0) == [] and pool.allocate_with_evictions(0) == ([], [])
    assert pool.allocate(3) == [0, 1, 2]


def test_last_release_goes_inactive_and_match_resurrects(ns):
    pool = ns.BlockPool(4)
    (p,) = chain(7)
    block_id = take(pool, p)[0]
    assert pool.available_blocks() == 3
    pool.release(block_id)
    assert pool.inactive_len() == 1 and pool.available_blocks() == 4
    assert pool.match_blocks([p]) == [block_id] and pool.inactive_len() == 0
    pool.release(block_id)
    assert pool.inactive_len() == 1


def test_prefix_match_stops_at_first_miss(ns):
    pool = ns.BlockPool(4)
    plhs = chain(1, 2, 3)
    for p in plhs[:2]:
        take(pool, p)
    assert len(pool.match_blocks(plhs)) == 2
    assert pool.match_blocks([plhs[2], plhs[0]]) == []


def test_dedup_allow_and_reject(ns):
    (p,) = chain(5)
    allow = ns.BlockPool(4)
    first = take(allow, p)[0]
    second = take(allow, p)[0]
    assert first != second and allow.refcounts() == {first: 1, second: 1}
    reject = ns.BlockPool(2, duplication="reject")
    first = take(reject, p)[0]
    assert take(reject, p)[0] == first and reject.refcounts() == {first: 2}
    assert reject.allocate(1) == [1]  # the rejected block went back and is handed out next


def test_ten_fresh_registrations_evict_oldest_release(ns):
    pool = ns.BlockPool(10, eviction="lru", frequency="exact")
    first = chain(1000)[0]
    pool.release(take(pool, first)[0])
    for i in range(10):
        held, evicted = take(pool, chain(i)[0])
        pool.release(held)
        if i == 9:
            assert evicted == [first]
    assert pool.check_presence([first]) == [False]


@pytest.mark.parametrize("eviction", ["lineage", "lineage_fifo", "lru", "multi_lru"])
def test_full_capacity_cycles(ns, eviction):
    n = 16
    pool = ns.BlockPool(n, eviction=eviction, frequency="exact")
    evictions = 0
    for cycle in range(2):
        ids = [take(pool, chain(cycle * 100 + i)[0])[0] for i in range(n)]
        for block_id in ids:
            pool.release(block_id)
        assert pool.inactive_len() == n and pool.available_blocks() == n
        got, evicted = pool.allocate_with_evictions(n)
        evictions += len(evicted)
        for block_id in got:
            pool.release_mutable(block_id)
        assert pool.inactive_len() == 0 and pool.available_blocks() == n
    assert evictions == 2 * n


def test_multi_lru_cold_blocks_at_capacity(ns):
    pool = ns.BlockPool(64, eviction="multi_lru", frequency="exact")
    for i in range(64):
        pool.release(take(pool, chain(i)[0])[0])
    assert pool.inactive_len() == 64
    assert len(pool.allocate_with_evictions(64)[1]) == 64


def test_presence_after_evict_and_reregister(ns):
    a, b = chain(1)[0], chain(2)[0]
    pool = ns.BlockPool(1)
    pool.release(take(pool, a)[0])
    take(pool, b)
    assert pool.check_presence([a, b]) == [False, True]


def test_duplicate_drop_keeps_presence(ns):
    (p,) = chain(3)
    pool = ns.BlockPool(3)
    primary = take(pool, p)[0]
    duplicate = take(pool, p)[0]
    pool.release(duplicate)
    assert pool.check_presence([p]) == [True]
    pool.release(primary)
    assert pool.check_presence([p]) == [True] and pool.inactive_len() == 1


def test_touch_counts(ns):
    """One touch per new registration handle and per match hit (active or inactive), none else."""
    tracker = ExactFrequency()
    (p,) = chain(9)
    pool = ns.BlockPool(4, frequency=tracker)
    block_id = take(pool, p)[0]
    assert tracker.count(p) == 1
    take(pool, p)  # Allow duplicate of a live identity: no touch
    assert tracker.count(p) == 1
    pool.match_blocks([p])  # active hit
    assert tracker.count(p) == 2
    for held in list(pool.refcounts()):
        for _ in range(pool.refcounts()[held]):
            pool.release(held)
    assert pool.inactive_len() == 1 and tracker.count(p) == 2  # release: no touch
    pool.match_blocks([p])  # inactive hit (resurrection)
    assert tracker.count(p) == 3
    pool.check_presence([p])
    assert tracker.count(p) == 3 and block_id in pool.refcounts()
