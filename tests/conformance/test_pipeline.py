"""The pipeline machine's end-to-end check: router scores equal what each worker rank holds.

The check (:func:`router_discrepancies`) must be exact when every event is delivered, and must
name an over-claim when a Removed is lost and an under-claim when a Stored is lost.
"""

import attrs
import pytest

import kvspec.impl
import kvspec.model
from kvspec.events import Removed, StorageTier, Stored
from kvspec.hashing import block_hashes
from kvspec.sequence import ActiveSequence, IdSource
from kvspec.stateful.engine.registry import find_machines
from kvspec.stateful.runner import check_machine
from kvspec.stateful.machines.pipeline import held_hashes, held_prefix, router_discrepancies

pytestmark = pytest.mark.stateful
side = pytest.mark.parametrize("ns", [kvspec.model, kvspec.impl], ids=["model", "impl"])
BS = 2


def admit(mgr, prompt, ids):
    seq = ActiveSequence(prompt, BS, 1, rng=ids)
    op = seq.take_creation_signal()
    assert mgr.process(op) == len(op.blocks)
    return seq


def release(mgr, seq):
    for op in seq.free_signal():
        mgr.process(op)


def deliver(index, worker_id, events, drop=()):
    for event in events:
        if not isinstance(event.data, tuple(drop)):
            index.apply_event(worker_id, event, StorageTier.DEVICE)


def scenario(ns, drop=()):
    """Capacity 2: prompt A (2 blocks) is released, then prompt B (2 blocks) evicts both of A's."""
    ids = IdSource(0)
    mgr, index = ns.KvManager(2, BS), ns.TieredIndex()
    a = admit(mgr, [0, 0, 1, 1], ids)
    release(mgr, a)
    deliver(index, 7, mgr.drain_events(), drop)
    b = admit(mgr, [2, 2, 0, 1], ids)
    deliver(index, 7, mgr.drain_events(), drop)
    return mgr, index, [tuple(a.tokens), tuple(b.tokens)]


@side
def test_lossless_events_give_exact_scores(ns):
    mgr, index, queries = scenario(ns)
    holders = {(7, 0): held_hashes(mgr)}
    assert router_discrepancies(index, holders, queries, BS) == []
    # and the check is not vacuous: B is fully held and scored
    assert index.find_matches(block_hashes(queries[1], BS)).scores == {(7, 0): 2}


@side
def test_lost_removed_is_an_over_claim(ns):
    mgr, index, queries = scenario(ns, drop=(Removed,))
    problems = router_discrepancies(index, {(7, 0): held_hashes(mgr)}, queries, BS)
    assert problems and all(p.startswith("over-claim") for p in problems)


@side
def test_lost_stored_is_an_under_claim(ns):
    ids = IdSource(1)
    mgr, index = ns.KvManager(4, BS), ns.TieredIndex()
    seq = admit(mgr, [0, 1, 2, 0], ids)
    mgr.drain_events()  # the Stored never reaches the router
    problems = router_discrepancies(index, {(3, 0): held_hashes(mgr)}, [tuple(seq.tokens)], BS)
    assert problems == [f"under-claim: router scores worker (3, 0) 0 on {list(seq.tokens)}, it holds 2"]


@side
def test_ranks_are_scored_separately(ns):
    ids = IdSource(2)
    rank0, rank1, index = ns.KvManager(4, BS, dp_rank=0), ns.KvManager(4, BS, dp_rank=1), ns.TieredIndex()
    seq = admit(rank1, [1, 1, 1, 1], ids)
    events = rank1.drain_events()
    holders = {(5, 0): held_hashes(rank0), (5, 1): held_hashes(rank1)}
    wrong = ns.TieredIndex()
    deliver(wrong, 5, [attrs.evolve(e, dp_rank=0) for e in events])
    assert any("worker (5, 0)" in p for p in router_discrepancies(wrong, holders, [tuple(seq.tokens)], BS))
    deliver(index, 5, events)
    assert router_discrepancies(index, holders, [tuple(seq.tokens)], BS) == []


def test_held_prefix_stops_at_the_first_hole():
    assert held_prefix({1, 2, 4}, [1, 2, 3, 4]) == 2
    assert held_prefix(set(), [1]) == 0
    assert held_prefix({5}, []) == 0


def test_unknown_scored_worker_is_reported():
    index = kvspec.model.TieredIndex()
    ids = IdSource(3)
    mgr = kvspec.model.KvManager(4, BS)
    seq = admit(mgr, [0, 0], ids)
    deliver(index, 9, mgr.drain_events())
    assert any("unknown workers" in p for p in router_discrepancies(index, {}, [tuple(seq.tokens)], BS))


def test_pipeline_machine_runs_model_against_itself():
    (spec,) = find_machines(["pipeline"])
    result = check_machine(spec, "model", profile="dev", max_examples=5, database=None)
    assert result.status == "passed", result.reason
    assert result.steps > 0


def test_stored_events_are_what_the_check_reads():
    """Guard for the scenario above: the manager really publishes Stored and Removed there."""
    ids = IdSource(0)
    mgr = kvspec.model.KvManager(2, BS)
    a = admit(mgr, [0, 0, 1, 1], ids)
    release(mgr, a)
    first = mgr.drain_events()
    admit(mgr, [2, 2, 0, 1], ids)
    second = mgr.drain_events()
    assert [type(e.data) for e in first] == [Stored]
    assert {type(e.data) for e in second} == {Stored, Removed}
