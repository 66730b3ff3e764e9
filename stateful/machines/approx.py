"""The ``approx`` machines: the approximate (predict-on-route) indexer against the reference model.

Rules read like its spec (``kvspec.model.approx``): a router *routes* a request to a worker
(``record_routing_decision``: the request's blocks are stored with a TTL), the explicit clock
*advances* (entries whose expiry has come are removed and returned), the index is *pruned* (down
to ``floor(max * ratio)`` entries, earliest expiry and deepest block first), workers and ranks are
*removed* (a router's ``clear_all_blocks`` too), and queries ask for scores.  The TTL, the size bound and the ratio are small (4 ticks,
6 to 8 entries, 0.5) so that expiry, refresh-by-rerouting and pruning all happen within a few
steps.  Compared exactly after every step: return values (expired and pruned entries in order,
scores) and errors, the live timers (``entries``/``approx_entries``), the clock, and the dump as
a multiset of blocks.

* ``approx`` — an ``ApproxIndex`` alone.
* ``approx-router-primary`` — a ``RouterIndexer`` without KV events: the ApproxIndex is the
  primary; a KV event is refused (``InvalidArgument``).
* ``approx-router-side`` — a ``RouterIndexer`` with KV events *and* a side ApproxIndex: the
  ``tiered`` machine's event rules (device and lower tiers, adversarial events) interleaved with
  routing decisions, clock advances and prunes; queries merge device scores (maximum) and seed
  lower tiers from the primary only.

Every router machine also tries the forbidden configuration (no KV events and a predicted TTL): both
sides must refuse it with :class:`~kvspec.errors.InvalidConfiguration`.
"""

from __future__ import annotations

from typing import ClassVar

from hypothesis.stateful import initialize, invariant, precondition, rule

from kvspec.errors import KvSpecError
from kvspec.events import KvCacheEvent, StorageTier, Stored, StoredBlock
from kvspec.stateful.engine.machine import DifferentialMachine, MachineSpec, weight
from kvspec.stateful.machines.index_events import number, pick, picks, tapes
from kvspec.stateful.machines.radix import index_compare
from kvspec.stateful.machines.tiered import TieredMachine

__all__ = ["ApproxMachine", "ApproxSideMachine", "RoutingRules", "machines"]

ROUTE_WORKERS = ((1, 0), (1, 1), (2, 0))
ROUTE_ALPHABET = (21, 22, 23, 24)


class RoutingRules:
    """Mixin: routing decisions, clock, prune, bad configuration (needs ``self.run``, ``self.subject``)."""

    subject: ClassVar[str]
    ttl: ClassVar[int] = 4

    def init_routing(self) -> None:
        #: L-paths routed so far (queries and re-routes follow them)
        self.routed: list[tuple[int, ...]] = []

    def draw_route(self, data) -> tuple[int, int, list[int]]:
        worker = pick(data, ROUTE_WORKERS)
        how = pick(data, ["fresh", "extend", "again", "prefix"]) if self.routed else "fresh"
        if how == "fresh":
            path = picks(data, ROUTE_ALPHABET, 1, 4)
        else:
            known = list(pick(data, self.routed))
            if how == "extend":
                path = known + picks(data, ROUTE_ALPHABET, 1, 2)
            elif how == "prefix":
                path = known[: number(data, 1, len(known))]
            else:
                path = known
        return worker[0], worker[1], path[:6]

    @rule(data=tapes())
    def route(self, data) -> None:
        worker_id, dp_rank, path = self.draw_route(data)
        self.run.call(self.subject, "record_routing_decision", worker_id, dp_rank, path)
        self.routed.append(tuple(path))

    @rule(data=tapes())
    def route_again(self, data) -> None:  # routing is the common case: two rules double its weight
        self.route(data)

    @rule(data=tapes())
    def advance(self, data) -> None:
        self.run.call(self.subject, "advance", pick(data, [1, 0, 2, 3, self.ttl, self.ttl + 1]))

    @rule()
    def prune(self) -> None:
        self.run.call(self.subject, "prune")

    def is_router(self) -> bool:
        return self.run.classes.get(self.subject) == "RouterIndexer"

    @rule(data=tapes())
    def remove_routed_worker(self, data) -> None:
        """Forget one rank, a worker, or (a router only) clear a worker's blocks in every index."""
        worker_id, dp_rank = pick(data, ROUTE_WORKERS)
        how = pick(data, ["rank", "worker", "clear"] if self.is_router() else ["rank", "worker"])
        if how == "rank":
            self.run.call(self.subject, "remove_worker_dp_rank", worker_id, dp_rank)
        elif how == "worker":
            self.run.call(self.subject, "remove_worker", worker_id)
        else:
            self.run.call(self.subject, "clear_all_blocks", worker_id)

    def draw_routed_query(self, data) -> list[int]:
        if self.routed and pick(data, [True, True, False]):
            path = list(pick(data, self.routed))
            return path[: number(data, 1, len(path))] + picks(data, ROUTE_ALPHABET, 0, 2)
        return picks(data, ROUTE_ALPHABET, 1, 5)

    @rule(data=tapes())
    def query_routed(self, data) -> None:
        self.run.call(self.subject, "find_matches", self.draw_routed_query(data), pick(data, [False, True]))

    @rule(data=tapes())
    def bad_input(self, data) -> None:
        """Negative ticks, a non-u64 hash, a worker out of range: the same typed error, no change."""
        how = pick(data, ["ticks", "hash", "worker"])
        try:
            if how == "ticks":
                self.run.call(self.subject, "advance", -1)
            elif how == "hash":
                self.run.call(self.subject, "record_routing_decision", 1, 0, [21, -5])
            else:
                self.run.call(self.subject, "record_routing_decision", -1, 0, [21])
        except KvSpecError:
            pass

    @precondition(lambda self: self.is_router())
    @rule()
    def forbidden_configuration(self) -> None:
        """No KV events *and* a predicted TTL: both sides refuse with InvalidConfiguration."""
        try:
            self.run.create("bad", "RouterIndexer", False, 4, 4)
        except KvSpecError:
            pass


class ApproxMachine(RoutingRules, DifferentialMachine):
    """An ``ApproxIndex`` (or a ``RouterIndexer`` without KV events) compared exactly."""

    subject = "idx"
    observers = {"ApproxIndex": ("entries", "now", "size", "dump_events"),
                 "RouterIndexer": ("approx_entries", "now", "records_routing_decisions", "dump_events")}
    compare = staticmethod(index_compare)

    def __init__(self) -> None:
        super().__init__()
        self.init_routing()

    @initialize()
    def create(self) -> None:
        if self.params["cls"] == "ApproxIndex":
            self.run.create(self.subject, "ApproxIndex", self.ttl, self.params["max_tree_size"], 0.5)
        else:
            self.run.create(self.subject, "RouterIndexer", False, self.ttl, None, self.params["max_tree_size"], 0.5)

    @precondition(lambda self: self.params["cls"] == "RouterIndexer")
    @rule(data=tapes())
    def kv_event_refused(self, data) -> None:
        """Without KV events the router refuses an engine's event (InvalidArgument), changing nothing."""
        event = KvCacheEvent(1, Stored(None, [StoredBlock(pick(data, ROUTE_ALPHABET), 21)]), 0)
        try:
            self.run.call(self.subject, "apply_event", 1, event)
        except KvSpecError:
            pass

    @precondition(lambda self: self.params["cls"] == "RouterIndexer")
    @rule(data=tapes())
    def query_by_tier(self, data) -> None:
        self.run.call(self.subject, "find_matches_by_tier", self.draw_routed_query(data))

    @rule()
    def dump_events(self) -> None:
        self.run.call(self.subject, "dump_events")

    @invariant()
    def target_structure_is_consistent(self) -> None:
        if self.subject in self.run.target_objects:
            check = getattr(self.run.target(self.subject), "_check", None)
            if check is not None:
                check()


class ApproxSideMachine(RoutingRules, TieredMachine):
    """A ``RouterIndexer`` with KV events and a side ApproxIndex: the tiered rules plus routing."""

    subject = "idx"
    index_class = "RouterIndexer"
    observers = {"RouterIndexer": ("approx_entries", "now", "records_routing_decisions", "dump_events")}

    def __init__(self) -> None:
        super().__init__()
        self.init_routing()

    @initialize()
    def create_index(self) -> None:
        self.run.create(self.subject, "RouterIndexer", True, 120, self.ttl, self.params["max_tree_size"], 0.5)

    @rule(data=tapes())
    def query_routed_by_tier(self, data) -> None:
        """Queries along routed paths; their device scores may come from either index."""
        query = self.draw_routed_query(data) if pick(data, [True, False]) else self.events.draw_query(data)
        self.run.call(self.subject, "find_matches_by_tier", query)

    @weight(3)  # the only rule where both indexes know a worker: where the merge rules matter
    @precondition(lambda self: self.events.held)
    @rule(data=tapes())
    def route_on_held_content(self, data) -> None:
        """Route (a prefix of) a chain a worker announced by KV events, device part and offloaded
        suffix alike, to that worker or another, and query the whole chain: both indexes then know
        the worker, with different scores."""
        tier = self.events.draw_tier(data)
        worker = self.events.draw_worker(data, holding=tier)
        blocks = self.events.blocks(tier, worker)
        if not blocks:
            return
        known = {}
        for faster in self.events._faster_or_equal(tier):
            known.update(self.events.blocks(faster, worker))
        full = list(self.events._path(pick(data, sorted(blocks)), known))
        # a routed prefix near either end: a short one leaves the prediction below the events'
        # score (the maximum must keep the events'), a long one reaches the offloaded suffix
        # (the prediction must not be counted twice); integer draws favour their low end
        length = number(data, 1, len(full))
        path = full[:length] if pick(data, [True, False]) else full[:len(full) + 1 - length]
        if pick(data, [False, False, True]):
            worker = pick(data, ROUTE_WORKERS)
        self.run.call(self.subject, "record_routing_decision", worker[0], worker[1], path)
        self.routed.append(tuple(path))
        self.run.call(self.subject, "find_matches_by_tier", full)  # where event and prediction overlap


def machines() -> list[MachineSpec]:
    return [
        MachineSpec(
            "approx",
            ApproxMachine,
            ("ApproxIndex",),
            params={"cls": "ApproxIndex", "max_tree_size": 6},
            description="approximate (TTL) index: routing decisions, clock advances, expiry, prune order, "
                        "remove_worker(_dp_rank), queries",
        ),
        MachineSpec(
            "approx-router-primary",
            ApproxMachine,
            ("RouterIndexer",),
            params={"cls": "RouterIndexer", "max_tree_size": 6},
            description="router without KV events: the approximate index is the primary; KV events refused",
        ),
        MachineSpec(
            "approx-router-side",
            ApproxSideMachine,
            ("RouterIndexer",),
            params={"max_tree_size": 8},
            description="router with KV events and a side approximate index: events on every tier, routing "
                        "decisions, expiry, prune; merged device scores, lower tiers from the primary only",
        ),
    ]
