"""vLLM 0.33 as a kvspec target: its real KVCacheManager against kvspec's models, and findings V1/V2.

Skipped, with the install hint, when vLLM is not installed (``kvspec install-engine vllm``).
The findings (``docs/findings.md``) are strict xfails: each reproducer is the history the
``vllm-router[...]`` machines produced, cut down by hand to the steps the failure needs, run
through the real engine; a control shows the engine's events are exactly the model's, so the
reproducer cannot fail for an unrelated reason.
"""

from __future__ import annotations

import pytest

import kvspec.impl
import kvspec.model
from kvspec.adapters.vllm.runtime import ENGINE
from kvspec.hashing import block_hashes, sequence_hashes
from kvspec.stateful.engine.registry import find_machines
from kvspec.stateful.runner import check_machine
from kvspec.stateful.machines.pipeline import held_prefix
from kvspec.targets import resolve

REASON = ENGINE.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"vLLM: {REASON}")


@pytest.fixture(scope="module")
def vllm():
    return resolve("vllm")


def machine(name):
    (spec,) = [s for s in find_machines([name]) if s.name == name]
    return spec


@pytest.mark.parametrize("name", ["vllm-prefix-cache", "native-pool", "replay[vllm]", "vllm-router[refcount]"])
def test_machine_passes_against_real_vllm(vllm, name):
    result = check_machine(machine(name), vllm, profile="ci", max_examples=15, progress_every=None)
    assert result.status == "passed", result.reason
    assert result.steps > 100


@pytest.mark.parametrize("name", ["vllm-prefix-cache[per-hash]"])
def test_per_hash_machine_reports_finding_v1_as_known(vllm, name):
    result = check_machine(machine(name), vllm, profile="ci", max_examples=60, progress_every=None,
                           minimize=False, shrink=False)
    assert result.status == "known", result.reason
    assert "V1" in result.reason


def test_target_provides_the_vllm_classes(vllm):
    assert vllm.provided() == ["NativeBlockPool", "VllmPrefixCache"]
    assert vllm.version.startswith("vllm 0.33")


# -- the reproducers ------------------------------------------------------------------------------

#: V1 (bs 1, 5 blocks): a preempted request resumes, hits its prefix and recomputes its last
#: block: a second copy of E(0,0,0) is cached and announced; the next block needs a free block
#: and evicts the *first* copy (oldest in the free queue) -> Removed(E(0,0,0)) while the second
#: copy is held; the new block is announced under parent E(0,0,0)
V1_OPS = [("add", "r0", [0, 0], False), ("schedule", "r0"), ("append", "r0", 0), ("schedule", "r0"),
          ("preempt", "r0"), ("schedule", "r0"), ("append", "r0", 0), ("schedule", "r0")]
V1_CONFIG = (5, 1)

#: V2 (bs 2, 4 blocks): E(0,0) cached and released; a "full" report-mode request hits it (a
#: second Stored of the same single copy); a third request evicts it (one Removed)
V2_OPS = [("add", "r0", [0, 0], False), ("schedule", "r0"), ("free", "r0"),
          ("add", "r1", [0, 0, 0], True), ("schedule", "r1"), ("free", "r1"),
          ("add", "r2", [0, 1, 0, 1, 2], False), ("schedule", "r2")]
V2_CONFIG = (4, 2)


def run_ops(cache, ops):
    """Apply ``ops``; return the events published, in order."""
    events = []
    for op in ops:
        kind, rid, *rest = op
        if kind == "add":
            cache.add_request(rid, rest[0], rest[1])
        elif kind == "schedule":
            assert cache.schedule(rid) is not None
        elif kind == "append":
            cache.append_token(rid, rest[0])
        else:
            getattr(cache, kind)(rid)
        events += cache.drain_events()
    return events


def router_view(events, *, refcount: bool, query, block_size):
    """Deliver ``events`` (worker 1) to kvspec's RadixIndex, optionally through the refcount filter;
    return (the score of worker 1 on ``query``, the errors the index raised)."""
    index, flt, errors = kvspec.impl.RadixIndex(), kvspec.impl.EventDedupFilter(), []
    for event in events:
        if refcount:
            event = flt.apply(event)
            if event is None:
                continue
        try:
            index.apply_event(1, event)
        except Exception as exc:  # noqa: BLE001 - a rejected event is the finding's symptom
            errors.append(type(exc).__name__)
    return index.find_matches(block_hashes(query, block_size), False).scores.get((1, 0), 0), errors


def truth(cache, query, block_size):
    return held_prefix(cache.held_hashes(), sequence_hashes(block_hashes(query, block_size)))


@pytest.mark.parametrize(("ops", "config"), [(V1_OPS, V1_CONFIG), (V2_OPS, V2_CONFIG)], ids=["V1", "V2"])
def test_reproducer_events_are_exactly_the_models(vllm, ops, config):
    """Control: vLLM publishes exactly the events kvspec's model predicts (per-copy mode)."""
    real = run_ops(vllm.get("VllmPrefixCache")(*config), ops)
    model = run_ops(kvspec.model.VllmPrefixCache(*config), ops)
    assert real == model and real


def test_v1_shape(vllm):
    """The per-copy stream: a hash announced twice, removed once while a copy is still held."""
    cache = vllm.get("VllmPrefixCache")(*V1_CONFIG)
    events = run_ops(cache, V1_OPS)
    kinds = [type(e.data).__name__ for e in events]
    assert kinds == ["Stored", "Stored", "Stored", "Removed", "Stored"]
    e000 = sequence_hashes(block_hashes([0, 0, 0], 1))[-1]
    assert events[3].data.block_hashes == (e000,) and e000 in cache.held_hashes()
    assert events[4].data.parent_hash == e000


@pytest.mark.xfail(strict=True, reason="vLLM 0.33 publishes per physical copy (docs/findings.md V1)")
def test_v1_raw_stream_router_view_matches_what_vllm_holds(vllm):
    cache = vllm.get("VllmPrefixCache")(*V1_CONFIG)
    events = run_ops(cache, V1_OPS)
    query = [0, 0, 0, 0]
    score, errors = router_view(events, refcount=False, query=query, block_size=1)
    assert errors == [] and score == truth(cache, query, 1)


def test_v1_refcount_filter_repairs_the_default_stream(vllm):
    """Control: through Dynamo's refcount filter the same stream is exact."""
    cache = vllm.get("VllmPrefixCache")(*V1_CONFIG)
    events = run_ops(cache, V1_OPS)
    query = [0, 0, 0, 0]
    assert router_view(events, refcount=True, query=query, block_size=1) == (truth(cache, query, 1), [])


@pytest.mark.xfail(strict=True, reason="kv_cache_report_mode='full' re-announces hits (docs/findings.md V2)")
def test_v2_full_report_router_view_through_refcount_filter(vllm):
    cache = vllm.get("VllmPrefixCache")(*V2_CONFIG)
    events = run_ops(cache, V2_OPS)
    score, errors = router_view(events, refcount=True, query=[0, 0], block_size=2)
    assert errors == [] and score == truth(cache, [0, 0], 2) == 0


def test_v2_without_full_report_is_exact(vllm):
    """Control: the same requests in the default report mode leave the router exact."""
    ops = [op if op[0] != "add" else (*op[:3], False) for op in V2_OPS]
    cache = vllm.get("VllmPrefixCache")(*V2_CONFIG)
    events = run_ops(cache, ops)
    assert router_view(events, refcount=True, query=[0, 0], block_size=2) == (0, [])


def _dynamo_router():
    from kvspec.adapters.dynamo import router as dynamo_router

    reason = dynamo_router.unavailable_reason()
    if reason is not None:
        pytest.skip(f"Dynamo router: {reason}")
    return dynamo_router, dynamo_router.tiered_index_class(1)()


def v2_on_router_vocabulary(vocabulary, full: bool):
    """V2's requests built from the router harness's block contents (its block size, its tokens):
    A cached; a request of A + 1 token hits it (``full``: re-announced); A B C + 1 token evicts it."""
    a, b, c = (list(vocabulary.tokens([local])) for local in vocabulary.locals[:3])
    ops = [("add", "r0", a, False), ("schedule", "r0"), ("free", "r0"),
           ("add", "r1", a + [7], full), ("schedule", "r1"), ("free", "r1"),
           ("add", "r2", b + c + a[:1] + [7], False), ("schedule", "r2")]
    return ops, [vocabulary.locals[0]]


def real_router_score(vllm, full: bool):
    module, router = _dynamo_router()
    ops, query = v2_on_router_vocabulary(module.VOCABULARY, full)
    cache = vllm.get("VllmPrefixCache")(4, module.BLOCK_SIZE)
    events = run_ops(cache, ops)
    assert sum(type(e.data).__name__ == "Removed" for e in events) == 1  # A was evicted once
    assert sum(type(e.data).__name__ == "Stored" for e in events) == (3 if full else 2)
    try:
        for event in events:
            router.apply_event(1, event)
        scores = router.find_matches(query).scores
    finally:
        router.close()
    held = held_prefix(cache.held_hashes(), sequence_hashes(query))
    return scores.get((1, 0), 0), held


@pytest.mark.xfail(strict=True, reason="Dynamo's publisher filter keeps a re-announced block (docs/findings.md V2)")
def test_v2_real_dynamo_router_forgets_the_evicted_block(vllm):
    """vLLM's real full-report stream through Dynamo 1.6.1's KvEventPublisher (whose refcount
    filter is compiled in) into a real KvRouter: the evicted block must not be scored."""
    score, held = real_router_score(vllm, full=True)
    assert held == 0 and score == held


def test_v2_real_dynamo_router_control_default_mode(vllm):
    """Control: the same requests in the default report mode, through the same real router."""
    score, held = real_router_score(vllm, full=False)
    assert held == 0 and score == held
