"""Machines for SGLang's ``RadixCache`` (``SglangRadixCache``) and what a router sees of it.

* ``sglang-radix-cache`` — the model against the target, exactly: prompts over a 3-token alphabet
  with shared system prompts (so nodes split), inserted, matched, locked and unlocked, evicted;
  page sizes 1 to 3.  After every step the node structure (token paths and lock counts) and the
  event stream must be equal.  Against target ``sglang`` this drives SGLang's real ``RadixCache``
  with a deterministic clock.
* ``sglang-router`` — the same, with the *target's* events delivered to a router index
  (:class:`kvspec.impl.RadixIndex`, worker 1): after every step the router's score on each known
  prompt equals the number of leading pages the cache really holds, and no event is rejected.
  The check is part of each step's comparison, so a failure is a divergence at its step, with a
  replayable, minimized trace (see :mod:`kvspec.stateful.machines.vllm`).
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule

from kvspec.stateful.engine.differential import Step
from kvspec.stateful.engine.machine import DifferentialMachine, MachineSpec
from kvspec.stateful.machines.vllm import RoutedMachine

PREFIXES = [(), (0, 0, 0, 0), (0, 1, 0, 1, 2, 2)]
prompts = st.tuples(st.sampled_from(PREFIXES), st.lists(st.integers(0, 2), max_size=6)).map(
    lambda parts: list(parts[0] + tuple(parts[1])))
#: how many inserted prompts stay among the router queries
KNOWN_PROMPTS = 6


def remember(known: list[tuple[int, ...]], tokens, page_size: int) -> list[tuple[int, ...]]:
    """``known`` with ``tokens`` added: the last :data:`KNOWN_PROMPTS` distinct prompts of at least a page."""
    tokens = tuple(tokens)
    if len(tokens) >= page_size and tokens not in known:
        return (known + [tokens])[-KNOWN_PROMPTS:]
    return known


class SglangMachine(DifferentialMachine):
    observers = {"SglangRadixCache": ["nodes", "drain_events"]}

    @initialize(page_size=st.sampled_from([1, 1, 2, 3]))
    def setup(self, page_size: int) -> None:
        self.locks: list[int] = []
        self.page_size = page_size
        self.seen: list[tuple[int, ...]] = []
        self.run.create("cache", "SglangRadixCache", page_size)

    def call(self, method, *args):
        return self.attempt("cache", method, *args)

    @rule(tokens=prompts)
    def insert(self, tokens):
        self.call("insert", tokens)
        self.seen = remember(self.seen, tokens, self.page_size)

    @precondition(lambda self: self.seen)
    @rule(pick=st.integers(0, 5), cut=st.integers(0, 8), token=st.integers(0, 2))
    def insert_beside_seen(self, pick, cut, token):
        """Insert a prompt that leaves a known one part-way: the node holding it splits (locks included)."""
        seen = self.seen[pick % len(self.seen)]
        tokens = list(seen[: cut % len(seen)]) + [token] * self.page_size
        self.call("insert", tokens)
        self.seen = remember(self.seen, tokens, self.page_size)

    @rule(tokens=prompts)
    def match(self, tokens):
        self.call("match", tokens)

    @precondition(lambda self: len(self.locks) < 4)
    @rule(tokens=prompts)
    def lock(self, tokens):
        value, error = self.call("lock", tokens)
        if error is None:
            self.locks.append(value)

    @precondition(lambda self: self.locks)
    @rule(pick=st.integers(0, 100))
    def unlock(self, pick):
        self.call("unlock", self.locks.pop(pick % len(self.locks)))

    @rule(num_tokens=st.integers(0, 10))
    def evict(self, num_tokens):
        self.call("evict", num_tokens)

    @rule(bad=st.sampled_from([-1, 99]))
    def misuse(self, bad):
        self.call("unlock", bad)
        self.call("evict", -1)
        self.call("insert", [bad])


class SglangRouterMachine(RoutedMachine, SglangMachine):
    """The cache's events (target side) into a router index, worker 1, checked at every step
    (:class:`~kvspec.stateful.machines.vllm.RoutedMachine`); the queries are the last prompts
    inserted."""

    def __init__(self) -> None:
        super().__init__()
        self.known: list[tuple[int, ...]] = []

    def worker_of(self, subject: str) -> int:
        return 1

    def note(self, step: Step) -> None:
        if step.is_create:
            self.router_block_size = step.kwargs.get("page_size", step.args[0] if step.args else 1)
        elif step.method == "insert" and step.args:
            self.known = remember(self.known, step.args[0], self.router_block_size)

    def queries(self) -> list[tuple[int, ...]]:
        return list(self.known)

    def holders(self) -> dict[tuple[int, int], set[int]]:
        return {(1, 0): self.run.target("cache").held_hashes()} if "cache" in self.run.target_objects else {}


def machines() -> list[MachineSpec]:
    return [
        MachineSpec(name="sglang-radix-cache", factory=SglangMachine, requires=("SglangRadixCache",),
                    description="SGLang 0.5.23 RadixCache (LRU, pages 1-3): node structure, locks, events"),
        MachineSpec(name="sglang-router", factory=SglangRouterMachine, requires=("SglangRadixCache",),
                    description="SGLang's events into a RadixIndex: router scores == pages the cache holds"),
    ]
