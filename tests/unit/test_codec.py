"""The codec round-trips every value kvspec puts into a trace, and builds nothing else."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvspec import codec
from kvspec.events import KvCacheEvent, Removed, RouterEvent, StorageTier
from kvspec.hashing import Plh
from kvspec.protocol import Deref, FullBlock, PartialBlock, Promote, Use

u64 = st.integers(0, 2**64 - 1)
plhs = st.builds(Plh, st.integers(0, 100), u64, st.none() | u64)
blocks = st.one_of(st.builds(FullBlock, u64), st.builds(PartialBlock, st.integers(0, 10**6)))
ops = st.one_of(
    st.builds(Use, st.lists(blocks, max_size=3), st.lists(u64, max_size=3), st.lists(plhs, max_size=3),
              st.none() | st.lists(st.lists(st.integers(0, 2**32 - 1), max_size=3), max_size=2), st.none() | blocks),
    st.builds(Deref, st.lists(blocks, max_size=3)),
    st.builds(Promote, st.integers(0, 10**6), u64, st.none() | u64, st.none() | u64, plhs,
              st.none() | st.lists(st.integers(0, 2**32 - 1), max_size=4)),
)
plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | ops | st.sampled_from(StorageTier),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.integers() | st.tuples(st.integers(), st.integers()), inner, max_size=3),
    max_leaves=10,
)


@given(plain)
def test_round_trip(value):
    import json

    assert codec.decode(json.loads(json.dumps(codec.encode(value)))) == value


@given(ops)
def test_reprs_are_valid_python(op):
    from kvspec.protocol import Deref, FullBlock, PartialBlock, Plh, Promote, Use  # noqa: F401 - used by eval

    assert eval(repr(op)) == op


def test_canonical_ignores_tuple_vs_list():
    assert codec.canonical((1, [2, (3,)])) == codec.canonical([1, (2, [3])])
    assert codec.canonical({(1, 0): 2}) == codec.canonical({(1, 0): 2})


@pytest.mark.parametrize("bad", [
    {"$type": "os.system", "fields": {}},
    {"$type": "Plh", "fields": {"position": 0, "current": -1, "parent": None}},
    {"$enum": "StorageTier", "value": "tape"},
    {"$dict": [[1]]},
    {"$dict": [[[1], 2]]},
    {"x": 1},
    {"$tuple": 5},
])
def test_decode_rejects_garbage(bad):
    with pytest.raises(codec.DecodeError):
        codec.decode(bad)


def test_unregistered_types_are_not_encoded():
    with pytest.raises(TypeError):
        codec.encode(object())
    assert codec.decode(codec.encode(RouterEvent(1, KvCacheEvent(0, Removed([1]))))) == RouterEvent(
        1, KvCacheEvent(0, Removed([1])))
