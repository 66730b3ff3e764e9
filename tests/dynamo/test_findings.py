"""Reproducers of the deviations of Dynamo 1.6.1 from the contract (``docs/findings.md``).

Each finding has a reproducer that fails today, marked ``xfail(strict=True)``: when upstream fixes
it the test passes, the strict xfail turns red, and the marker is removed.  Each also has a
control showing the same history is handled correctly elsewhere (the single-threaded tree, or the
bare ``RadixTree``), so the reproducer cannot fail for an unrelated reason.  The histories are the
minimised counterexamples the contract machines produced.
"""

from __future__ import annotations

import pytest

import kvspec.model
from kvspec.adapters.dynamo import radix as dynamo
from kvspec.adapters.dynamo import router as dynamo_router
from kvspec.events import KvCacheEvent, Removed, Stored, StoredBlock
from kvspec.hashing import sequence_hashes
from kvspec.stateful.machines.radix_contract import ContractModel
import reproducers

REASON = dynamo_router.unavailable_reason()
pytestmark = [pytest.mark.dynamo, pytest.mark.skipif(REASON is not None, reason=f"Dynamo router: {REASON}")]

A, B, C, D, X = dynamo_router.VOCABULARY.locals[:5]


def e(*path: int) -> int:
    """The external hash an engine gives the block at the end of ``path`` (chained sequence hash)."""
    return sequence_hashes(list(path))[-1]


def stored(parent_path: tuple[int, ...], *locals_: int) -> Stored:
    parent = e(*parent_path) if parent_path else None
    return Stored(parent, [StoredBlock(e(*parent_path, *locals_[: i + 1]), local) for i, local in enumerate(locals_)])


def replay(index, history):
    for event_id, (rank, data) in enumerate(history, 1):
        try:
            index.apply_event(1, KvCacheEvent(event_id, data, rank))
        except Exception:  # noqa: BLE001 - the reference model raises for rejected events; so may Dynamo
            pass
    return index


def bounds(history, worker, query):
    contract = ContractModel()
    model = kvspec.model.RadixIndex()
    for event_id, (rank, data) in enumerate(history, 1):
        try:
            model.apply_event(1, KvCacheEvent(event_id, data, rank))
        except Exception:  # noqa: BLE001
            continue
        if isinstance(data, Stored):
            contract.stored((1, rank), data.parent_hash, [(b.block_hash, b.tokens_hash) for b in data.blocks])
        else:
            contract.removed((1, rank), data.block_hashes)
    lo, hi = contract.device_bounds(worker, query)
    assert hi == model.find_matches(query).scores.get(worker, 0)
    return lo, hi


def router_scores(event_threads, history, query):
    index = dynamo_router.tiered_index_class(event_threads)()
    try:
        return replay(index, history).find_matches(query).scores
    finally:
        index.close()


# -- finding 1: the concurrent tree credits a rank with another rank's stale blocks ------------

#: produced by ``contract-router-device`` against ``dynamo-router-threads4`` (shrunk, then
#: minimised by deleting events while the overcount persisted): rank 1 holds [D, B, D, D], rank 0
#: shares the root block D and branches to A, then rank 1 removes its root block D
CRTC_GENERATED = (
    [
        (1, stored((), D, B, D, D)),
        (0, stored((), D, A)),
        (1, Removed([e(D)])),
    ],
    [D, B, D, B],
    {(1, 0): 1},
)
#: the history of ``docs/upstream.md`` R10 S3 (rank 0 [A, B, C, D], rank 1 [A, B, X], rank 0 removes B)
CRTC_NOTES = (
    [
        (0, stored((), A, B, C, D)),
        (1, stored((), A, B, X)),
        (0, Removed([e(A, B)])),
    ],
    [A, B, C, D],
    {(1, 0): 1, (1, 1): 2},
)
CRTC_CASES = pytest.mark.parametrize(("history", "query", "expected"), [CRTC_GENERATED, CRTC_NOTES],
                                     ids=["generated", "notes-S3"])


@CRTC_CASES
def test_crtc_history_bounds(history, query, expected):
    """The contract: both bounds coincide here, so the expected scores are exact."""
    for worker in [(1, 0), (1, 1)]:
        assert bounds(history, worker, query) == (expected.get(worker, 0),) * 2


@CRTC_CASES
def test_crtc_history_single_threaded_router_conforms(history, query, expected):
    assert router_scores(1, history, query) == expected


@CRTC_CASES
@pytest.mark.xfail(strict=True, reason="Dynamo 1.6.1 ConcurrentRadixTreeCompressed overcount (docs/findings.md F1)")
def test_crtc_does_not_credit_another_ranks_stale_blocks(history, query, expected):
    assert router_scores(4, history, query) == expected


# -- finding 2: the router needs one Removed per Stored (a repeated Stored is not idempotent) ---

#: one rank stores [A, B, C], announces A again, then removes A once
REANNOUNCE_HISTORY = [
    (1, stored((), A, B, C)),
    (1, stored((), A)),
    (1, Removed([e(A)])),
]
REANNOUNCE_QUERY = [A, B, C]


def test_reannounce_history_bounds():
    assert bounds(REANNOUNCE_HISTORY, (1, 1), REANNOUNCE_QUERY) == (0, 0)


def test_reannounce_bare_radix_tree_conforms():
    """``RadixTree`` itself treats the repeated Stored as idempotent (docs/upstream.md R6)."""
    tree = replay(dynamo.RadixIndex(), REANNOUNCE_HISTORY)
    assert tree.find_matches(REANNOUNCE_QUERY).scores == {}


@pytest.mark.xfail(strict=True, reason="Dynamo 1.6.1 KvRouter counts repeated Stored events (docs/findings.md F2)")
@pytest.mark.parametrize("event_threads", [1, 4])
def test_router_forgets_a_reannounced_block_after_one_removal(event_threads):
    assert router_scores(event_threads, REANNOUNCE_HISTORY, REANNOUNCE_QUERY) == {}


# -- finding 1 across workers: two worker ids (file-backed discovery, one runtime each) ---------

#: the S3 history with the ranks replaced by two distinct workers (ids 1 and 2, rank 0)
CROSS_WORKER = [
    (1, KvCacheEvent(1, stored((), A, B, C, D))),
    (2, KvCacheEvent(1, stored((), A, B, X))),
    (1, KvCacheEvent(2, Removed([e(A, B)]))),
]


def test_crtc_cross_worker_single_threaded_router_conforms():
    assert reproducers.multi_worker_scores(CROSS_WORKER, [A, B, C, D], event_threads=1) == {(1, 0): 1, (2, 0): 2}


@pytest.mark.xfail(strict=True, reason="Dynamo 1.6.1 ConcurrentRadixTreeCompressed overcount (docs/findings.md F1)")
def test_crtc_does_not_credit_another_workers_stale_blocks():
    assert reproducers.multi_worker_scores(CROSS_WORKER, [A, B, C, D], event_threads=4) == {(1, 0): 1, (2, 0): 2}


# -- finding 1 as `kvspec check` reported it (trace file, replayed) ----------------------------

F1_TRACE = __import__("pathlib").Path(__file__).parent / "traces" / "f1-crtc-contract-router-device.json"


def test_f1_trace_replays_clean_on_the_single_threaded_router():
    from kvspec.stateful.traces.replay import replay_trace

    assert replay_trace(str(F1_TRACE), "dynamo-router").divergence is None


@pytest.mark.xfail(strict=True, reason="Dynamo 1.6.1 ConcurrentRadixTreeCompressed overcount (docs/findings.md F1)")
def test_f1_trace_replays_clean_on_the_concurrent_router():
    from kvspec.stateful.traces.replay import replay_trace

    assert replay_trace(str(F1_TRACE), "dynamo-router-threads4").divergence is None
