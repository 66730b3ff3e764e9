"""Machines for SGLang's ``RadixCache`` (``SglangRadixCache``) and what a router sees of it.

* ``sglang-radix-cache`` — the model against the target, exactly: prompts over a 3-token alphabet
  with shared system prompts (so nodes split), inserted, matched, locked and unlocked, evicted;
  page sizes 1 to 3.  After every step the node structure (token paths and lock counts) and the
  event stream must be equal.  Against target ``sglang`` this drives SGLang's real ``RadixCache``
  with a deterministic clock.
* ``sglang-router`` — the same, with the *target's* events delivered to a router index
  (:class:`kvspec.impl.RadixIndex`, worker 1): after every step the router's score on each known
  prompt equals the number of leading pages the cache really holds, and no event is rejected.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

import kvspec.impl
from kvspec.errors import IndexEventError
from kvspec.hashing import block_hashes, sequence_hashes
from kvspec.stateful.engine.machine import DifferentialMachine, MachineSpec
from kvspec.stateful.engine.differential import Divergence, Outcome
from kvspec.stateful.machines.pipeline import held_prefix

PREFIXES = [(), (0, 0, 0, 0), (0, 1, 0, 1, 2, 2)]
prompts = st.tuples(st.sampled_from(PREFIXES), st.lists(st.integers(0, 2), max_size=6)).map(
    lambda parts: list(parts[0] + tuple(parts[1])))


class SglangMachine(DifferentialMachine):
    observers = {"SglangRadixCache": ["nodes", "drain_events"]}

    @initialize(page_size=st.sampled_from([1, 1, 2, 3]))
    def setup(self, page_size: int) -> None:
        self.page_size = page_size
        self.locks: list[int] = []
        self.seen: list[tuple[int, ...]] = []
        self.index = kvspec.impl.RadixIndex()
        self.problems: list[str] = []
        self.run.create("cache", "SglangRadixCache", page_size)
        self.delivered()

    def call(self, method, *args):
        value, error = self.attempt("cache", method, *args)
        self.delivered()
        return value, error

    def delivered(self) -> None:
        if not self.params.get("router") or not self.run.outcomes:
            return
        for event in self.run.outcomes[-1][1].observed.get("drain_events") or []:
            try:
                self.index.apply_event(1, event)
            except IndexEventError as exc:
                self.problems.append(f"router rejected {event!r}: {type(exc).__name__}")

    def _remember(self, tokens):
        if len(tokens) >= self.page_size and tuple(tokens) not in self.seen:
            self.seen = (self.seen + [tuple(tokens)])[-6:]

    @rule(tokens=prompts)
    def insert(self, tokens):
        self.call("insert", tokens)
        self._remember(tokens)

    @precondition(lambda self: self.seen)
    @rule(pick=st.integers(0, 5), cut=st.integers(0, 8), token=st.integers(0, 2))
    def insert_beside_seen(self, pick, cut, token):
        """Insert a prompt that leaves a known one part-way: the node holding it splits (locks included)."""
        seen = self.seen[pick % len(self.seen)]
        tokens = list(seen[: cut % len(seen)]) + [token] * self.page_size
        self.call("insert", tokens)
        self._remember(tokens)

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

    @invariant()
    def target_structure(self):
        check = getattr(self.run.target("cache"), "_check", None)
        problems = list(self.problems)
        if check is not None:
            try:
                check()
            except AssertionError as exc:
                problems.append(f"target _check() failed: {exc}")
        if self.params.get("router"):
            held = self.run.target("cache").held_hashes()
            for toks in self.seen:
                locals_ = block_hashes(list(toks[: len(toks) // self.page_size * self.page_size]), self.page_size)
                truth = held_prefix(held, sequence_hashes(locals_))
                claimed = self.index.find_matches(locals_, False).scores.get((1, 0), 0)
                if claimed != truth:
                    kind = "over-claim" if claimed > truth else "under-claim"
                    problems.append(f"{kind}: router scores {claimed} on {list(toks)}, the cache holds {truth}")
        if problems:
            steps = self.run.steps
            raise Divergence(problems[0], steps=steps, index=len(steps) - 1, expected=Outcome(), actual=Outcome(),
                             differences=problems[:5])


def machines() -> list[MachineSpec]:
    return [
        MachineSpec(name="sglang-radix-cache", factory=SglangMachine, requires=("SglangRadixCache",),
                    params={"router": False},
                    description="SGLang 0.5.23 RadixCache (LRU, pages 1-3): node structure, locks, events"),
        MachineSpec(name="sglang-router", factory=SglangMachine, requires=("SglangRadixCache",),
                    params={"router": True},
                    description="SGLang's events into a RadixIndex: router scores == pages the cache holds"),
    ]
