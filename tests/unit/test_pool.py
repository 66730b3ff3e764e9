"""BlockPool rules, one per test, on the model and the implementation (docs/upstream.md P3-P9)."""

import pytest

import kvspec.impl
import kvspec.model
from kvspec.errors import BlockNotHeld, BlockStateError, DuplicateLineage, InvalidArgument
from kvspec.frequency import ExactFrequency
from kvspec.hashing import Plh
from kvspec.model.eviction import BACKENDS

NAMESPACES = [pytest.param(kvspec.model, id="model"), pytest.param(kvspec.impl, id="impl")]
EVICTIONS = sorted(BACKENDS)


@pytest.fixture(params=NAMESPACES)
def ns(request):
    return request.param


def chain(*currents):
    out, prev = [], None
    for pos, cur in enumerate(currents):
        out.append(Plh(pos, cur, prev))
        prev = cur
    return out


def snapshot(pool):
    return (pool.available_blocks(), pool.inactive_len(), pool.refcounts(), pool.eviction_order(),
            pool.free_blocks())


def take(pool, plh):
    (block_id,) = pool.allocate(1)
    return pool.register(block_id, plh)


# --- construction -------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    dict(total_blocks=0), dict(total_blocks=-3), dict(total_blocks=True), dict(total_blocks=2.0),
    dict(total_blocks=4, eviction="clock"), dict(total_blocks=4, duplication="merge"),
    dict(total_blocks=4, eviction="multi_lru"),  # no tracker: upstream's build fails
    dict(total_blocks=4, frequency="tinylfu"), dict(total_blocks=4, frequency=42),
    dict(total_blocks=4, thresholds=(3, 3, 15)), dict(total_blocks=4, thresholds=(0, 8, 15)),
    dict(total_blocks=4, thresholds=(3, 8, 16)), dict(total_blocks=4, thresholds=(3, 8)),
])
def test_bad_construction(ns, kwargs):
    kwargs = dict(kwargs)
    total = kwargs.pop("total_blocks")
    with pytest.raises(InvalidArgument):
        ns.BlockPool(total, **kwargs)


@pytest.mark.parametrize("eviction", EVICTIONS)
def test_fresh_pool(ns, eviction):
    pool = ns.BlockPool(5, eviction=eviction, frequency="exact")
    assert pool.total_blocks() == 5 and pool.available_blocks() == 5
    assert pool.inactive_len() == 0 and pool.refcounts() == {} and pool.eviction_order() == []
    assert pool.free_blocks() == [0, 1, 2, 3, 4]


def test_multi_lru_accepts_tracker_object(ns):
    pool = ns.BlockPool(2, eviction="multi_lru", frequency=ExactFrequency())
    assert pool.available_blocks() == 2


# --- free FIFO and allocation -------------------------------------------------------------------


def test_free_fifo_pop_front_push_back(ns):
    pool = ns.BlockPool(4)
    assert pool.allocate(2) == [0, 1]
    pool.release_mutable(0)
    assert pool.free_blocks() == [2, 3, 0]
    assert pool.allocate(3) == [2, 3, 0]


def test_allocation_prefers_free_then_evicts(ns):
    pool = ns.BlockPool(3, eviction="lru")
    a, b = chain(1)[0], chain(2)[0]
    ia, ib = take(pool, a), take(pool, b)
    pool.release(ia)
    pool.release(ib)
    ids, evicted = pool.allocate_with_evictions(2)
    assert ids == [2, ia] and evicted == [a]
    assert pool.check_presence([a, b]) == [False, True]


def test_failed_allocation_changes_nothing(ns):
    pool = ns.BlockPool(3)
    pool.release(take(pool, chain(1)[0]))
    before = snapshot(pool)
    assert pool.allocate_with_evictions(4) is None and pool.allocate(4) is None
    assert snapshot(pool) == before


# --- registration -------------------------------------------------------------------------------


def test_register_reject_of_inactive_resurrects_primary(ns):
    (p,) = chain(1)
    pool = ns.BlockPool(3, duplication="reject")
    primary = take(pool, p)
    pool.release(primary)
    assert pool.inactive_len() == 1
    (mine,) = pool.allocate(1)
    assert pool.register(mine, p) == primary
    assert pool.inactive_len() == 0 and pool.refcounts() == {primary: 1}
    assert pool.free_blocks()[-1] == mine


def test_allow_duplicate_pins_primary(ns):
    (p,) = chain(1)
    pool = ns.BlockPool(3)
    primary = take(pool, p)
    pool.release(primary)
    duplicate = take(pool, p)  # resurrects the primary, pinned by the duplicate
    assert duplicate != primary and pool.inactive_len() == 0
    assert pool.refcounts() == {primary: 0, duplicate: 1}
    with pytest.raises(BlockNotHeld):
        pool.release(primary)  # the caller holds no reference on the primary
    pool.release(duplicate)  # duplicate -> free tail, then the primary goes inactive again
    assert pool.free_blocks()[-1] == duplicate and pool.eviction_order() == [p]
    assert pool.match_blocks([p]) == [primary]


def test_match_returns_primary_not_duplicate(ns):
    (p,) = chain(1)
    pool = ns.BlockPool(3)
    primary = take(pool, p)
    take(pool, p)
    assert pool.match_blocks([p, p]) == [primary, primary]
    assert pool.refcounts()[primary] == 3


def test_reregistration_after_inactive_gets_new_tick(ns):
    a, b = chain(1)[0], chain(2)[0]
    pool = ns.BlockPool(3)
    ia, ib = take(pool, a), take(pool, b)
    pool.release(ia)
    pool.release(ib)
    assert pool.eviction_order() == [a, b]
    pool.release(pool.match_blocks([a])[0])
    assert pool.eviction_order() == [b, a]


# --- impostors (decision: refuse at registration) ------------------------------------------------


def test_impostor_is_refused_while_the_key_is_live(ns):
    real = Plh(1, 50, 40)
    impostor = Plh(1, 50, 41)  # same (position, current), other parent
    pool = ns.BlockPool(4)
    block = take(pool, real)
    (spare,) = pool.allocate(1)
    before = snapshot(pool)
    with pytest.raises(DuplicateLineage):
        pool.register(spare, impostor)
    assert snapshot(pool) == before
    pool.release(block)  # inactive is still live
    with pytest.raises(DuplicateLineage):
        pool.register(spare, impostor)
    assert pool.match_blocks([impostor]) == [] and pool.check_presence([impostor]) == [False]
    pool.allocate_with_evictions(3)  # evicts the real one: the key is free again
    assert pool.inactive_len() == 0


def test_impostor_allowed_once_the_key_is_dead(ns):
    real, impostor = Plh(0, 50), Plh(0, 50, 7)
    pool = ns.BlockPool(1)
    pool.release(take(pool, real))
    (block,), evicted = pool.allocate_with_evictions(1)
    assert evicted == [real]
    assert pool.register(block, impostor) == block
    pool.release(block)
    assert pool.eviction_order() == [impostor]


# --- bad input leaves state unchanged ------------------------------------------------------------


@pytest.mark.parametrize("eviction", EVICTIONS)
def test_bad_input_is_typed_and_harmless(ns, eviction):
    pool = ns.BlockPool(4, eviction=eviction, frequency="exact")
    a, b = chain(1, 2)
    ia = take(pool, a)
    ib = take(pool, b)
    pool.release(ib)
    (mutable,) = pool.allocate(1)
    cases = [
        (InvalidArgument, pool.allocate, (-1,)),
        (InvalidArgument, pool.allocate_with_evictions, (True,)),
        (InvalidArgument, pool.allocate, ("2",)),
        (InvalidArgument, pool.release, ("0",)),
        (InvalidArgument, pool.register, (mutable, 5)),
        (InvalidArgument, pool.register, (None, a)),
        (InvalidArgument, pool.match_blocks, ([a, "b"],)),
        (InvalidArgument, pool.match_blocks, (a,)),
        (InvalidArgument, pool.check_presence, ([a, 3],)),
        (BlockStateError, pool.register, (ia, Plh(0, 99))),  # not mutable (held)
        (BlockStateError, pool.register, (ib, Plh(0, 99))),  # not mutable (inactive)
        (BlockStateError, pool.register, (17, Plh(0, 99))),  # no such slot
        (BlockStateError, pool.release_mutable, (ia,)),
        (BlockStateError, pool.release_mutable, (3,)),  # free
        (BlockStateError, pool.release_mutable, (-1,)),
        (BlockNotHeld, pool.release, (ib,)),  # inactive
        (BlockNotHeld, pool.release, (mutable,)),
        (BlockNotHeld, pool.release, (3,)),  # free
        (BlockNotHeld, pool.release, (99,)),
    ]
    for error, method, args in cases:
        before = snapshot(pool)
        with pytest.raises(error):
            method(*args)
        assert snapshot(pool) == before, (method.__name__, args)
    pool.release(ia)
    with pytest.raises(BlockNotHeld):
        pool.release(ia)  # double release


def test_check_presence_is_read_only(ns):
    a, b = chain(1, 2)
    pool = ns.BlockPool(3)
    pool.release(take(pool, a))
    before = snapshot(pool)
    assert pool.check_presence([b, a, b]) == [False, True, False]  # never stops early
    assert snapshot(pool) == before


# --- MultiLRU tiers -----------------------------------------------------------------------------


def test_multi_lru_tiers_by_frequency_at_insert(ns):
    tracker = ExactFrequency()
    pool = ns.BlockPool(4, eviction="multi_lru", frequency=tracker)
    hot, cold = chain(1)[0], chain(2)[0]
    ih, ic = take(pool, hot), take(pool, cold)
    pool.match_blocks([hot])
    pool.match_blocks([hot])  # registration + 2 hits = 3 -> tier 1
    assert tracker.count(hot) == 3 and tracker.count(cold) == 1
    for _ in range(3):
        pool.release(ih)
    pool.release(ic)
    assert pool.eviction_order() == [cold, hot]  # cold first although released later


def test_multi_lru_tier_fixed_while_inactive(ns):
    tracker = ExactFrequency()
    pool = ns.BlockPool(4, eviction="multi_lru", frequency=tracker)
    a, b = chain(1)[0], chain(2)[0]
    ia, ib = take(pool, a), take(pool, b)
    pool.release(ia)
    pool.release(ib)
    for _ in range(10):
        tracker.touch(a)  # no re-tiering while it sits in the pool
    assert pool.eviction_order() == [a, b]


def test_multi_lru_decay_before_insert_lowers_tier():
    """With a tiny sample size, decay halves counts before a block is released."""
    for ns in (kvspec.model, kvspec.impl):
        pool = ns.BlockPool(4, eviction="multi_lru", frequency="exact:6")
        a, b = chain(1)[0], chain(2)[0]
        ia = take(pool, a)
        pool.match_blocks([a, a])  # a: 3 (size 3)
        ib = take(pool, b)  # b: 1 (size 4)
        pool.match_blocks([b, b])  # size 6 -> decay: a 1, b 1
        for _ in range(3):
            pool.release(ia)
            pool.release(ib)
        assert pool.eviction_order() == [a, b]


# --- impl invariants ----------------------------------------------------------------------------


@pytest.mark.parametrize("eviction", EVICTIONS)
def test_impl_check_after_workload(eviction):
    import random

    rng = random.Random(7)
    pool = kvspec.impl.BlockPool(16, eviction=eviction, frequency="exact")
    held = []
    for _ in range(2000):
        if held and rng.random() < 0.45:
            pool.release(held.pop(rng.randrange(len(held))))
        else:
            depth = rng.randrange(1, 5)
            currents = [1]
            for _ in range(depth):
                currents.append(currents[-1] * 10 + rng.randrange(1, 4))  # path-spelling hashes
            plhs = chain(*currents[1:])
            hits = pool.match_blocks(plhs)
            held += hits
            for p in plhs[len(hits):]:
                got = pool.allocate(1)
                if got is None:
                    break
                held.append(pool.register(got[0], p))
        pool._check()


def test_multi_lru_custom_thresholds(ns):
    tracker = ExactFrequency()
    pool = ns.BlockPool(3, eviction="multi_lru", frequency=tracker, thresholds=(1, 2, 3))
    a, b = chain(1)[0], chain(2)[0]
    ia, ib = take(pool, a), take(pool, b)
    pool.match_blocks([b])  # b: 2 -> tier 2; a: 1 -> tier 1
    pool.release(ib)
    pool.release(ib)
    pool.release(ia)
    assert pool.eviction_order() == [a, b]



def _use_one(pool, plh):
    """Match ``plh``, else allocate and register it; a refused registration gives its slot back."""
    hit = pool.match_blocks([plh])
    if hit:
        return "hit", hit[0]
    got = pool.allocate(1)
    if got is None:
        return "full", None
    try:
        return "new", pool.register(got[0], plh)
    except DuplicateLineage:
        pool.release_mutable(got[0])
        return "refused", None


@pytest.mark.parametrize("duplication", ["allow", "reject"])
@pytest.mark.parametrize("eviction", EVICTIONS)
def test_keys_sharing_current_across_positions(eviction, duplication):
    """Live keys ``(position, current)`` that share ``current``, and impostors of them: the impl files
    such keys apart from the common case; every answer, error and observer must still be the model's."""
    import random

    rng = random.Random(11)
    plhs = [Plh(pos, cur, None if pos == 0 else parent)
            for pos in range(4) for cur in (1, 2, 3) for parent in (1, 2)]
    model, impl = (ns.BlockPool(6, eviction=eviction, duplication=duplication, frequency="exact")
                   for ns in (kvspec.model, kvspec.impl))
    held: list[int] = []
    clashed = refused = 0
    for _ in range(1500):
        if held and rng.random() < 0.4:
            block = held.pop(rng.randrange(len(held)))
            model.release(block)
            impl.release(block)
        else:
            plh = rng.choice(plhs)
            outcome = _use_one(model, plh)
            assert _use_one(impl, plh) == outcome, plh
            refused += outcome[0] == "refused"
            if outcome[1] is not None:
                held.append(outcome[1])
        assert snapshot(impl) == snapshot(model)
        assert impl.check_presence(plhs) == model.check_presence(plhs)
        impl._check()
        clashed += bool(impl._clash)
    assert clashed and refused, "the workload never filed a shared current or met an impostor"
