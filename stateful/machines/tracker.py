"""State machines for the cache-status trackers: ``tracker[dedup]`` and ``tracker[passthrough]``.

Three sources (vLLM, TRT-LLM, KVBM) store and remove blocks of a small tree of token paths
(4 token blocks, depth <= 4, so prefixes are shared all the time).  External hashes follow one
of three naming schemes, chosen per call:

* ``shared`` — the name spells the path (``s012``), the same for every source: KVBM republishing
  the engine's chain;
* ``source`` — the name spells source and path (``v012``, ``t012``, ``k012``): every source
  hashes on its own, so dedup must go by content and position;
* ``pool`` — a few free names (``x0``-``x2``) reused at any position: remapped names, self
  parents and orphaned blocks.

Rules store whole chains for one to three sources in a row (from any start position, so the
first parent may be unknown), re-send the last store, store single blocks under any name and
parent, move a name from one block to another and release the first, remove chains leaf first (again for several sources), remove one name from one source or
from every source, clear rarely, query ``get_block_sources`` (dedup), and send bad input.  Every
return value and every drained event must equal the model's; after every rule the dedup machine
also reads ``get_block_sources`` for every name on both sides and records the query as a step
only when they disagree (so a lost or stale mapping shows up at once, not at its next remove).

Invariants, on the model *and* the target, from the observed event stream (``docs/upstream.md`` M8, item 7):

* dedup: a store/remove answers True exactly when it queued one event (Store/Remove), both
  tagged ``Device``; per wire hash, Removes never outnumber Stores since the last ClearAll; a
  Store's parent is a hash with an outstanding Store; ``num_blocks()`` equals the outstanding
  Stores; ``_check()`` holds if the object has one.
* passthrough: every store/remove answers True and queues exactly its input; ``num_blocks() == 0``.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from kvspec.events import StorageTier
from kvspec.stateful.engine.machine import DifferentialMachine, MachineSpec
from kvspec.tracker_events import (
    ConsolidatedClearAll,
    ConsolidatedRemove,
    ConsolidatedStore,
    EventSource,
    tracker_tier,
)

#: token content of the tree's block symbols; (1, 2) and (1, 2, 3) differ, (5,) is a 1-token block
TOKEN_BLOCKS = ((1, 2), (3, 4), (1, 2, 3), (5,))
POOL = ("x0", "x1", "x2")
PREFIX = {EventSource.VLLM: "v", EventSource.TRTLLM: "t", EventSource.KVBM: "k"}

sources = st.sampled_from(list(EventSource))
source_lists = st.lists(sources, min_size=1, max_size=3)
tiers = st.sampled_from([None, StorageTier.DEVICE, StorageTier.HOST_PINNED, StorageTier.DISK, StorageTier.EXTERNAL])
paths = st.lists(st.integers(0, len(TOKEN_BLOCKS) - 1), min_size=1, max_size=4).map(tuple)
#: a few chains most of the time, so sources keep meeting on the same blocks
HOT = [(0,), (0, 1), (0, 1, 2), (1,), (0, 0)]
hot_paths = st.one_of(st.sampled_from(HOT), st.sampled_from(HOT), paths)
schemes = st.sampled_from(["shared", "shared", "source", "pool"])
loras = st.sampled_from([None, None, "lora-a"])

#: (method, args) that every tracker must reject with InvalidArgument, leaving state unchanged
BAD_CALLS = [
    ("handle_store", (7, EventSource.VLLM, [1, 2], None, 2)),
    ("handle_store", ("s0", "vllm", [1, 2], None, 2)),
    ("handle_store", ("s0", EventSource.VLLM, [1, -2], None, 2)),
    ("handle_store", ("s0", EventSource.VLLM, [1, 2**32], None, 2)),
    ("handle_store", ("s0", EventSource.VLLM, [1, 2], 0, 2)),
    ("handle_store", ("s0", EventSource.VLLM, [1, 2], None, -1)),
    ("handle_store", ("s0", EventSource.KVBM, [1, 2], None, 2, None, "host_pinned")),
    ("handle_store", ("s0", EventSource.KVBM, [1, 2], None, 2, None, None, 2**31)),
    ("handle_remove", ("s0", "kvbm")),
    ("handle_remove", (None, EventSource.KVBM)),
    ("handle_remove", ("s0", EventSource.KVBM, "disk")),
]


def name_of(scheme: str, source: EventSource, path: tuple[int, ...]) -> str:
    """The external hash a source uses for the block at the end of ``path`` under ``scheme``."""
    spelled = "".join(str(s) for s in path)
    if scheme == "shared":
        return f"s{spelled}"
    if scheme == "source":
        return f"{PREFIX[source]}{spelled}"
    return POOL[(len(path) - 1) % len(POOL)]


#: a fixed universe of names for single stores/removes/queries (fixed, so shrinking stays stable):
#: every name the chain rules give the first two blocks of the hot chains, the pool, and a stranger
NAMES = sorted(
    {name_of(scheme, source, path[:k]) for path in HOT for k in (1, 2) if k <= len(path)
     for scheme in ("shared", "source") for source in EventSource} | set(POOL)
) + ["unknown"]
names = st.sampled_from(NAMES)


class TrackerMachine(DifferentialMachine):
    observers = {"DedupTracker": ["drain_events", "num_blocks"], "PassthroughTracker": ["drain_events", "num_blocks"]}

    def __init__(self) -> None:
        super().__init__()
        self.cls = self.params["cls"]
        self.dedup = self.cls == "DedupTracker"
        self.last_store: tuple | None = None  # arguments of the last handle_store, for re-sends
        self.seen = 0  # outcomes already checked by the stream invariants
        self.outstanding = (Counter(), Counter())  # per side: wire hash -> Stores minus Removes

    @initialize()
    def create(self) -> None:
        self.run.create("tracker", self.cls)

    def _store(self, ext, source, tokens, parent, tier, lora=None, dp_rank=None) -> None:
        self.last_store = (ext, source, list(tokens), parent, len(tokens), lora, tier, dp_rank)
        self.run.call("tracker", "handle_store", *self.last_store)

    # -- rules ------------------------------------------------------------------------------

    @rule(who=source_lists, path=hot_paths, scheme=schemes, tier=tiers, start=st.integers(0, 3))
    def store_chain(self, who, path, scheme, tier, start):
        """Each source in ``who`` stores ``path[start:]`` block by block, each under the previous
        one's name (the subscriber splitting one engine event); ``start > 0`` names a parent that
        may be unknown.  Several sources in a row: KVBM offloading what the engine holds."""
        start = min(start, len(path) - 1)
        for source in who:
            for i in range(start, len(path)):
                parent = name_of(scheme, source, path[:i]) if i > 0 else None
                ext = name_of(scheme, source, path[: i + 1])
                self._store(ext, source, TOKEN_BLOCKS[path[i]], parent, tier)

    @rule(who=source_lists, path=hot_paths, scheme=schemes, tier=tiers, depth=st.integers(1, 4))
    def remove_chain(self, who, path, scheme, tier, depth):
        """Each source in ``who`` releases the last ``depth`` blocks of a chain, leaf first."""
        for source in who:
            for i in reversed(range(max(0, len(path) - depth), len(path))):
                self.run.call("tracker", "handle_remove", name_of(scheme, source, path[: i + 1]), source, tier)

    @precondition(lambda self: self.last_store is not None)
    @rule()
    def store_again(self):
        """The last store is delivered twice (a re-sent event)."""
        self.run.call("tracker", "handle_store", *self.last_store)

    @rule(source=sources, ext=names, parent=st.none() | names, block=st.integers(0, len(TOKEN_BLOCKS) - 1),
          tier=tiers, lora=loras)
    def store_one(self, source, ext, parent, block, tier, lora):
        """Any name, any parent (known, unknown, itself, none): remapped names, orphans, self parents."""
        self._store(ext, source, TOKEN_BLOCKS[block], parent, tier, lora, dp_rank=1 if lora else None)

    @rule(source=sources, first=st.integers(0, len(TOKEN_BLOCKS) - 1), second=st.integers(0, len(TOKEN_BLOCKS) - 1),
          alias=st.sampled_from(POOL), tier=tiers)
    def rename_then_release(self, source, first, second, alias, tier):
        """A name moves between blocks: ``alias`` names a root block beside its shared name, then
        another root block; releasing the first block (by its shared name) must leave the name
        that moved away alone.  The other rules reach this only through long chains of pool names."""
        shared = name_of("shared", source, (first,))
        self._store(shared, source, TOKEN_BLOCKS[first], None, tier)
        self._store(alias, source, TOKEN_BLOCKS[first], None, tier)
        self._store(alias, source, TOKEN_BLOCKS[second], None, tier)
        self.run.call("tracker", "handle_remove", shared, source, tier)

    @rule(source=sources, ext=names, tier=tiers)
    def remove_one(self, source, ext, tier):
        self.run.call("tracker", "handle_remove", ext, source, tier)

    @rule(ext=names, tier=tiers)
    def remove_everywhere(self, ext, tier):
        """Every source drops the block named ``ext``: its end of life across all tiers."""
        for source in EventSource:
            self.run.call("tracker", "handle_remove", ext, source, tier)

    @rule(now=st.sampled_from([False, False, False, False, True]))
    def clear_all(self, now):
        if now:  # rare: a clear wipes what the other rules built
            self.run.call("tracker", "handle_clear_all")

    @precondition(lambda self: self.dedup)
    @rule(ext=names)
    def query_sources(self, ext):
        """``get_block_sources``; every third name is asked through its deprecated upstream alias
        ``get_block_tiers`` (chosen by name, so the alias costs no draw of its own)."""
        alias = NAMES.index(ext) % 3 == 2
        self.run.call("tracker", "get_block_tiers" if alias else "get_block_sources", ext)

    @rule(bad=st.sampled_from(BAD_CALLS))
    def bad_input(self, bad):
        method, args = bad
        _value, error = self.attempt("tracker", method, *args)
        assert type(error).__name__ == "InvalidArgument", f"{method}{args!r} was accepted"

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def stream_is_consistent(self) -> None:
        run = self.run
        for index in range(self.seen, len(run.outcomes)):
            step = run.steps[index]
            for side, outcome in enumerate(run.outcomes[index]):
                if step.is_create or outcome.error is not None:
                    continue
                events = outcome.observed.get("drain_events", [])
                if self.dedup:
                    self._check_dedup(step, outcome.value, events, self.outstanding[side], side)
                else:
                    self._check_passthrough(step, outcome.value, events, side)
                assert outcome.observed.get("num_blocks") == (sum(self.outstanding[side].values()) if self.dedup else 0), (
                    f"{'model target'.split()[side]}: num_blocks {outcome.observed.get('num_blocks')} "
                    f"!= outstanding Stores {sum(self.outstanding[side].values())}"
                )
        self.seen = len(run.outcomes)
        if self.dedup and "tracker" in run.model_objects:
            # Who holds what, by every name: read directly, and only recorded as a step (which
            # then diverges with the full trace) when the two sides disagree.
            model, target = run.both("tracker")
            for name in NAMES:
                try:
                    same = model.get_block_sources(name) == target.get_block_sources(name)
                except Exception:  # noqa: BLE001 - let the recorded step report the crash
                    same = False
                if not same:
                    run.call("tracker", "get_block_sources", name)

    @staticmethod
    def _check_dedup(step, value, events, outstanding: Counter, side: int) -> None:
        who = ("model", "target")[side]
        if step.method in ("handle_store", "handle_remove"):
            assert len(events) == (1 if value else 0), f"{who}: {step.describe()} returned {value} with {events}"
        elif step.method == "handle_clear_all":
            assert events == [ConsolidatedClearAll()], f"{who}: clear queued {events}"
        else:
            assert events == [], f"{who}: {step.method} queued {events}"
        for event in events:
            if isinstance(event, ConsolidatedStore):
                assert event.tier is StorageTier.DEVICE, f"{who}: Store tagged {event.tier}"
                assert isinstance(step.args[1], EventSource) and event.source == step.args[1].value
                outstanding[event.block_hash] += 1
                if event.parent_hash is not None:
                    assert outstanding[event.parent_hash] > 0, f"{who}: Store under unannounced parent {event}"
            elif isinstance(event, ConsolidatedRemove):
                assert event.tier is StorageTier.DEVICE, f"{who}: Remove tagged {event.tier}"
                assert outstanding[event.block_hash] > 0, f"{who}: Remove of unannounced {event.block_hash!r}"
                outstanding[event.block_hash] -= 1
                if outstanding[event.block_hash] == 0:
                    del outstanding[event.block_hash]
            else:
                outstanding.clear()

    @staticmethod
    def _check_passthrough(step, value, events, side: int) -> None:
        who = ("model", "target")[side]
        args = step.args
        if step.method == "handle_store":
            ext, source, tokens, parent, size, lora, tier = args[:7]
            want = ConsolidatedStore(ext, parent, tokens, size, lora, source.value, tracker_tier(tier))
            assert value is True and events == [want], f"{who}: {step.describe()} -> {value}, {events}"
        elif step.method == "handle_remove":
            ext, source, tier = args
            want = ConsolidatedRemove(ext, source.value, tracker_tier(tier))
            assert value is True and events == [want], f"{who}: {step.describe()} -> {value}, {events}"
        elif step.method == "handle_clear_all":
            assert events == [ConsolidatedClearAll()]


def machines() -> list[MachineSpec]:
    return [
        MachineSpec(
            name="tracker[dedup]",
            factory=TrackerMachine,
            requires=("DedupTracker",),
            params={"cls": "DedupTracker"},
            description="DedupTracker: three sources over shared token chains, shared or remapped external hashes",
        ),
        MachineSpec(
            name="tracker[passthrough]",
            factory=TrackerMachine,
            requires=("PassthroughTracker",),
            params={"cls": "PassthroughTracker"},
            description="PassthroughTracker: forwards every store/remove/clear unchanged",
        ),
    ]
