"""What the 1.6.1 wheel's mocker offers for a host (G2) tier, checked against kvspec's offload spec.

The seed's ``kvbm-offload`` feature (``num_g2_blocks`` and ``kv_bytes_per_token``) is not in the
1.6.1 wheel: its engine config refuses ``num_g2_blocks``.  The wheel has another host tier,
``native_host_offload`` (``num_host_blocks``, link bandwidths; it needs
``kv_cache_bytes_per_token``), reachable only through a whole-trace replay whose observable per
request is the reused prompt tokens.  So it is used as a contract, not an exact oracle: a block
evicted from G1 but kept on the host is found again (reuse grows), never beyond the prompt, and
the same trace without a host tier reuses only what G1 kept.  kvspec's ``OffloadKvManager`` agrees
on the same history: the evicted prefix is in G2 and a swap-in brings it back.
"""

from __future__ import annotations

import pytest

import kvspec.model
from kvspec.adapters.dynamo import mocker as dynamo_mocker
from kvspec.errors import TargetError
from kvspec.hashing import Plh
from kvspec.offload import SwapInHandle
from kvspec.protocol import Deref, FullBlock, Use
from kvspec.mooncake import MooncakeRow

pytestmark = [pytest.mark.dynamo, pytest.mark.skipif(not dynamo_mocker.available(), reason="needs the Dynamo wheel")]

BS = 16
#: A (4 blocks), then B (4 other blocks) on a 5-block G1: B evicts most of A; then A again
ROWS = [MooncakeRow(4 * BS, 1, (1, 2, 3, 4), 0.0), MooncakeRow(4 * BS, 1, (5, 6, 7, 8), 1.0),
        MooncakeRow(4 * BS, 1, (1, 2, 3, 4), 2.0)]
HOST = {"native_host_offload": {"num_host_blocks": 16}, "kv_cache_bytes_per_token": 1000}


def test_seed_kvbm_offload_config_is_not_in_the_wheel():
    with pytest.raises(TargetError, match="num_g2_blocks"):
        dynamo_mocker.run_trace(ROWS[:1], 5, block_size=BS, engine={"num_g2_blocks": 4})


def test_native_host_offload_finds_evicted_blocks_again():
    without = dynamo_mocker.run_trace(ROWS, 5, block_size=BS)
    with_host = dynamo_mocker.run_trace(ROWS, 5, block_size=BS, engine=HOST)
    assert [r[0] for r in with_host] == ["completed"] * 3
    reused_without, reused_with = without[2][1], with_host[2][1]
    assert reused_with > reused_without, "a host tier should turn G1 evictions into later hits"
    assert reused_with <= ROWS[2].input_length - 1  # vLLM never reuses the last prompt token's block
    assert (reused_without, reused_with) == (16, 48)  # observed on 1.6.1: G1 kept 1 block, host 2 more


def test_kvspec_offload_model_on_the_same_history():
    """On kvspec's G1+G2 manager (5 G1 slots), B's blocks push A's out to G2; A's blocks come back."""
    mgr = kvspec.model.OffloadKvManager(5, BS, num_g2_blocks=16)
    a = [Plh(i, 100 + i, 100 + i - 1 if i else None) for i in range(4)]
    b = [Plh(i, 200 + i, 200 + i - 1 if i else None) for i in range(4)]
    assert mgr.process(Use([FullBlock(p.current) for p in a], [], a)) == 4
    mgr.process(Deref([FullBlock(p.current) for p in a]))
    taken = mgr.process(Use([FullBlock(p.current) for p in b], [], b))
    while (deadline := mgr.earliest_offload_deadline()) is not None:
        mgr.tick(deadline)
        taken += mgr.process(Use([FullBlock(p.current) for p in b[taken:]], [], b[taken:]))
    assert taken == 4
    held = set(mgr.eviction_order())
    missing = [p for p in a if p.current not in held]
    assert missing and all(p.current in mgr.g2_blocks() for p in missing)
    mgr.process(Deref([FullBlock(p.current) for p in b]))
    first_missing = a.index(missing[0])
    pinned = a[:first_missing]  # the scheduler pins the G1-held prefix while the suffix comes back
    assert mgr.process(Use([FullBlock(p.current) for p in pinned], [], pinned)) == len(pinned)
    outcome = mgr.swap_in(a[first_missing:], a[first_missing - 1].current if first_missing else None)
    while not isinstance(outcome, SwapInHandle):
        mgr.tick(mgr.earliest_offload_deadline())
        outcome = mgr.swap_in(a[first_missing:], a[first_missing - 1].current if first_missing else None)
    mgr.tick(outcome.deadline)
    held = set(mgr.eviction_order()) | set(mgr.active_refcounts())
    assert all(p.current in held for p in a), "A is whole in G1 again, as the mocker finds it again (48 tokens: it never reuses the last block)"
