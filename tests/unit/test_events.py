"""Events speak Dynamo's serde JSON and reject what Dynamo rejects."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvspec.events import (Cleared, EventDecodeError, KvCacheEvent, Removed, RouterEvent, StorageTier, Stored,
                           StoredBlock)

u64 = st.integers(0, 2**64 - 1)
data = st.one_of(
    st.builds(Stored, st.none() | u64, st.lists(st.builds(StoredBlock, u64, u64), max_size=4)),
    st.builds(Removed, st.lists(u64, max_size=4)),
    st.just(Cleared()),
)
events = st.builds(KvCacheEvent, u64, data, st.integers(0, 2**32 - 1))


@given(events, u64, st.sampled_from(StorageTier))
def test_json_round_trip(event, worker, tier):
    assert KvCacheEvent.from_json(event.to_json()) == event
    wrapped = RouterEvent(worker, event, tier)
    assert RouterEvent.from_json(wrapped.to_json()) == wrapped
    assert eval(repr(wrapped)) == wrapped


def test_wire_form_is_dynamos():
    event = KvCacheEvent(3, Stored(None, [StoredBlock(100, 11)]), dp_rank=1)
    assert json.loads(event.to_json()) == {
        "event_id": 3,
        "data": {"stored": {"parent_hash": None, "blocks": [{"block_hash": 100, "tokens_hash": 11}]}},
        "dp_rank": 1,
    }
    assert KvCacheEvent(0, Cleared()).to_json() == '{"event_id":0,"data":"cleared","dp_rank":0}'


def test_parses_dynamo_dump_item():
    item = ('{"worker_id":1,"storage_tier":"device","residency_domain":"worker","event":{"event_id":0,"data":'
            '{"stored":{"parent_hash":null,"start_position":null,"blocks":[{"block_hash":100,"tokens_hash":11,'
            '"mm_extra_info":null}]}},"dp_rank":0}}')
    assert RouterEvent.from_json(item) == RouterEvent(1, KvCacheEvent(0, Stored(None, [StoredBlock(100, 11)])))


@pytest.mark.parametrize("text", [
    '{"event_id":0,"data":{"cleared":null}}',
    '{"event_id":0,"data":"cleared"}',
    '{"event_id":0,"data":{"stored":{"blocks":[]}}}',
])
def test_accepts_dynamo_variants(text):
    KvCacheEvent.from_json(text)


@pytest.mark.parametrize("text", [
    '{"event_id":0,"data":{"cleared":{}}}',
    '{"event_id":-1,"data":"cleared"}',
    '{"event_id":0,"data":{"removed":{"block_hashes":[-5]}}}',
    '{"event_id":0,"data":{"removed":{"block_hashes":[18446744073709551616]}}}',
    '{"data":"cleared"}',
    '{"event_id":0,"data":{"bogus":{}}}',
    'not json',
    '[1,2]',
])
def test_rejects_what_dynamo_rejects(text):
    with pytest.raises(EventDecodeError):
        KvCacheEvent.from_json(text)
