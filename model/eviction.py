"""Reference inactive-pool backends: which cached (inactive) block is evicted next (``docs/upstream.md`` P10).

A block enters its backend when its primary's last reference is released, leaves it when it is
*resurrected* (a ``match_blocks`` hit or a registration of the same identity) or *evicted* (an
allocation found the free list too short).  Every backend offers the same small interface:

* ``insert(plh, block_id)`` — a released primary becomes inactive;
* ``remove(plh) -> block_id`` — resurrection; ``plh`` must be present;
* ``evict() -> (plh, block_id)`` — remove and return the next victim;
* ``order() -> list[Plh]`` — every inactive identity, next victim first, without changing anything;
* ``plh in backend``, ``len(backend)``;
* ``Backend.build(frequency, thresholds)`` — the backend as ``BlockPool(eviction=name)`` makes it.

:data:`BACKENDS` is the one table of backend names (they are part of the trace schema):
``BlockPool(eviction=...)``, ``KvManager(eviction=...)``, the state machines and the benchmarks
all read it, so a new backend is one class and one entry here (and its twin in
:mod:`kvspec.impl.eviction`).

These are written for reading, not speed: the lineage graph is plain dicts and the victim is the
minimum over the current leaves.  :mod:`kvspec.impl.eviction` holds the fast versions.
"""

from __future__ import annotations

import heapq
from typing import Any

import attrs

from kvspec import checks
from kvspec.checks import DEFAULT_THRESHOLDS
from kvspec.errors import DuplicateLineage
from kvspec.hashing import Plh

__all__ = ["BACKENDS", "DEFAULT_THRESHOLDS", "HashMapIndex", "LineageFifoIndex", "LineageIndex", "LruIndex",
           "MultiLruIndex", "Node", "make_backend", "tier_for"]

Key = tuple[int, int]


class _Backend:
    #: does the backend read a frequency tracker?  (``KvManager`` then makes one by default)
    needs_frequency = False

    @classmethod
    def build(cls, frequency: Any, thresholds: tuple[int, int, int]) -> _Backend:
        """The backend as ``BlockPool(eviction=<its name>)`` makes it."""
        return cls()

    def clone(self) -> _Backend:
        """An independent copy (each backend copies its own containers; Plhs are immutable)."""
        raise NotImplementedError

    def order(self) -> list[Plh]:
        """Eviction order: drain a copy, so the real backend is untouched."""
        shadow = self.clone()
        return [shadow.evict()[0] for _ in range(len(shadow))]


# --- LRU -------------------------------------------------------------------------------------


class LruIndex(_Backend):
    """LRU by *release* time (``docs/upstream.md`` P10.2).

    The only "use" an inactive block ever sees is its insertion (matches remove it from the
    pool), so the least recently used entry is simply the one released longest ago.
    """

    def __init__(self) -> None:
        self.entries: dict[Plh, int] = {}  # a dict keeps insertion order: oldest release first

    def clone(self) -> LruIndex:
        twin = type(self)()
        twin.entries = dict(self.entries)
        return twin

    def insert(self, plh: Plh, block_id: int) -> None:
        self.entries[plh] = block_id

    def remove(self, plh: Plh) -> int:
        return self.entries.pop(plh)

    def evict(self) -> tuple[Plh, int]:
        plh = next(iter(self.entries))
        return plh, self.entries.pop(plh)

    def order(self) -> list[Plh]:
        return list(self.entries)

    def __contains__(self, plh: Plh) -> bool:
        return plh in self.entries

    def __len__(self) -> int:
        return len(self.entries)


# --- MultiLRU --------------------------------------------------------------------------------


def tier_for(count: int, thresholds: tuple[int, int, int] = DEFAULT_THRESHOLDS) -> int:
    """``count < t1`` -> 0 (cold), ``< t2`` -> 1 (warm), ``< t3`` -> 2 (hot), else 3 (very hot)."""
    for tier, threshold in enumerate(thresholds):
        if count < threshold:
            return tier
    return len(thresholds)


class MultiLruIndex(_Backend):
    """Four LRU lists ("tiers"); the tier is chosen **once**, at insertion (``docs/upstream.md`` P10.3).

    * tier = :func:`tier_for` of ``frequency.count(plh)`` read when the block is released;
      nothing re-tiers an entry while it sits in the pool (not even decay);
    * the victim is the oldest release of the lowest non-empty tier: every cold block goes before
      any warm one, and so on.
    """

    needs_frequency = True

    def __init__(self, frequency: Any, thresholds: tuple[int, int, int] = DEFAULT_THRESHOLDS) -> None:
        thresholds = checks.multi_lru_options(frequency, thresholds)
        self.frequency = frequency
        self.thresholds = tuple(thresholds)
        self.tiers: list[dict[Plh, int]] = [{}, {}, {}, {}]  # each in release order

    @classmethod
    def build(cls, frequency: Any, thresholds: tuple[int, int, int]) -> MultiLruIndex:
        return cls(frequency, thresholds)

    def clone(self) -> MultiLruIndex:
        twin = MultiLruIndex(self.frequency, self.thresholds)  # the tracker is shared: order() never inserts
        twin.tiers = [dict(t) for t in self.tiers]
        return twin

    def insert(self, plh: Plh, block_id: int) -> None:
        self.tiers[tier_for(self.frequency.count(plh), self.thresholds)][plh] = block_id

    def remove(self, plh: Plh) -> int:
        for tier in self.tiers:
            if plh in tier:
                return tier.pop(plh)
        raise KeyError(plh)

    def evict(self) -> tuple[Plh, int]:
        for tier in self.tiers:
            if tier:
                plh = next(iter(tier))
                return plh, tier.pop(plh)
        raise IndexError("evict from an empty pool")

    def order(self) -> list[Plh]:
        return [plh for tier in self.tiers for plh in tier]

    def __contains__(self, plh: Plh) -> bool:
        return any(plh in tier for tier in self.tiers)

    def __len__(self) -> int:
        return sum(len(t) for t in self.tiers)


# --- Lineage ---------------------------------------------------------------------------------


@attrs.define
class Node:
    """A lineage-graph node.  ``plh is None`` means a *Ghost* (no inactive block here)."""

    plh: Plh | None = None
    block_id: int | None = None
    parent: Key | None = None  # set at most once, when the node is first made Real
    children: set[Key] = attrs.field(factory=set)
    tick: int | None = None  # Tick policy: when this node last became Real (= was released)
    leaf_since: int | None = None  # Fifo policy: when this node last became a leaf

    @property
    def is_real(self) -> bool:
        return self.plh is not None


class LineageIndex(_Backend):
    """The default backend: evict *leaves* of the lineage graph only (``docs/upstream.md`` P10.1).

    The graph's nodes are keyed by ``Plh.key = (position, current)``; a block's parent is the node
    at ``Plh.parent_key``.  A node is *Real* (an inactive block) or a *Ghost* (a placeholder kept
    only while it has children).  Rules, numbered as in the spec:

    1. Only leaves (nodes without children) are evictable.  Ghosts without children are pruned at
       once, so every leaf is Real.
    2. ``policy="tick"`` (default) evicts the leaf released longest ago — the tick is taken when
       the node becomes Real and kept while the node is interior, so a parent that becomes a leaf
       again goes back to its *original* place.  ``policy="fifo"`` evicts the leaf that became a
       leaf longest ago, so a re-leafed parent goes to the *tail*.
    3. Removing a node (eviction or resurrection) turns it into a Ghost; childless ghosts are
       pruned upward and a Real parent left without children becomes a leaf.
    4. A placeholder Ghost created for an absent parent is **not** linked to *its* parent (it does
       not know its own parent key).  So an active block in the middle of a chain does not
       protect its inactive ancestors — upstream's quirk, kept on purpose.
    5. Resurrecting an interior node leaves a Ghost that keeps its parent and child links.
    7. Lookups compare the full :class:`Plh`.  A second Real node for one key is refused
       (upstream panics with "Hash collision"); the pool never lets that happen.
    """

    def __init__(self, policy: str = "tick") -> None:
        checks.choice("lineage leaf policy", policy, checks.LEAF_POLICIES)
        self.policy = policy
        self.nodes: dict[Key, Node] = {}
        # the nodes without children (rule 1), in the order they became leaves (the Fifo order)
        self.leaf_keys: dict[Key, None] = {}
        # Tick: ``(tick, key)`` of the leaves, smallest first; an entry whose node is no longer a
        # leaf with that tick is stale and skipped (rebuilt when stale entries outnumber leaves)
        self.by_tick: list[tuple[int, Key]] = []
        self.real = 0  # Real nodes: the backend's length
        self.next_tick = 0
        self.next_leaf_seq = 0

    def clone(self) -> LineageIndex:
        twin = LineageIndex(self.policy)
        twin.nodes = {k: attrs.evolve(n, children=set(n.children)) for k, n in self.nodes.items()}
        twin.leaf_keys, twin.by_tick = dict(self.leaf_keys), list(self.by_tick)
        twin.real, twin.next_tick, twin.next_leaf_seq = self.real, self.next_tick, self.next_leaf_seq
        return twin

    # -- the rules ----------------------------------------------------------------------------

    def insert(self, plh: Plh, block_id: int) -> None:
        key = plh.key
        node = self.nodes.get(key)
        if node is not None and node.is_real:
            raise DuplicateLineage(f"lineage key {key} already holds {node.plh} (inserting {plh})")
        if node is None:  # a fresh node; otherwise a Ghost is promoted and keeps its links
            node = self.nodes[key] = Node()
        node.plh, node.block_id = plh, block_id
        node.tick = self.next_tick
        self.next_tick += 1
        self.real += 1
        if plh.parent_key is not None and node.parent is None:  # link to the parent, once
            parent = self.nodes.get(plh.parent_key)
            if parent is None:  # rule 4: a placeholder ghost, itself linked to nothing
                parent = self.nodes[plh.parent_key] = Node()
            parent.children.add(key)
            self.leaf_keys.pop(plh.parent_key, None)  # a parent is no leaf
            node.parent = plh.parent_key
        if not node.children:
            self._became_leaf(key)

    def remove(self, plh: Plh) -> int:
        node = self.nodes.get(plh.key)
        if node is None or node.plh != plh:
            raise KeyError(plh)
        block_id = node.block_id
        node.plh = node.block_id = node.tick = node.leaf_since = None  # rule 3/5: now a Ghost
        self.real -= 1
        key = plh.key
        self.leaf_keys.pop(key, None)  # a Ghost is never a leaf: pruned below if it has no children
        while not self.nodes[key].children:  # prune childless ghosts upward
            pruned = self.nodes.pop(key)
            if pruned.parent is None:
                break
            parent = self.nodes[pruned.parent]
            parent.children.discard(key)
            if parent.children:
                break
            if parent.is_real:
                self._became_leaf(pruned.parent)
                break
            key = pruned.parent
        return block_id

    def leaves(self) -> list[Node]:
        """The evictable nodes: every node without children (all of them Real, rule 1).

        ``leaf_keys`` is kept up to date by ``insert``/``remove``, so this costs O(leaves), not
        O(nodes): evicting a long chain block by block stays linear."""
        return [self.nodes[key] for key in self.leaf_keys]

    def victim(self) -> Node:
        """Rule 2: oldest tick (Tick) or oldest leaf-since (Fifo) among the leaves.

        Fifo: ``leaf_keys`` is in leaf-since order, so the victim is its first key.  Tick: the
        first entry of ``by_tick`` that still names a leaf with that tick.  Both equal
        ``min(self.leaves(), key=...)`` and cost O(log n) amortised instead of O(leaves).
        """
        if self.policy == "fifo":
            return self.nodes[next(iter(self.leaf_keys))]
        while True:
            tick, key = self.by_tick[0]
            if key in self.leaf_keys and self.nodes[key].tick == tick:
                return self.nodes[key]
            heapq.heappop(self.by_tick)  # stale

    def evict(self) -> tuple[Plh, int]:
        node = self.victim()
        plh = node.plh
        return plh, self.remove(plh)

    def _became_leaf(self, key: Key) -> None:
        node = self.nodes[key]
        self.leaf_keys[key] = None  # at the end: the newest leaf
        node.leaf_since = self.next_leaf_seq
        self.next_leaf_seq += 1
        if self.policy == "tick":
            heapq.heappush(self.by_tick, (node.tick, key))
            if len(self.by_tick) > 2 * len(self.leaf_keys) + 32:  # drop stale entries: memory O(leaves)
                self.by_tick = [(self.nodes[k].tick, k) for k in self.leaf_keys]
                heapq.heapify(self.by_tick)

    # -- queries ------------------------------------------------------------------------------

    def __contains__(self, plh: Plh) -> bool:
        node = self.nodes.get(plh.key)
        return node is not None and node.plh == plh

    def __len__(self) -> int:
        return self.real


class LineageFifoIndex(LineageIndex):
    """The lineage backend with the Fifo leaf policy (``eviction="lineage_fifo"``)."""

    def __init__(self) -> None:
        super().__init__("fifo")


# --- HashMap + FIFO reuse ---------------------------------------------------------------------


class HashMapIndex(_Backend):
    """kvbm-logical's HashMap backend with its FIFO reuse policy (``eviction="hashmap"``).

    Rule: a map ``plh -> block id`` plus a FIFO of insertion sequence numbers.  Every insertion
    (a release into the inactive pool) takes the next sequence number; the victim is the entry
    with the *smallest* sequence number, i.e. the block released longest ago; a match
    (resurrection) removes the entry from both.  Nothing else reorders entries, so the eviction
    order is the release order — the same order as :class:`LruIndex`, reached by a different
    structure upstream (a ``BTreeMap`` keyed by a monotonic counter instead of an LRU list).
    Upstream drains the map in arbitrary hash order only in ``allocate_all``, which kvspec's pool
    never calls.
    """

    def __init__(self) -> None:
        self.block_of: dict[Plh, int] = {}
        self.seq_of: dict[Plh, int] = {}  # insertion sequence number; dict order == seq order
        self.next_seq = 0

    def clone(self) -> HashMapIndex:
        twin = HashMapIndex()
        twin.block_of, twin.seq_of, twin.next_seq = dict(self.block_of), dict(self.seq_of), self.next_seq
        return twin

    def insert(self, plh: Plh, block_id: int) -> None:
        self.block_of[plh] = block_id
        self.seq_of[plh] = self.next_seq
        self.next_seq += 1

    def remove(self, plh: Plh) -> int:
        del self.seq_of[plh]
        return self.block_of.pop(plh)

    def evict(self) -> tuple[Plh, int]:
        plh = next(iter(self.seq_of))  # the smallest sequence number: seq_of is in insertion order
        return plh, self.remove(plh)

    def order(self) -> list[Plh]:
        return sorted(self.seq_of, key=self.seq_of.__getitem__)

    def __contains__(self, plh: Plh) -> bool:
        return plh in self.block_of

    def __len__(self) -> int:
        return len(self.block_of)


#: every eviction backend by its name in ``BlockPool(eviction=...)`` (the names are trace schema)
BACKENDS: dict[str, type[_Backend]] = {
    "lineage": LineageIndex,
    "lineage_fifo": LineageFifoIndex,
    "lru": LruIndex,
    "multi_lru": MultiLruIndex,
    "hashmap": HashMapIndex,
}


def make_backend(eviction: str, frequency: Any, thresholds: tuple[int, int, int] = DEFAULT_THRESHOLDS) -> _Backend:
    """The backend named by ``BlockPool(eviction=...)``, from :data:`BACKENDS`."""
    return BACKENDS[checks.choice("eviction backend", eviction, BACKENDS)].build(frequency, thresholds)
