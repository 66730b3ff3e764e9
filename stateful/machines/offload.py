"""The offload machines: the G1 manager with a G2 pool (``OffloadKvManager``) against the model.

Both reuse an existing machine's rules and add the offload's: clock ticks (to the next copy's
deadline, or a few ticks on) and swap-ins of a chain's leading G2 run (its G1 prefix pinned by a
``Use`` first, as the scheduler pins it, released once the copy completed).

* ``offload-manager[*]`` — the ``manager[*]`` machines' rules (realistic requests, raw
  operations, bad input) on an ``OffloadKvManager`` with a 1-3 block G2 pool and 1-2 ticks per
  block on each link.  Compared after every step: return values and errors, every event (device
  and host, in one id sequence), G1 counters, the G2 content in eviction order, the copies in
  flight and the clock.  Invariants on the model's stream, against what each tier holds: the
  router's device view equals the blocks G1 holds; its host view equals G2's content *exactly* —
  a block announced on the host before its copy arrived, a G2 eviction not announced, or a
  ``Removed`` on a tier that did not hold the block all fail; withheld slots fit G1.
* ``offload-pipeline`` — the ``pipeline`` machine's workers and requests, each rank an
  ``OffloadKvManager`` whose device and host events reach one ``TieredIndex``.  After every step,
  for every worker rank and query, the router's device score equals the rank's G1-held prefix and
  its host hits equal the G2-held run right after it (no overcount, no block counted twice,
  nothing announced before it is there); the index's host-tier blocks per rank equal G2's.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from kvspec.events import Removed, StorageTier, Stored
from kvspec.hashing import block_hashes, sequence_hashes
from kvspec.protocol import Deref, FullBlock, Use
from kvspec.sequence import IdSource
from kvspec.stateful.engine.machine import MachineSpec, weight
from kvspec.stateful.machines.manager import PATHS, ManagerMachine
from kvspec.stateful.machines.strategies import choose, current_of, plh_of
from kvspec.stateful.machines.pipeline import PipelineMachine, held_hashes, held_prefix

__all__ = ["OffloadManagerMachine", "OffloadPipelineMachine", "machines"]

MANAGER_OBSERVERS = ["drain_events", "num_active_blocks", "num_active_block_refs", "num_inactive_blocks",
                     "active_refcounts", "eviction_order", "g2_blocks", "pending_transfers",
                     "earliest_offload_deadline", "now"]
HOST = StorageTier.HOST_PINNED
advances = st.sampled_from(["deadline", "deadline", 0, 1, 2, 5])


def next_tick(manager_now: int, deadline: int | None, how) -> int:
    if how == "deadline":
        return max(manager_now, deadline) if deadline is not None else manager_now + 1
    return manager_now + how


class OffloadManagerMachine(ManagerMachine):
    """``offload-manager[*]``: see the module docstring."""

    observers = {"OffloadKvManager": MANAGER_OBSERVERS}

    @initialize(capacity=st.integers(1, 8), block_size=st.integers(2, 4), seed=st.integers(0, 255),
                dp_rank=st.sampled_from([0, 0, 3]), num_g2=st.integers(1, 3), ticks=st.sampled_from([(1, 1), (2, 1),
                                                                                                    (1, 2)]))
    def create(self, capacity, block_size, seed, dp_rank, num_g2, ticks):
        self.capacity, self.block_size, self.dp_rank = capacity, block_size, dp_rank
        self.run.create("mgr", "OffloadKvManager", capacity, block_size, num_g2_blocks=num_g2,
                        offload_ticks_per_block=ticks[0], onboard_ticks_per_block=ticks[1],
                        eviction=self.params["eviction"], dp_rank=dp_rank)
        self.ids = IdSource(seed)
        self.requests = []
        self.raw_full: Counter = Counter()
        self.raw_partials: set[int] = set()
        self.router: Counter = Counter()  # device view, from the events
        self.host: Counter = Counter()  # host view, from the events
        self.parked: list[tuple[int, list[FullBlock]]] = []  # (swap-in deadline, pinned prefix)
        self.next_event_id = 0
        self.consistent = True
        self.ledger_ok = True

    # -- the event stream, per tier ------------------------------------------------------------

    def _track_events(self) -> None:
        for tiered in self._events_of_last_step():
            event = tiered.event
            assert event.event_id == self.next_event_id, f"event id {event.event_id}, expected {self.next_event_id}"
            assert event.dp_rank == self.dp_rank
            self.next_event_id += 1
            view = self.router if tiered.storage_tier is StorageTier.DEVICE else self.host
            if isinstance(event.data, Stored):
                parent = event.data.parent_hash
                if self.consistent and view is self.router:
                    assert parent is None or self.router[parent] > 0, f"device Stored under {parent}, not held"
                for block in event.data.blocks:
                    if self.consistent:
                        assert view[block.block_hash] == 0, f"{block.block_hash} stored twice on {tiered.storage_tier}"
                    view[block.block_hash] += 1
            elif isinstance(event.data, Removed):
                for h in event.data.block_hashes:
                    assert view[h] > 0, f"Removed {h} from {tiered.storage_tier}, which does not hold it"
                    view[h] -= 1
                    if view[h] == 0:
                        del view[h]

    # -- offload rules ---------------------------------------------------------------------------

    def _seen(self) -> dict:
        return self.run.outcomes[-1][0].observed if self.run.outcomes else {}

    @rule(how=advances)
    def offload_tick(self, how):
        """Move the clock: to the next copy's deadline, or a few ticks on; then release parked pins."""
        model = self.run.model("mgr")
        self.process_tick(next_tick(model.now(), model.earliest_offload_deadline(), how))

    @precondition(lambda self: self.run.model("mgr").earliest_offload_deadline() is not None)
    @rule()
    def offload_complete(self):
        """Complete the next copy (ticks are what make offloads land: this doubles their weight)."""
        model = self.run.model("mgr")
        self.process_tick(max(model.now(), model.earliest_offload_deadline()))

    def process_tick(self, now: int) -> None:
        self.attempt("mgr", "tick", now)
        self._track_events()
        for deadline, blocks in [p for p in self.parked if p[0] <= now]:
            self.parked.remove((deadline, blocks))
            self._process_realistic(Deref(blocks))

    def _chains(self) -> list[list[tuple[int, object, int]]]:
        """Candidate chains ``[(sequence hash, plh, local hash), ...]``: the raw paths, then the
        full blocks of every live request."""
        chains = [[(current_of(p[: i + 1]), plh_of(p[: i + 1]), current_of(p[: i + 1]) % 1000)
                   for i in range(len(p))] for p in PATHS]
        for req in self.requests:
            seq = req.seq
            fulls = [b.hash for b in seq.unique_blocks if isinstance(b, FullBlock)][: len(seq.plhs)]
            locals_ = block_hashes(seq.tokens, seq.block_size)
            if seq.enable_prefix_caching and fulls:
                chains.append(list(zip(fulls, seq.plhs, locals_)))
        return chains

    @precondition(lambda self: self.run.model("mgr").g2_blocks())
    @rule(data=st.data(), in_g2=st.booleans())
    def offload_swap_in(self, data, in_g2):
        """Swap in the G2 run after a chain's G1-held prefix (the prefix pinned meanwhile); with
        ``in_g2``, a chain whose first block missing from G1 is in G2 (when there is one)."""
        model = self.run.model("mgr")
        held = set(model.active_refcounts()) | set(model.eviction_order())
        g2 = set(model.g2_blocks())
        chains = self._chains()
        if in_g2:
            def swappable(chain):
                skip = held_prefix(held, [h for h, _, _ in chain])
                return skip < len(chain) and chain[skip][0] in g2

            chains = [c for c in chains if swappable(c)] or chains
        chain = choose(data, chains)
        skip = held_prefix(held, [h for h, _, _ in chain])
        pins = [FullBlock(h) for h, _, _ in chain[:skip]]
        if pins:
            n, error = self._process_realistic(Use(pins, [l for _, _, l in chain[:skip]],
                                                   [p for _, p, _ in chain[:skip]]))
            if error is not None:
                return
            if n < len(pins):
                self._process_realistic(Deref(pins[:n]))
                return
        parent = chain[skip - 1][0] if skip else None
        outcome, _ = self.attempt("mgr", "swap_in", [p for _, p, _ in chain[skip:]], parent)
        self._track_events()
        deadline = getattr(outcome, "deadline", None)
        if pins and deadline is not None:
            self.parked.append((deadline, pins))
        elif pins:
            self._process_realistic(Deref(pins))

    @rule(which=st.sampled_from(["back", "paths", "parent"]))
    def offload_bad_input(self, which):
        model = self.run.model("mgr")
        if which == "back":
            self.attempt("mgr", "tick", model.now() - 1)
        elif which == "paths":
            self.attempt("mgr", "swap_in", [current_of(PATHS[0])], None)
        else:
            self.attempt("mgr", "swap_in", [plh_of(PATHS[0])], -1)
        self._track_events()

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def manager_invariants(self):
        seen = self._seen()
        if "active_refcounts" not in seen:
            return
        active, inactive = seen["active_refcounts"], seen["eviction_order"]
        assert len(inactive) == seen["num_inactive_blocks"]
        assert seen["num_active_blocks"] + seen["num_inactive_blocks"] <= self.capacity
        if self.ledger_ok:
            refs = sum(len(r.allocated_blocks()) for r in self.requests)
            refs += sum(self.raw_full.values()) + len(self.raw_partials) + sum(len(b) for _, b in self.parked)
            assert seen["num_active_block_refs"] == refs, "references differ from the driver's ledger"
        if self.consistent:
            assert set(self.router) == set(active) | set(inactive), "router device view != blocks G1 holds"
            assert set(self.host) == set(seen["g2_blocks"]), \
                f"router host view {sorted(self.host)} != G2 content {sorted(seen['g2_blocks'])}"


class OffloadPipelineMachine(PipelineMachine):
    """``offload-pipeline``: see the module docstring."""

    observers = {"OffloadKvManager": MANAGER_OBSERVERS, "TieredIndex": ["dump_events"]}

    def _start(self, subject: str) -> None:
        w, rank, capacity = self.ranks[subject]
        self.parked = getattr(self, "parked", [])
        self.parked = [p for p in self.parked if p[0] != subject]
        self.run.create(subject, "OffloadKvManager", capacity, self.block_size, num_g2_blocks=1 + capacity % 3,
                        offload_ticks_per_block=1 + w % 2, eviction=self.eviction, dp_rank=rank)

    def deliver(self, subject: str) -> None:
        events = self.run.outcomes[-1][0].observed.get("drain_events") or []
        worker_id = self.ranks[subject][0]
        for tiered in events:
            _, error = self.attempt("index", "apply_event", worker_id, tiered.event, tiered.storage_tier)
            assert error is None, f"index rejected {subject}'s event {tiered!r}: {error!r}"

    def process(self, subject: str, op):
        value, error = self.attempt(subject, "process", op)
        assert error is None, f"{subject}.process({op!r}) raised {error!r} in a realistic flow"
        self.deliver(subject)
        return value

    @rule(data=st.data(), how=advances)
    def offload_tick(self, data, how, subject=None):
        subject = subject or choose(data, sorted(self.ranks))
        model = self.run.model(subject)
        now = next_tick(model.now(), model.earliest_offload_deadline(), how)
        _, error = self.attempt(subject, "tick", now)
        assert error is None
        self.deliver(subject)
        for entry in [p for p in self.parked if p[0] == subject and p[1] <= now]:
            self.parked.remove(entry)
            self.process(subject, Deref(entry[2]))

    def _g2_overlap(self, req) -> int:
        """1 when the request's first block missing from G1 is in G2 (a swap-in would copy it)."""
        manager = self.run.model(req.subject)
        hashes = [b.hash for b in req.seq.unique_blocks if isinstance(b, FullBlock)][: len(req.seq.plhs)]
        skip = held_prefix(held_hashes(manager), hashes)
        return int(skip < len(hashes) and hashes[skip] in set(manager.g2_blocks()))

    @precondition(lambda self: any(self.run.model(s).earliest_offload_deadline() is not None
                                                  for s in self.ranks))
    @rule(data=st.data())
    def offload_complete(self, data):
        """Complete the next copy of some rank (doubles the weight of ticks)."""
        busy = [s for s in sorted(self.ranks) if self.run.model(s).earliest_offload_deadline() is not None]
        self.offload_tick(data, "deadline", choose(data, busy))

    @weight(2)  # rare: it needs a live request and blocks already offloaded to G2
    @precondition(lambda self: self.requests and any(self.run.model(s).g2_blocks() for s in self.ranks))
    @rule(data=st.data(), in_g2=st.booleans())
    def offload_swap_in(self, data, in_g2):
        """A request about to be admitted swaps in its G2 run after its G1-held prefix (``in_g2``:
        one of the requests with blocks in G2, when there is one)."""
        overlapping = [r for r in self.requests if self._g2_overlap(r) > 0] if in_g2 else []
        req = choose(data, overlapping or self.requests)
        seq = req.seq
        fulls = [b for b in seq.unique_blocks if isinstance(b, FullBlock)][: len(seq.plhs)]
        if not fulls or not seq.enable_prefix_caching:
            return
        held = held_hashes(self.run.model(req.subject))
        skip = held_prefix(held, [b.hash for b in fulls])
        pins = fulls[:skip]
        if pins:
            locals_ = block_hashes(seq.tokens, seq.block_size)[:skip]
            if self.process(req.subject, Use(pins, locals_, list(seq.plhs[:skip]))) < len(pins):
                return
        outcome, error = self.attempt(req.subject, "swap_in", list(seq.plhs[skip:len(fulls)]),
                                      pins[-1].hash if pins else None)
        assert error is None
        self.deliver(req.subject)
        deadline = getattr(outcome, "deadline", None)
        if pins and deadline is not None:
            self.parked.append((req.subject, deadline, pins))
        elif pins:
            self.process(req.subject, Deref(pins))

    @invariant()
    def router_matches_what_workers_hold(self):
        queries = self._queries()
        for side, objects in (("model", self.run.model_objects), ("target", self.run.target_objects)):
            index = objects["index"]
            check = getattr(index, "_check", None)
            if check is not None:
                check()
            host_dump: dict = {}
            for event in index.dump_events():
                if event.storage_tier is HOST:
                    for block in event.event.data.blocks:
                        host_dump.setdefault((event.worker_id, event.event.dp_rank), set()).add(block.block_hash)
            for subject, (w, r, _) in self.ranks.items():
                g2 = set(objects[subject].g2_blocks())
                assert host_dump.get((w, r), set()) == g2, \
                    f"{side}: router host view of {(w, r)} {sorted(host_dump.get((w, r), ()))} != G2 {sorted(g2)}"
            for toks in queries:
                locals_ = block_hashes(toks, self.block_size)
                chain = sequence_hashes(locals_)
                matches = index.find_matches_by_tier(locals_)
                host = matches.lower_tier.get(HOST)
                for subject, (w, r, _) in self.ranks.items():
                    device = held_prefix(held_hashes(objects[subject]), chain)
                    g2 = set(objects[subject].g2_blocks())
                    extra = held_prefix(g2, chain[device:])
                    got = (matches.device.scores.get((w, r), 0), host.hits.get((w, r), 0) if host else 0)
                    assert got == (device, extra), \
                        f"{side}: router credits {(w, r)} with {got} (device, host) on {list(toks)}; it holds {(device, extra)}"


def machines() -> list[MachineSpec]:
    specs = [
        MachineSpec(
            name=f"offload-manager[{eviction}]",
            factory=OffloadManagerMachine,
            requires=("OffloadKvManager",),
            params={"eviction": eviction},
            description=f"G1 manager with a G2 offload pool (eviction={eviction}): withheld slots, copy clock, "
                        "host announcements on arrival, swap-in; router tier views == tier contents",
        )
        for eviction in ("lineage", "lru")
    ]
    specs.append(MachineSpec(
        name="offload-pipeline",
        factory=OffloadPipelineMachine,
        requires=("OffloadKvManager", "TieredIndex"),
        description="workers of OffloadKvManagers publishing device + host events into one TieredIndex; "
                    "router (device, host) credit == (G1 prefix, G2 run after it)",
    ))
    return specs
