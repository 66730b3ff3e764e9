"""State machines for :class:`BlockPool`: one per eviction backend x duplication policy.

Every step goes to the model and the target; after each step the observers ``available_blocks``,
``inactive_len``, ``refcounts`` and ``eviction_order`` must agree (and, after an error, be
unchanged).  The machine keeps its own ledger of what the *model* handed out — the mutable ids
and one entry per reference held — to choose valid next steps, and mixes in invalid ones.

Identities come from a small tree of token paths (alphabet of 3 symbols, depth <= 5).  A path
``(0, 1, 1)`` names the chain of three blocks ``Plh(0, 11, None)``, ``Plh(1, 112, 11)``,
``Plh(2, 1122, 112)``: ``current`` spells the path, so traces stay readable and chains share
prefixes all the time.  Capacities are 1-12 blocks, so eviction is constant.  An *impostor*
(same ``(position, current)`` as a tree node, another parent) checks the collision rule.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from kvspec.hashing import Plh
from kvspec.model.eviction import BACKENDS
from kvspec.stateful.engine.machine import DifferentialMachine, MachineSpec
from kvspec.stateful.machines.strategies import ALPHABET, chain_of, choose, impostor_of, path_of, plh_of

MAX_DEPTH = 5

paths = st.lists(st.integers(0, ALPHABET - 1), min_size=1, max_size=MAX_DEPTH).map(tuple)
#: skewed towards a few short paths, so the same chains come back often
hot_paths = st.one_of(
    st.sampled_from([(0,), (0, 0), (0, 0, 0), (0, 1), (0, 0, 1), (1,), (1, 0)]),
    paths,
)


class PoolMachine(DifferentialMachine):
    observers = {"BlockPool": ["available_blocks", "free_blocks", "total_blocks", "inactive_len", "refcounts",
                               "eviction_order"]}

    def __init__(self) -> None:
        super().__init__()
        self.mutable: list[int] = []  # ids the model allocated and nobody registered or dropped
        self.held: list[int] = []  # one entry per reference the model handed out
        self.identity: dict[int, Plh] = {}  # id of a held block -> its Plh

    # -- setup ------------------------------------------------------------------------------------

    @initialize(capacity=st.integers(1, 12), frequency=st.sampled_from(["exact", "exact", "exact:12"]),
                thresholds=st.sampled_from([None, (1, 2, 3), (2, 4, 6)]))
    def create(self, capacity, frequency, thresholds):
        """MultiLRU also draws low custom thresholds, so one extra touch changes a tier."""
        self.capacity = capacity
        extra = {"thresholds": thresholds} if thresholds and BACKENDS[self.params["eviction"]].needs_frequency else {}
        self.run.create("pool", "BlockPool", capacity, eviction=self.params["eviction"],
                        duplication=self.params["duplication"], frequency=frequency, **extra)

    # -- ledger -----------------------------------------------------------------------------------

    def _took(self, ids, plhs=None):
        self.held.extend(ids)
        if plhs is not None:
            for block_id, plh in zip(ids, plhs):
                self.identity[block_id] = plh

    def _allocate(self, method, n):
        value, error = self.attempt("pool", method, n)
        if error is None and value is not None:
            ids = value if method == "allocate" else value[0]
            self.mutable.extend(ids)
        return value

    def _register(self, block_id, plh):
        value, error = self.attempt("pool", "register", block_id, plh)
        if error is None:
            self.mutable.remove(block_id)
            self._took([value], [plh])
        return value, error

    # -- valid steps ------------------------------------------------------------------------------

    @rule(n=st.integers(0, 4))
    def allocate(self, n):
        self._allocate("allocate", n)

    @rule(n=st.integers(0, 4))
    def allocate_with_evictions(self, n):
        self._allocate("allocate_with_evictions", n)

    @rule(extra=st.integers(0, 3))
    def allocate_too_many(self, extra):
        """Just past what is available: must return None and change nothing."""
        n = self.run.model("pool").available_blocks() + 1 + extra
        self._allocate("allocate_with_evictions", n)

    @precondition(lambda self: self.mutable)
    @rule(data=st.data())
    def release_mutable(self, data):
        block_id = choose(data, self.mutable)
        _, error = self.attempt("pool", "release_mutable", block_id)
        if error is None:
            self.mutable.remove(block_id)

    @precondition(lambda self: self.mutable)
    @rule(data=st.data(), path=hot_paths)
    def register(self, data, path):
        self._register(choose(data, self.mutable), plh_of(path))

    @precondition(lambda self: self.mutable and (self.held or self.run.model("pool").inactive_len()))
    @rule(data=st.data(), from_inactive=st.booleans())
    def register_live(self, data, from_inactive):
        """Register a mutable block under an identity that is live right now (held or cached):
        a duplicate under Allow, a dedup onto the primary under Reject (resurrecting it if cached)."""
        cached = self.run.model("pool").eviction_order()
        if from_inactive and cached or not self.held:
            plh = choose(data, cached)
        else:
            plh = self.identity[choose(data, self.held)]
        self._register(choose(data, self.mutable), plh)

    @rule(path=hot_paths)
    def use(self, path):
        """The mocker's way to take a chain: match the cached prefix, allocate+register the rest."""
        chain = chain_of(path)
        hits, error = self.attempt("pool", "match_blocks", chain)
        if error is not None:
            return
        self._took(hits, chain)
        for plh in chain[len(hits):]:
            got = self._allocate("allocate_with_evictions", 1)
            if got is None:
                return
            self._register(got[0][0], plh)

    @rule(path=hot_paths, start=st.integers(0, 2), skip=st.integers(-1, 4))
    def match(self, path, start, skip):
        """A (partial) chain, maybe with a hole at ``skip``: the match stops at the first miss."""
        chain = chain_of(path)[start:]
        if 0 <= skip < len(chain):
            del chain[skip]
        hits, error = self.attempt("pool", "match_blocks", chain)
        if error is None:
            self._took(hits, chain)

    @rule(path=hot_paths)
    def match_twice(self, path):
        """The same identity twice in one call gives two references on one primary."""
        plh = plh_of(path)
        hits, error = self.attempt("pool", "match_blocks", [plh, plh])
        if error is None:
            self._took(hits, [plh, plh])

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def release(self, data):
        block_id = choose(data, self.held)
        _, error = self.attempt("pool", "release", block_id)
        if error is None:
            self.held.remove(block_id)

    @precondition(lambda self: self.held)
    @rule(newest_first=st.booleans(), count=st.integers(1, 6))
    def release_run(self, newest_first, count):
        """Release several references in acquisition order (or its reverse): chains go inactive
        root-first or leaf-first, which is what the lineage policies tell apart."""
        order = list(reversed(self.held)) if newest_first else list(self.held)
        for block_id in order[:count]:
            _, error = self.attempt("pool", "release", block_id)
            if error is None:
                self.held.remove(block_id)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), keep=st.integers(-1, 3), newest_first=st.booleans())
    def release_chain(self, data, keep, newest_first):
        """Take a held block, and release one reference on each held block of its chain, root
        first (or leaf first), except one interior block: an active block inside an inactive
        chain, the case where the ghost-parent quirk (``docs/upstream.md`` P10.1 rule 4) decides the order."""
        path = path_of(self.identity[choose(data, self.held)])
        if path is None:
            return
        chain = chain_of(path)
        keep = 1 + keep % (len(chain) - 2) if keep >= 0 and len(chain) >= 3 else -1
        order = list(enumerate(chain))
        if newest_first:
            order.reverse()
        for index, plh in order:
            if index == keep:
                continue
            block_id = next((i for i in self.held if self.identity.get(i) == plh), None)
            if block_id is None:
                continue
            _, error = self.attempt("pool", "release", block_id)
            if error is None:
                self.held.remove(block_id)

    @precondition(lambda self: self.held)
    @rule(offsets=st.lists(st.integers(1, 4), min_size=1, max_size=3, unique=True))
    def release_recent(self, offsets):
        """Release some of the newest references in the given order (offset 1 = newest), e.g. the
        first and last block of a chain but not the middle one: the ghost-parent quirk (``docs/upstream.md`` P10.1)."""
        chosen = [self.held[-o] for o in offsets if o <= len(self.held)]
        for block_id in chosen:
            _, error = self.attempt("pool", "release", block_id)
            if error is None:
                self.held.remove(block_id)

    @rule(chosen=st.lists(hot_paths, max_size=4))
    def check_presence(self, chosen):
        self.attempt("pool", "check_presence", [plh_of(p) for p in chosen] + [impostor_of((0,))])

    # -- invalid steps ----------------------------------------------------------------------------

    @rule(block_id=st.integers(-1, 14))
    def release_unheld(self, block_id):
        """Any id nobody holds a reference on (double release, mutable, free, out of range)."""
        if block_id not in self.held:
            self.attempt("pool", "release", block_id)

    @rule(block_id=st.integers(-1, 14), path=hot_paths)
    def misuse_slot(self, block_id, path):
        """register / release_mutable on a slot that is not mutable."""
        if block_id not in self.mutable:
            self.attempt("pool", "register", block_id, plh_of(path))
            self.attempt("pool", "release_mutable", block_id)

    @precondition(lambda self: self.mutable)
    @rule(data=st.data(), path=hot_paths, of_live=st.booleans())
    def register_impostor(self, data, path, of_live):
        """An impostor of a hot path or, when ``of_live``, of an identity live right now (held or
        cached) — the case where the pool must refuse it (``DuplicateLineage``)."""
        if of_live:
            held = [self.identity[i] for i in self.held if i in self.identity]
            live = [p for p in held + self.run.model("pool").eviction_order() if path_of(p) is not None]
            if live:
                path = path_of(choose(data, live))
        self._register(choose(data, self.mutable), impostor_of(path))

    @rule(which=st.sampled_from(["negative", "bool", "not_plh", "bad_list", "str_id"]))
    def bad_arguments(self, which):
        if which == "negative":
            self.attempt("pool", "allocate", -1)
        elif which == "bool":
            self.attempt("pool", "allocate_with_evictions", True)
        elif which == "not_plh":
            block_id = self.mutable[0] if self.mutable else 0
            self.attempt("pool", "register", block_id, 11)
        elif which == "bad_list":
            self.attempt("pool", "match_blocks", [plh_of((0,)), "11"])
        else:
            self.attempt("pool", "release", "0")

    # -- invariants -------------------------------------------------------------------------------

    @invariant()
    def ledger_agrees(self):
        model = self.run.model("pool")
        refcounts = model.refcounts()
        held = Counter(self.held)
        assert {i: n for i, n in refcounts.items() if n} == dict(held), (refcounts, held)
        # every slot is free, inactive, mutable or an active registered block
        assert model.available_blocks() + len(self.mutable) + len(refcounts) == model.total_blocks()
        # nothing is both held and cached
        cached = model.eviction_order()
        assert len(cached) == model.inactive_len()
        assert not set(cached) & {self.identity[i] for i in held}


def machines() -> list[MachineSpec]:
    specs = []
    for eviction in BACKENDS:
        for duplication in ("allow", "reject"):
            specs.append(MachineSpec(
                name=f"pool[{eviction},{duplication}]",
                factory=PoolMachine,
                requires=("BlockPool",),
                params={"eviction": eviction, "duplication": duplication},
                description=f"BlockPool with the {eviction} backend and duplication={duplication}",
            ))
    return specs
