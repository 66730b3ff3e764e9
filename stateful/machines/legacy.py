"""State machine for the legacy (HashCache + LRU) mocker manager, :class:`LegacyKvManager`.

Requests are :class:`~kvspec.sequence.ActiveSequence`\\ s admitted whole (the legacy protocol has no
chunk ``parent``), decoded with Promote + Use(partial), and freed the legacy way (``Destroy`` for
partial blocks, ``Deref`` for full ones, leaf first) or the newer way (``Deref`` for all).  Raw
operations over a small identity table add Uses of arbitrary blocks, Derefs in any order (unknown
blocks are ignored by the legacy manager), Destroys, Promotes, and bad input that must raise the
same typed error on both sides and change nothing.  Capacities 1-8 (raw identities 1-8, so raw
operations alone fill and evict the pool), block sizes 2-4.

Invariants (model side): event ids count from 0 without gaps; active and inactive are disjoint;
``current_capacity`` never exceeds the capacity and equals active + inactive; until a Use has
failed for capacity (upstream then pins blocks it never announces) every Removed names a block
Stored earlier and not removed since.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from kvspec.events import Removed, Stored
from kvspec.hashing import Plh
from kvspec.protocol import Deref, Destroy, FullBlock, PartialBlock, Promote, Use
from kvspec.sequence import ActiveSequence, IdSource
from kvspec.stateful.engine.machine import DifferentialMachine, MachineSpec, weight
from kvspec.stateful.machines.strategies import choose

tokens = st.integers(0, 2)
raw_hashes = st.integers(1, 8)


class LegacyMachine(DifferentialMachine):
    observers = {"LegacyKvManager": ["drain_events", "active_blocks", "inactive_blocks", "current_capacity",
                                     "num_active_blocks", "num_active_block_refs", "num_inactive_blocks",
                                     "eviction_order"]}

    def __init__(self) -> None:
        super().__init__()

    @initialize(capacity=st.integers(1, 8), block_size=st.integers(2, 4), seed=st.integers(0, 255))
    def create(self, capacity, block_size, seed):
        self.capacity, self.block_size = capacity, block_size
        self.run.create("mgr", "LegacyKvManager", capacity, block_size)
        self.ids = IdSource(seed)
        self.requests: list[ActiveSequence] = []
        self.router: Counter = Counter()
        self.next_event_id = 0
        self.announced_all = True  # no capacity failure yet (upstream then loses Stored events)

    def process(self, op):
        value, error = self.attempt("mgr", "process", op)
        expected, _ = self.run.outcomes[-1]
        for event in expected.observed.get("drain_events") or []:
            assert event.event_id == self.next_event_id
            self.next_event_id += 1
            if isinstance(event.data, Stored):
                for block in event.data.blocks:
                    self.router[block.block_hash] += 1
            elif isinstance(event.data, Removed):
                for h in event.data.block_hashes:
                    if self.announced_all:
                        assert self.router[h] > 0, f"Removed {h}, never stored or already removed"
                    self.router[h] -= 1
        if value is False:
            self.announced_all = False
        return value, error

    # -- requests ---------------------------------------------------------------------------------

    @precondition(lambda self: len(self.requests) < 5)
    @rule(prompt=st.lists(tokens, min_size=1, max_size=7), planned=st.lists(tokens, min_size=1, max_size=3))
    def req_admit(self, prompt, planned):
        seq = ActiveSequence(prompt, self.block_size, len(planned), True, output_tokens=planned, rng=self.ids)
        self.attempt("mgr", "prefill_cost", seq.snapshot())
        ok, _ = self.process(seq.take_creation_signal())
        if ok:
            self.requests.append(seq)

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def req_decode(self, data):
        seq = choose(data, self.requests)
        signals = seq.generate()
        for op in signals:
            if isinstance(op, Deref):
                break
            ok, error = self.process(op)
            if error is not None or ok is False:
                seq.pop()
                return
        seq.commit_allocation(len(seq))
        if seq.is_finished:
            self._free(seq, legacy=True)

    def _free(self, seq, legacy):
        for op in seq.free_signal():
            (block,) = op.blocks
            if legacy and isinstance(block, PartialBlock):
                self.process(Destroy([block]))
            else:
                self.process(op)
        self.requests.remove(seq)

    @precondition(lambda self: self.requests)
    @rule(data=st.data(), legacy=st.booleans())
    def req_finish(self, data, legacy):
        self._free(choose(data, self.requests), legacy)

    # -- raw operations ---------------------------------------------------------------------------

    @rule(hashes=st.lists(raw_hashes, min_size=1, max_size=3), partial=st.booleans())
    def raw_acquire(self, hashes, partial):
        blocks = [FullBlock(h) for h in hashes] + ([PartialBlock(self.ids.uuid())] if partial else [])
        self.process(Use(blocks, [h * 10 for h in hashes], []))

    @rule(hashes=st.lists(raw_hashes, min_size=1, max_size=3))
    def raw_deref(self, hashes):
        self.process(Deref([FullBlock(h) for h in hashes]))

    @rule(hashes=st.lists(raw_hashes, min_size=1, max_size=2))
    def raw_destroy(self, hashes):
        self.process(Destroy([FullBlock(h) for h in hashes]))

    @rule(h=raw_hashes, parent=st.integers(0, 6))
    def raw_promote(self, h, parent):
        parent = parent or None
        uuid = self.ids.uuid()
        ok, _ = self.process(Use([PartialBlock(uuid)], [], []))
        if ok:
            self.process(Promote(uuid, h, parent, h * 10, Plh(0, h, None)))

    @rule(which=st.sampled_from(["lengths", "parent", "promote_unknown", "destroy_twice"]), h=raw_hashes)
    def bad_input(self, which, h):
        if which == "lengths":
            op = Use([FullBlock(h), FullBlock(h + 1), FullBlock(h + 2)], [1, 2], [])
        elif which == "parent":
            op = Use([FullBlock(h)], [1], [], None, FullBlock(h + 1))
        elif which == "promote_unknown":
            op = Promote(10**9, h, None, 0, Plh(0, h, None))
        else:
            op = Destroy([FullBlock(h), FullBlock(h)])
        _, error = self.process(op)
        assert error is not None, f"{which}: bad input was accepted"

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def req_prefill_cost(self, data):
        self.attempt("mgr", "prefill_cost", choose(data, self.requests).snapshot())

    @weight(3)  # its answer differs only once a request's blocks are partly cached or active
    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def req_probe_new_blocks(self, data):
        """How many of a request's blocks the manager would have to allocate (active, cached or new)."""
        self.attempt("mgr", "probe_new_blocks", list(choose(data, self.requests).unique_blocks))

    @invariant()
    def legacy_invariants(self):
        seen = self.run.outcomes[-1][0].observed
        if "active_blocks" not in seen:
            return
        active, inactive = seen["active_blocks"], seen["inactive_blocks"]
        assert not (set(active) & set(inactive)), "a block is both active and inactive"
        assert seen["current_capacity"] == len(active) + len(inactive) <= self.capacity
        assert seen["num_active_block_refs"] == sum(active.values())


def machines() -> list[MachineSpec]:
    return [MachineSpec(name="legacy", factory=LegacyMachine, requires=("LegacyKvManager",),
                        description="legacy HashCache mocker manager (Use/Destroy/Deref/Promote, LRU)")]
