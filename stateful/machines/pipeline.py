"""The end-to-end machine: engines' KV managers publish into one router index.

Two or three workers, each with one or two data-parallel ranks; every rank is a
:class:`KvManager` (subject ``mgr<worker>.<rank>``) with a tiny capacity (1-6 blocks), so
eviction is constant.  :class:`~kvspec.sequence.ActiveSequence`\\ s over a 3-token alphabet (so
prompts share prefixes across workers) are admitted on some rank, prefilled whole or in chunks,
decoded, preempted, finished or aborted, exactly as the ``manager[*]`` machines do.  Every event a
manager publishes is delivered, tagged with its worker id, on the device tier, to one
:class:`TieredIndex` (subject ``index``); a worker restart drops its managers and tells the router
(``remove_worker`` / ``remove_worker_dp_rank``).

Every step runs on the model and the target (the managers' observations and events, the index's
dump and query answers must agree).  The events delivered to both indexes are the model
manager's, which the step before has just proven equal to the target manager's.  The end-to-end invariant, checked after every step on *both*
sides for every worker rank and every query (the tokens of each live request and of the last
finished ones):

    index.find_matches(local hashes of the query).scores[(worker, rank)]
        == the number of leading query blocks that rank's manager holds (active or inactive).

"Holds" is read from the manager itself (``active_refcounts`` and ``eviction_order``, keyed by
sequence hash), never from the index: the router must never over-claim (a block the worker
evicted) and, with every event delivered, never under-claim.  Applying a manager's events must
never raise either: a ``ParentBlockNotFound`` or ``BlockNotFound`` means the stream lied.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from kvspec.events import StorageTier
from kvspec.hashing import block_hashes, sequence_hashes
from kvspec.protocol import Deref, Use
from kvspec.sequence import ActiveSequence, IdSource
from kvspec.stateful.engine.machine import DifferentialMachine, MachineSpec
from kvspec.stateful.machines.strategies import choose
from kvspec.stateful.machines.radix import index_compare
from kvspec.model.eviction import BACKENDS

ALPHABET = 3
EVICTIONS = tuple(BACKENDS)
#: how many finished requests' token sequences stay among the invariant's queries
PAST_QUERIES = 3

tokens = st.integers(0, ALPHABET - 1)
#: a few common system prompts plus a random tail, so workers keep meeting on the same prefixes
PREFIXES = [(), (0, 0, 0, 0), (0, 1, 0, 1, 2), (1, 1, 1, 1, 1, 1)]
prompts = st.tuples(st.sampled_from(PREFIXES), st.lists(tokens, max_size=5)).map(
    lambda parts: (parts[0] + tuple(parts[1])) or (0,))
rarely = st.sampled_from([False] * 9 + [True])
#: which rank (index into the sorted subjects, modulo their number); small and uniform
#: worker layouts: ranks per worker (2-3 workers, some with two dp ranks)
layouts = st.lists(st.sampled_from([1, 1, 2]), min_size=2, max_size=3).map(tuple)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class Request:
    """Driver state of one request: its sequence and the rank (subject) serving it."""

    def __init__(self, seq: ActiveSequence, subject: str):
        self.seq = seq
        self.subject = subject

    @property
    def prefilled(self) -> bool:
        return self.seq.num_allocated_tokens >= len(self.seq)


def held_hashes(manager) -> set[int]:
    """Sequence hashes of every full block ``manager`` holds, active or inactive."""
    return set(manager.active_refcounts()) | set(manager.eviction_order())


def held_prefix(held: set[int], chain: list[int]) -> int:
    """Leading blocks of ``chain`` (sequence hashes) that are in ``held``."""
    count = 0
    for h in chain:
        if h not in held:
            break
        count += 1
    return count


class PipelineMachine(DifferentialMachine):
    observers = {
        "KvManager": ["drain_events", "num_active_blocks", "num_active_block_refs", "num_inactive_blocks",
                      "active_refcounts", "eviction_order"],
        "TieredIndex": ["dump_events"],
    }
    compare = staticmethod(index_compare)

    def __init__(self) -> None:
        super().__init__()

    @initialize(layout=layouts, capacities=st.lists(st.integers(1, 6), min_size=6, max_size=6),
                block_size=st.integers(2, 3), eviction=st.sampled_from(EVICTIONS), seed=st.integers(0, 255))
    def create(self, layout, capacities, block_size, eviction, seed):
        self.block_size = block_size
        self.eviction = eviction
        self.ids = IdSource(seed)
        #: subject -> (worker_id, dp_rank, capacity)
        self.ranks: dict[str, tuple[int, int, int]] = {}
        for w, count in enumerate(layout, start=1):
            for rank in range(count):
                self.ranks[f"mgr{w}.{rank}"] = (w, rank, capacities[len(self.ranks)])
        self.run.create("index", "TieredIndex")
        for subject in self.ranks:
            self._start(subject)
        self.requests: list[Request] = []
        self.past: list[tuple[int, ...]] = []  # tokens of finished/aborted requests, newest last

    def _start(self, subject: str) -> None:
        w, rank, capacity = self.ranks[subject]
        self.run.create(subject, "KvManager", capacity, self.block_size, eviction=self.eviction, dp_rank=rank)

    # -- stepping ---------------------------------------------------------------------------------

    def process(self, subject: str, op):
        """``op`` on one rank's manager, then its drained events into the index; returns the count."""
        value, error = self.attempt(subject, "process", op)
        assert error is None, f"{subject}.process({op!r}) raised {error!r} in a realistic flow"
        events = self.run.outcomes[-1][0].observed.get("drain_events") or []
        worker_id = self.ranks[subject][0]
        for event in events:
            _, error = self.attempt("index", "apply_event", worker_id, event, StorageTier.DEVICE)
            assert error is None, f"index rejected {subject}'s event {event!r}: {error!r}"
        return value

    def _pick(self, data, predicate):
        """A request the rule applies to (its precondition guarantees there is one)."""
        return choose(data, [r for r in self.requests if predicate(r)])

    def _retire(self, req: Request) -> None:
        self.requests.remove(req)
        self.past.append(tuple(req.seq.tokens))
        del self.past[:-PAST_QUERIES]

    # -- requests ---------------------------------------------------------------------------------

    @precondition(lambda self: len(self.requests) < 6)
    @rule(data=st.data(), prompt=prompts, planned=st.lists(tokens, min_size=1, max_size=5),
          prefix_caching=st.sampled_from([True, True, True, False]), admit=st.booleans())
    def new_request(self, data, prompt, planned, prefix_caching, admit):
        """A request arrives on some rank; ``admit`` prefills its whole prompt at once."""
        subject = choose(data, sorted(self.ranks))
        seq = ActiveSequence(prompt, self.block_size, len(planned), prefix_caching, output_tokens=planned, rng=self.ids)
        req = Request(seq, subject)
        self.requests.append(req)
        if admit:
            self._allocate(req, len(seq))

    @precondition(lambda self: any(not r.prefilled for r in self.requests))
    @rule(data=st.data(), chunk=st.one_of(st.none(), st.integers(1, 5)))
    def prefill(self, data, chunk):
        """Allocate the rest of the prompt (``chunk=None``) or one chunk of it."""
        req = self._pick(data, lambda r: not r.prefilled)
        seq = req.seq
        self._allocate(req, len(seq) if chunk is None else min(len(seq), seq.num_allocated_tokens + chunk))

    def _allocate(self, req: Request, target: int) -> None:
        seq = req.seq
        before = min(_ceil_div(seq.num_allocated_tokens, seq.block_size), len(seq.unique_blocks))
        signal = seq.prepare_allocation(target)
        if signal is None:
            seq.commit_allocation(target)
            return
        n = self.process(req.subject, signal)
        if n == len(signal.blocks):
            seq.commit_allocation(target)
        else:  # out of slots: the first n blocks stay pinned (upstream's scheduler commits them)
            seq.commit_allocation(min((before + n) * seq.block_size, target))

    @precondition(lambda self: any(r.prefilled and not r.seq.is_finished for r in self.requests))
    @rule(data=st.data(), count=st.integers(1, 3))
    def decode(self, data, count):
        """Generate ``count`` tokens of one running request (stops early when it finishes)."""
        req = self._pick(data, lambda r: r.prefilled and not r.seq.is_finished)
        for _ in range(count):
            if req not in self.requests or not self._decode_one(req):
                return

    def _decode_one(self, req: Request) -> bool:
        """One token; False when the request finished or could not get a slot."""
        seq = req.seq
        signals = seq.generate()
        done = seq.is_finished
        for op in [s for s in signals if not isinstance(s, Deref)]:
            n = self.process(req.subject, op)
            if isinstance(op, Use) and n < len(op.blocks):  # no slot for the new partial block
                seq.pop()
                return False
        if done:
            for op in [s for s in signals if isinstance(s, Deref)]:
                self.process(req.subject, op)
            self._retire(req)
            return False
        seq.commit_allocation(len(seq))
        return True

    @precondition(lambda self: any(r.seq.num_allocated_tokens for r in self.requests))
    @rule(data=st.data())
    def preempt(self, data):
        req = self._pick(data, lambda r: r.seq.num_allocated_tokens > 0)
        for op in req.seq.reset_with_signal():
            self.process(req.subject, op)

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def abort(self, data):
        req = self._pick(data, lambda r: True)
        for op in req.seq.free_signal():
            self.process(req.subject, op)
        self._retire(req)

    @rule(data=st.data(), whole_worker=st.booleans(), now=rarely)
    def restart(self, data, whole_worker, now):
        """A worker (or one rank) restarts: its requests vanish, its managers start empty, and the
        router is told (``remove_worker``, ``clear_all_blocks`` / ``remove_worker_dp_rank``).  Rare
        (``now`` is True one time in ten); a rank that holds blocks is chosen when there is one, so
        the router has something to forget."""
        if not now:
            return
        holding = [s for s in sorted(self.ranks) if held_hashes(self.run.model(s))]
        subject = choose(data, holding or sorted(self.ranks))
        worker_id, rank, _ = self.ranks[subject]
        subjects = [s for s, (w, _, _) in self.ranks.items() if w == worker_id] if whole_worker else [subject]
        for req in [r for r in self.requests if r.subject in subjects]:
            self._retire(req)
        for s in subjects:
            self._start(s)
        if whole_worker:  # the router forgets an odd worker; it keeps an even one and drops its blocks
            self.run.call("index", "remove_worker" if worker_id % 2 else "clear_all_blocks", worker_id)
        else:
            self.run.call("index", "remove_worker_dp_rank", worker_id, rank)

    @precondition(lambda self: any(held_hashes(self.run.model(s)) for s in self.ranks))
    @rule(data=st.data(), whole_worker=st.booleans())
    def restart_holding(self, data, whole_worker):
        """A worker (or rank) that holds blocks restarts now: the router has something to forget
        (``remove_worker``, ``clear_all_blocks``, ``remove_worker_dp_rank``) on every tier."""
        self.restart(data, whole_worker, True)

    @rule(data=st.data(), cut=st.integers(0, 6), by_tier=st.booleans())
    def query(self, data, cut, by_tier):
        """A recorded query (model and target answers compared) on a prefix of a live or past request:
        the device scores, or the scores of every tier."""
        sources = [tuple(r.seq.tokens) for r in self.requests] + self.past
        if not sources:
            return
        chosen = choose(data, sources)
        hashes = block_hashes(chosen, self.block_size)
        prefix = hashes[: max(1, len(hashes) - cut)] if hashes else []
        if by_tier:
            self.run.call("index", "find_matches_by_tier", prefix)
        else:
            self.run.call("index", "find_matches", prefix, early_exit=False)

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def prefill_cost(self, data):
        """What the rank serving a request would have to compute for it (its scheduler's question)."""
        req = choose(data, self.requests)
        self.attempt(req.subject, "prefill_cost", req.seq.snapshot())

    # -- the end-to-end invariant ---------------------------------------------------------------

    def _queries(self) -> list[tuple[int, ...]]:
        seen, out = set(), []
        for toks in [tuple(r.seq.tokens) for r in self.requests] + self.past:
            if len(toks) >= self.block_size and toks not in seen:
                seen.add(toks)
                out.append(toks)
        return out

    @invariant()
    def router_matches_what_workers_hold(self):
        queries = self._queries()
        for side, objects in (("model", self.run.model_objects), ("target", self.run.target_objects)):
            index = objects["index"]
            holders = {(w, r): held_hashes(objects[subject]) for subject, (w, r, _) in self.ranks.items()}
            problems = router_discrepancies(index, holders, queries, self.block_size)
            assert not problems, f"{side}: " + "; ".join(problems[:3])


def router_discrepancies(index, holders: dict[tuple[int, int], set[int]], queries, block_size: int) -> list[str]:
    """Where ``index`` scores a worker rank differently from the blocks it holds.

    ``holders[(worker_id, dp_rank)]`` is the set of sequence hashes that rank holds; each query is
    a token sequence.  A rank's true score is the number of leading query blocks whose sequence
    hash it holds; the router's is ``index.find_matches(local hashes).scores`` (0 when absent).
    Returns one message per disagreement (empty: the router is exact), naming over- and
    under-claims, and any scored worker that is not in ``holders``.
    """
    problems = []
    for toks in queries:
        locals_ = block_hashes(toks, block_size)
        chain = sequence_hashes(locals_)
        scores = index.find_matches(locals_, False).scores
        for worker, held in holders.items():
            truth = held_prefix(held, chain)
            claimed = scores.get(worker, 0)
            if claimed != truth:
                kind = "over-claim" if claimed > truth else "under-claim"
                problems.append(f"{kind}: router scores worker {worker} {claimed} on {list(toks)}, it holds {truth}")
        unknown = set(scores) - set(holders)
        if unknown:
            problems.append(f"router scores unknown workers {sorted(unknown)} on {list(toks)}")
    return problems


def machines() -> list[MachineSpec]:
    return [
        MachineSpec(
            name="pipeline",
            factory=PipelineMachine,
            requires=("KvManager", "TieredIndex"),
            description="2-3 workers (some with 2 dp ranks) of tiny KvManagers publishing into one TieredIndex; "
                        "router scores == blocks each rank holds",
        )
    ]
