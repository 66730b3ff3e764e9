"""``contract-router``: Dynamo's ``KvRouter``, fed over ZMQ, held to the tiered index contract.

The target (``--target dynamo-router``, ``router_event_threads=1``; ``dynamo-router-threads4`` for
the concurrent tree) is :class:`kvspec.adapters.dynamo.router.TieredIndex`: one worker with three
data-parallel ranks publishing device, host-pinned, disk and external KV events exactly as an
engine does, and the router's ``get_overlap_scores`` as the query.  The reference is
``kvspec.model.TieredIndex``.

The contract is the device contract of :mod:`kvspec.stateful.machines.radix_contract`, carried through the
tiers.  Lower tiers are exact held sets (no compression, no cascade) that continue the device chain
(``docs/upstream.md`` R7.4), so for every rank and query the router's *cumulative* counts — device,
device + host, device + host + disk + external (the router reports disk and external together) —
must lie between

* the reference model's cumulative counts (upper bound: an overcount is always a failure), and
* the same tier walk started from the sticky-reachable device chain (lower bound).

If a device undercount shortens the device chain, the host walk starts earlier and can only reach
as far as it would from the longer chain, so the bounds stay valid at every tier.  When the rank's
device history has no hole the two bounds coincide and every tier must match exactly.

Generator precondition specific to the router: a rank announces a block (``Stored``) only while it
does not hold it in that tier — as engines do.  Dynamo's router does not treat a repeated ``Stored``
as idempotent (it needs one ``Removed`` per ``Stored``, see ``docs/findings.md``);
``contract-router-reannounce`` drops the precondition and exposes that.

Tolerated, and why: the device deviations of ``contract-radix`` (forgotten blocks behind a hole);
and the router never reports index errors (it logs and drops the event, as for an unknown parent),
so only the state effect of an event is checked, through the next queries.  Generator
preconditions: ``E`` is the chained sequence hash of the local-hash path (consistent across ranks
and tiers); no hash twice in one ``Removed``; local hashes come from the adapter's vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from kvspec.events import Cleared, Removed, StorageTier, Stored, StoredBlock
from kvspec.hashing import block_hashes
from kvspec.scores import LOWER_TIERS
from kvspec.stateful.engine.machine import MachineSpec
from kvspec.stateful.engine.differential import Outcome, Step
from kvspec.stateful.machines.radix_contract import ContractModel, RadixContractMachine, Worker, event_error_differences

ROUTER_WORKERS: tuple[Worker, ...] = ((1, 0), (1, 1), (1, 2))
#: local hashes of block contents the router adapter can turn back into tokens (its vocabulary)
ROUTER_ALPHABET = tuple(block_hashes([1000 * (c + 1) + j for j in range(4)], 4)[0] for c in range(4))
LOWER = tuple(LOWER_TIERS)


def cumulative(matches: Any, worker: Worker) -> list[int]:
    """``[device, device+host, device+host+disk+external]`` of one worker in a ``TieredMatches``."""
    device = matches.device.scores.get(worker, 0)
    lower = matches.lower_tier

    def hits(tier: StorageTier) -> int:
        m = lower.get(tier)
        return m.hits.get(worker, 0) if m is not None else 0

    host = device + hits(StorageTier.HOST_PINNED)
    return [device, host, host + hits(StorageTier.DISK) + hits(StorageTier.EXTERNAL)]


def tier_differences(query: Sequence[int], expected: Any, actual: Any, contract: ContractModel) -> list[str]:
    diffs = []
    workers = set(expected.device.scores) | set(actual.device.scores) | contract.workers()
    for m in (*expected.lower_tier.values(), *actual.lower_tier.values()):
        workers |= set(m.hits)
    for worker in sorted(workers):
        want = cumulative(expected, worker)
        got = cumulative(actual, worker)
        bounds = contract.tier_bounds(worker, query)
        for (name, lo, hi_own), hi, value in zip(bounds, want, got):
            if hi_own != hi:
                diffs.append(f"contract model and reference model disagree for {worker} at {name}: {hi_own} vs {hi} "
                             f"(harness bug)")
            if value > hi:
                diffs.append(f"{name} overcount for {worker}: target {value} > model {hi} (query {list(query)})")
            elif value < lo:
                diffs.append(f"{name} undercount for {worker}: target {value} < sticky lower bound {lo} "
                             f"(model {hi}; query {list(query)})")
    return diffs


class RouterContractMachine(RadixContractMachine):
    """``contract-router``: see the module docstring for the contract and the tolerated deviations."""

    surfaces_errors: ClassVar[bool] = False
    observers: ClassVar[Mapping[str, Sequence[str]]] = {}

    @property
    def workers(self) -> tuple[Worker, ...]:  # type: ignore[override]
        return ROUTER_WORKERS[: self.params.get("ranks", len(ROUTER_WORKERS))]

    @property
    def alphabet(self) -> tuple[int, ...]:
        return ROUTER_ALPHABET[: self.params.get("alphabet", len(ROUTER_ALPHABET))]

    def compare_contract(self, step: Step, expected: Outcome, actual: Outcome) -> list[str]:
        self.mirror_applied(len(self.run.outcomes) - 1)
        if step.is_create:
            return [] if actual.error is None else [f"construction failed: {actual.error} {actual.message}"]
        if actual.error is not None and actual.error.startswith("crash:"):
            return [f"target crashed in {step.method}: {actual.error} ({actual.message})"]
        if step.method == "apply_event":
            return event_error_differences(step, expected, actual, self.contract, surfaces_errors=False)
        if step.method == "find_matches_by_tier":
            return tier_differences(step.args[0], expected.value, actual.value, self.contract)
        return super().compare_contract(step, expected, actual)

    tiered: ClassVar[bool] = True

    def teardown(self) -> None:
        target = self.run.target_objects.get("index")
        close = getattr(target, "close", None)
        if callable(close):
            close()
        super().teardown()

    # -- rules (override the device-only ones) ------------------------------------------------

    @initialize()
    def create(self) -> None:
        self.run.create("index", "TieredIndex")

    def tier_blocks(self, worker: Worker, tier: StorageTier) -> dict[int, Any]:
        if tier is StorageTier.DEVICE:
            return self.contract.held.get(worker, {})
        return self.contract.lower.get(tier, {}).get(worker, {})

    event_weights: ClassVar[Mapping[str, int]] = {"store": 10, "remove": 6, "clear": 1}

    def draw_tier(self, data: st.DataObject) -> StorageTier:
        choices = (StorageTier.DEVICE, StorageTier.DEVICE, *LOWER) if self.params.get("tiers", True) else \
            (StorageTier.DEVICE,)
        return data.draw(st.sampled_from(choices), label="tier")

    def do_store(self, data: st.DataObject) -> None:
        worker = data.draw(st.sampled_from(self.workers), label="worker")
        tier = self.draw_tier(data)
        own = sorted(self.tier_blocks(worker, tier))
        anywhere = sorted(set(self.contract.held.get(worker, {})) | set(own))
        choice = data.draw(st.integers(0, 9), label="parent kind")
        if choice < 3 or not anywhere:
            parent = None
        elif choice < 7 and own:
            parent = data.draw(st.sampled_from(own), label="parent")
        elif choice < 9:  # offload: a lower-tier suffix under the rank's device (or other tier) block
            parent = data.draw(st.sampled_from(anywhere), label="cross-tier parent")
        else:
            universe = sorted(self.paths.path_of)
            parent = data.draw(st.sampled_from(universe), label="foreign parent")
        depth = len(self.paths.path_of[parent]) if parent is not None else 0
        room = max(0, 8 - depth)
        locals_ = data.draw(st.lists(st.sampled_from(self.alphabet), min_size=min(1, room), max_size=min(4, room)),
                            label="locals")
        pairs = self.paths.blocks(parent, locals_)
        if not self.params.get("reannounce", False):
            # announce once: an engine reports a block stored only while it does not hold it, so
            # start after the last block of the chain this rank already holds in this tier
            held = self.tier_blocks(worker, tier)
            last = max((i for i, (e, _) in enumerate(pairs) if e in held), default=-1)
            if last >= 0:
                parent, pairs = pairs[last][0], pairs[last + 1:]
            if not pairs:
                return
        blocks = [StoredBlock(e, local) for e, local in pairs]
        self.send(worker, Stored(parent, blocks), tier)

    def do_remove(self, data: st.DataObject) -> None:
        # remove from a (rank, tier) that holds something, so removals are as frequent as intended
        tiers = (StorageTier.DEVICE, *LOWER) if self.params.get("tiers", True) else (StorageTier.DEVICE,)
        candidates = [(w, t) for w in self.workers for t in tiers if self.tier_blocks(w, t)]
        if not candidates:
            return
        worker, tier = data.draw(st.sampled_from(candidates), label="rank and tier")
        held = self.tier_blocks(worker, tier)
        if data.draw(st.booleans(), label="leaves only"):
            pool = sorted(e for e in held if not any(p == e for p, _ in held.values()))
        else:
            pool = sorted(held)
        chosen = data.draw(st.lists(st.sampled_from(pool), unique=True, min_size=1, max_size=3), label="hashes") \
            if pool else []
        if not chosen:
            return
        self.send(worker, Removed(chosen), tier)

    def do_clear(self, data: st.DataObject) -> None:
        self.send(data.draw(st.sampled_from(self.workers), label="worker"), Cleared())

    # the router exposes no remove_worker / clear_all_blocks, and the ZMQ ingest path rewrites a
    # self-referencing Stored: those event kinds of the device machine are not drawn here

    @rule(data=st.data())
    def query(self, data: st.DataObject) -> None:
        self.attempt("index", "find_matches_by_tier", self.draw_query(data))

    def query_early_exit(self, data: st.DataObject) -> None:  # type: ignore[override]
        raise AssertionError("not a rule of contract-router: the router's overlap query has no early exit")

    def dump(self) -> None:  # type: ignore[override]  # not a rule: the router dump mixes tiers
        raise AssertionError("not a rule of contract-router")

    def draw_query(self, data: st.DataObject) -> list[int]:
        known = sorted(self.paths.path_of)
        if known and data.draw(st.integers(0, 4), label="query kind") > 0:
            path = list(self.paths.path_of[data.draw(st.sampled_from(known), label="query path")])
            tail = data.draw(st.lists(st.sampled_from(self.alphabet), max_size=2), label="query tail")
            return path + tail
        return data.draw(st.lists(st.sampled_from(self.alphabet), min_size=1, max_size=6), label="query")


def machines() -> list[MachineSpec]:
    return [
        MachineSpec(
            "contract-router",
            RouterContractMachine,
            ("TieredIndex",),
            description="KvRouter over ZMQ (device + lower tiers, dp ranks) held to the tiered contract",
            modes=("contract",),
            known_failures={"dynamo-router-threads4": "F1"},
        ),
        MachineSpec(
            "contract-router-reannounce",
            RouterContractMachine,
            ("TieredIndex",),
            params={"reannounce": True, "ranks": 2, "alphabet": 3},
            description="as contract-router, but a rank may announce a block it already holds (Stored is idempotent)",
            modes=("contract",),
            known_failures={"dynamo-router": "F2", "dynamo-router-threads4": "F1/F2"},
        ),
        MachineSpec(
            "contract-router-device",
            RouterContractMachine,
            ("TieredIndex",),
            params={"tiers": False, "ranks": 2, "alphabet": 3},
            description="KvRouter over ZMQ, device events only, 2 ranks, 3 block contents (dense sharing)",
            modes=("contract",),
            known_failures={"dynamo-router-threads4": "F1"},
        ),
    ]
