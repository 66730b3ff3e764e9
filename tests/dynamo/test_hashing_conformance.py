"""kvspec.hashing against Dynamo 1.6.1's own hashing (needs ``ai-dynamo-runtime``).

* local block hashes: ``kvspec.hashing.block_hashes`` == ``dynamo._core.compute_block_hash_for_seq``
  on generated tokens, block sizes, LoRA names, cache namespaces, Eagle mode and multimodal hashes;
* the sequence-hash chain: the external hashes Dynamo's router writes in approximate mode
  (``use_kv_events=False``, ``best_worker(..., update_indexer=True)``, then ``dump_events``) equal
  ``kvspec.hashing.sequence_hashes`` of the local hashes (``docs/upstream.md`` R2.3 exp. S).
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvspec import hashing
from kvspec.adapters.dynamo import radix as dynamo
from kvspec.errors import InvalidArgument
from kvspec.events import Stored

REASON = dynamo.unavailable_reason()
pytestmark = [pytest.mark.dynamo, pytest.mark.skipif(REASON is not None, reason=f"Dynamo hashing: {REASON}")]

U32 = 2**32
U64 = 2**64

tokens_st = st.lists(st.one_of(st.integers(0, 50), st.integers(0, U32 - 1)), max_size=70)
names_st = st.one_of(st.none(), st.just(""), st.text(max_size=12))
mm_object = st.fixed_dictionaries({"mm_hash": st.integers(0, U64 - 1)})
mm_info = st.one_of(st.none(), st.fixed_dictionaries({"mm_objects": st.lists(mm_object, max_size=3)}))
mm_infos_st = st.one_of(st.none(), st.lists(mm_info, max_size=10))


@settings(max_examples=300, deadline=None)
@given(tokens=tokens_st, block_size=st.integers(1, 17), lora_name=names_st, cache_namespace=names_st,
       is_eagle=st.booleans(), block_mm_infos=mm_infos_st)
def test_local_hashes_equal_dynamo(tokens, block_size, lora_name, cache_namespace, is_eagle, block_mm_infos):
    kwargs = dict(lora_name=lora_name, cache_namespace=cache_namespace, is_eagle=is_eagle,
                  block_mm_infos=block_mm_infos)
    ours = hashing.block_hashes(tokens, block_size, **kwargs)
    theirs = dynamo.block_hashes(tokens, block_size, **kwargs)
    assert ours == theirs


@pytest.mark.parametrize(("tokens", "block_size"), [([1, 2], 0), ([U32], 1), ([-1], 1)])
def test_invalid_input_rejected_by_both(tokens, block_size):
    with pytest.raises(InvalidArgument):
        hashing.block_hashes(tokens, block_size)
    with pytest.raises(InvalidArgument):
        dynamo.block_hashes(tokens, block_size)


def test_known_vector_from_the_notes():
    """Anchors the property test: a vector recorded from the binary (docs/upstream.md R2.3 exp. F)."""
    assert dynamo.block_hashes([1, 2, 3, 4], 4) == [14643705804678351452]
    assert dynamo.block_hashes(list(range(8)), 4, lora_name="x") == [12110057235044308540, 13987628610425025070]
    assert dynamo.block_hashes(list(range(1, 9)), 4, lora_name="x")[0] == 5621237061398796446


# -- the sequence chain, observed through the router's approximate index ------------------------


@pytest.fixture(scope="module")
def approx_router():
    from kvspec.adapters.dynamo.router import ApproximateRouter, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    router = ApproximateRouter(block_size=4)
    yield router
    router.close()


def dumped_edges(router) -> dict[tuple[int | None, int], int]:
    """``(parent E, L) -> E`` over every block the router's dump lists."""
    edges = {}
    for item in router.dump():
        data = item.event.data
        assert isinstance(data, Stored)
        parent = data.parent_hash
        for block in data.blocks:
            edges[(parent, block.tokens_hash)] = block.block_hash
            parent = block.block_hash
    return edges


def chain_in_dump(router, locals_: list[int]) -> list[int | None]:
    """The dumped E of each block along the L-path ``locals_`` (polls: the index write is async)."""
    deadline = time.monotonic() + 10
    while True:
        edges = dumped_edges(router)
        out, parent = [], None
        for local in locals_:
            parent = edges.get((parent, local))
            out.append(parent)
            if parent is None:
                break
        if None not in out or time.monotonic() > deadline:
            return out
        time.sleep(0.01)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tokens=st.lists(st.integers(0, 40), min_size=4, max_size=28), lora_name=names_st, cache_namespace=names_st)
def test_router_sequence_hashes_equal_kvspec(approx_router, tokens, lora_name, cache_namespace):
    locals_ = hashing.block_hashes(tokens, 4, lora_name=lora_name, cache_namespace=cache_namespace)
    approx_router.route(tokens, lora_name=lora_name, cache_namespace=cache_namespace)
    assert chain_in_dump(approx_router, locals_) == hashing.sequence_hashes(locals_)


def test_router_sequence_hash_vector(approx_router):
    """Exp. S: tokens 1..12 chain with seed 1337, not 0."""
    locals_ = hashing.block_hashes(list(range(1, 13)), 4)
    approx_router.route(list(range(1, 13)))
    assert chain_in_dump(approx_router, locals_) == [14643705804678351452, 4945711292740353085, 12583592247330656132]
