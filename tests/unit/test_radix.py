"""RadixIndex (model and impl): the device-index contract of ``docs/decisions.md`` D3.

The scenarios follow the experiments of ``docs/upstream.md`` R8 (named A1, B3, C4, ...).
Where Dynamo's compressed tree deviates from the intended contract, the test says so and asserts
the contract; the ``contract-radix`` machine holds Dynamo to the documented tolerance instead.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kvspec.impl
import kvspec.model
from kvspec.errors import BlockNotFound, InvalidBlockSequence, ParentBlockNotFound
from kvspec.events import Cleared, KvCacheEvent, Removed, Stored, StoredBlock
from kvspec.scores import Continuation
from kvspec.stateful.machines.index_events import IndexEvents

NAMESPACES = pytest.mark.parametrize("ns", [kvspec.model, kvspec.impl], ids=["model", "impl"])


def st_(blocks, parent=None, dp=0):
    return KvCacheEvent(1, Stored(parent, [StoredBlock(e, l) for e, l in blocks]), dp)


def rm(hashes, dp=0):
    return KvCacheEvent(1, Removed(hashes), dp)


def fm(index, seq, early_exit=False):
    return index.find_matches(seq, early_exit).scores


def state(index):
    """A comparable snapshot: the dump as a set of (worker, rank, parent, E, L)."""
    out = set()
    for item in index.dump_events():
        parent = item.event.data.parent_hash
        for b in item.event.data.blocks:
            out.add((item.worker_id, item.event.dp_rank, parent, b.block_hash, b.tokens_hash))
            parent = b.block_hash
    return out


def check(index):
    if hasattr(index, "_check"):
        index._check()


CHAIN4 = [(100, 11), (101, 12), (102, 13), (103, 14)]


@NAMESPACES
def test_baseline_scores_count_the_root_anchored_prefix(ns):
    t = ns.RadixIndex()
    t.apply_event(1, st_([(100, 11), (101, 12)]))
    assert fm(t, [11, 12, 13]) == {(1, 0): 2}
    assert fm(t, [11]) == {(1, 0): 1}
    assert fm(t, [12]) == {}  # D4: a query starting mid-chain matches nothing
    assert fm(t, []) == {}
    assert fm(t, [99, 11]) == {}
    assert t.find_matches([11]).frequencies == ()
    check(t)


@NAMESPACES
def test_parent_is_looked_up_in_the_same_worker_and_rank_only(ns):
    t = ns.RadixIndex()
    with pytest.raises(ParentBlockNotFound):  # A1
        t.apply_event(1, st_([(200, 21)], parent=999))
    t.apply_event(2, st_([(100, 11)]))
    with pytest.raises(ParentBlockNotFound):  # A2: the parent is worker 2's
        t.apply_event(1, st_([(101, 12)], parent=100))
    t.apply_event(2, st_([(100, 11)], dp=1))
    with pytest.raises(ParentBlockNotFound):  # E1b: ranks are separate owners
        t.apply_event(2, st_([(101, 12)], parent=100, dp=3))
    assert fm(t, [11, 12]) == {(2, 0): 1, (2, 1): 1}
    t.apply_event(2, st_([(101, 12)], parent=100))
    assert fm(t, [11, 12]) == {(2, 0): 2, (2, 1): 1}
    check(t)


@NAMESPACES
def test_cycles_are_invalid_and_change_nothing(ns):
    t = ns.RadixIndex()
    t.apply_event(1, st_(CHAIN4[:2]))
    before = state(t)
    with pytest.raises(InvalidBlockSequence):  # A3: parent among its own blocks
        t.apply_event(3, st_([(300, 31), (301, 32)], parent=301))
    with pytest.raises(InvalidBlockSequence):  # even when the parent is held
        t.apply_event(1, st_([(102, 13), (101, 14)], parent=101))
    with pytest.raises(InvalidBlockSequence):  # one hash twice in one batch
        t.apply_event(1, st_([(102, 13), (102, 14)], parent=101))
    assert state(t) == before
    check(t)


@NAMESPACES
def test_empty_stores(ns):
    t = ns.RadixIndex()
    t.apply_event(4, st_([]))
    with pytest.raises(ParentBlockNotFound):
        t.apply_event(4, st_([], parent=12345))
    t.apply_event(4, st_([(1, 2)]))
    t.apply_event(4, st_([], parent=1))
    assert fm(t, [2]) == {(4, 0): 1}
    check(t)


@NAMESPACES
def test_removal_never_cascades_and_the_hole_can_be_refilled(ns):
    """C4: the stale descendants of a removed block come back when the hole is stored again."""
    t = ns.RadixIndex()
    t.apply_event(1, st_(CHAIN4))
    t.apply_event(2, st_([(100, 11), (101, 12), (105, 15)]))
    t.apply_event(1, rm([101]))
    assert fm(t, [11, 12, 13, 14]) == {(1, 0): 1, (2, 0): 2}
    assert (1, 0, 101, 102, 13) not in state(t)  # behind the hole: not in the dump
    t.apply_event(1, st_([(101, 12)], parent=100))
    assert fm(t, [11, 12, 13, 14]) == {(1, 0): 4, (2, 0): 2}
    t.apply_event(1, rm([101]))
    t.apply_event(1, rm([103]))  # a stale descendant can still be removed
    t.apply_event(1, st_([(101, 12)], parent=100))
    assert fm(t, [11, 12, 13, 14]) == {(1, 0): 3, (2, 0): 2}
    check(t)


@NAMESPACES
def test_mid_chain_removal_keeps_later_blocks_removable(ns):
    """C2/C3/H5: Dynamo scrubs the rest of a compressed node; the contract keeps every block held."""
    t = ns.RadixIndex()
    t.apply_event(1, st_(CHAIN4))
    t.apply_event(1, rm([101]))
    t.apply_event(1, rm([102]))  # Dynamo 1.6.1: Failed to find block (scrubbed)
    t.apply_event(1, st_([(101, 12)], parent=100))
    assert fm(t, [11, 12, 13, 14]) == {(1, 0): 2}
    check(t)


@NAMESPACES
def test_unknown_removal_applies_the_rest_then_raises(ns):
    t = ns.RadixIndex()
    with pytest.raises(BlockNotFound):
        t.apply_event(1, rm([5]))
    t.apply_event(1, st_(CHAIN4))
    with pytest.raises(BlockNotFound):
        t.apply_event(1, rm([555]))
    assert fm(t, [11, 12, 13, 14]) == {(1, 0): 4}
    with pytest.raises(BlockNotFound):  # C1: 103 is still removed
        t.apply_event(1, rm([555, 103]))
    assert fm(t, [11, 12, 13, 14]) == {(1, 0): 3}
    t.apply_event(1, rm([]))
    t.apply_event(1, rm([102, 102]))  # G: a repeated name is not an error
    assert fm(t, [11, 12, 13, 14]) == {(1, 0): 2}
    with pytest.raises(BlockNotFound):  # E1: ranks do not share blocks
        t.apply_event(1, rm([101], dp=1))
    check(t)


@NAMESPACES
def test_sharing_and_diverging_paths(ns):
    t = ns.RadixIndex()
    t.apply_event(1, st_([(100, 11), (101, 12), (102, 13)]))
    t.apply_event(2, st_([(100, 11), (101, 12)]))
    assert fm(t, [11, 12, 13]) == {(1, 0): 3, (2, 0): 2}  # B3
    assert fm(t, [11, 14]) == {(1, 0): 1, (2, 0): 1}
    t.apply_event(1, st_([(200, 21), (201, 12)]))  # B2: the same L under two parents
    assert fm(t, [21, 12]) == {(1, 0): 2}
    assert fm(t, [12]) == {}
    t.apply_event(3, st_([(300, 7), (301, 7), (302, 7)]))  # D6: repeated local hashes
    assert fm(t, [7, 7, 7, 7]) == {(3, 0): 3}
    check(t)


@NAMESPACES
def test_worker_specific_external_hashes_are_the_workers_own(ns):
    """B3 with another E-space: scores by L; the worker may remove and extend its own E's (Dynamo
    1.6.1 refuses both, since its tree keeps the first writer's E — a documented deviation)."""
    t = ns.RadixIndex()
    t.apply_event(1, st_([(100, 11), (101, 12), (102, 13)]))
    t.apply_event(2, st_([(900, 11), (901, 12)]))
    assert fm(t, [11, 12, 13]) == {(1, 0): 3, (2, 0): 2}
    t.apply_event(2, st_([(902, 13)], parent=901))
    assert fm(t, [11, 12, 13]) == {(1, 0): 3, (2, 0): 3}
    t.apply_event(2, rm([901]))
    assert fm(t, [11, 12, 13]) == {(1, 0): 3, (2, 0): 1}
    check(t)


@NAMESPACES
def test_two_chains_of_one_worker_and_refiled_hashes(ns):
    t = ns.RadixIndex()
    t.apply_event(1, st_([(100, 11), (101, 12)]))
    t.apply_event(1, st_([(900, 11), (901, 12)]))  # B4: a second chain with the same L's
    assert fm(t, [11, 12]) == {(1, 0): 2}
    assert t.match_details([11, 12]) == {(1, 0): Continuation(2, (101, 901))}
    t.apply_event(1, rm([100]))
    assert fm(t, [11, 12]) == {(1, 0): 2}  # the other chain still matches
    t.apply_event(1, st_([(900, 99)]))  # B1d: the same E re-stored under other content moves it
    assert fm(t, [11, 12]) == {}
    assert fm(t, [99, 12]) == {(1, 0): 2}
    check(t)


@NAMESPACES
def test_cleared_remove_worker_and_clear_all_blocks(ns):
    t = ns.RadixIndex()
    t.apply_event(1, st_([(100, 11), (101, 12)]))
    t.apply_event(1, st_([(100, 11), (101, 12)], dp=1))
    t.apply_event(1, st_([(100, 11), (101, 12), (102, 13)], dp=2))
    assert fm(t, [11, 12, 13]) == {(1, 0): 2, (1, 1): 2, (1, 2): 3}
    t.apply_event(1, KvCacheEvent(2, Cleared(), 2))
    t.apply_event(1, KvCacheEvent(3, Cleared(), 7))
    t.apply_event(42, KvCacheEvent(4, Cleared(), 0))
    assert fm(t, [11, 12, 13]) == {(1, 0): 2, (1, 1): 2}
    t.remove_worker_dp_rank(1, 1)
    assert fm(t, [11, 12, 13]) == {(1, 0): 2}
    t.apply_event(1, st_([(100, 11)], dp=2))
    t.clear_all_blocks(1)
    assert fm(t, [11]) == {} and t.dump_events() == []
    t.apply_event(1, st_([(100, 11)]))
    t.apply_event(2, st_([(100, 11), (101, 12)]))
    t.remove_worker(2)
    t.remove_worker(12345)
    t.clear_all_blocks(12345)
    assert fm(t, [11, 12]) == {(1, 0): 1}
    with pytest.raises(BlockNotFound):
        t.apply_event(2, rm([100]))
    check(t)


@NAMESPACES
def test_early_exit_stops_when_one_worker_is_left(ns):
    t = ns.RadixIndex()
    t.apply_event(1, st_(CHAIN4))
    t.apply_event(2, st_([(100, 11), (101, 12), (105, 15)]))
    assert fm(t, [11, 12, 13, 14]) == {(1, 0): 4, (2, 0): 2}
    assert fm(t, [11, 12, 13, 14], True) == {(1, 0): 3, (2, 0): 2}  # D1 (same as Dynamo here)
    assert fm(t, [11, 12], True) == {(1, 0): 2, (2, 0): 2}
    t.remove_worker(2)
    # D7/D8: Dynamo answers 2 or 4 depending on node boundaries; the contract: the depth at which
    # the worker became the only one
    assert fm(t, [11, 12, 13, 14], True) == {(1, 0): 1}
    assert fm(t, [], True) == {}
    check(t)


@NAMESPACES
def test_dump_lists_reachable_blocks_parents_first(ns):
    t = ns.RadixIndex()
    t.apply_event(1, st_(CHAIN4))
    t.apply_event(2, st_([(100, 11), (101, 12), (105, 15)]))
    t.apply_event(1, rm([102]))
    dump = t.dump_events()
    assert state(t) == {(1, 0, None, 100, 11), (1, 0, 100, 101, 12),
                        (2, 0, None, 100, 11), (2, 0, 100, 101, 12), (2, 0, 101, 105, 15)}
    fresh = ns.RadixIndex()
    for item in dump:
        fresh.apply_event(item.worker_id, item.event)
    for q in ([11, 12, 13, 14], [11, 12, 15]):
        assert fm(fresh, q) == fm(t, q)


@NAMESPACES
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_replaying_a_dump_reproduces_every_match(ns, data):
    """Property: after any generated history, a fresh index fed the dump answers every query alike."""
    gen = IndexEvents()
    t = ns.RadixIndex()
    for _ in range(data.draw(st.integers(1, 25))):
        draw = gen.draw_store(data) if data.draw(st.integers(0, 2)) else gen.draw_remove(data)
        try:
            t.apply_event(draw.worker_id, draw.event)
            error = None
        except (ParentBlockNotFound, BlockNotFound, InvalidBlockSequence) as e:
            error = type(e).__name__
        gen.record(draw, error)
    check(t)
    fresh = ns.RadixIndex()
    for item in t.dump_events():
        fresh.apply_event(item.worker_id, item.event)
    assert state(fresh) == state(t)
    for _ in range(5):
        q = gen.draw_query(data)
        assert fm(fresh, q) == fm(t, q)
        assert fm(fresh, q, True) == fm(t, q, True)


# -- the implementation's structure (kvspec.impl.trie): each test also runs ``_check`` -------------


def _chain(ls, parent=None, worker=1):
    """A Stored event of blocks whose E is the local hash plus 1000 (one block per path)."""
    return worker, st_([(l + 1000, l) for l in ls], parent)


def test_trie_names_each_worker_by_one_tuple():
    """Every dict of the trie is keyed by the worker's first tuple, though each event builds its
    own: the query then merges per-node scores by identity.  ``_check`` asserts it."""
    sides = [kvspec.model.RadixIndex(), kvspec.impl.RadixIndex()]
    for t in sides:
        t.apply_event(*_chain([1, 2]))
        t.apply_event(*_chain([3, 4]))  # a second root run: a second node, keyed anew
        t.apply_event(*_chain([1, 2, 5]))  # a repeat that branches: a third node
        t.apply_event(1, rm([1003]))  # a hole: gaps keyed too
        check(t)
    model, impl = sides
    trie = impl._table.trie
    (worker,) = trie.workers
    assert all(w is worker for node in trie.root.kids.values() for w in node.ends)
    for q in ([1, 2, 5], [3, 4], [1, 2]):
        assert fm(impl, q) == fm(model, q)
    assert fm(impl, [1, 2, 5]) == {(1, 0): 3} and fm(impl, [3, 4]) == {}  # 3 is a hole


def test_hole_above_many_children_trims_through_the_counts_below():
    """A worker's lane above hundreds of other workers' children: trimming its trailing holes asks
    ``below`` (O(1)), and the result matches the model."""
    sides = [kvspec.model.RadixIndex(), kvspec.impl.RadixIndex()]
    for t in sides:
        for w in range(1, 301):
            t.apply_event(*_chain([1, 2], worker=w))
            t.apply_event(*_chain([10_000 + w], parent=1002, worker=w))
        t.apply_event(300, rm([10_300 + 1000]))  # worker 300's only child run goes
        t.apply_event(300, rm([1002]))  # now its lane ends in a hole with nothing below: trimmed
        t.apply_event(7, rm([1002, 1001]))  # worker 7's lane is holes only but has a child run: stays
        check(t)
    model, impl = sides
    assert state(impl) == state(model)
    for q in ([1, 2, 10_300], [1, 2, 10_007], [1]):
        assert fm(impl, q) == fm(model, q)
    assert (7, 0) not in fm(impl, [1, 2, 10_007])
    impl.apply_event(7, st_([(1001, 1), (1002, 2)]))  # the holes refilled: the run counts again
    assert fm(impl, [1, 2, 10_007])[(7, 0)] == 3
    check(impl)
    root = impl._table.trie.root.kids[1]
    assert (300, 0) not in root.below and root.below[(7, 0)] == 1


def test_leaf_extension_refuses_a_block_held_elsewhere():
    """A chain continuing a worker's own leaf run but naming a block it holds on another path is
    not appended (it would be on two paths): the worker moves to the edge table, as on the model."""
    sides = [kvspec.model.RadixIndex(), kvspec.impl.RadixIndex()]
    for t in sides:
        t.apply_event(1, st_([(500, 5)]))
        t.apply_event(1, st_([(100, 11), (101, 12)]))
        t.apply_event(1, st_([(102, 13), (500, 5)], parent=101))
        check(t)
    model, impl = sides
    assert (1, 0) in impl._table.irregular.held
    assert state(impl) == state(model)
    for q in ([11, 12, 13, 5], [5], [11, 12]):
        assert fm(impl, q) == fm(model, q)


@NAMESPACES
def test_query_hashes_are_checked_alike_on_both_paths(ns):
    """``find_matches`` decides ordinary u64 lists in C and anything else element by element: an
    int subclass is accepted, a bool, a float or an out-of-range int is refused with the element
    named, on model and impl alike."""
    import enum

    from kvspec.errors import InvalidArgument

    class Hash(enum.IntEnum):
        A = 11

    t = ns.RadixIndex()
    t.apply_event(1, st_([(100, 11), (101, 12)]))
    assert fm(t, [Hash.A, 12]) == {(1, 0): 2}
    assert fm(t, (11, 12)) == {(1, 0): 2}
    for bad in ([11, True], [11, 12.0], [11, -1], [11, 2**64]):
        with pytest.raises(InvalidArgument, match=r"local_hashes\[1\]"):
            fm(t, bad)
    # impl walks a list of exact ints first and range-checks only what the walk did not match:
    # a bad hash right after a whole matched chain, inside a node, behind a hole, or in a query
    # answered by the edge table (an irregular worker) is refused all the same
    t.apply_event(2, st_([(100, 11), (101, 12), (102, 13)]))
    t.apply_event(3, st_([(100, 11), (101, 12)]))
    t.apply_event(3, st_([(101, 12)], parent=100))  # a repeat: still one lane
    t.apply_event(4, st_([(200, 11)]))
    t.apply_event(4, st_([(201, 11)]))  # two blocks on one path: the edge table
    t.apply_event(2, rm([101]))  # a hole under worker 2's third block
    before = state(t)
    for bad, at in (([11, 12, 2**64], 2), ([11, 12, 13, -1], 3), ([11, -5, 13], 1), ([11, 12, 13, 14, 2**70], 4)):
        with pytest.raises(InvalidArgument, match=rf"local_hashes\[{at}\]"):
            fm(t, bad)
    assert state(t) == before


def test_a_dropped_trie_is_freed_without_the_cyclic_gc():
    """No reference cycle in the trie: with the collector off, dropping the index frees every node."""
    import gc

    from kvspec.impl.trie import Node

    def live_nodes():
        return sum(type(o) is Node for o in gc.get_objects())

    gc.collect()
    before = live_nodes()
    gc.disable()
    try:
        t = kvspec.impl.RadixIndex()
        for w in range(1, 6):
            t.apply_event(*_chain([1, 2, 3], worker=w))
            t.apply_event(*_chain([10 + w, 20 + w], parent=1002, worker=w))  # splits and branches
        t.apply_event(3, rm([1003]))
        check(t)
        assert live_nodes() > before + 5
        del t
        assert live_nodes() == before
    finally:
        gc.enable()


@pytest.mark.parametrize("worker, parent, blocks", [
    (1, None, [(100, 11), (101, 12), (900, 50), (100, 51)]),  # a refill, then a new block naming the first
    (1, 100, [(101, 12), (900, 50), (901, 51), (900, 52)]),  # a refill, then new blocks naming one twice
    (3, None, [(200, 11), (201, 12), (200, 13)]),  # a new worker's first chain names a block twice
    (1, 101, [(102, 13), (103, 14), (102, 15)]),  # joining a run worker 2 holds, then naming its first again
    (1, 100, [(101, 12), (102, 13), (100, 60)]),  # a repeat and a join, then the parent itself
], ids=["refill-then-new", "new-twice", "new-worker", "join-then-repeat", "join-then-parent"])
def test_a_cyclic_chain_the_trie_refuses_changes_nothing(worker, parent, blocks):
    """The trie decides the acyclic-batch rule by filing the chain (``LaneTrie.store`` checks and
    plans before it changes anything): a chain naming a block twice, or its parent, raises the
    model's error on every path through the trie — a refill, a join, new blocks — and leaves the
    index as it was, the worker still in the trie (not moved to the edge table)."""
    sides = [kvspec.model.RadixIndex(), kvspec.impl.RadixIndex()]
    for t in sides:
        t.apply_event(1, st_([(100, 11), (101, 12)]))
        t.apply_event(2, st_([(100, 11), (101, 12), (102, 13), (103, 14)]))
        if parent != 101:
            t.apply_event(1, rm([101]))  # a hole the chain would fill
        before = state(t)
        with pytest.raises(InvalidBlockSequence):
            t.apply_event(worker, st_(blocks, parent))
        assert state(t) == before
        check(t)
    model, impl = sides
    assert not impl._table.irregular.held
    for q in ([11, 12, 13, 14], [11, 12, 50], [11]):
        assert fm(impl, q) == fm(model, q)


def test_aged_lists_hand_out_empty_lists_a_batch_old():
    """``AgedLists`` hands out empty lists, each made one batch of takes before it is handed out
    (so that the young-generation collector has usually promoted it by then)."""
    from kvspec.impl.trie import AgedLists

    lists = AgedLists(batch=3)
    made_first = {id(x) for x in lists.aging}
    taken = [lists.take() for _ in range(3)]
    assert taken == [[], [], []] and {id(x) for x in taken} == made_first
    made_second = {id(x) for x in lists.aging}  # made at the first take, handed out only now
    assert not made_second & made_first
    later = [lists.take() for _ in range(3)]
    assert later == [[], [], []] and {id(x) for x in later} == made_second
