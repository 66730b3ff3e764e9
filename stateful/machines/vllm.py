"""Machines for vLLM's prefix cache (``VllmPrefixCache``) and what a router sees of it.

* ``vllm-prefix-cache`` — the model against the target, exactly: requests arrive (prompts over a
  3-token alphabet with shared system prompts, so hits and duplicate copies are common; some with
  ``report_full``), are prefilled whole or in chunks, decode, are preempted and resumed, finish;
  after every step the events, the free queue, the cached copies (primary first), the block tables
  and the reference counts must be equal.  Against target ``vllm`` this drives vLLM's real
  ``KVCacheManager`` as its scheduler does.
* ``vllm-prefix-cache[per-hash]`` — the same with the model publishing per hash (the stream a
  router needs).  vLLM publishes per copy: known finding V1 against ``vllm``.
* ``vllm-router[...]`` — two workers' prefix caches (model and target compared exactly, as above)
  publish into a router index (:class:`kvspec.impl.RadixIndex`, fed the *target's* events, as a
  router would receive them), optionally through a refcount filter
  (:class:`kvspec.impl.EventDedupFilter`, Dynamo's).  After every step, for every query (the tokens
  of each live and recently finished request): the router's score of each worker equals the number
  of leading query blocks that worker really holds (``held_hashes``), and no event was rejected
  (``ParentBlockNotFound`` / ``BlockNotFound``: a ghost parent or an unknown removal).  Variants:
  ``raw`` (no filter, V1), ``refcount`` (filter, default report mode: exact), ``refcount,full``
  (filter, clients may ask ``kv_cache_report_mode="full"``: V2).
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

import kvspec.impl
from kvspec.errors import IndexEventError
from kvspec.events import StorageTier
from kvspec.hashing import block_hashes
from kvspec.stateful.engine.machine import DifferentialMachine, MachineSpec
from kvspec.stateful.engine.differential import Divergence, Outcome
from kvspec.stateful.machines.pipeline import held_prefix

ALPHABET = 3
PREFIXES = [(), (0, 0, 0, 0), (0, 1, 0, 1, 2), (1, 1, 1, 1, 1, 1)]
tokens = st.integers(0, ALPHABET - 1)
prompts = st.tuples(st.sampled_from(PREFIXES), st.lists(tokens, max_size=5)).map(
    lambda parts: list(parts[0] + tuple(parts[1])) or [0])
chunks = st.one_of(st.none(), st.integers(1, 4))
picks = st.integers(0, 10_000)
#: how many finished requests' tokens stay among the router queries
PAST_QUERIES = 4


class VllmPrefixCacheMachine(DifferentialMachine):
    """Requests on one or more prefix caches (subjects ``w1``, ``w2``, ...)."""

    observers = {"VllmPrefixCache": ["drain_events", "free_queue", "cached_copies", "tables", "refcounts"]}
    workers = 1

    def __init__(self) -> None:
        super().__init__()
        self.ready = False

    @initialize(num_blocks=st.integers(3, 12), block_size=st.integers(1, 4))
    def setup(self, num_blocks: int, block_size: int) -> None:
        self.block_size = block_size
        self.live: list[tuple[str, str]] = []  # (subject, request id)
        self.tokens: dict[str, list[int]] = {}
        self.past: list[tuple[int, ...]] = []
        self.next_id = 0
        for w in range(1, self.workers + 1):
            self.run.create(f"w{w}", "VllmPrefixCache", num_blocks, block_size, events=self.params["events"])
        self.ready = True

    # -- a step on one worker (the router machine also delivers its events) ------------------------

    def call(self, subject: str, method: str, *args):
        value, error = self.attempt(subject, method, *args)
        self.delivered(subject)
        return value, error

    def delivered(self, subject: str) -> None:
        """Hook: the last step's events (target side) on ``subject``."""

    def _pick(self, pick: int) -> tuple[str, str]:
        return self.live[pick % len(self.live)]

    # -- rules ----------------------------------------------------------------------------------------

    @precondition(lambda self: self.ready and len(self.live) < 5)
    @rule(where=st.integers(0, 3), prompt=prompts, full=st.booleans(), chunk=chunks)
    def new_request(self, where: int, prompt: list[int], full: bool, chunk: int | None) -> None:
        """A request arrives and is scheduled at once (whole prompt or a first chunk)."""
        subject = f"w{where % self.workers + 1}"
        rid = f"r{self.next_id}"
        self.next_id += 1
        full = full and self.params["report_full"]
        _, error = self.call(subject, "add_request", rid, prompt, full)
        if error is None:
            self.live.append((subject, rid))
            self.tokens[rid] = list(prompt)
            self.call(subject, "schedule", rid, chunk)

    @precondition(lambda self: self.ready and self.live)
    @rule(pick=picks, chunk=chunks)
    def schedule(self, pick: int, chunk: int | None) -> None:
        """Another step for a request (the rest of its prefill, a chunk, or a resume)."""
        subject, rid = self._pick(pick)
        self.call(subject, "schedule", rid, chunk)

    @precondition(lambda self: self.ready and self.live)
    @rule(pick=picks, token=tokens, steps=st.integers(1, 3))
    def decode(self, pick: int, token: int, steps: int) -> None:
        """The request's sampled tokens join it, one scheduler step each."""
        subject, rid = self._pick(pick)
        for _ in range(steps):
            _, error = self.call(subject, "append_token", rid, token)
            if error is not None:
                return
            self.tokens[rid].append(token)
            value, _ = self.call(subject, "schedule", rid, None)
            if value is None:
                return

    @precondition(lambda self: self.ready and self.live)
    @rule(pick=picks)
    def finish(self, pick: int) -> None:
        subject, rid = self._pick(pick)
        self.call(subject, "free", rid)
        self.live.remove((subject, rid))
        self.past = (self.past + [tuple(self.tokens.pop(rid))])[-PAST_QUERIES:]

    @precondition(lambda self: self.ready and self.live)
    @rule(pick=picks)
    def preempt(self, pick: int) -> None:
        subject, rid = self._pick(pick)
        self.call(subject, "preempt", rid)

    @precondition(lambda self: self.ready)
    @rule(chunk=st.sampled_from([0, -1, 2]), token=st.sampled_from([-1, 2**32, 1]))
    def misuse(self, chunk: int, token: int) -> None:
        """Unknown requests, bad chunks and tokens: the same error class on both sides, no change."""
        self.call("w1", "schedule", "nobody", None)
        self.call("w1", "append_token", "nobody", 0)
        self.call("w1", "add_request", "", [0], False)
        self.call("w1", "add_request", "bad", [token], False)
        if self.live and chunk < 1:
            subject, rid = self.live[0]
            self.call(subject, "schedule", rid, chunk)


    @invariant()
    def target_structure(self) -> None:
        """The target's own invariants (``_check()``, where it has one) hold after every step."""
        if not getattr(self, "ready", False):
            return
        for w in range(1, self.workers + 1):
            check = getattr(self.run.target(f"w{w}"), "_check", None)
            if check is None:
                continue
            try:
                check()
            except AssertionError as exc:
                steps = self.run.steps
                raise Divergence(f"target _check() failed: {exc}", steps=steps, index=len(steps) - 1,
                                 expected=Outcome(), actual=Outcome(),
                                 differences=[f"target _check() failed: {exc!r}"]) from exc


class VllmRouterMachine(VllmPrefixCacheMachine):
    """Two workers publishing into one router index (see the module docstring)."""

    workers = 2

    @initialize(num_blocks=st.integers(3, 12), block_size=st.integers(1, 4))
    def setup(self, num_blocks: int, block_size: int) -> None:
        self.index = kvspec.impl.RadixIndex()
        self.filters = {f"w{w}": kvspec.impl.EventDedupFilter() for w in range(1, self.workers + 1)}
        self.problems: list[str] = []
        super().setup(num_blocks, block_size)

    def delivered(self, subject: str) -> None:
        if not self.run.outcomes:
            return
        events = self.run.outcomes[-1][1].observed.get("drain_events") or []
        worker = int(subject[1:])
        for event in events:
            if self.params["filter"]:
                event = self.filters[subject].apply(event, StorageTier.DEVICE)
                if event is None:
                    continue
            try:
                self.index.apply_event(worker, event)
            except IndexEventError as exc:
                self.problems.append(f"router rejected worker {worker}'s event {event!r}: {type(exc).__name__}")

    def _queries(self) -> list[tuple[int, ...]]:
        seen: list[tuple[int, ...]] = []
        for toks in [tuple(t) for t in self.tokens.values()] + self.past:
            if len(toks) >= self.block_size and toks not in seen:
                seen.append(toks)
        return seen

    @invariant()
    def router_matches_what_workers_hold(self) -> None:
        if not getattr(self, "ready", False):
            return
        from kvspec.hashing import sequence_hashes

        holders = {(w, 0): self.run.target(f"w{w}").held_hashes() for w in range(1, self.workers + 1)}
        problems = list(self.problems)
        for toks in self._queries():
            locals_ = block_hashes(list(toks), self.block_size)
            chain = sequence_hashes(locals_)
            scores = self.index.find_matches(locals_, False).scores
            for worker, held in holders.items():
                truth, claimed = held_prefix(held, chain), scores.get(worker, 0)
                if claimed != truth:
                    kind = "over-claim" if claimed > truth else "under-claim"
                    problems.append(f"{kind}: router scores worker {worker[0]} {claimed} on {list(toks)}, "
                                    f"it holds {truth}")
        if problems:
            steps = self.run.steps
            raise Divergence(f"router view differs from what vLLM holds: {problems[0]}", steps=steps,
                             index=len(steps) - 1, expected=Outcome(), actual=Outcome(),
                             differences=problems[:5])


class EventFilterMachine(DifferentialMachine):
    """The refcount filter, model against target: stores, removes (held, counted twice, never
    stored), clears, on two dp ranks and two tiers; the forwarded event and the counts must agree."""

    observers = {"EventDedupFilter": []}

    @initialize()
    def setup(self) -> None:
        self.run.create("filter", "EventDedupFilter")
        self.next_id = 0

    def _event(self, data, rank: int):
        from kvspec.events import KvCacheEvent

        self.next_id += 1
        return KvCacheEvent(self.next_id, data, rank)

    @rule(hashes=st.lists(st.integers(0, 5), min_size=1, max_size=3), rank=st.integers(0, 1),
          tier=st.sampled_from([StorageTier.DEVICE, StorageTier.HOST_PINNED]))
    def store(self, hashes, rank, tier) -> None:
        from kvspec.events import Stored, StoredBlock

        self.run.call("filter", "apply", self._event(Stored(None, [StoredBlock(h, h) for h in hashes]), rank), tier)

    @rule(hashes=st.lists(st.integers(0, 5), min_size=1, max_size=3), rank=st.integers(0, 1),
          tier=st.sampled_from([StorageTier.DEVICE, StorageTier.HOST_PINNED]))
    def remove(self, hashes, rank, tier) -> None:
        from kvspec.events import Removed

        self.run.call("filter", "apply", self._event(Removed(hashes), rank), tier)

    @rule(rank=st.integers(0, 1))
    def clear(self, rank) -> None:
        from kvspec.events import Cleared

        self.run.call("filter", "apply", self._event(Cleared(), rank), StorageTier.DEVICE)

    @rule(h=st.integers(0, 5), rank=st.integers(0, 1), tier=st.sampled_from([StorageTier.DEVICE, StorageTier.HOST_PINNED]))
    def count(self, h, rank, tier) -> None:
        self.run.call("filter", "count", h, rank, tier)

    @rule(bad=st.sampled_from([None, "stored", 3]))
    def misuse(self, bad) -> None:
        self.attempt("filter", "apply", bad, StorageTier.DEVICE)


ROUTER_VARIANTS = (
    # name, filter, report_full allowed, known finding against vllm and the model
    ("raw", False, False, "V1"),
    ("refcount", True, False, None),
    ("refcount,full", True, True, "V2"),
)


def machines() -> list[MachineSpec]:
    specs = [
        MachineSpec(
            name="vllm-prefix-cache",
            factory=VllmPrefixCacheMachine,
            requires=("VllmPrefixCache",),
            params={"events": "per-copy", "report_full": True},
            description="vLLM 0.33 prefix cache as its scheduler drives it: events, free queue, copies, tables",
        ),
        MachineSpec(
            name="vllm-prefix-cache[per-hash]",
            factory=VllmPrefixCacheMachine,
            requires=("VllmPrefixCache",),
            params={"events": "per-hash", "report_full": False},
            description="the same, model publishing per hash (what a router needs); vLLM publishes per copy",
            known_failures={"vllm": "V1"},
        ),
    ]
    specs.append(MachineSpec(
        name="event-filter",
        factory=EventFilterMachine,
        requires=("EventDedupFilter",),
        description="refcount event filter (Dynamo's EventDedupFilter): stores pass and count, removes pass at zero",
    ))
    for name, filtered, full, finding in ROUTER_VARIANTS:
        # the model and impl reproduce vLLM's semantics faithfully, so the finding is theirs too
        known = {"vllm": finding, "model": finding, "impl": finding} if finding else {}
        specs.append(MachineSpec(
            name=f"vllm-router[{name}]",
            factory=VllmRouterMachine,
            requires=("VllmPrefixCache",),
            params={"events": "per-copy", "report_full": full, "filter": filtered},
            description="two vLLM workers' events into a RadixIndex" + (" through a refcount filter" if filtered else "")
            + (", report_full allowed" if full else "") + ": router scores == blocks held",
            known_failures=known,
        ))
    return specs
