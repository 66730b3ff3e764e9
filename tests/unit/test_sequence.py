"""ActiveSequence: upstream's sequence.rs tests (mocker ``common/sequence.rs``) plus kvspec's hashing rules."""

from __future__ import annotations

import random

import pytest

from kvspec import codec
from kvspec.errors import InvalidArgument
from kvspec.hashing import block_hashes, lineage, sequence_hashes
from kvspec.protocol import Deref, FullBlock, PartialBlock, Promote, Use
from kvspec.sequence import ActiveSequence, IdSource, SequenceSnapshot, as_id_source


def new_with_signal(tokens, max_out, bs, pc=True, rng=None):
    seq = ActiveSequence(tokens, bs, max_out, pc, rng=rng if rng is not None else IdSource(0))
    return seq, seq.take_creation_signal()


def is_single_partial_use(signal):
    return isinstance(signal, Use) and len(signal.blocks) == 1 and isinstance(signal.blocks[0], PartialBlock) \
        and signal.local_hashes == ()


def test_hashes_follow_decision_2():
    tokens = list(range(10))
    seq = ActiveSequence(tokens, 4, 4, True, rng=IdSource(0))
    local = block_hashes(tokens, 4)
    chain = sequence_hashes(local)
    assert seq.block_hashes == tuple(local)
    assert seq.unique_blocks[:2] == (FullBlock(chain[0]), FullBlock(chain[1]))
    assert seq.plhs == tuple(lineage(chain))
    assert isinstance(seq.unique_blocks[2], PartialBlock)


def test_new_with_signal_creates_initial_partial_block():
    seq, signal = new_with_signal(list(range(15)), 100, 16)
    assert seq.num_input_tokens == 15 and len(seq) == 15
    assert is_single_partial_use(signal)


def test_push_across_block_boundary_promotes_and_allocates_partial():
    seq, _ = new_with_signal(list(range(15)), 100, 16)
    assert seq.push(15) == [], "completing a block triggers nothing"
    signals = seq.push(16)
    assert len(signals) == 2
    assert isinstance(signals[0], Promote) and signals[0].parent_hash is None
    assert is_single_partial_use(signals[1])
    assert len(seq.unique_blocks) == 2 and len(seq) % seq.block_size == 1


def test_equivalent_histories_preserve_full_block_identity():
    ids = IdSource(1)
    seq1, _ = new_with_signal(list(range(15)), 100, 16, rng=ids)
    seq1.push(15)
    seq1.push(16)
    seq2, _ = new_with_signal(list(range(16)), 100, 16, rng=ids)
    seq2.push(16)
    seq2.pop()
    seq2.push(16)
    assert seq1.unique_blocks[0] == seq2.unique_blocks[0]
    assert seq1.unique_blocks[1] != seq2.unique_blocks[1], "partial ids never collide within one source"


def test_promote_uses_previous_full_block_as_parent():
    ids = IdSource(2)
    seq, _ = new_with_signal(list(range(15)), 100, 16, rng=ids)
    seq.push(15)
    seq.push(16)
    seq.push(17)
    seq.pop()
    seq.pop()
    seq.push(16)
    equiv, _ = new_with_signal(list(range(16)), 100, 16, rng=ids)
    equiv.push(16)
    equiv.pop()
    equiv.push(16)
    for t in range(17, 33):
        seq.push(t)
        equiv.push(t)
    assert seq.unique_blocks[0:2] == equiv.unique_blocks[0:2]
    for t in range(33, 48):
        seq.push(t)
    signals = seq.push(48)
    assert signals[0].parent_hash == seq.unique_blocks[1].hash
    assert is_single_partial_use(signals[1])


def test_reset_with_signal_frees_blocks_and_resets_allocation():
    seq, _ = new_with_signal(list(range(15)), 100, 16)
    seq.push(15)
    seq.push(16)
    seq.commit_allocation(len(seq))
    signals = seq.reset_with_signal()
    assert signals == [Deref([seq.unique_blocks[1]]), Deref([seq.unique_blocks[0]])]
    assert seq.num_allocated_tokens == 0
    assert seq.generated_tokens == 2


def test_active_sequence_generate_signals():
    seq, signal = new_with_signal(list(range(14)), 5, 16)
    assert is_single_partial_use(signal)
    seq.generate()
    assert seq.generate() == []
    second = seq.generate()
    assert len(second) == 2 and isinstance(second[0], Promote) and second[0].parent_hash is None
    assert is_single_partial_use(second[1])
    assert seq.generate() == []
    last = seq.generate()
    assert len(last) == 2
    assert isinstance(last[0], Deref) and isinstance(last[0].blocks[0], PartialBlock)
    assert isinstance(last[1], Deref) and isinstance(last[1].blocks[0], FullBlock)
    with pytest.raises(InvalidArgument):
        seq.generate()


def test_prepare_allocation_slices_full_and_partial_blocks():
    seq = ActiveSequence(list(range(10)), 4, 4, True, rng=IdSource(0))
    first = seq.prepare_allocation(4)
    assert first.blocks == seq.unique_blocks[0:1] and first.local_hashes == seq.block_hashes[0:1]
    second = seq.prepare_allocation(8)
    assert second.blocks == seq.unique_blocks[0:2] and second.local_hashes == seq.block_hashes[0:2]
    third = seq.prepare_allocation(10)
    assert third.blocks == seq.unique_blocks[0:3] and third.local_hashes == seq.block_hashes[0:2]
    assert third.plhs == seq.plhs[0:2] and third.parent is None


def test_prepare_allocation_is_stable_until_commit():
    seq = ActiveSequence(list(range(10)), 4, 4, True, rng=IdSource(0))
    assert seq.prepare_allocation(4) == seq.prepare_allocation(4)
    seq.commit_allocation(4)
    nxt = seq.prepare_allocation(8)
    assert nxt.blocks == seq.unique_blocks[1:2] and nxt.local_hashes == seq.block_hashes[1:2]
    assert nxt.parent == seq.unique_blocks[0]
    assert seq.prepare_allocation(3) is None


def test_block_hash_cache_stays_in_sync_after_promote_and_pop():
    seq, _ = new_with_signal(list(range(15)), 4, 16)

    def in_sync():
        fulls = sum(isinstance(b, FullBlock) for b in seq.unique_blocks)
        assert seq.block_hashes == tuple(block_hashes(seq.tokens, 16)[:fulls])

    in_sync()
    seq.push(15)
    in_sync()
    assert len(seq.push(16)) == 2
    in_sync()
    seq.pop()
    in_sync()


def test_prefix_caching_off_random_but_stable():
    ids = IdSource(5)
    a = ActiveSequence(list(range(8)), 4, 4, False, rng=ids)
    b = ActiveSequence(list(range(8)), 4, 4, False, rng=ids)
    assert a.block_hashes == () and len(a.plhs) == 2
    assert set(a.unique_blocks).isdisjoint(b.unique_blocks), "identical prompts never share blocks"
    first = a.take_creation_signal()
    a.reset_with_signal()
    assert a.take_creation_signal() == first, "a preempted request keeps its random identities"
    assert [p.position for p in a.plhs] == [0, 1] and all(p.parent is None for p in a.plhs)
    # the same seed reproduces the same identities
    again = ActiveSequence(list(range(8)), 4, 4, False, rng=IdSource(5))
    assert again.unique_blocks == a.unique_blocks


def test_shared_random_source():
    rng = random.Random(3)
    assert as_id_source(rng) is as_id_source(rng)
    s1 = ActiveSequence([1, 2, 3], 2, 2, rng=rng)
    s2 = ActiveSequence([1, 2, 3], 2, 2, rng=rng)
    assert s1.unique_blocks[-1] != s2.unique_blocks[-1]


def test_emit_token_ids_only_with_prefix_caching():
    seq = ActiveSequence(list(range(9)), 4, 8, True, rng=IdSource(0), emit_token_ids=True)
    use = seq.take_creation_signal()
    assert use.token_ids == ((0, 1, 2, 3), (4, 5, 6, 7))
    off = ActiveSequence(list(range(9)), 4, 8, False, rng=IdSource(0), emit_token_ids=True)
    assert off.take_creation_signal().token_ids is None


def test_chunk_parent_and_preemption_keeps_tokens():
    seq = ActiveSequence(list(range(12)), 4, 4, True, output_tokens=[7, 7, 7, 7], rng=IdSource(0))
    first = seq.allocate_blocks_for_chunk(5)
    assert first.blocks == seq.unique_blocks[0:2] and first.parent is None
    second = seq.allocate_blocks_for_chunk(12)
    assert second.blocks == seq.unique_blocks[2:3] and second.parent == seq.unique_blocks[1]
    for _ in range(2):
        seq.generate()
    seq.commit_allocation(len(seq))
    frees = seq.reset_with_signal()
    assert [op.blocks[0] for op in frees] == list(reversed(seq.unique_blocks))
    assert len(seq) == 14 and seq.generated_tokens == 2
    again = seq.take_creation_signal()
    assert again.blocks == seq.unique_blocks and again.parent is None


@pytest.mark.parametrize("bad", [dict(block_size=1), dict(block_size=0), dict(max_output_tokens=-1),
                                 dict(tokens=[2**32]), dict(tokens=[-1])])
def test_bad_arguments(bad):
    kwargs = dict(tokens=[1, 2, 3], block_size=2, max_output_tokens=3)
    kwargs.update(bad)
    with pytest.raises(InvalidArgument):
        ActiveSequence(**kwargs, rng=IdSource(0))


def test_pop_outside_a_fresh_partial_is_rejected():
    seq = ActiveSequence(list(range(8)), 4, 4, True, rng=IdSource(0))
    with pytest.raises(InvalidArgument):
        seq.pop()  # no generated token


def test_snapshot_round_trips_through_the_codec():
    seq = ActiveSequence(list(range(10)), 4, 4, True, rng=IdSource(0))
    snap = seq.snapshot()
    assert isinstance(snap, SequenceSnapshot)
    assert codec.decode(codec.encode(snap)) == snap
    assert snap.unique_blocks == seq.unique_blocks and snap.num_input_tokens == 10
