"""Golden scenarios: the G1→G2 offload, on ``kvspec.model`` and ``kvspec.impl``.

Ported from the seed ``001_54605d7f9d88cef7`` (the mocker's ``KvManager`` with the
``kvbm-offload`` feature, its ``offload`` test module and the swap-in registration test).
Upstream times transfers with a bandwidth model (1 MB blocks at 1 GB/s: 1 ms per block) and
ticks the engine to ``earliest_offload_deadline()``; kvspec's copy clock is one tick per block, so
the scenarios tick to the same deadline.  Upstream identities ``plh(v)`` are single-block lineages
``Plh(0, v, None)``.
"""

from __future__ import annotations

import pytest

import kvspec.impl
import kvspec.model
from kvspec.errors import DuplicateLineage, InvalidArgument
from kvspec.events import Removed, StorageTier, Stored, StoredBlock
from kvspec.hashing import Plh
from kvspec.offload import SwapInHandle, SwapInOutcome
from kvspec.protocol import Deref, FullBlock, PartialBlock, Use

DEVICE, HOST = StorageTier.DEVICE, StorageTier.HOST_PINNED
NAMESPACES = pytest.mark.parametrize("ns", [kvspec.model, kvspec.impl], ids=["model", "impl"])


def plh(v):
    return Plh(0, v, None)


def use(mgr, seq_hash, local_hash=None):
    return mgr.process(Use([FullBlock(seq_hash)], [local_hash if local_hash is not None else seq_hash * 100],
                           [plh(seq_hash)]))


def deref(mgr, seq_hash):
    mgr.process(Deref([FullBlock(seq_hash)]))


def check(mgr):
    if hasattr(mgr, "_check"):
        mgr._check()
    return mgr


def events(mgr):
    return [(e.storage_tier, e.event.data) for e in check(mgr).drain_events()]


def drain_copies(mgr):
    while (deadline := mgr.earliest_offload_deadline()) is not None:
        mgr.tick(deadline)


def tick_to_deadline(mgr):
    deadline = mgr.earliest_offload_deadline()
    assert deadline is not None, "an offload should expose a completion deadline"
    mgr.tick(deadline)


@NAMESPACES
def test_g2_completion_publishes_host_pinned_stored_event(ns):
    mgr = ns.OffloadKvManager(1, 4, num_g2_blocks=1)
    assert use(mgr, 1, 101) == 1
    deref(mgr, 1)
    mgr.drain_events()
    assert use(mgr, 2, 202) == 0  # the only slot is withheld while block 1 is copied
    assert events(mgr) == [(DEVICE, Removed([1]))]  # device Removed at once, no host Stored yet
    tick_to_deadline(mgr)
    assert events(mgr) == [(HOST, Stored(None, [StoredBlock(1, 101)]))]


@NAMESPACES
def test_g2_eviction_publishes_host_pinned_removed_event(ns):
    mgr = ns.OffloadKvManager(1, 4, num_g2_blocks=1)
    assert use(mgr, 1, 101) == 1
    deref(mgr, 1)
    assert use(mgr, 2, 202) == 0
    tick_to_deadline(mgr)
    assert use(mgr, 2, 202) == 1
    deref(mgr, 2)
    mgr.drain_events()
    assert use(mgr, 3, 303) == 0
    tick_to_deadline(mgr)
    got = events(mgr)
    assert (HOST, Removed([1])) in got, "G2 capacity eviction should publish HostPinned Removed"
    assert (HOST, Stored(None, [StoredBlock(2, 202)])) in got
    assert got.index((HOST, Removed([1]))) < got.index((HOST, Stored(None, [StoredBlock(2, 202)])))
    assert mgr.g2_blocks() == [2]


@NAMESPACES
def test_g1_eviction_offload_holds_source_slot_until_complete(ns):
    mgr = ns.OffloadKvManager(1, 4, num_g2_blocks=8)
    assert use(mgr, 1) == 1
    deref(mgr, 1)
    assert (mgr.num_active_blocks(), mgr.num_inactive_blocks()) == (0, 1)
    assert use(mgr, 2) == 0
    assert mgr.num_active_blocks() == 1, "the withheld source slot counts against G1 capacity"
    tick_to_deadline(mgr)
    assert mgr.num_active_blocks() == 0, "the slot is released once the copy completes"
    assert use(mgr, 2) == 1
    assert check(mgr).num_active_blocks() == 1


@NAMESPACES
def test_swap_in_registration_anchors_suffix_to_reused_prefix_parent(ns):
    """Blocks 12 and 13 (locals 120, 130) come back from G2 under the reused block 11: one Stored,
    and they land in G1 as inactive (cached) blocks."""
    mgr = ns.OffloadKvManager(2, 16, num_g2_blocks=4)
    chain = [Plh(0, 11, None), Plh(1, 12, 11), Plh(2, 13, 12)]
    assert mgr.process(Use([FullBlock(12), FullBlock(13)], [120, 130], chain[1:], None, FullBlock(11))) == 2
    mgr.process(Deref([FullBlock(12), FullBlock(13)]))
    assert use(mgr, 5) == 0 and use(mgr, 5) == 0  # each call withholds a slot: 13, then 12, go to G2
    drain_copies(mgr)
    assert mgr.g2_blocks() == [13, 12]
    mgr.drain_events()
    handle = mgr.swap_in(chain[1:], 11)
    assert isinstance(handle, SwapInHandle) and handle.blocks == (12, 13)
    assert mgr.num_active_blocks() == 2  # both destination slots reserved while the copy runs
    mgr.tick(handle.deadline)
    assert events(mgr) == [(DEVICE, Stored(11, [StoredBlock(12, 120), StoredBlock(13, 130)]))]
    assert (mgr.num_active_blocks(), mgr.num_inactive_blocks()) == (0, 2)


@NAMESPACES
def test_swap_in_of_a_full_run_lands_inactive(ns):
    mgr = ns.OffloadKvManager(4, 16, num_g2_blocks=4)
    chain = [Plh(1, 12, 11), Plh(2, 13, 12)]
    assert mgr.process(Use([FullBlock(12), FullBlock(13)], [120, 130], chain, None, FullBlock(11))) == 2
    mgr.process(Deref([FullBlock(12), FullBlock(13)]))
    for h in (5, 6):
        use(mgr, h)
    assert use(mgr, 7) == 0  # G1 full: 13 (the lineage leaf) goes to G2, its slot withheld
    tick_to_deadline(mgr)
    mgr.process(Deref([FullBlock(5), FullBlock(6)]))
    assert mgr.g2_blocks() == [13] and 12 in mgr.eviction_order()
    mgr.drain_events()
    handle = mgr.swap_in(chain[1:], 12)  # 12 is still in G1: only 13 comes back, under it
    assert isinstance(handle, SwapInHandle)
    mgr.tick(handle.deadline)
    assert events(mgr) == [(DEVICE, Stored(12, [StoredBlock(13, 130)]))]
    assert 13 in mgr.eviction_order(), "a swapped-in block is cached (inactive), not pinned"
    assert mgr.g2_blocks() == [13], "the G2 copy stays"


@NAMESPACES
def test_reoffloaded_swapped_in_block_keeps_its_local_hash(ns):
    """A block that came back from G2 keeps its metadata: evicted again, it is not copied twice,
    and G2 still holds it under its local hash."""
    mgr = ns.OffloadKvManager(1, 4, num_g2_blocks=1)
    assert use(mgr, 1, 101) == 1
    deref(mgr, 1)
    assert use(mgr, 2, 202) == 0
    tick_to_deadline(mgr)
    handle = mgr.swap_in([plh(1)], None)
    mgr.tick(handle.deadline)
    assert events(mgr)[-1] == (DEVICE, Stored(None, [StoredBlock(1, 101)]))
    assert use(mgr, 2, 202) == 0  # evicts block 1 again: G2 has it, nothing to copy
    assert mgr.pending_transfers() == [("offload", handle.deadline, (), 1)]
    tick_to_deadline(mgr)
    assert mgr.g2_blocks() == [1]
    assert [e for e in events(mgr) if e[0] is HOST] == []


@NAMESPACES
def test_swap_in_blocked_on_g1_offload(ns):
    mgr = ns.OffloadKvManager(1, 4, num_g2_blocks=2)
    assert use(mgr, 1) == 1
    deref(mgr, 1)
    assert use(mgr, 2) == 0
    tick_to_deadline(mgr)
    assert use(mgr, 2) == 1
    deref(mgr, 2)  # G1: block 2 inactive; G2: block 1
    assert mgr.swap_in([plh(1)], None) is SwapInOutcome.BLOCKED_ON_G1_OFFLOAD
    assert mgr.num_active_blocks() == 1 and mgr.pending_transfers()[0][2] == (2,)
    tick_to_deadline(mgr)
    assert isinstance(mgr.swap_in([plh(1)], None), SwapInHandle)


@NAMESPACES
def test_try_batch_swap_in_returns_no_hits_without_g2_blocks(ns):
    mgr = ns.OffloadKvManager(8, 4, num_g2_blocks=4)
    assert mgr.swap_in([plh(1), plh(2), plh(3)], None) is SwapInOutcome.NO_HITS


@NAMESPACES
def test_use_blocked_withholds_for_the_rest_of_the_request(ns):
    """One blocked Use withholds as many eviction-needing slots as it still needs."""
    mgr = ns.OffloadKvManager(3, 4, num_g2_blocks=8)
    for h in (1, 2, 3):
        use(mgr, h)
        deref(mgr, h)
    blocks = [FullBlock(h) for h in (4, 5, 6)]
    assert mgr.process(Use(blocks, [], [plh(h) for h in (4, 5, 6)])) == 0
    assert mgr.num_active_blocks() == 3 and mgr.pending_transfers()[0][2:] == ((1, 2, 3), 3)


@NAMESPACES
def test_an_offloaded_identity_frees_its_lineage_key(ns):
    """Regression (fuzz, ``offload-manager[lineage]``): an eviction turned into an offload drops the
    evicted identity from G1 like any eviction, so another identity with its lineage key
    ``(position, current)`` is accepted, as soon as the eviction happens (before the copy ends)."""
    mgr = ns.OffloadKvManager(1, 2, num_g2_blocks=1)
    assert use(mgr, 11, 1100) == 1
    deref(mgr, 11)
    assert mgr.process(Use([PartialBlock(1)], [], [])) == 0  # block 11 goes to G2, the slot is withheld
    impostor = Use([FullBlock(11)], [1100], [Plh(0, 11, 999)])
    assert mgr.process(impostor) == 0  # accepted; it waits for the withheld slot like any Use
    tick_to_deadline(mgr)
    mgr.drain_events()
    assert mgr.process(impostor) == 1
    assert events(mgr) == [(DEVICE, Stored(None, [StoredBlock(11, 1100)]))]


@NAMESPACES
def test_a_swapped_in_identity_holds_its_lineage_key(ns):
    """A block that came back from G2 is a live G1 identity: another identity with its lineage key
    is refused with DuplicateLineage before anything changes."""
    mgr = ns.OffloadKvManager(1, 4, num_g2_blocks=1)
    assert use(mgr, 1, 101) == 1
    deref(mgr, 1)
    assert use(mgr, 2, 202) == 0
    tick_to_deadline(mgr)
    handle = mgr.swap_in([plh(1)], None)
    mgr.tick(handle.deadline)
    mgr.drain_events()
    before = (mgr.eviction_order(), mgr.num_active_blocks(), mgr.pending_transfers(), mgr.g2_blocks())
    with pytest.raises(DuplicateLineage):
        mgr.process(Use([FullBlock(1)], [101], [Plh(0, 1, 999)]))
    assert (mgr.eviction_order(), mgr.num_active_blocks(), mgr.pending_transfers(), mgr.g2_blocks()) == before
    assert events(mgr) == []


@NAMESPACES
@pytest.mark.parametrize("kwargs", [{"num_g2_blocks": 0}, {"num_g2_blocks": 1, "offload_ticks_per_block": 0},
                                    {"num_g2_blocks": True}])
def test_bad_construction(ns, kwargs):
    with pytest.raises(InvalidArgument):
        ns.OffloadKvManager(4, 4, **kwargs)


@NAMESPACES
def test_bad_input_changes_nothing(ns):
    mgr = ns.OffloadKvManager(1, 4, num_g2_blocks=1)
    use(mgr, 1)
    deref(mgr, 1)
    use(mgr, 2)
    before = (mgr.pending_transfers(), mgr.now(), mgr.g2_blocks(), mgr.num_active_blocks())
    mgr.tick(0)
    for call in (lambda: mgr.tick(-1), lambda: mgr.swap_in([1], None), lambda: mgr.swap_in([plh(1)], -1)):
        with pytest.raises(InvalidArgument):
            call()
    assert (mgr.pending_transfers(), mgr.now(), mgr.g2_blocks(), mgr.num_active_blocks()) == before
    assert [e.storage_tier for e in mgr.drain_events()] == [DEVICE, DEVICE]
