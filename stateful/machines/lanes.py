"""The ``lanes`` machines: an index fed by concurrent per-rank event lanes (``LanedIndex``).

Dynamo's own index harness checks its concurrent tree with several event lanes: during races a
worker's score never exceeds what it ever stored, and at every quiescent point the scores equal
the sequential reference exactly.  These machines do the same against any target providing
``LanedIndex`` (``kvspec.model.lanes``):

* rules publish events on the lanes (the shared index-event generator: stores, removals,
  ``Cleared``, on every tier), *step* a lane by a few events, *drain* (a quiescent point), and
  query — by tier, or the device tier only (with or without early exit), racing (between drains)
  or quiescent (right after a drain);
* **racing query**: for every rank, its device, device+host and total counts never exceed the
  longest query prefix whose blocks that rank ever published as stored;
* **quiescent query**: the answer equals the sequential reference — a ``TieredIndex`` that applied
  every event at once in publish order — exactly in ``exact`` mode, and within the tiered
  contract's bounds in ``contract`` mode (equal whenever the rank's history has no hole);
* ``exact`` mode also compares every answer, ``pending``, ``dropped`` and the dump (as a multiset
  of blocks) with the model after every step (the model drains lane by lane, the implementation
  round-robin: lanes must not interfere).

The reference, the bounds and quiescence are recomputed from the recorded steps, so ``kvspec
replay`` repeats the comparison.  Machines:

* ``lanes`` — two workers with two ranks each (lanes = workers and ranks), adversarial events too
  (rejected ones are dropped and counted);
* ``lanes-router`` — one worker with three ranks (lanes = ranks) and the router vocabulary, valid
  events only: the shape the ``dynamo-router*`` targets can publish, so it also runs against
  Dynamo's ``KvRouter`` (``contract`` mode; known finding F1 on ``dynamo-router-threads4``);
* ``lanes-soak`` — ``contract`` targets only: one writer thread per rank and two reader threads
  hammer the router for a bounded time (0.3 s per example and 30 s per run; 3 s and 10 minutes in
  the ``nightly`` profile),
  readers checking the racing bound on every answer; then a drain and the quiescent check.  The
  threads' interleaving is not reproducible: once a soak fails, every later soak of the same run
  reports the same failure (so Hypothesis's replay agrees), and the trace records the steps, not
  the interleaving.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from hypothesis import settings as hypothesis_settings
from hypothesis.stateful import initialize, precondition, rule

import kvspec.model
from kvspec.errors import KvSpecError
from kvspec.events import Cleared, KvCacheEvent, Removed, StorageTier, Stored, StoredBlock
from kvspec.hashing import sequence_hashes
from kvspec.scores import LOWER_TIERS
from kvspec.stateful.engine.machine import DifferentialMachine, MachineSpec, weight
from kvspec.stateful.engine.differential import Divergence, Outcome, Step
from kvspec.stateful.machines.index_events import EventMix, IndexEvents, number, pick, tapes
from kvspec.stateful.machines.radix import index_compare
from kvspec.stateful.machines.radix_contract import ContractModel, mirror_step
from kvspec.stateful.machines.router import ROUTER_ALPHABET, cumulative, tier_differences

__all__ = ["LanesMachine", "LanesSoakMachine", "Replayed", "machines", "racing_bound"]

TIERS = (StorageTier.DEVICE, *LOWER_TIERS)
#: the queries checked against the racing bound and, at quiescent points, the sequential reference
QUERIES = ("find_matches", "find_matches_by_tier")
VALID_ONLY = EventMix(unknown_parent=False, parent_in_blocks=False, repeat_in_batch=False, refile=False,
                      worker_specific_e=False, remove_unknown=False, remove_repeat=False, mid_chain_removal=True)


class Replayed:
    """What the recorded steps imply: the sequential reference, the contract model, what each rank
    ever published as stored, and whether the last query is at a quiescent point."""

    def __init__(self, steps: Sequence[Step], subject: str = "idx", with_contract: bool = True) -> None:
        self.reference = kvspec.model.TieredIndex()
        self.contract = ContractModel() if with_contract else None
        #: rank -> every (E, parent, L) it ever published as stored, on any tier: a block re-filed
        #: under another parent or local hash keeps its earlier filings too (either may be credited)
        self.ever: dict[tuple[int, int], set[tuple[int, int | None, int]]] = {}
        self.quiescent = True
        for step in steps:
            if step.subject != subject or step.is_create:
                continue
            if step.method == "apply_event":
                self.quiescent = False
                worker_id, event = step.args[0], step.args[1]
                tier = StorageTier(step.args[2]) if len(step.args) > 2 else StorageTier.DEVICE
                try:
                    self.reference.apply_event(worker_id, event, tier)
                    error = None
                except KvSpecError as exc:
                    error = type(exc).__name__
                if self.contract is not None:
                    mirror_step(self.contract, step, error)
                if isinstance(event.data, Stored):
                    filings = self.ever.setdefault((worker_id, event.dp_rank), set())
                    parent = event.data.parent_hash
                    for block in event.data.blocks:
                        filings.add((block.block_hash, parent, block.tokens_hash))
                        parent = block.block_hash
            elif step.method == "drain":
                self.quiescent = True


def racing_bound(filings: Iterable[tuple[int, int | None, int]], query: Sequence[int]) -> int:
    """The longest query prefix spelled by a root-anchored chain of filings ``(E, parent, L)`` the
    rank ever published as stored.

    Every filing counts, on any tier and whatever came after it: the index re-files a block stored
    again under a new parent or local hash, and a lower tier continues chains from blocks of another
    tier, so a racing answer may be built from any of them.  The walk keeps every block that ends a
    chain spelling the prefix so far (linear in the filings per query position).
    """
    hanging: dict[tuple[int | None, int], set[int]] = {}
    for e, parent, local in filings:
        hanging.setdefault((parent, local), set()).add(e)
    frontier: set[int | None] = {None}
    k = 0
    while k < len(query):
        frontier = {e for parent in frontier for e in hanging.get((parent, query[k]), ())}
        if not frontier:
            break
        k += 1
    return k


def race_differences(query: Sequence[int], answer: Any, replayed: Replayed, side: str) -> list[str]:
    """Every count of ``answer`` (a ``TieredMatches``, or the device-only ``OverlapScores``) within the
    racing bound of its worker."""
    diffs = []
    tiered = hasattr(answer, "lower_tier")
    workers = set(answer.device.scores) if tiered else set(answer.scores)
    for m in answer.lower_tier.values() if tiered else ():
        workers |= {w for w, h in m.hits.items() if h}
    for worker in sorted(workers):
        bound = racing_bound(replayed.ever.get(worker, set()), query)
        counts = cumulative(answer, worker) if tiered else [answer.scores[worker]]
        for name, value in zip(("device", "device+host", "total"), counts):
            if value > bound:
                diffs.append(f"{side} credits {worker} with {value} ({name}) on {list(query)}, more than it ever "
                             f"stored ({bound})")
    return diffs


class LanesMachine(DifferentialMachine):
    """``lanes`` / ``lanes-router``: see the module docstring."""

    #: the comparator replays the steps so far on a sequential reference (racing answers are held
    #: to bounds, quiescent ones to equality): the fuzz mode's checkpoint observation cannot feed it
    fuzz_unsupported = "compares racing answers against a replay of all earlier steps (not with checkpoints)"

    subject: ClassVar[str] = "idx"
    observers: ClassVar[Mapping[str, Sequence[str]]] = {"LanedIndex": ("pending", "dropped", "dump_events")}

    def __init__(self) -> None:
        super().__init__()
        self.contract_mode = self.target.mode == "contract"
        if self.contract_mode:
            self.run.observers = {}
        self.run.compare = self.compare_lanes
        self.events = IndexEvents(workers=self.params["workers"], ranks=self.params["ranks"],
                                  alphabet=self.params["alphabet"], tiers=TIERS, mix=self.params["mix"])
        self.sequential = kvspec.model.TieredIndex()  # the generator's picture follows publish order

    def compare_lanes(self, step: Step, expected: Outcome, actual: Outcome) -> list[str]:
        if actual.error is not None and actual.error.startswith("crash:"):
            return [f"target crashed in {step.method}: {actual.error} ({actual.message})"]
        if self.contract_mode:
            if step.is_create and expected.error != actual.error:
                return [f"construction: target {actual.error} {actual.message}"]
            if step.method not in QUERIES or actual.error is not None:
                return []
        else:
            diffs = index_compare(step, expected, actual)
            if diffs or step.method not in QUERIES or expected.error is not None:
                return diffs
        query = step.args[0]
        replayed = Replayed(self.run.steps[:-1], self.subject, with_contract=self.contract_mode)
        if replayed.quiescent and not (self.contract_mode and step.method == "find_matches"):
            want = getattr(replayed.reference, step.method)(*step.args)
            if self.contract_mode:
                return tier_differences(query, want, actual.value, replayed.contract)
            if expected.value != want:
                return [f"model at a quiescent point {expected.value!r} != sequential reference {want!r} (spec bug)"]
            return []
        return race_differences(query, actual.value, replayed, "target") + \
            race_differences(query, expected.value, replayed, "model")

    def teardown(self) -> None:
        close = getattr(self.run.target_objects.get(self.subject), "close", None)
        if callable(close):
            close()
        super().teardown()

    @initialize()
    def create(self) -> None:
        self.run.create(self.subject, "LanedIndex")

    def publish(self, draw) -> None:
        try:
            self.sequential.apply_event(draw.worker_id, draw.event, draw.tier)
            error = None
        except KvSpecError as exc:
            error = type(exc).__name__
        self.run.call(self.subject, "apply_event", draw.worker_id, draw.event, draw.tier)
        self.events.record(draw, error)

    @weight(2)  # stores are the common case
    @rule(data=tapes())
    def store(self, data) -> None:
        self.publish(self.events.draw_store(data))

    @rule(data=tapes())
    def remove(self, data) -> None:
        if self.events.held:
            self.publish(self.events.draw_remove(data))

    @weight(3)  # a clear must meet other ranks' blocks to show that it reaches only its own rank
    @precondition(lambda self: self.events.held)
    @rule(data=tapes())
    def clear(self, data) -> None:
        """A rank's ``Cleared``, only when something is held (a clear of nothing proves nothing)."""
        self.publish(self.events.draw_cleared(data))

    @rule(data=tapes())
    def step_lane(self, data) -> None:
        worker_id = pick(data, self.params["workers"])
        self.run.call(self.subject, "step", worker_id, pick(data, self.params["ranks"]), number(data, 1, 3))

    @rule()
    def drain(self) -> None:
        self.run.call(self.subject, "drain")

    @rule(data=tapes())
    def racing_query(self, data) -> None:
        self.run.call(self.subject, "find_matches_by_tier", self.events.draw_query(data))

    @rule(data=tapes())
    def quiescent_query(self, data) -> None:
        self.run.call(self.subject, "drain")
        self.run.call(self.subject, "find_matches_by_tier", self.events.draw_query(data))

    @rule(data=tapes())
    def device_query(self, data) -> None:
        """The device-only query, racing or quiescent: within the racing bound, and (exact mode) equal
        to the sequential reference at a quiescent point, early exit included."""
        if pick(data, [False, True]):
            self.run.call(self.subject, "drain")
        self.run.call(self.subject, "find_matches", self.events.draw_query(data), pick(data, [False, True]))


# -- soak: concurrent writers and readers, bounded in time -----------------------------------------


class RankScript:
    """Valid events of one rank: extend a chain (never re-announcing a held block), or remove any
    held block (a mid-chain removal leaves a hole; then the reference is an upper bound only)."""

    def __init__(self, rank: int, rng: random.Random, alphabet: Sequence[int]) -> None:
        self.rank, self.rng, self.alphabet = rank, rng, alphabet
        self.held: dict[tuple[int, ...], int] = {}  # L-path -> E (device tier)
        self.ever: dict[int, tuple[int | None, int]] = {}
        self.history: list[KvCacheEvent] = []
        self.holes = False

    def next_event(self) -> KvCacheEvent:
        if self.held and self.rng.random() < 0.3:
            path = self.rng.choice(sorted(self.held))
            if any(q[:-1] == path for q in self.held):
                self.holes = True  # its descendants stay held behind a hole: only "no overcount" is exact
            del self.held[path]
            data = Removed([sequence_hashes(path)[-1]])
        else:
            base = self.rng.choice([()] + sorted(self.held)) if self.held else ()
            path = base + tuple(self.rng.choice(self.alphabet) for _ in range(self.rng.randint(1, 2)))
            path = path[:6]
            while len(base) < len(path) and path[: len(base) + 1] in self.held:
                base = path[: len(base) + 1]  # announce once: an engine never re-announces a held block
            end = len(base) + 1
            while end < len(path) and path[: end + 1] not in self.held:
                end += 1  # ... nor one behind a hole it is re-filling (Dynamo counts repeats: F2)
            path = path[:end]
            hashes = sequence_hashes(path)
            new = [(hashes[i], path[i]) for i in range(len(base), len(path))]
            if not new:
                return self.next_event()
            parent = hashes[len(base) - 1] if base else None
            for i in range(len(base), len(path)):
                self.held[path[: i + 1]] = hashes[i]
            p = parent
            for e, local in new:  # record before publishing: a reader must never see it unrecorded
                self.ever.setdefault(e, (p, local))
                p = e
            data = Stored(parent, [StoredBlock(e, local) for e, local in new])
        event = KvCacheEvent(len(self.history) + 1, data, self.rank)
        self.history.append(event)
        return event


class LanesSoakMachine(DifferentialMachine):
    """``lanes-soak``: see the module docstring."""

    subject: ClassVar[str] = "idx"
    observers: ClassVar[Mapping[str, Sequence[str]]] = {}

    @initialize()
    def create(self) -> None:
        self.run.create(self.subject, "LanedIndex")

    def teardown(self) -> None:
        close = getattr(self.run.target_objects.get(self.subject), "close", None)
        if callable(close):
            close()
        super().teardown()

    soaks: ClassVar[int] = 0
    compare = staticmethod(lambda step, expected, actual: [] if actual.error is None or step.method != "__init__"
                           else [f"construction failed: {actual.error} {actual.message}"])

    @rule()
    def idle(self) -> None:
        """Nothing: the soak is one rule per example; this keeps the machine able to step."""

    @precondition(lambda self: not getattr(self, "soaked", False))
    @rule()
    def soak(self) -> None:
        """One bounded soak per example (the interleaving is the threads': nothing is drawn)."""
        self.soaked = True
        cls = type(self)
        seen = cls.__dict__.get("found")
        if seen is not None:  # a soak already failed in this run: fail again, so that Hypothesis's
            raise seen      # replay of the failing example (different thread timing) agrees
        nightly = hypothesis_settings.default.stateful_step_count >= 120
        seconds, budget = (3.0, 600.0) if nightly else (0.3, 30.0)
        spent = cls.__dict__.get("spent", 0.0)
        if spent >= budget:  # bounded in time: the run's soak budget is used up
            return
        cls.spent = spent + seconds
        target = self.run.target(self.subject)
        type(self).soaks += 1
        rng = random.Random(type(self).soaks)
        ranks = self.params["ranks"]
        scripts = {r: RankScript(r, random.Random(rng.random()), self.params["alphabet"]) for r in ranks}
        problems: list[str] = []
        stop = time.monotonic() + seconds

        def writer(script: RankScript) -> None:
            while time.monotonic() < stop and not problems:
                event = script.next_event()
                target.apply_event(1, event, StorageTier.DEVICE)

        def reader(r: random.Random) -> None:
            while time.monotonic() < stop and not problems:
                rank = r.choice(list(ranks))
                known = sorted(scripts[rank].held) or [(self.params["alphabet"][0],)]
                query = list(r.choice(known)) + [r.choice(self.params["alphabet"])]
                answer = target.find_matches_by_tier(query)
                for rk in ranks:  # the ever-stored sets only grow: read them after the answer
                    got = answer.device.scores.get((1, rk), 0)
                    filings = [(e, parent, local) for e, (parent, local) in dict(scripts[rk].ever).items()]
                    bound = racing_bound(filings, query)
                    if got > bound:
                        problems.append(f"racing: rank {rk} credited {got} on {query}, ever stored {bound}")

        threads = [threading.Thread(target=writer, args=(scripts[r],)) for r in ranks]
        threads += [threading.Thread(target=reader, args=(random.Random(rng.random()),)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        target.drain()
        reference = kvspec.model.TieredIndex()
        for r in ranks:
            for event in scripts[r].history:
                reference.apply_event(1, event, StorageTier.DEVICE)
        for r in ranks:
            for path in sorted(scripts[r].held)[:12]:
                query = list(path)
                want = reference.find_matches(query).scores
                got = target.find_matches_by_tier(query).device.scores
                for rk in ranks:
                    g, w = got.get((1, rk), 0), want.get((1, rk), 0)
                    if g > w or (g != w and not scripts[rk].holes):
                        problems.append(f"quiescent: rank {rk} scores {g} on {query}, sequential reference {w}")
        if problems:
            events = sum(len(s.history) for s in scripts.values())
            found = Divergence(f"{problems[0]} ({len(problems)} problems, {events} events, {seconds}s soak)",
                               steps=self.run.steps, index=len(self.run.steps) - 1, expected=Outcome(),
                               actual=Outcome(), differences=problems[:10])
            cls.found = found
            raise found


def machines() -> list[MachineSpec]:
    return [
        MachineSpec(
            "lanes",
            LanesMachine,
            ("LanedIndex",),
            params={"workers": (1, 2), "ranks": (0, 1), "alphabet": (11, 12, 13, 14), "mix": EventMix()},
            description="index fed by concurrent per-rank lanes (2 workers x 2 ranks): racing answers within "
                        "what each rank ever stored, quiescent answers == sequential reference",
        ),
        MachineSpec(
            "lanes-router",
            LanesMachine,
            ("LanedIndex",),
            params={"workers": (1,), "ranks": (0, 1, 2), "alphabet": ROUTER_ALPHABET[:3], "mix": VALID_ONLY},
            description="one worker, 3 ranks as concurrent lanes (the router's shape), valid events, all tiers",
            modes=("exact", "contract"),
            known_failures={"dynamo-router-threads4": "F1"},
        ),
        MachineSpec(
            "lanes-soak",
            LanesSoakMachine,
            ("LanedIndex",),
            params={"ranks": (0, 1, 2), "alphabet": ROUTER_ALPHABET[:3]},
            description="concurrent writers (one per rank) and readers against a router for a bounded time: "
                        "racing bound, then quiescent == sequential reference",
            modes=("contract",),
            known_failures={"dynamo-router-threads4": "F1"},
        ),
    ]
