"""The native pool and the sequential replay, without the Dynamo wheel.

Expected numbers marked *observed* were produced by the real ``ai-dynamo-runtime`` 1.6.1 mocker
(``run_mocker_trace_replay``, ``replay_concurrency=1``, block size 16) when the rule was derived;
``test_mocker_replay.py`` re-checks them against the wheel when it is installed.
"""

from __future__ import annotations

import random

import pytest

import kvspec.impl
import kvspec.model

from kvspec.errors import BlockNotHeld, BlockStateError, InvalidArgument, PoolExhausted, ReplayStalled
from kvspec.model.admission import SequentialReplay, predict
from kvspec.mooncake import MooncakeRow, dump_mooncake, parse_mooncake
from kvspec.stateful.machines.mocker import MOCKER_CONFIGS, predict_trace, random_trace

PAIRS = [[1, 2, 3, 4], [1, 2, 5, 6], [7, 8, 9, 10], [1, 2, 3, 4], [1, 2, 5, 6]]


def reuse(rows, cap, **kw):
    return [o.reused_input_tokens for o in predict(rows, cap, **kw)]


@pytest.mark.parametrize("package", [kvspec.model, kvspec.impl], ids=["model", "impl"])
@pytest.mark.parametrize(("cap", "observed"), [(64, [0, 32, 0, 48, 48]), (6, [0, 32, 0, 16, 32])])
def test_five_requests_observed(package, cap, observed):
    rows = [MooncakeRow(64, 2, h) for h in PAIRS]
    assert reuse(rows, cap, pool=package.NativeBlockPool(cap)) == observed


def test_trtllm_reuses_whole_prompt_observed():
    rows = [MooncakeRow(32, 1, [1, 2]), MooncakeRow(32, 1, [1, 2]), MooncakeRow(33, 1, [1, 2, 3]), MooncakeRow(48, 1, [1, 2, 3])]
    assert reuse(rows, 8, backend="trtllm") == [0, 32, 32, 32]
    assert reuse(rows, 8, backend="vllm") == [0, 16, 32, 32]


@pytest.mark.parametrize(
    ("backend", "cap", "length", "output", "observed"),
    [
        ("vllm", 4, 80, 2, ("rejected", 0, 0)),       # ceil(80/16) = 5 > 4
        ("vllm", 4, 64, 1, ("completed", 0, 1)),      # exactly fits: the last token's KV is never computed
        ("vllm", 8, 16, 113, ("completed", 0, 113)),  # 16 + 113 - 1 = 128 tokens = 8 blocks
        ("trtllm", 4, 64, 1, ("rejected", 0, 0)),     # no room for one output token
        ("trtllm", 8, 16, 200, ("completed", 0, 112)),  # output clipped to the pool
        ("trtllm", 8, 127, 5, ("completed", 0, 1)),
    ],
)
def test_reject_and_clip_observed(backend, cap, length, output, observed):
    replay = SequentialReplay(cap, 16, backend)
    assert replay.submit(length, output, list(range(1, -(-length // 16) + 1))) == observed


@pytest.mark.parametrize(("length", "output"), [(64, 20), (128 - 16, 18)])
def test_vllm_stall_leaves_state_unchanged(length, output):
    replay = SequentialReplay(4 if length == 64 else 7, 16, "vllm")
    replay.submit(32, 2, [9, 10])
    before = replay.pool_state()
    with pytest.raises(ReplayStalled):
        replay.submit(length, output, list(range(1, length // 16 + 1)))
    assert replay.pool_state() == before
    assert replay.submit(32, 2, [9, 10])[1] == 16


def test_bad_rows_are_refused_before_anything_changes():
    replay = SequentialReplay(8)
    replay.submit(32, 2, [1, 2])
    before = replay.pool_state()
    with pytest.raises(InvalidArgument):
        replay.submit(40, 1, [1])  # 40 tokens but one 16-token hash id (the mocker refuses it too)
    for bad in [(0, 1, [1]), (16, 0, [1]), (16, 1, []), (16, 1, [-1]), (True, 1, [1])]:
        with pytest.raises(InvalidArgument):
            replay.submit(*bad)
    assert replay.pool_state() == before
    with pytest.raises(InvalidArgument):
        SequentialReplay(8, 16, "sglang")


def test_mooncake_round_trip():
    rows = [MooncakeRow(64, 2, h, float(i)) for i, h in enumerate(PAIRS)]
    assert parse_mooncake(dump_mooncake(rows).splitlines()) == rows
    with pytest.raises(InvalidArgument):
        parse_mooncake(['{"input_length": 3}'])


@pytest.mark.parametrize(("name", "backend", "caching"), MOCKER_CONFIGS)
def test_model_and_impl_pools_predict_alike(name, backend, caching):
    rng = random.Random(name)
    for _ in range(30):
        spec = random_trace(rng, 40, rng.choice([4, 6, 8, 16, 64]), backend, caching)
        assert predict_trace(spec) == predict_trace(spec, kvspec.impl.NativeBlockPool(spec.num_gpu_blocks))


# --- the pool's rules, one test each (mirroring aisimulate-core's own pool tests) ---------------


@pytest.fixture(params=["model", "impl"])
def Pool(request):
    import importlib

    return importlib.import_module(f"kvspec.{request.param}").NativeBlockPool


def test_duplicate_hashes_take_distinct_capacity(Pool):
    pool = Pool(2)
    (a,) = pool.acquire([], 1)
    assert pool.cache(a, 7) is True
    (b,) = pool.acquire([], 1)
    assert pool.cache(b, 7) is False
    assert pool.num_active() == 2 and pool.num_free() == 0
    pool.release(a)
    pool.release(b)
    assert [c for c, _ in pool.inactive_order()] == [a, b]


def test_hash_removed_only_with_its_last_copy(Pool):
    pool = Pool(2)
    a, b = pool.acquire([], 2)
    pool.cache(a, 3)
    pool.cache(b, 3)
    pool.release(a)
    pool.release(b)
    pool.acquire([], 1)
    assert pool.drain_removed() == [] and pool.resident() == [3]
    assert pool.longest_prefix([3]) == 1


def test_release_leaf_first_evicts_leaf_first(Pool):
    pool = Pool(2)
    parent, leaf = pool.acquire([], 2)
    pool.cache(parent, 7)
    pool.cache(leaf, 8)
    pool.release(leaf)
    pool.release(parent)
    pool.acquire([7, 8], 0)  # pin and release again (in reverse, as a request does)
    copies = pool.copies()
    assert all(refs == 1 for _, _, refs in copies)
    pool.release(leaf)
    pool.release(parent)
    pool.acquire([], 1)
    assert pool.drain_removed() == [8] and pool.resident() == [7]


def test_pinned_prefix_is_not_evictable_and_failure_is_atomic(Pool):
    pool = Pool(1)
    (a,) = pool.acquire([], 1)
    pool.cache(a, 9)
    pool.release(a)
    before = (pool.copies(), pool.inactive_order())
    with pytest.raises(PoolExhausted):
        pool.acquire([9], 1)
    assert (pool.copies(), pool.inactive_order()) == before
    with pytest.raises(BlockNotHeld):
        pool.acquire([5], 0)
    with pytest.raises(BlockNotHeld):
        pool.release(a)  # inactive: no request holds it
    (b,) = pool.acquire([9], 0)
    assert b == a
    with pytest.raises(BlockStateError):
        pool.cache(a, 4)


def test_middle_reacquire_requeues_as_newest(Pool):
    pool = Pool(3)
    ids = pool.acquire([], 3)
    for copy_id, h in zip(ids, (1, 2, 3)):
        pool.cache(copy_id, h)
    for copy_id in ids:
        pool.release(copy_id)
    (middle,) = pool.acquire([1, 2][1:], 0)
    pool.release(middle)
    evicted = []
    for _ in range(3):
        pool.acquire([], 1)
        evicted += pool.drain_removed()
    assert evicted == [1, 3, 2]
