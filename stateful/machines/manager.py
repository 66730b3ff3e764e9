"""State machines for the G1 mocker :class:`KvManager`, one per eviction backend.

Driven mostly by realistic requests: :class:`~kvspec.sequence.ActiveSequence`\\ s over a 3-token
alphabet (so prompts share prefixes all the time) with block sizes 2-4 and capacities 1-12 (so
eviction is constant).  The machine plays a small scheduler: admit (whole creation signal or a
chunk via prepare/commit), decode (``generate``, with ``pop`` when the decode Use fails), preempt
(``reset_with_signal``), finish or abort.  Every signal is one step ``mgr.process(op)`` applied to
the model and the target; ``prefill_cost`` is compared as a step too.

Rule names sort raw operations before request ones (``raw_*`` < ``req_*``): Hypothesis orders
rules by name and shrinks towards the first, so counterexamples shrink to a few raw steps.

Mixed in: raw operations on a small table of identities (chains of a token-path tree, as the pool
machine) — Use of whole chains or of arbitrary identities, Derefs in any order (root first
included, which under ``lru`` evicts an interior block before its descendants and makes kvspec's
parent anchoring differ from upstream's), Promotes of raw partials, and bad input (unheld Deref,
Deref named twice, unknown Promote, mismatched lengths on the third block, partial parent,
lineage impostors) that must raise the same typed error on both sides and change nothing.
A last family breaks the hash/Plh correspondence on purpose (upstream accepts it); after one of
those the router-consistency invariants are switched off for the rest of the run.

Invariants (model side; the differential engine already holds the target to the model):
event ids count from 0 without gaps and carry the dp rank; every Removed names a block Stored
earlier and not removed since; a Stored parent is held by the router; the router's view equals
the blocks the manager holds (active or inactive); no block is both active and inactive; pinned +
inactive blocks fit the capacity; the reference count equals the driver's ledger.
"""

from __future__ import annotations

from collections import Counter
from functools import cache, lru_cache

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from kvspec.events import Removed, Stored
from kvspec.hashing import Plh
from kvspec.model.eviction import BACKENDS
from kvspec.protocol import Deref, FullBlock, PartialBlock, Promote, Use
from kvspec.sequence import ActiveSequence, IdSource
from kvspec.stateful.engine.machine import DifferentialMachine, MachineSpec
from kvspec.stateful.machines.strategies import (ALPHABET, BOOLEANS, IMPOSTOR_PARENT, chain_of, choose, current_of,
                                                 plh_of, shuffled)

tokens = st.integers(0, ALPHABET - 1)
prompts = st.lists(tokens, min_size=0, max_size=10)
#: a fixed tree of token paths, the shortest first (plain sampled_from: cheap to shrink)
PATHS = [(0,), (0, 0), (0, 0, 0), (0, 1), (1,), (0, 0, 1), (1, 0), (0, 0, 0, 0), (0, 1, 1), (2,), (1, 0, 2),
         (0, 0, 1, 2)]
hot_paths = st.sampled_from(PATHS)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# -- the raw operations' values, built once per process --------------------------------------------
# An operation is a frozen value whose constructor validates every field; the raw rules name a
# handful of paths, so the same operations come up over and over; as the identities in
# ``strategies``, they are built once (4-9% more steps/s in the fuzz mode, ``kvspec bench fuzz``).
# Both sides still receive, validate and apply each one as before; the draws are unchanged, so a
# seed runs the same steps as when the rules built them.


#: ``FullBlock(h)``, one per hash (the raw rules hold hashes of the path tree)
full_block = cache(FullBlock)


@cache
def full_blocks(path: tuple[int, ...], start: int) -> tuple[FullBlock, ...]:
    """The full blocks of ``path`` from block ``start`` on."""
    return tuple(FullBlock(p.current) for p in chain_of(path)[start:])


@cache
def chain_use(path: tuple[int, ...], start: int, parent: FullBlock | None) -> Use:
    """Use blocks ``start..`` of ``path``'s chain, under ``parent`` (local hashes: the hash mod 1000)."""
    chain = chain_of(path)[start:]
    return Use(full_blocks(path, start), [p.current % 1000 for p in chain], chain, None, parent)


@lru_cache(maxsize=4096)
def scattered_use(paths: tuple[tuple[int, ...], ...]) -> Use:
    """Use the last block of each path in one batch, without local hashes."""
    plhs = [plh_of(p) for p in paths]
    return Use([FullBlock(p.current) for p in plhs], [], plhs)


@cache
def bad_operation(which: str, path: tuple[int, ...]) -> Use | Promote:
    """The bad input ``which`` (any but the Derefs, which name what the driver holds) around ``path``."""
    plh = plh_of(path)
    if which == "promote_unknown":
        return Promote(10**9, plh.current, plh.parent, 0, plh)
    if which == "lengths":
        other = plh_of((2, 2, 2))
        return Use([FullBlock(plh.current), FullBlock(other.current), FullBlock(5)], [], [plh, other])
    if which == "partial_parent":
        return Use([FullBlock(plh.current)], [], [plh], None, PartialBlock(7))
    if which == "impostor":
        return Use([FullBlock(plh.current)], [], [Plh(plh.position, plh.current, IMPOSTOR_PARENT)])
    if which == "impostor_in_batch":
        a, b = plh_of((1,)), plh_of((1, 1))
        return Use([FullBlock(a.current), FullBlock(b.current), FullBlock(b.current + 1)], [],
                   [a, b, Plh(b.position, b.current, IMPOSTOR_PARENT)])
    assert which == "tokens", which
    return Use([FullBlock(plh.current)], [], [plh], [[1, 2], [3]])


@cache
def mismatched_use(a: tuple[int, ...], b: tuple[int, ...]) -> Use:
    """Use ``a``'s last block named with ``b``'s identity."""
    return Use([FullBlock(plh_of(a).current)], [], [plh_of(b)])


class Request:
    """Driver state of one request: its sequence and whether it is running (decoding)."""

    def __init__(self, seq: ActiveSequence):
        self.seq = seq

    def allocated_blocks(self) -> list:
        seq = self.seq
        count = min(_ceil_div(seq.num_allocated_tokens, seq.block_size), len(seq.unique_blocks))
        return list(seq.unique_blocks[:count])

    @property
    def prefilled(self) -> bool:
        return self.seq.num_allocated_tokens >= len(self.seq)


class ManagerMachine(DifferentialMachine):
    observers = {"KvManager": ["drain_events", "num_active_blocks", "num_active_block_refs",
                               "num_inactive_blocks", "active_refcounts", "eviction_order"]}

    def __init__(self) -> None:
        super().__init__()

    @initialize(capacity=st.integers(1, 12), block_size=st.integers(2, 4),
                seed=st.integers(0, 255),
                dp_rank=st.sampled_from([0, 0, 3]))
    def create(self, capacity, block_size, seed, dp_rank):
        self.capacity, self.block_size, self.dp_rank = capacity, block_size, dp_rank
        self.run.create("mgr", "KvManager", capacity, block_size, eviction=self.params["eviction"], dp_rank=dp_rank)
        self.ids = IdSource(seed)
        self.requests: list[Request] = []
        self.raw_full: Counter = Counter()  # full hash -> references taken by raw ops
        self.raw_partials: set[int] = set()  # partial uuids allocated by raw ops
        self.router: Counter = Counter()  # hash -> stored-and-not-removed count (from the events)
        self.next_event_id = 0
        self.consistent = True  # identities keep the hash <-> Plh correspondence
        self.ledger_ok = True  # the driver's reference ledger is exact

    # -- stepping ---------------------------------------------------------------------------------

    def _events_of_last_step(self):
        expected, _ = self.run.outcomes[-1]
        return expected.observed.get("drain_events") or []

    def _track_events(self) -> None:
        router = self.router  # a Counter: .get, not [], so that a missing hash costs no __missing__ call
        for event in self._events_of_last_step():
            assert event.event_id == self.next_event_id, f"event id {event.event_id}, expected {self.next_event_id}"
            assert event.dp_rank == self.dp_rank
            self.next_event_id += 1
            if isinstance(event.data, Stored):
                parent = event.data.parent_hash
                if self.consistent:
                    assert parent is None or router.get(parent, 0) > 0, f"Stored under {parent}, not held"
                for block in event.data.blocks:
                    held = router.get(block.block_hash, 0)
                    if self.consistent:
                        assert held == 0, f"{block.block_hash} stored twice"
                    router[block.block_hash] = held + 1
            elif isinstance(event.data, Removed):
                for h in event.data.block_hashes:
                    held = router.get(h, 0)
                    assert held > 0, f"Removed {h}, never stored or already removed"
                    if held == 1:
                        del router[h]
                    else:
                        router[h] = held - 1

    def process(self, op):
        """One step; returns ``(value, error)``."""
        value, error = self.attempt("mgr", "process", op)
        self._track_events()
        return value, error

    def _process_realistic(self, op):
        """A step the driver expects to be valid: an error means the ledger can no longer be trusted."""
        value, error = self.process(op)
        if error is not None:
            self.ledger_ok = False
            self.consistent = False
        return value, error

    # -- realistic requests -----------------------------------------------------------------------

    @precondition(lambda self: len(self.requests) < 6)
    @rule(prompt=prompts, planned=st.lists(tokens, min_size=1, max_size=6), prefix_caching=st.sampled_from([True, False, True]))
    def req_new(self, prompt, planned, prefix_caching):
        if not prompt:
            prompt = [0]
        seq = ActiveSequence(prompt, self.block_size, len(planned), prefix_caching, output_tokens=planned, rng=self.ids)
        self.requests.append(Request(seq))
        self.attempt("mgr", "prefill_cost", seq.snapshot())

    def _pick(self, data, predicate):
        """A request the rule applies to (its precondition guarantees there is one)."""
        return choose(data, [r for r in self.requests if predicate(r)])

    @precondition(lambda self: any(not r.prefilled for r in self.requests))
    @rule(data=st.data(), chunk=st.integers(0, 6))
    def req_prefill(self, data, chunk):
        """Allocate the rest of the sequence (``chunk=0``) or one chunk of ``chunk`` tokens."""
        req = self._pick(data, lambda r: not r.prefilled)
        seq = req.seq
        target = len(seq) if chunk == 0 else min(len(seq), seq.num_allocated_tokens + chunk)
        prev_blocks = min(_ceil_div(seq.num_allocated_tokens, seq.block_size), len(seq.unique_blocks))
        signal = seq.prepare_allocation(target)
        if signal is None:
            seq.commit_allocation(target)
            return
        n, error = self._process_realistic(signal)
        if error is not None:
            return
        if n == len(signal.blocks):
            seq.commit_allocation(target)
        else:  # partial failure: the first n blocks are pinned (upstream's scheduler commits them)
            seq.commit_allocation(min((prev_blocks + n) * seq.block_size, target))

    @precondition(lambda self: any(r.prefilled and not r.seq.is_finished for r in self.requests))
    @rule(data=st.data())
    def req_decode(self, data):
        req = self._pick(data, lambda r: r.prefilled and not r.seq.is_finished)
        seq = req.seq
        signals = seq.generate()
        done = seq.is_finished
        immediate = [s for s in signals if not isinstance(s, Deref)] if done else signals
        cleanup = [s for s in signals if isinstance(s, Deref)] if done else []
        for op in immediate:
            n, error = self._process_realistic(op)
            if error is not None:
                return
            if isinstance(op, Use) and n < len(op.blocks):  # no slot for the new partial block
                seq.pop()
                return
        if done:
            for op in cleanup:
                self._process_realistic(op)
            self.requests.remove(req)
        else:
            seq.commit_allocation(len(seq))

    @precondition(lambda self: any(r.seq.num_allocated_tokens for r in self.requests))
    @rule(data=st.data())
    def req_preempt(self, data):
        req = self._pick(data, lambda r: r.seq.num_allocated_tokens > 0)
        for op in req.seq.reset_with_signal():
            self._process_realistic(op)

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def req_abort(self, data):
        req = self._pick(data, lambda r: True)
        for op in req.seq.free_signal():
            self._process_realistic(op)
        self.requests.remove(req)

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def req_prefill_cost(self, data):
        req = self._pick(data, lambda r: True)
        self.attempt("mgr", "prefill_cost", req.seq.snapshot())

    # -- raw operations ---------------------------------------------------------------------------

    def _took(self, blocks, n):
        raw_full = self.raw_full
        for block in blocks[:n]:
            if isinstance(block, FullBlock):
                raw_full[block.hash] = raw_full.get(block.hash, 0) + 1
            else:
                self.raw_partials.add(block.uuid)

    @rule(path=hot_paths, start=st.integers(0, 3), with_parent=st.booleans(), partial=st.booleans())
    def raw_acquire_chain(self, path, start, with_parent, partial):
        """Use blocks ``start..`` of a chain (``parent`` = the block before, when it is held)."""
        start = min(start, len(path) - 1)
        parent = None
        if with_parent and start > 0:
            above = current_of(path[:start])
            if self.raw_full[above] > 0:
                parent = full_block(above)
        op = chain_use(path, start, parent)
        if partial:
            op = Use(op.blocks + (PartialBlock(self.ids.uuid()),), op.local_hashes, op.plhs, None, op.parent)
        n, error = self.process(op)
        if error is None:
            self._took(op.blocks, n)

    @rule(chosen=st.lists(hot_paths, min_size=1, max_size=4))
    def raw_acquire_scattered(self, chosen):
        """Use unrelated identities in one batch (duplicates included)."""
        op = scattered_use(tuple(chosen))
        n, error = self.process(op)
        if error is None:
            self._took(op.blocks, n)

    @precondition(lambda self: (self.raw_full or self.raw_partials))
    @rule(data=st.data())
    def raw_deref(self, data):
        """Release some raw references in any order (roots before leaves included)."""
        held = [full_block(h) for h, c in sorted(self.raw_full.items()) for _ in range(c)]
        held += [PartialBlock(u) for u in sorted(self.raw_partials)]
        chosen = shuffled(data, held)[: len(held) // 2 + 1]
        batched = data.draw(BOOLEANS)
        ops = [Deref(chosen)] if batched else [Deref([b]) for b in chosen]
        for op in ops:
            _, error = self.process(op)
            if error is not None:
                self.ledger_ok = False
                continue
            for block in op.blocks:
                if isinstance(block, FullBlock):
                    left = self.raw_full[block.hash] - 1
                    if left:
                        self.raw_full[block.hash] = left
                    else:
                        self.raw_full.pop(block.hash)
                else:
                    self.raw_partials.discard(block.uuid)

    @precondition(lambda self: self.raw_partials)
    @rule(data=st.data(), path=hot_paths)
    def raw_promote(self, data, path):
        uuid = choose(data, sorted(self.raw_partials))
        plh = plh_of(path)
        if plh.parent is not None and self.router[plh.parent] == 0:
            self.consistent = False  # a Promote under a parent the router does not hold
        _, error = self.process(Promote(uuid, plh.current, plh.parent, plh.current % 1000, plh))
        if error is None:
            self.raw_partials.discard(uuid)
            self.raw_full[plh.current] += 1

    # -- bad input: both sides must raise the same typed error and change nothing ----------------

    @rule(which=st.sampled_from(["deref_unheld", "deref_twice", "promote_unknown", "lengths", "partial_parent",
                                 "impostor", "impostor_in_batch", "tokens"]),
          path=hot_paths)
    def bad_input(self, which, path):
        if which == "deref_unheld":
            op = Deref([FullBlock(h) for h in sorted(self.raw_full)[:2]] + [FullBlock(123456789)])
        elif which == "deref_twice":
            if not self.raw_full:
                return
            h = FullBlock(min(self.raw_full))  # one more time than the manager holds it (a subclass may pin it too)
            op = Deref([h] * (self.run.model("mgr").active_refcounts()[h.hash] + 1))
        else:
            op = bad_operation(which, path)
        consistent = self.consistent
        if which == "impostor":
            self.consistent = False  # if accepted, the hash now names an impostor identity
        value, error = self.process(op)
        if which == "impostor" and error is None:
            self._took(op.blocks, value)
        elif which == "impostor":
            self.consistent = consistent
        elif which != "impostor":
            assert error is not None, f"{which}: bad input was accepted"

    @rule(a=hot_paths, b=hot_paths)
    def raw_mismatched_identity(self, a, b):
        """A full block named with another identity's Plh (upstream accepts it)."""
        if a != b:
            self.consistent = False  # from now on a hash may name another identity's block
        op = mismatched_use(a, b)
        n, error = self.process(op)
        if error is None:
            self._took(op.blocks, n)

    # -- invariants -------------------------------------------------------------------------------

    @invariant()
    def manager_invariants(self):
        # the model's observations after the last step (the engine already compared them to the target)
        seen = self.run.outcomes[-1][0].observed
        if "active_refcounts" not in seen:
            return
        active, inactive = seen["active_refcounts"], seen["eviction_order"]
        assert len(inactive) == seen["num_inactive_blocks"]
        assert seen["num_active_blocks"] + seen["num_inactive_blocks"] <= self.capacity
        assert not (set(active) & set(inactive)) or not self.consistent, "a block is both active and inactive"
        if self.ledger_ok:
            refs = sum(len(r.allocated_blocks()) for r in self.requests)
            refs += sum(self.raw_full.values()) + len(self.raw_partials)
            assert seen["num_active_block_refs"] == refs, "references differ from the driver's ledger"
        if self.consistent:
            assert set(self.router) == set(active) | set(inactive), "router view != blocks held"


def machines() -> list[MachineSpec]:
    return [
        MachineSpec(
            name=f"manager[{eviction}]",
            factory=ManagerMachine,
            requires=("KvManager",),
            params={"eviction": eviction},
            description=f"G1 mocker KvManager (eviction={eviction}) driven by ActiveSequences and raw ops",
        )
        for eviction in BACKENDS
    ]
