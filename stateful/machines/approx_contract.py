"""``contract-approx``: Dynamo's approximate router (``KvRouter`` without KV events) held to the TTL contract.

The target (``--target dynamo-approx``, :mod:`kvspec.adapters.dynamo.approx`) runs its TTL on the
wall clock; kvspec's clock is explicit, one tick being ``TICK`` seconds.  A block routed at tick
``t`` with TTL ``ttl`` is certainly there while ``now < t + ttl`` and certainly gone once
``now > t + ttl`` (step latencies stay well under a tick); at ``now == t + ttl`` it may be either.
So for every query the router's device score must lie between

* the reference model's score (``kvspec.model.RouterIndexer``: the block is gone at
  ``t + ttl``) — the **lower bound**, and
* the score counting blocks whose expiry is ``now`` as still there — the **upper bound**,

and its dump must contain every block the model holds and only blocks of the upper-bound set.
Errors must agree (the forbidden configuration is :class:`~kvspec.errors.InvalidConfiguration`
on both sides).  The bounds are recomputed from the recorded steps, so ``kvspec replay`` repeats
the comparison exactly.  Rules: routing decisions (fresh, extended, repeated and shortened
paths, all to the target's one worker), clock advances of 1 to ``ttl + 1`` ticks, queries, dumps.
Pruning is not exercised: the wheel's ``max_tree_size`` is fixed at 2^20.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from hypothesis.stateful import initialize, rule

from kvspec.errors import KvSpecError
from kvspec.events import RouterEvent, Stored
from kvspec.hashing import block_hashes, sequence_hashes
from kvspec.stateful.engine.machine import DifferentialMachine, MachineSpec
from kvspec.stateful.engine.differential import Outcome, Step
from kvspec.stateful.machines.index_events import number, pick, picks, tapes

__all__ = ["ApproxContractMachine", "maybe_present", "machines"]

WORKER = (1, 0)
#: local hashes of block contents the router adapter can turn into tokens (its vocabulary, 4 tokens each)
ALPHABET = tuple(block_hashes([1000 * (c + 1) + j for j in range(4)], 4)[0] for c in range(3))


def maybe_present(steps: Sequence[Step], outcomes: Sequence[tuple[Outcome, Outcome]], ttl: int,
                  subject: str = "idx") -> set[tuple[int, ...]]:
    """Routed L-paths (every prefix) whose expiry is not before the current tick: the upper-bound set."""
    now = 0
    last: dict[tuple[int, ...], int] = {}
    for step, (expected, _) in zip(steps, outcomes):
        if step.subject != subject or expected.error is not None:
            continue
        if step.method == "advance":
            now += step.args[0]
        elif step.method == "record_routing_decision":
            path = tuple(step.args[2])
            for k in range(1, len(path) + 1):
                last[path[:k]] = now
    return {p for p, t in last.items() if t + ttl >= now}


def upper_score(query: Sequence[int], present: set[tuple[int, ...]]) -> int:
    k = 0
    while k < len(query) and tuple(query[: k + 1]) in present:
        k += 1
    return k


def dumped_blocks(events: Any) -> set[tuple[int, int]] | None:
    if not isinstance(events, (list, tuple)):
        return None
    out = set()
    for item in events:
        if isinstance(item, RouterEvent) and isinstance(item.event.data, Stored):
            out |= {(b.block_hash, b.tokens_hash) for b in item.event.data.blocks}
    return out


class ApproxContractMachine(DifferentialMachine):
    """``contract-approx``: see the module docstring."""

    subject: ClassVar[str] = "idx"
    ttl: ClassVar[int] = 3
    observers: ClassVar[Mapping[str, Sequence[str]]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.run.compare = self.compare_contract
        self.routed: list[tuple[int, ...]] = []

    def compare_contract(self, step: Step, expected: Outcome, actual: Outcome) -> list[str]:
        if actual.error is not None and actual.error.startswith("crash:"):
            return [f"target crashed in {step.method}: {actual.error} ({actual.message})"]
        if expected.error != actual.error:
            return [f"error: model {expected.error or 'none'}, target {actual.error or 'none'} ({actual.message})"]
        if step.is_create or step.subject != self.subject or expected.error is not None:
            return []
        present = maybe_present(self.run.steps[:-1], self.run.outcomes[:-1], self.ttl, self.subject)
        if step.method in ("find_matches", "find_matches_by_tier"):
            query = step.args[0]
            scores = actual.value.scores if step.method == "find_matches" else actual.value.device.scores
            want = expected.value.scores if step.method == "find_matches" else expected.value.device.scores
            got, lo, hi = scores.get(WORKER, 0), want.get(WORKER, 0), upper_score(query, present)
            others = {w: s for w, s in scores.items() if w != WORKER}
            if others:
                return [f"scores for unknown workers: {others}"]
            if got > hi:
                return [f"overcount: target {got} > {hi} (blocks not expired by the latest tick; query {list(query)})"]
            if got < lo:
                return [f"undercount: target {got} < model {lo} (a block expired before its TTL; query {list(query)})"]
            return []
        if step.method == "dump_events":
            got, want = dumped_blocks(actual.value), dumped_blocks(expected.value)
            allowed = {(sequence_hashes(p)[-1], p[-1]) for p in present}
            if got is None:
                return [f"dump is not a list: {actual.value!r}"]
            diffs = [f"dump lacks live block {b}" for b in sorted(want - got)]
            diffs += [f"dump has expired block {b}" for b in sorted(got - allowed)]
            return diffs
        return []

    @initialize()
    def create(self) -> None:
        self.run.create(self.subject, "RouterIndexer", False, self.ttl)

    def teardown(self) -> None:
        for objects in (self.run.target_objects,):
            for obj in objects.values():
                close = getattr(obj, "close", None)
                if callable(close):
                    close()
        super().teardown()

    @rule(data=tapes())
    def route(self, data) -> None:
        how = pick(data, ["fresh", "extend", "again", "prefix"]) if self.routed else "fresh"
        if how == "fresh":
            path = picks(data, ALPHABET, 1, 3)
        else:
            known = list(pick(data, self.routed))
            path = {"extend": known + picks(data, ALPHABET, 1, 2), "again": known,
                    "prefix": known[: number(data, 1, len(known))]}[how]
        path = path[:5]
        self.run.call(self.subject, "record_routing_decision", WORKER[0], WORKER[1], path)
        self.routed.append(tuple(path))

    @rule(data=tapes())
    def advance(self, data) -> None:
        self.run.call(self.subject, "advance", pick(data, [1, 2, self.ttl, self.ttl + 1]))

    @rule(data=tapes())
    def query(self, data) -> None:
        if self.routed and pick(data, [True, True, False]):
            path = list(pick(data, self.routed)) + picks(data, ALPHABET, 0, 1)
        else:
            path = picks(data, ALPHABET, 1, 4)
        self.run.call(self.subject, "find_matches", path)

    @rule()
    def dump_events(self) -> None:
        self.run.call(self.subject, "dump_events")

    @rule()
    def forbidden_configuration(self) -> None:
        try:
            self.run.create("bad", "RouterIndexer", False, self.ttl, self.ttl)
        except KvSpecError:
            pass


def machines() -> list[MachineSpec]:
    return [
        MachineSpec(
            "contract-approx",
            ApproxContractMachine,
            ("RouterIndexer",),
            description="KvRouter without KV events (routing decisions with a wall-clock TTL) held to the "
                        "TTL contract: scores and dump between 'expired at the tick' and 'expired after it'",
            modes=("contract",),
        )
    ]
