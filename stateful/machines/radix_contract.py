"""Hold an external radix index (Dynamo's ``RadixTree``) to the documented contract, not to equality.

Dynamo's compressed tree legitimately differs from the reference model in ways the model does not
copy (``docs/decisions.md`` D3, ``docs/upstream.md`` R3-R4): a mid-node removal scrubs the
rest of that node for the worker, a node that loses its last full worker detaches its subtree, and
the first writer's ``E`` labels a shared edge.  All of these can only make Dynamo *forget* blocks a
worker still holds behind a hole; none can make it invent one.  So the contract is a pair of
bounds per worker ``w`` and query, computed from two models kept side by side:

* **upper bound** — the reference model's score (``kvspec.model.RadixIndex``): the longest
  root-anchored chain of blocks ``w`` holds.  Anything above is an **overcount**: always a failure.
* **lower bound** — the same walk over ``w``'s *sticky-reachable* blocks (:class:`ContractModel`):
  a block is sticky-reachable if it was stored while its parent was sticky-reachable (or at the
  root); a removal drops the removed block and every sticky descendant; storing a removed ancestor
  again makes only the re-stored blocks sticky-reachable, not their old descendants.  A score
  below it is an **undercount** that no documented tree artifact explains: a failure.

An undercount is therefore tolerated only for a worker with a hole in the queried chain (a block
removed while it still had held descendants); with suffix-only removals the two bounds coincide
and the scores must be equal.

**Errors** (``ParentBlockNotFound``, ``BlockNotFound``, ``InvalidBlockSequence``) must agree with
the model, with one tolerated deviation: once a worker's history contains a removal that left held
children (the worker is *dirty*), Dynamo may reject a ``Stored`` whose parent, or a ``Removed``
naming a block, that the model still holds — but only when that block is **not** sticky-reachable
(a sticky block is reachable in Dynamo's tree, so rejecting it would be a bug).  Errors that the
model raises and Dynamo does not are never tolerated.

**Dumps** (``dump_events``): every dumped block must be held by the worker in the model (with the
same parent and local hash), and every sticky-reachable block must be dumped.

Generator preconditions the contract needs (Dynamo documents them): the external hash ``E`` is a
function of the local-hash path, identical for every worker (here ``E`` is the router's own chained
sequence hash of the path, as an engine computes it); no hash twice in one ``Removed``.  Exact
bounds need ``early_exit=False``; queries with ``early_exit=True`` are held only to "never above
the full score, and at least 1 where the sticky chain matches the first block" (Dynamo checks for
a lone worker only at its own node boundaries, ``docs/upstream.md`` R4, exps. D1/D7).

Machines: ``contract-radix`` (its own consistent-hash generator) and ``contract-radix-events`` (the
shared radix machine's generator with the precondition-breaking kinds off), both only against
targets in ``contract`` mode (``--target dynamo``); :class:`ContractComparison` mixes the
comparison into any radix machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from kvspec.events import Cleared, KvCacheEvent, Removed, RouterEvent, StorageTier, Stored, StoredBlock
from kvspec.hashing import sequence_hashes
from kvspec.model.radix import longest_chains
from kvspec.scores import LOWER_TIERS, Continuation
from kvspec.stateful.engine.machine import DifferentialMachine, MachineSpec, weight
from kvspec.stateful.engine.differential import Outcome, Step

Worker = tuple[int, int]
Blocks = dict[int, tuple[int | None, int]]

#: index errors whose disagreement is tolerated for a dirty worker (model OK, target raised)
TOLERABLE_ON_DIRTY = ("ParentBlockNotFound", "BlockNotFound")


class ContractModel:
    """Held blocks per worker and tier, plus the device tier's sticky-reachable subset.

    ``held`` mirrors the reference model (no cascade on removal); ``sticky`` is the lower-bound
    state; ``dirty`` the workers whose history removed a block that still had held children.
    Apply only the events the reference model *accepted*, with the model's semantics.
    """

    def __init__(self) -> None:
        self.held: dict[Worker, Blocks] = {}
        self.sticky: dict[Worker, set[int]] = {}
        self.dirty: set[Worker] = set()
        self.lower: dict[StorageTier, dict[Worker, Blocks]] = {}
        #: E -> parent E, over every block ever stored (consistent because E is path-determined)
        self.parent_of: dict[int, int | None] = {}

    # -- events (model semantics) ------------------------------------------------------------

    def stored(self, worker: Worker, parent: int | None, blocks: Iterable[tuple[int, int]],
               tier: StorageTier = StorageTier.DEVICE) -> None:
        if tier is not StorageTier.DEVICE:
            target = self.lower.setdefault(tier, {}).setdefault(worker, {})
            for e, local in blocks:
                target[e] = (parent, local)
                parent = e
            return
        held = self.held.setdefault(worker, {})
        sticky = self.sticky.setdefault(worker, set())
        anchored = parent is None or parent in sticky
        for e, local in blocks:
            held[e] = (parent, local)
            self.parent_of[e] = parent
            if anchored:
                sticky.add(e)
            parent = e

    def removed(self, worker: Worker, hashes: Iterable[int], tier: StorageTier = StorageTier.DEVICE) -> None:
        hashes = list(hashes)
        if tier is not StorageTier.DEVICE:
            blocks = self.lower.setdefault(tier, {}).get(worker, {})
            for h in hashes:
                blocks.pop(h, None)
            return
        held = self.held.get(worker, {})
        sticky = self.sticky.get(worker, set())
        gone = [h for h in hashes if h in held]
        for h in gone:
            del held[h]
        for h in gone:
            if any(parent == h for parent, _ in held.values()):
                self.dirty.add(worker)  # a hole: held descendants stay behind it
            if h in sticky:
                sticky.difference_update(self._sticky_subtree(sticky, h))

    def _sticky_subtree(self, sticky: set[int], root: int) -> set[int]:
        out = {root}
        for e in sticky:
            chain, cur = [], e
            while cur is not None and cur not in out and cur in sticky:
                chain.append(cur)
                cur = self.parent_of.get(cur)
            if cur in out:
                out.update(chain)
        return out

    def cleared(self, worker: Worker) -> None:
        """``Cleared`` of one rank: every tier forgets it, and its history starts afresh."""
        self.held.pop(worker, None)
        self.sticky.pop(worker, None)
        self.dirty.discard(worker)
        for tier in self.lower.values():
            tier.pop(worker, None)

    def remove_worker(self, worker_id: int) -> None:
        ranks = {w for w in [*self.held, *self.sticky, *self.dirty] if w[0] == worker_id}
        for tier in self.lower.values():
            ranks.update(w for w in tier if w[0] == worker_id)
        for w in ranks:
            self.cleared(w)

    # -- bounds ------------------------------------------------------------------------------

    def sticky_blocks(self, worker: Worker) -> Blocks:
        sticky = self.sticky.get(worker, set())
        return {e: v for e, v in self.held.get(worker, {}).items() if e in sticky}

    def device_bounds(self, worker: Worker, query: Sequence[int]) -> tuple[int, int]:
        """``(lower, upper)`` device score of ``worker`` for ``query``."""
        lo = longest_chains(self.sticky_blocks(worker), query, Continuation.root()).position
        hi = longest_chains(self.held.get(worker, {}), query, Continuation.root()).position
        return lo, hi

    def tier_bounds(self, worker: Worker, query: Sequence[int]) -> list[tuple[str, int, int]]:
        """Cumulative ``(name, lower, upper)`` after device, host_pinned and disk+external.

        The lower tiers are exact (held sets, no compression) and continue the device chain, so
        each cumulative bound is the device bound extended tier by tier (``docs/upstream.md`` R7.4).
        """
        out = []
        lo_c = longest_chains(self.sticky_blocks(worker), query, Continuation.root())
        hi_c = longest_chains(self.held.get(worker, {}), query, Continuation.root())
        out.append(("device", lo_c.position, hi_c.position))
        for tier in LOWER_TIERS:
            blocks = self.lower.get(tier, {}).get(worker, {})
            lo_c = longest_chains(blocks, query, lo_c)
            hi_c = longest_chains(blocks, query, hi_c)
            if tier is not StorageTier.EXTERNAL:  # the router reports disk and external together
                out.append((tier.value, lo_c.position, hi_c.position))
        out[-1] = ("disk+external", lo_c.position, hi_c.position)
        return out

    def workers(self) -> set[Worker]:
        found = set(self.held)
        for tier in self.lower.values():
            found.update(tier)
        return found


# -- contract comparison -----------------------------------------------------------------------


def score_differences(query: Sequence[int], model_scores: Mapping[Worker, int], target_scores: Mapping[Worker, int],
                      contract: ContractModel, label: str = "score", early_exit: bool = False) -> list[str]:
    """Overcounts (above the model) and undercounts (below the sticky bound) of a device query.

    With ``early_exit`` the walk may stop before the end of a worker's chain (at a node boundary
    of the target's tree, which the model does not have), so the bounds become: at most the full
    score, and at least 1 for a worker whose sticky-reachable chain matches the first block.
    """
    diffs = []
    for worker in sorted(set(model_scores) | set(target_scores) | contract.workers()):
        hi = model_scores.get(worker, 0)
        got = target_scores.get(worker, 0)
        lo, hi_own = contract.device_bounds(worker, query)
        if early_exit:
            hi, lo = hi_own, min(lo, 1)
        if hi_own != hi:
            diffs.append(f"contract model and reference model disagree for {worker}: {hi_own} vs {hi} (harness bug)")
        if got > hi:
            diffs.append(f"{label} overcount for {worker}: target {got} > model {hi} (query {list(query)})")
        elif got < lo:
            diffs.append(f"{label} undercount for {worker}: target {got} < sticky-reachable lower bound {lo} "
                         f"(model {hi}; query {list(query)})")
    return diffs


def _scores_of(value: Any) -> dict[Worker, int] | None:
    scores = getattr(value, "scores", None)
    return dict(scores) if scores is not None else None


def event_error_differences(step: Step, expected: Outcome, actual: Outcome, contract: ContractModel,
                            surfaces_errors: bool = True) -> list[str]:
    """Decision 3's error rule for one ``apply_event`` step (see the module docstring)."""
    if actual.error is not None and actual.error.startswith("crash:"):
        return [f"target crashed: {actual.error} ({actual.message})"]
    if expected.error == actual.error:
        return []
    if not surfaces_errors and actual.error is None:
        return []  # the target logs and drops index errors (KvRouter); state effects are checked by queries
    worker_id, event = step.args[0], step.args[1]
    worker = (worker_id, event.dp_rank)
    if expected.error is None and actual.error in TOLERABLE_ON_DIRTY and worker in contract.dirty:
        sticky = contract.sticky.get(worker, set())
        data = event.data
        if isinstance(data, Stored) and actual.error == "ParentBlockNotFound" and data.parent_hash not in sticky:
            return []
        if isinstance(data, Removed) and actual.error == "BlockNotFound":
            if any(h not in sticky for h in data.block_hashes):
                return []
        return [f"error: target {actual.error} for a sticky-reachable block of dirty worker {worker} "
                f"(model accepted the event)"]
    return [f"error: model {expected.error or 'none'} ({expected.message}), "
            f"target {actual.error or 'none'} ({actual.message})"]


def dump_differences(dump: Sequence[RouterEvent], contract: ContractModel) -> list[str]:
    """Every dumped device block is held (same parent and L); every sticky block is dumped."""
    diffs = []
    dumped: dict[Worker, set[int]] = {}
    for item in dump:
        if item.storage_tier is not StorageTier.DEVICE or not isinstance(item.event.data, Stored):
            diffs.append(f"unexpected dump item {item!r}")
            continue
        worker = (item.worker_id, item.event.dp_rank)
        held = contract.held.get(worker, {})
        parent = item.event.data.parent_hash
        for block in item.event.data.blocks:
            if held.get(block.block_hash) != (parent, block.tokens_hash):
                diffs.append(f"dump lists block {block.block_hash} (parent {parent}, L {block.tokens_hash}) for "
                             f"{worker}, which the model holds as {held.get(block.block_hash)}")
            dumped.setdefault(worker, set()).add(block.block_hash)
            parent = block.block_hash
    for worker, sticky in sorted(contract.sticky.items()):
        missing = sorted(sticky - dumped.get(worker, set()))
        if missing:
            diffs.append(f"dump misses sticky-reachable blocks {missing} of {worker}")
    return diffs


def mirror_step(contract: ContractModel, step: Step, model_error: str | None) -> None:
    """Apply one recorded step to ``contract`` with the reference model's semantics and outcome."""
    if step.is_create:
        return
    if step.method == "apply_event":
        worker_id, event = step.args[0], step.args[1]
        tier = StorageTier(step.args[2]) if len(step.args) > 2 else StorageTier(
            step.kwargs.get("storage_tier", StorageTier.DEVICE))
        worker = (worker_id, event.dp_rank)
        data = event.data
        if isinstance(data, Stored) and model_error is None:
            contract.stored(worker, data.parent_hash, [(b.block_hash, b.tokens_hash) for b in data.blocks], tier)
        elif isinstance(data, Removed) and model_error in (None, "BlockNotFound"):
            contract.removed(worker, data.block_hashes, tier)
        elif isinstance(data, Cleared):
            contract.cleared(worker)
    elif step.method in ("remove_worker", "clear_all_blocks") and model_error is None:
        contract.remove_worker(step.args[0])
    elif step.method == "remove_worker_dp_rank" and model_error is None:
        contract.cleared((step.args[0], step.args[1]))


# -- the machine --------------------------------------------------------------------------------

WORKERS: tuple[Worker, ...] = ((1, 0), (1, 1), (2, 0), (3, 0))
ALPHABET = (11, 12, 13, 14)
MAX_DEPTH = 9


class PathUniverse:
    """Local-hash paths and their external hashes: ``E(path)`` is the chained sequence hash."""

    def __init__(self) -> None:
        self.path_of: dict[int, tuple[int, ...]] = {}

    def e(self, path: Sequence[int]) -> int:
        path = tuple(path)
        e = sequence_hashes(path)[-1]
        self.path_of[e] = path
        return e

    def blocks(self, parent: int | None, locals_: Sequence[int]) -> list[tuple[int, int]]:
        prefix = self.path_of[parent] if parent is not None else ()
        out = []
        for i, local in enumerate(locals_):
            out.append((self.e(prefix + tuple(locals_[: i + 1])), local))
        return out


class ContractComparison:
    """Mixin for any radix-index machine: compare against the contract instead of exactly.

    It keeps a :class:`ContractModel` derived from the recorded steps and the reference model's
    outcome of each (:func:`mirror_step`), so it needs nothing from the rules: it can be mixed into
    a machine whose generator it does not know (``contract-radix-events`` below, over the shared
    index event generator), and replay (``kvspec replay``, trace minimization) reproduces the
    comparison exactly.  Dumps are compared by :func:`dump_differences`, not as observers.
    """

    observers: ClassVar[Mapping[str, Sequence[str]]] = {}
    partial_errors: ClassVar[tuple[str, ...]] = ("BlockNotFound",)
    #: whether the target raises index errors (RadixTree) or drops them silently (KvRouter)
    surfaces_errors: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.contract = ContractModel()
        self._mirrored = 0
        self.run.compare = self.compare_contract

    def mirror_applied(self, upto: int | None = None) -> None:
        """Bring the contract model up to date with the steps applied so far (or the first ``upto``)."""
        upto = len(self.run.outcomes) if upto is None else upto
        for step, (expected, _) in list(zip(self.run.steps, self.run.outcomes))[self._mirrored:upto]:
            mirror_step(self.contract, step, expected.error)
        self._mirrored = max(self._mirrored, upto)

    def replay_step(self, step: Step) -> None:
        """Hook of :mod:`kvspec.stateful.traces.replay` (the comparator mirrors by itself; kept for clarity)."""
        self.mirror_applied()

    # -- comparison --------------------------------------------------------------------------

    def compare_contract(self, step: Step, expected: Outcome, actual: Outcome) -> list[str]:
        self.mirror_applied(len(self.run.outcomes) - 1)  # every step before this one
        if step.is_create:
            return [] if expected.error == actual.error else [f"construction: target {actual.error} {actual.message}"]
        if actual.error is not None and actual.error.startswith("crash:"):
            return [f"target crashed in {step.method}: {actual.error} ({actual.message})"]
        if step.method == "apply_event":
            return event_error_differences(step, expected, actual, self.contract, self.surfaces_errors)
        if expected.error != actual.error:
            return [f"error: model {expected.error or 'none'}, target {actual.error or 'none'} ({actual.message})"]
        if step.method == "find_matches":
            model_scores, target_scores = _scores_of(expected.value), _scores_of(actual.value)
            early = bool(step.args[1]) if len(step.args) > 1 else bool(step.kwargs.get("early_exit", False))
            diffs = score_differences(step.args[0], model_scores, target_scores, self.contract, early_exit=early)
            if tuple(getattr(actual.value, "frequencies", ())) != ():
                diffs.append(f"frequencies not empty: {actual.value.frequencies!r}")
            return diffs
        if step.method == "dump_events":
            return dump_differences(actual.value, self.contract)
        return []


class RadixContractMachine(ContractComparison, DifferentialMachine):
    """``contract-radix``: a device ``RadixIndex`` held to the bounds of ``docs/decisions.md`` D3 (module docstring).

    Tolerated deviations, and why: (1) a score below the model's but not below the sticky-reachable
    bound — Dynamo's compressed tree forgets blocks behind a hole (scrubbed node tails, detached
    subtrees), which the model keeps; (2) for a dirty worker only, ``ParentBlockNotFound`` /
    ``BlockNotFound`` where the model accepts, provided the named block is not sticky-reachable —
    the same forgotten blocks can no longer be named; (3) with ``early_exit=True``, any score from
    1 (where the sticky chain matches the first block) up to the full score — Dynamo stops at its
    own node boundaries.  Never tolerated: an overcount, an undercount below the sticky bound, an
    error the model does not raise, a missing error, a crash, a dump listing a block the worker
    does not hold or omitting a sticky-reachable one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.paths = PathUniverse()
        self.event_id = 0

    # -- helpers -----------------------------------------------------------------------------

    def next_id(self) -> int:
        self.event_id += 1
        return self.event_id

    def model_error(self) -> str | None:
        return self.run.outcomes[-1][0].error

    def send(self, worker: Worker, data: Any, tier: StorageTier = StorageTier.DEVICE) -> str | None:
        """Apply one event on both sides; then mirror the model's outcome into the contract model."""
        event = KvCacheEvent(self.next_id(), data, worker[1])
        args = (worker[0], event) if tier is StorageTier.DEVICE and not self.tiered else (worker[0], event, tier)
        self.attempt("index", "apply_event", *args)
        self.mirror_applied()
        return self.model_error()

    #: whether ``apply_event`` takes a tier argument (``TieredIndex``) or not (``RadixIndex``)
    tiered: ClassVar[bool] = False

    # -- rules -------------------------------------------------------------------------------

    @initialize()
    def create(self) -> None:
        self.run.create("index", "RadixIndex")

    #: relative weights of the event kinds the ``event`` rules draw (clears are rare: they wipe
    #: the state that the interesting cases need)
    event_weights: ClassVar[Mapping[str, int]] = {"store": 10, "remove": 6, "clear": 1, "drop_worker": 1,
                                                  "self_reference": 1}

    def dispatch(self, data: st.DataObject) -> None:
        kinds = [k for k, n in self.event_weights.items() for _ in range(n)]
        getattr(self, f"do_{data.draw(st.sampled_from(kinds), label='event kind')}")(data)

    @weight(3)  # events outweigh queries
    @rule(data=st.data())
    def event(self, data: st.DataObject) -> None:
        self.dispatch(data)

    def do_store(self, data: st.DataObject) -> None:
        worker = data.draw(st.sampled_from(WORKERS), label="worker")
        held = sorted(self.contract.held.get(worker, {}))
        choice = data.draw(st.integers(0, 9), label="parent kind")
        if choice < 3 or not held:
            parent = None
        elif choice < 9:
            parent = data.draw(st.sampled_from(held), label="parent")
        else:  # a parent this worker may not hold: another worker's block or a removed one
            universe = sorted(self.paths.path_of)
            parent = data.draw(st.sampled_from(universe), label="foreign parent") if universe else 12345
            self.paths.path_of.setdefault(parent, (ALPHABET[0],))
        depth = len(self.paths.path_of[parent]) if parent is not None else 0
        room = max(0, MAX_DEPTH - depth)
        locals_ = data.draw(st.lists(st.sampled_from(ALPHABET), min_size=min(1, room), max_size=min(4, room)),
                            label="locals")
        blocks = [StoredBlock(e, local) for e, local in self.paths.blocks(parent, locals_)]
        self.send(worker, Stored(parent, blocks))

    def do_remove(self, data: st.DataObject) -> None:
        worker = data.draw(st.sampled_from(WORKERS), label="worker")
        held = self.contract.held.get(worker, {})
        if data.draw(st.booleans(), label="leaves only"):
            pool = sorted(e for e in held if not any(p == e for p, _ in held.values()))
        else:
            pool = sorted(held)
        chosen = data.draw(st.lists(st.sampled_from(pool), unique=True, max_size=3), label="hashes") if pool else []
        if not chosen or data.draw(st.integers(0, 9), label="unknown?") == 0:
            others = sorted(set(self.paths.path_of) - set(held) - set(chosen)) or [424242]
            chosen.append(data.draw(st.sampled_from(others), label="unknown hash"))
        self.send(worker, Removed(chosen))

    def do_clear(self, data: st.DataObject) -> None:
        self.send(data.draw(st.sampled_from(WORKERS), label="worker"), Cleared())

    def do_drop_worker(self, data: st.DataObject) -> None:
        worker_id = data.draw(st.sampled_from(sorted({w[0] for w in WORKERS})), label="worker id")
        method = data.draw(st.sampled_from(["remove_worker", "clear_all_blocks"]), label="method")
        self.attempt("index", method, worker_id)
        self.mirror_applied()

    def do_self_reference(self, data: st.DataObject) -> None:
        """A Stored whose parent is one of its own blocks: InvalidBlockSequence on both sides."""
        worker = data.draw(st.sampled_from(WORKERS), label="worker")
        locals_ = data.draw(st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=3), label="locals")
        blocks = [StoredBlock(e, local) for e, local in self.paths.blocks(None, locals_)]
        parent = data.draw(st.sampled_from([b.block_hash for b in blocks]), label="self parent")
        self.send(worker, Stored(parent, blocks))

    @rule(data=st.data())
    def query(self, data: st.DataObject) -> None:
        self.attempt("index", "find_matches", self.draw_query(data), False)

    @rule(data=st.data())
    def query_early_exit(self, data: st.DataObject) -> None:
        """``early_exit=True``: only the relaxed bounds of :func:`score_differences` apply."""
        self.attempt("index", "find_matches", self.draw_query(data), True)

    @rule()
    def dump(self) -> None:
        self.attempt("index", "dump_events")

    def draw_query(self, data: st.DataObject) -> list[int]:
        known = sorted(self.paths.path_of)
        if known and data.draw(st.integers(0, 4), label="query kind") > 0:
            path = list(self.paths.path_of[data.draw(st.sampled_from(known), label="query path")])
            tail = data.draw(st.lists(st.sampled_from(ALPHABET), max_size=2), label="query tail")
            return path + tail
        return data.draw(st.lists(st.sampled_from(ALPHABET), max_size=6), label="query")


def events_contract_machine() -> type | None:
    """The shared radix machine (``kvspec.stateful.machines.radix``) with the contract comparison mixed in.

    Its event generator runs with the adversarial kinds that break the contract's preconditions
    switched off: worker-specific ``E``, re-filing a held ``E`` under another parent, a hash twice
    in one event.  Unknown parents, self-references, unknown removals, mid-chain removals and
    ``early_exit`` queries stay on.
    """
    try:
        from kvspec.stateful.machines.index_events import EventMix
        from kvspec.stateful.machines.radix import RadixMachine
    except ImportError:  # pragma: no cover - the shared machine is part of kvspec
        return None
    try:
        mix = EventMix(worker_specific_e=False, refile=False, repeat_in_batch=False, remove_repeat=False)
    except TypeError:  # the shared generator changed its knobs: skip rather than break discovery
        return None

    class RadixEventsContractMachine(ContractComparison, RadixMachine):
        """``contract-radix-events``: the shared radix rules, held to the contract (see class docs above)."""

    RadixEventsContractMachine.mix = mix
    return RadixEventsContractMachine


def machines() -> list[MachineSpec]:
    specs = [
        MachineSpec(
            "contract-radix",
            RadixContractMachine,
            ("RadixIndex",),
            description="device index held to Dynamo's documented contract (bounds, errors, dumps)",
            modes=("contract",),
        )
    ]
    events_machine = events_contract_machine()
    if events_machine is not None:
        specs.append(MachineSpec(
            "contract-radix-events",
            events_machine,
            ("RadixIndex",),
            description="the shared radix machine's event generator, held to the contract",
            modes=("contract",),
        ))
    return specs


