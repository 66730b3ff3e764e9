"""KvManager (model and impl): prefill cost, counters, events' dp rank, structural checks."""

from __future__ import annotations

import random

import pytest

import kvspec.impl
import kvspec.model
from kvspec import codec
from kvspec.errors import KvSpecError
from kvspec.events import Stored
from kvspec.protocol import Deref, FullBlock, PartialBlock, Use
from kvspec.sequence import ActiveSequence, IdSource, PrefillCost
from kvspec.model.eviction import BACKENDS

NAMESPACES = pytest.mark.parametrize("ns", [kvspec.model, kvspec.impl], ids=["model", "impl"])


@NAMESPACES
def test_prefill_cost_active_inactive_split(ns):
    mgr = ns.KvManager(16, 4)
    ids = IdSource(0)
    a = ActiveSequence(list(range(10)), 4, 4, True, rng=ids)  # 2 full blocks + partial
    mgr.process(a.take_creation_signal())
    b = ActiveSequence(list(range(10)) + [1, 1], 4, 4, True, rng=ids)  # shares 2 full blocks
    assert mgr.prefill_cost(b) == PrefillCost(new_blocks=1, new_tokens=4, cached_tokens=8, active_cached_tokens=8)
    for op in a.reset_with_signal():
        mgr.process(op)
    # a's first block active again through another request, the second inactive
    c = ActiveSequence(list(range(4)), 4, 4, True, rng=ids)
    mgr.process(c.take_creation_signal())
    assert mgr.prefill_cost(b.snapshot()) == PrefillCost(1, 4, 8, 4)
    assert codec.decode(codec.encode(mgr.prefill_cost(b))) == PrefillCost(1, 4, 8, 4)
    off = ActiveSequence(list(range(10)), 4, 4, False, rng=ids)
    assert mgr.prefill_cost(off) == PrefillCost(3, 10, 0, 0)


@NAMESPACES
def test_failed_decode_reservation_keeps_inactive_cache(ns):
    """A decode Use of one partial block that finds no slot changes nothing."""
    mgr = ns.KvManager(2, 4)
    seq = ActiveSequence(list(range(8)), 4, 4, True, rng=IdSource(0))
    assert mgr.process(seq.take_creation_signal()) == 2
    signals = seq.generate()
    assert [type(s).__name__ for s in signals] == ["Use"]
    before = (mgr.num_active_blocks(), mgr.num_inactive_blocks(), mgr.active_refcounts())
    assert mgr.process(signals[0]) == 0
    assert (mgr.num_active_blocks(), mgr.num_inactive_blocks(), mgr.active_refcounts()) == before
    assert mgr.drain_events()[-1].event_id == 0


@NAMESPACES
def test_events_carry_dp_rank(ns):
    mgr = ns.KvManager(1, 4, dp_rank=7)
    mgr.process(Use([FullBlock(1)], [5], [ns_plh(1)]))
    mgr.process(Deref([FullBlock(1)]))
    mgr.process(Use([FullBlock(2)], [6], [ns_plh(2)]))
    events = mgr.drain_events()
    assert [e.dp_rank for e in events] == [7, 7, 7]
    assert [e.event_id for e in events] == [0, 1, 2]
    assert isinstance(events[0].data, Stored) and events[0].data.blocks[0].tokens_hash == 5


def ns_plh(h):
    from kvspec.hashing import Plh

    return Plh(0, h, None)


@pytest.mark.parametrize("eviction", sorted(BACKENDS))
@pytest.mark.parametrize("seed", range(4))
def test_model_and_impl_agree_on_random_scheduler_runs(eviction, seed):
    """A small randomized scheduler, applied to both; impl's structures are checked every step."""
    rnd = random.Random(seed)
    model = kvspec.model.KvManager(6, 2, eviction=eviction)
    impl = kvspec.impl.KvManager(6, 2, eviction=eviction)
    ids = IdSource(seed)
    live: list[ActiveSequence] = []

    def apply(op):
        results = []
        for mgr in (model, impl):
            try:
                results.append(mgr.process(op))
            except KvSpecError as e:
                results.append(type(e))
        assert results[0] == results[1], op
        impl._check()
        for name in ("drain_events", "num_active_blocks", "num_active_block_refs", "num_inactive_blocks",
                     "active_refcounts", "eviction_order"):
            assert getattr(model, name)() == getattr(impl, name)(), name
        return results[0]

    for _ in range(150):
        action = rnd.random()
        if action < 0.3 and len(live) < 4:
            seq = ActiveSequence([rnd.randrange(2) for _ in range(rnd.randrange(1, 7))], 2, rnd.randrange(1, 5),
                                 rnd.random() < 0.8, output_tokens=[rnd.randrange(2) for _ in range(5)], rng=ids)
            n = apply(seq.take_creation_signal())
            if n == len(seq.unique_blocks):
                live.append(seq)
            else:
                seq.commit_allocation(n * 2)
                for op in seq.reset_with_signal():
                    apply(op)
        elif action < 0.8 and live:
            seq = rnd.choice(live)
            signals = seq.generate()
            ok = True
            for op in signals:
                if isinstance(op, Deref):
                    apply(op)
                    continue
                if apply(op) < (len(op.blocks) if isinstance(op, Use) else 1):
                    ok = False
                    seq.pop()
                    break
            if ok and not seq.is_finished:
                seq.commit_allocation(len(seq))
            if seq.is_finished and ok:
                live.remove(seq)
        elif live:
            seq = rnd.choice(live)
            for op in seq.reset_with_signal():
                apply(op)
            live.remove(seq)
