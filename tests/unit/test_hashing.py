"""Hashing is byte-compatible with Dynamo: the verified vectors of docs/upstream.md R2.3."""

import struct

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from kvspec.errors import InvalidArgument
from kvspec.hashing import Plh, block_hashes, chain_hash, lineage, salt_seed, sequence_hashes

# (tokens, block_size, kwargs, expected local hashes) — observed on ai-dynamo-runtime 1.6.1
MM = [{"mm_objects": [{"mm_hash": 0xDEADBEEF}, {"mm_hash": 5}]}, None]
VECTORS = [
    ([1, 2, 3, 4], 4, {}, [14643705804678351452]),
    (list(range(10)), 4, {}, [9143094415614847814, 12124091508212882195]),
    ([0, 1, 2], 4, {}, []),
    ([], 4, {}, []),
    (list(range(8)), 4, {"lora_name": "x"}, [12110057235044308540, 13987628610425025070]),
    (list(range(8)), 4, {"lora_name": ""}, [9143094415614847814, 12124091508212882195]),
    (list(range(8)), 4, {"cache_namespace": "tenant-a"}, [17009624042690211646, 10000672136415158886]),
    (list(range(8)), 4, {"lora_name": "adapter-a", "cache_namespace": "tenant-a"},
     [8269515957840517240, 11937877779520612889]),
    (list(range(9)), 4, {"is_eagle": True}, [14562210786876287112, 15916330181359808192]),
    (list(range(8)), 4, {"is_eagle": True}, [14562210786876287112]),
    (list(range(16)), 16, {}, [15310707395893867146]),
    ([2**32 - 1] * 4, 4, {}, [12410542959481710713]),
    (list(range(64)), 32, {}, [5756925433886871916, 13958166640625465031]),
    (list(range(8)), 4, {"block_mm_infos": MM}, [17681225121146045220, 12124091508212882195]),
    # mm hash 7 on block 1 only, with a LoRA salt
    (list(range(8)), 4, {"lora_name": "x", "block_mm_infos": [None, {"mm_objects": [{"mm_hash": 7}]}]},
     [12110057235044308540, 4615781972407670306]),
]


@pytest.mark.parametrize("tokens,block_size,kwargs,expected", VECTORS)
def test_dynamo_vectors(tokens, block_size, kwargs, expected):
    assert block_hashes(tokens, block_size, **kwargs) == expected


def test_sequence_chain_matches_router_dump():
    # exp. S: block hashes dumped by Dynamo's router in approximate mode, seed-1337 chain
    local = block_hashes(list(range(1, 13)), 4)
    assert local == [14643705804678351452, 16777012769546811212, 483935686894639516]
    assert sequence_hashes(local) == [14643705804678351452, 4945711292740353085, 12583592247330656132]
    lora = block_hashes(list(range(1, 9)), 4, lora_name="x")
    assert sequence_hashes(lora) == [5621237061398796446, 14312468848906682366]


def test_lora_salts_the_seed_not_the_bytes():
    assert salt_seed("x") == (1337 + xxhash.xxh3_64_intdigest(b"x", seed=0)) % 2**64
    data = struct.pack("<4I", 1, 2, 3, 4)
    assert block_hashes([1, 2, 3, 4], 4, lora_name="x") == [xxhash.xxh3_64_intdigest(data, seed=salt_seed("x"))]


@pytest.mark.parametrize("bad", [[2**32], [-1], [1.5]])
def test_tokens_must_be_u32(bad):
    with pytest.raises(InvalidArgument):
        block_hashes(bad, 1)


@pytest.mark.parametrize("size", [0, -4])
def test_block_size_must_be_positive(size):
    with pytest.raises(InvalidArgument):
        block_hashes([1, 2], size)


@given(st.lists(st.integers(0, 2**32 - 1), max_size=40), st.integers(1, 8))
def test_blocks_are_independent_of_position(tokens, bs):
    """A local hash depends only on its block's tokens: hashing block by block gives the same list."""
    whole = block_hashes(tokens, bs)
    assert len(whole) == len(tokens) // bs
    assert whole == [block_hashes(tokens[i * bs:(i + 1) * bs], bs)[0] for i in range(len(whole))]


@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=10), st.integers(0, 2**64 - 1))
def test_sequence_chain_continues(local, split_seed):
    split = split_seed % len(local)
    whole = sequence_hashes(local)
    head = sequence_hashes(local[:split])
    tail = sequence_hashes(local[split:], parent=head[-1] if head else None)
    assert head + tail == whole
    for prev, cur, h in zip(whole, whole[1:], local[1:]):
        assert cur == chain_hash(prev, h)


def test_lineage_links_parent_and_child():
    plhs = lineage([10, 11, 12])
    assert plhs == [Plh(0, 10, None), Plh(1, 11, 10), Plh(2, 12, 11)]
    assert plhs[1].parent_key == plhs[0].key and plhs[0].parent_key is None
    assert plhs[0].extend(5) == Plh(1, chain_hash(10, 5), 10)
    assert eval(repr(plhs[2])) == plhs[2]
