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

The router check is part of each step's comparison (:class:`RoutedMachine`), not an invariant
beside the steps: a router that over- or under-claims is a divergence *at the step* whose events
(or whose change to what the workers hold) caused it, so its trace is shrunk, replay-minimized,
replayed (``kvspec replay``) and reported (``kvspec report``) like any other divergence.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

import kvspec.impl
from kvspec.errors import IndexEventError
from kvspec.events import StorageTier
from kvspec.stateful.engine.machine import DifferentialMachine, MachineSpec
from kvspec.stateful.engine.differential import Divergence, Outcome, Step, exact_compare
from kvspec.stateful.machines.pipeline import router_discrepancies

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

    @initialize(num_blocks=st.integers(3, 12), block_size=st.integers(1, 4))
    def setup(self, num_blocks: int, block_size: int) -> None:
        self.live: list[tuple[str, str]] = []  # (subject, request id)
        self.tokens: dict[str, list[int]] = {}
        self.next_id = 0
        for w in range(1, self.workers + 1):
            self.run.create(f"w{w}", "VllmPrefixCache", num_blocks, block_size, events=self.params["events"])

    def _pick(self, pick: int) -> tuple[str, str]:
        return self.live[pick % len(self.live)]

    # -- rules ----------------------------------------------------------------------------------------

    @precondition(lambda self: len(self.live) < 5)
    @rule(where=st.integers(0, 3), prompt=prompts, full=st.booleans(), chunk=chunks)
    def new_request(self, where: int, prompt: list[int], full: bool, chunk: int | None) -> None:
        """A request arrives and is scheduled at once (whole prompt or a first chunk)."""
        subject = f"w{where % self.workers + 1}"
        self._admit(subject, prompt, full and self.params["report_full"], chunk)

    @precondition(lambda self: 0 < len(self.live) < 5)
    @rule(pick=picks, full=st.booleans(), chunk=chunks)
    def repeat_request(self, pick: int, full: bool, chunk: int | None) -> None:
        """A request with a live request's tokens arrives at the same worker: the blocks it fills
        while the first still computes them are second physical copies of the same hashes."""
        subject, other = self._pick(pick)
        self._admit(subject, list(self.tokens[other]), full and self.params["report_full"], chunk)

    def _admit(self, subject: str, prompt: list[int], full: bool, chunk: int | None) -> None:
        rid = f"r{self.next_id}"
        self.next_id += 1
        _, error = self.attempt(subject, "add_request", rid, prompt, full)
        if error is None:
            self.live.append((subject, rid))
            self.tokens[rid] = list(prompt)
            self.attempt(subject, "schedule", rid, chunk)

    @precondition(lambda self: self.live)
    @rule(pick=picks, chunk=chunks)
    def schedule(self, pick: int, chunk: int | None) -> None:
        """Another step for a request (the rest of its prefill, a chunk, or a resume)."""
        subject, rid = self._pick(pick)
        self.attempt(subject, "schedule", rid, chunk)

    @precondition(lambda self: self.live)
    @rule(pick=picks, token=tokens, steps=st.integers(1, 3))
    def decode(self, pick: int, token: int, steps: int) -> None:
        """The request's sampled tokens join it, one scheduler step each."""
        subject, rid = self._pick(pick)
        for _ in range(steps):
            _, error = self.attempt(subject, "append_token", rid, token)
            if error is not None:
                return
            self.tokens[rid].append(token)
            value, _ = self.attempt(subject, "schedule", rid, None)
            if value is None:
                return

    @precondition(lambda self: self.live)
    @rule(pick=picks)
    def finish(self, pick: int) -> None:
        subject, rid = self._pick(pick)
        self.attempt(subject, "free", rid)
        self.live.remove((subject, rid))
        del self.tokens[rid]

    @precondition(lambda self: self.live)
    @rule(pick=picks)
    def preempt(self, pick: int) -> None:
        subject, rid = self._pick(pick)
        self.attempt(subject, "preempt", rid)

    @rule(where=st.integers(0, 3), chunk=st.sampled_from([0, -1, 2]), token=st.sampled_from([-1, 2**32, 1]))
    def misuse(self, where: int, chunk: int, token: int) -> None:
        """Unknown requests, bad chunks and tokens, at any worker: the same error class on both
        sides, no change."""
        subject = f"w{where % self.workers + 1}"
        self.attempt(subject, "schedule", "nobody", None)
        self.attempt(subject, "append_token", "nobody", 0)
        self.attempt(subject, "add_request", "", [0], False)
        self.attempt(subject, "add_request", "bad", [token], False)
        if self.live and chunk < 1:
            subject, rid = self.live[0]
            self.attempt(subject, "schedule", rid, chunk)


class RoutedMachine(DifferentialMachine):
    """Mixin: a router index fed the target's events, checked in each step's comparison.

    The comparator (installed per instance, so ``kvspec replay`` uses it too) first compares model
    and target exactly; when they agree it delivers the step's published events (the *target's*
    ``drain_events``, as a router receives them) to a :class:`kvspec.impl.RadixIndex`, optionally
    through a refcount filter (:class:`kvspec.impl.EventDedupFilter`), and then checks every query:
    the router's score of each worker equals the leading query blocks that worker holds
    (:func:`~kvspec.stateful.machines.pipeline.router_discrepancies`), and no event was rejected.
    A failure is returned as the step's differences (``over-claim: ...``, ``under-claim: ...``,
    ``rejected event: ...``), so it is an ordinary divergence at that step.

    Everything the check needs is read from the steps themselves (:meth:`note`: block size,
    request tokens), never from rule code, so a replay — which runs no rule — checks the same.
    Subclasses define :meth:`note`, :meth:`queries`, :meth:`holders` and :meth:`worker_of`.

    Fuzz mode compares only the steps whose raw outcomes differ; there the invariant
    :meth:`router_caught_up` delivers and checks what the comparator did not see, and the fuzz
    driver's every-step replay then names the exact step.
    """

    #: deliver events through a refcount filter (set from ``params["filter"]`` by subclasses)
    filtered = False

    def __init__(self) -> None:
        super().__init__()
        self.index = kvspec.impl.RadixIndex()
        self.filters: dict[int, kvspec.impl.EventDedupFilter] = {}
        self.delivered_steps = 0  # steps whose events the index has seen
        self.router_block_size = 1  # hooks set it from the construction step
        self.run.compare = self.compare_and_route

    # -- hooks -------------------------------------------------------------------------------------

    def note(self, step: Step) -> None:
        """Update the query bookkeeping from a step both sides carried out without an error."""
        raise NotImplementedError

    def queries(self) -> list[tuple[int, ...]]:
        raise NotImplementedError

    def holders(self) -> dict[tuple[int, int], set[int]]:
        """``(worker, dp_rank)`` -> sequence hashes that worker's *target* object holds."""
        raise NotImplementedError

    def worker_of(self, subject: str) -> int:
        raise NotImplementedError

    # -- the check ---------------------------------------------------------------------------------

    def compare_and_route(self, step: Step, expected: Outcome, actual: Outcome) -> list[str]:
        differences = exact_compare(step, expected, actual)
        if differences:
            return differences
        return self.deliver() + self.router_problems()

    def deliver(self) -> list[str]:
        """Deliver the events of every step not delivered yet; the rejected ones, as differences."""
        problems = []
        steps, outcomes = self.run.steps, self.run.outcomes
        while self.delivered_steps < len(outcomes):
            step, (expected, actual) = steps[self.delivered_steps], outcomes[self.delivered_steps]
            self.delivered_steps += 1
            if expected.error is not None:
                continue  # both sides raised alike: nothing changed, nothing was published
            self.note(step)
            worker = self.worker_of(step.subject)
            for event in actual.observed.get("drain_events") or []:
                if self.filtered:
                    event = self.filters.setdefault(worker, kvspec.impl.EventDedupFilter()).apply(
                        event, StorageTier.DEVICE)
                    if event is None:
                        continue
                try:
                    self.index.apply_event(worker, event)
                except IndexEventError as exc:
                    problems.append(f"rejected event: the router raised {type(exc).__name__} on worker "
                                    f"{worker}'s {event!r}")
        return problems

    def router_problems(self) -> list[str]:
        queries = self.queries()
        return router_discrepancies(self.index, self.holders(), queries, self.router_block_size) if queries else []

    @invariant()
    def router_caught_up(self) -> None:
        """Fuzz mode only (every-step comparison delivers and checks at each step)."""
        if self.delivered_steps == len(self.run.outcomes):
            return
        problems = self.deliver() + self.router_problems()
        if problems:
            steps = self.run.steps
            raise Divergence(problems[0], steps=steps, index=len(steps) - 1, expected=Outcome(),
                             actual=Outcome(), differences=problems[:5])


class VllmRouterMachine(RoutedMachine, VllmPrefixCacheMachine):
    """Two workers publishing into one router index (see the module docstring)."""

    workers = 2

    def __init__(self) -> None:
        super().__init__()
        self.filtered = self.params["filter"]
        self.requests: dict[str, list[int]] = {}  # request id -> tokens, as the steps tell
        self.finished: list[tuple[int, ...]] = []

    def worker_of(self, subject: str) -> int:
        return int(subject[1:])

    def note(self, step: Step) -> None:
        args = step.args
        if step.is_create:
            self.router_block_size = step.kwargs.get("block_size", args[1] if len(args) > 1 else 1)
        elif step.method == "add_request":
            self.requests[args[0]] = list(args[1])
        elif step.method == "append_token" and args[0] in self.requests:
            self.requests[args[0]].append(args[1])
        elif step.method == "free" and args[0] in self.requests:
            self.finished = (self.finished + [tuple(self.requests.pop(args[0]))])[-PAST_QUERIES:]

    def queries(self) -> list[tuple[int, ...]]:
        seen: list[tuple[int, ...]] = []
        for toks in [tuple(t) for t in self.requests.values()] + self.finished:
            if len(toks) >= self.router_block_size and toks not in seen:
                seen.append(toks)
        return seen

    def holders(self) -> dict[tuple[int, int], set[int]]:
        return {(self.worker_of(s), 0): obj.held_hashes() for s, obj in self.run.target_objects.items()}


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
