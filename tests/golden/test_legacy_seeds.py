"""Golden scenarios: the legacy HashCache mocker manager (``docs/upstream.md`` M6.1, mocker 1.0.2
``kv_manager.rs``), replayed on both ``kvspec.model`` and ``kvspec.impl``.

Upstream's two tests (``test_failure_on_max_capacity``, ``test_block_lifecycle_stringent``) are
ported step by step; upstream passes ``local_hashes = ids`` and no event sink, kvspec also checks
the events.  Further scenarios pin down the upstream quirks the model keeps on purpose and the
typed errors kvspec raises where upstream panics.
"""

from __future__ import annotations

import pytest

import kvspec.impl
import kvspec.model
from kvspec.errors import BlockNotHeld, BlockStateError, InvalidArgument, LengthMismatch, UnknownPartialBlock
from kvspec.events import Removed, Stored
from kvspec.protocol import Deref, Destroy, FullBlock, PartialBlock, Promote, Use
from kvspec.hashing import Plh

NAMESPACES = pytest.mark.parametrize("ns", [kvspec.model, kvspec.impl], ids=["model", "impl"])


def use(ids):
    return Use([FullBlock(i) for i in ids], list(ids), [])


def destroy(ids):
    return Destroy([FullBlock(i) for i in ids])


def deref(ids):
    return Deref([FullBlock(i) for i in ids])


def simplify(events):
    out = []
    for e in events:
        if isinstance(e.data, Stored):
            out.append(("stored", e.data.parent_hash, [(b.block_hash, b.tokens_hash) for b in e.data.blocks]))
        else:
            assert isinstance(e.data, Removed)
            out.append(("removed", list(e.data.block_hashes)))
    return out


def observe(mgr):
    return (mgr.active_blocks(), mgr.inactive_blocks(), mgr.current_capacity(), mgr.num_active_block_refs())


def active(pairs):
    return {FullBlock(i): r for i, r in pairs}


@NAMESPACES
def test_failure_on_max_capacity(ns):
    mgr = ns.LegacyKvManager(10, 16)
    assert mgr.process(use(range(10))) is True
    assert mgr.current_capacity() == 10
    assert mgr.process(use([10])) is False


@NAMESPACES
def test_block_lifecycle_stringent(ns):
    mgr = ns.LegacyKvManager(10, 16)
    assert mgr.process(use(range(5)))
    assert mgr.process(use([0, 1, 5, 6]))
    assert mgr.active_blocks() == active([(0, 2), (1, 2), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1)])
    assert simplify(mgr.drain_events()) == [
        ("stored", None, [(i, i) for i in range(5)]),
        ("stored", 1, [(5, 5), (6, 6)]),
    ]
    assert mgr.process(destroy([4]))
    assert mgr.process(deref([0, 1, 2, 3]))
    assert mgr.num_inactive_blocks() == 2
    assert set(mgr.inactive_blocks()) == {FullBlock(3), FullBlock(2)}
    assert mgr.active_blocks() == active([(0, 1), (1, 1), (5, 1), (6, 1)])
    assert mgr.process(destroy([6]))
    assert mgr.process(deref([0, 1, 5]))
    assert mgr.num_inactive_blocks() == 5
    assert set(mgr.inactive_blocks()) == {FullBlock(i) for i in (0, 1, 2, 3, 5)}
    assert mgr.active_blocks() == {}
    assert simplify(mgr.drain_events()) == [("removed", [4]), ("removed", [6])]
    assert mgr.process(use([0, 1, 2, 7, 8, 9]))
    assert mgr.num_inactive_blocks() == 2
    assert set(mgr.inactive_blocks()) == {FullBlock(3), FullBlock(5)}
    assert mgr.active_blocks() == active([(0, 1), (1, 1), (2, 1), (7, 1), (8, 1), (9, 1)])
    assert simplify(mgr.drain_events()) == [("stored", 2, [(7, 7), (8, 8), (9, 9)])]
    assert mgr.probe_new_blocks([FullBlock(i) for i in range(5)]) == 1
    assert mgr.process(use([10, 11, 12]))
    assert mgr.inactive_blocks() == [FullBlock(5)]
    # 6 active + {3, 5} inactive = 8 of 10: 10 and 11 fit, 12 evicts 3 (released before 5).
    # Legacy publishes each eviction inside the loop, so the Removed precedes the Use's Stored.
    assert simplify(mgr.drain_events()) == [("removed", [3]), ("stored", None, [(10, 10), (11, 11), (12, 12)])]
    assert mgr.process(use([13]))
    assert simplify(mgr.drain_events()) == [("removed", [5]), ("stored", None, [(13, 13)])]
    assert mgr.current_capacity() == 10 and mgr.num_inactive_blocks() == 0


@NAMESPACES
def test_partial_failure_keeps_blocks_and_publishes_no_stored(ns):
    """Upstream quirk: on capacity failure the blocks pinned so far stay, but no Stored is published."""
    mgr = ns.LegacyKvManager(3, 4)
    assert mgr.process(use([1, 2]))
    assert mgr.process(deref([2]))
    mgr.drain_events()
    assert mgr.process(use([3, 4, 5])) is False  # 3 takes the free slot, 4 evicts 2, 5 fails
    assert mgr.active_blocks() == active([(1, 1), (3, 1), (4, 1)])
    assert simplify(mgr.drain_events()) == [("removed", [2])]


@NAMESPACES
def test_interior_hit_quirks(ns):
    """Upstream quirks kept: ONE Stored anchored to the last reused block, tokens hashes a suffix.

    Block 1 (the root) is evicted while its child 2 stays inactive; ``Use([1, 2, 3])`` then stores
    1 and 3 around the hit 2: upstream files both under 2 and pairs them with the LAST two local
    hashes (12, 13), so block 1 is announced with block 2's tokens hash.
    """
    mgr = ns.LegacyKvManager(4, 4)
    assert mgr.process(Use([FullBlock(1), FullBlock(2)], [11, 12], []))
    assert mgr.process(Use([FullBlock(9)], [19], []))
    assert mgr.process(deref([1]))
    assert mgr.process(deref([9]))
    assert mgr.process(deref([2]))  # LRU order: 1, 9, 2
    assert mgr.process(Use([FullBlock(8)], [18], []))
    assert mgr.process(Use([FullBlock(7)], [17], []))  # at capacity: evicts 1
    assert mgr.process(deref([8]))  # LRU order: 9, 2, 8
    assert simplify(mgr.drain_events())[-2:] == [("removed", [1]), ("stored", None, [(7, 17)])]
    assert mgr.process(Use([FullBlock(1), FullBlock(2), FullBlock(3)], [11, 12, 13], []))
    assert simplify(mgr.drain_events()) == [
        ("removed", [9]),
        ("removed", [8]),
        ("stored", 2, [(1, 12), (3, 13)]),
    ]


@NAMESPACES
def test_duplicate_block_in_one_use_is_self_anchored(ns):
    """Upstream quirk kept: ``Use([A, A])`` stores A, then hits it, so A anchors its own Stored."""
    mgr = ns.LegacyKvManager(4, 4)
    assert mgr.process(Use([FullBlock(1), FullBlock(1)], [11, 11], []))
    assert simplify(mgr.drain_events()) == [("stored", 1, [(1, 11)])]
    assert mgr.active_blocks() == active([(1, 2)])


@NAMESPACES
def test_promote_and_partials(ns):
    mgr = ns.LegacyKvManager(4, 4)
    assert mgr.process(Use([FullBlock(1), PartialBlock(100)], [11], []))
    assert mgr.process(Promote(100, 2, 1, 12, Plh(1, 2, 1)))
    assert simplify(mgr.drain_events()) == [("stored", None, [(1, 11)]), ("stored", 1, [(2, 12)])]
    assert mgr.active_blocks() == active([(1, 1), (2, 1)])
    # a partial Deref'd to zero goes to the inactive pool (keyed by uuid) and is evicted silently
    assert mgr.process(Use([PartialBlock(101)], [], []))
    assert mgr.process(Deref([PartialBlock(101)]))
    assert mgr.inactive_blocks() == [PartialBlock(101)]
    assert mgr.process(Use([FullBlock(3), FullBlock(4)], [13, 14], []))
    assert simplify(mgr.drain_events()) == [("stored", None, [(3, 13), (4, 14)])]
    assert mgr.inactive_blocks() == []
    # Deref of unknown blocks is ignored (upstream)
    before = observe(mgr)
    assert mgr.process(Deref([FullBlock(77), PartialBlock(5)]))
    assert observe(mgr) == before


@NAMESPACES
def test_typed_errors_change_nothing(ns):
    mgr = ns.LegacyKvManager(6, 4)
    assert mgr.process(Use([FullBlock(1), FullBlock(2), PartialBlock(9)], [11, 12], []))
    assert mgr.process(Use([PartialBlock(9)], [], []))  # the partial is now held twice
    mgr.drain_events()
    cases = [
        (Destroy([FullBlock(1), FullBlock(2), FullBlock(3)]), BlockNotHeld),
        (Destroy([FullBlock(1), FullBlock(1)]), BlockNotHeld),
        (Promote(55, 5, None, 0, Plh(0, 5, None)), UnknownPartialBlock),
        (Promote(9, 5, None, 0, Plh(0, 5, None)), BlockStateError),
        (Use([FullBlock(3)], [1, 2], []), LengthMismatch),
        (Use([FullBlock(3)], [], [Plh(0, 3, None), Plh(0, 4, None)]), LengthMismatch),
        (Use([FullBlock(3)], [], [], [[1], [2]]), LengthMismatch),
        (Use([FullBlock(3)], [], [], None, FullBlock(1)), InvalidArgument),
    ]
    for op, error in cases:
        before = observe(mgr)
        with pytest.raises(error):
            mgr.process(op)
        assert observe(mgr) == before, op
        assert mgr.drain_events() == [], op


@NAMESPACES
@pytest.mark.parametrize("args", [(0, 16), (4, 0), (-2, 4)])
def test_bad_construction(ns, args):
    with pytest.raises(InvalidArgument):
        ns.LegacyKvManager(*args)
