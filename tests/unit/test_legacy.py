"""LegacyKvManager (model and impl): LRU order, counters, random agreement with structural checks."""

from __future__ import annotations

import random

import pytest

import kvspec.impl
import kvspec.model
from kvspec.errors import KvSpecError
from kvspec.hashing import Plh
from kvspec.protocol import Deref, Destroy, FullBlock, PartialBlock, Promote, Use

NAMESPACES = pytest.mark.parametrize("ns", [kvspec.model, kvspec.impl], ids=["model", "impl"])


@NAMESPACES
def test_lru_is_release_order_and_reuse_refreshes(ns):
    mgr = ns.LegacyKvManager(4, 4)
    mgr.process(Use([FullBlock(i) for i in (1, 2, 3)], [1, 2, 3], []))
    mgr.process(Deref([FullBlock(2), FullBlock(1), FullBlock(3)]))
    assert mgr.inactive_blocks() == [FullBlock(2), FullBlock(1), FullBlock(3)]
    mgr.process(Use([FullBlock(2)], [2], []))  # reactivated
    mgr.process(Deref([FullBlock(2)]))  # released again: now the newest
    assert mgr.eviction_order() == [FullBlock(1), FullBlock(3), FullBlock(2)]
    mgr.process(Use([FullBlock(8), FullBlock(9)], [8, 9], []))  # 8 fits, 9 evicts 1
    assert mgr.inactive_blocks() == [FullBlock(3), FullBlock(2)]
    assert mgr.probe_new_blocks([FullBlock(1), FullBlock(2), FullBlock(9)]) == 1


@NAMESPACES
def test_destroy_drops_whatever_the_count(ns):
    mgr = ns.LegacyKvManager(4, 4)
    mgr.process(Use([FullBlock(1)], [1], []))
    mgr.process(Use([FullBlock(1)], [1], []))
    assert mgr.active_blocks() == {FullBlock(1): 2}
    mgr.process(Destroy([FullBlock(1)]))
    assert mgr.active_blocks() == {} and mgr.inactive_blocks() == [] and mgr.num_active_block_refs() == 0


@NAMESPACES
def test_prefill_cost_counts_partials_and_has_no_active_split(ns):
    from kvspec.sequence import ActiveSequence, IdSource

    mgr = ns.LegacyKvManager(8, 4)
    seq = ActiveSequence(list(range(6)), 4, 2, True, rng=IdSource(0))
    mgr.process(seq.take_creation_signal())
    cost = mgr.prefill_cost(seq)
    assert (cost.new_blocks, cost.new_tokens, cost.cached_tokens, cost.active_cached_tokens) == (0, 0, 6, 0)


@pytest.mark.parametrize("seed", range(6))
def test_model_and_impl_agree(seed):
    rnd = random.Random(seed)
    model, impl = kvspec.model.LegacyKvManager(5, 2), kvspec.impl.LegacyKvManager(5, 2)
    uuids = iter(range(1000, 10**6))
    partials: list[int] = []

    def apply(op):
        out = []
        for mgr in (model, impl):
            try:
                out.append(mgr.process(op))
            except KvSpecError as e:
                out.append(type(e))
        assert out[0] == out[1], op
        impl._check()
        for name in ("drain_events", "active_blocks", "inactive_blocks", "current_capacity", "num_active_block_refs"):
            assert getattr(model, name)() == getattr(impl, name)(), name
        return out[0]

    for _ in range(300):
        r = rnd.random()
        hashes = [rnd.randrange(1, 8) for _ in range(rnd.randrange(1, 4))]
        if r < 0.35:
            blocks = [FullBlock(h) for h in hashes]
            if rnd.random() < 0.3:
                partials.append(next(uuids))
                blocks.append(PartialBlock(partials[-1]))
            apply(Use(blocks, hashes, []))
        elif r < 0.65:
            apply(Deref([FullBlock(h) for h in hashes]))
        elif r < 0.8:
            apply(Destroy([FullBlock(h) for h in hashes[:1]]))
        elif partials:
            u = rnd.choice(partials)
            h = rnd.randrange(1, 8)
            if apply(Promote(u, h, None, h, Plh(0, h, None))) is True:
                partials.remove(u)
