"""Reference inactive-pool backends: which cached (inactive) block is evicted next (``docs/upstream.md`` P10).

A block enters its backend when its primary's last reference is released, leaves it when it is
*resurrected* (a ``match_blocks`` hit or a registration of the same identity) or *evicted* (an
allocation found the free list too short).  Every backend offers the same small interface:

* ``insert(plh, block_id)`` — a released primary becomes inactive;
* ``remove(plh) -> block_id`` — resurrection; ``plh`` must be present;
* ``evict() -> (plh, block_id)`` — remove and return the next victim;
* ``order() -> list[Plh]`` — every inactive identity, next victim first, without changing anything;
* ``plh in backend``, ``len(backend)``.

These are written for reading, not speed: the lineage graph is plain dicts and "the leaves" are
recomputed on every eviction.  :mod:`kvspec.impl.eviction` holds the fast versions.
"""

from __future__ import annotations

from typing import Any

import attrs

from kvspec.errors import DuplicateLineage, InvalidArgument
from kvspec.frequency import DEFAULT_THRESHOLDS, check_thresholds
from kvspec.hashing import Plh

Key = tuple[int, int]




class _Backend:
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
        self.entries: list[tuple[Plh, int]] = []  # oldest release first

    def clone(self) -> LruIndex:
        twin = LruIndex()
        twin.entries = list(self.entries)
        return twin

    def insert(self, plh: Plh, block_id: int) -> None:
        self.entries.append((plh, block_id))

    def remove(self, plh: Plh) -> int:
        for i, (p, block_id) in enumerate(self.entries):
            if p == plh:
                del self.entries[i]
                return block_id
        raise KeyError(plh)

    def evict(self) -> tuple[Plh, int]:
        return self.entries.pop(0)

    def __contains__(self, plh: Plh) -> bool:
        return any(p == plh for p, _ in self.entries)

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

    def __init__(self, frequency: Any, thresholds: tuple[int, int, int] = DEFAULT_THRESHOLDS) -> None:
        thresholds = check_thresholds(thresholds)
        if frequency is None:
            raise InvalidArgument("MultiLRU needs a frequency tracker (upstream's build fails without one)")
        self.frequency = frequency
        self.thresholds = tuple(thresholds)
        self.tiers: list[list[tuple[Plh, int]]] = [[], [], [], []]

    def clone(self) -> MultiLruIndex:
        twin = MultiLruIndex(self.frequency, self.thresholds)  # the tracker is shared: order() never inserts
        twin.tiers = [list(t) for t in self.tiers]
        return twin

    def insert(self, plh: Plh, block_id: int) -> None:
        self.tiers[tier_for(self.frequency.count(plh), self.thresholds)].append((plh, block_id))

    def remove(self, plh: Plh) -> int:
        for tier in self.tiers:
            for i, (p, block_id) in enumerate(tier):
                if p == plh:
                    del tier[i]
                    return block_id
        raise KeyError(plh)

    def evict(self) -> tuple[Plh, int]:
        for tier in self.tiers:
            if tier:
                return tier.pop(0)
        raise IndexError("evict from an empty pool")

    def __contains__(self, plh: Plh) -> bool:
        return any(p == plh for tier in self.tiers for p, _ in tier)

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
        if policy not in ("tick", "fifo"):
            raise InvalidArgument(f"unknown lineage leaf policy {policy!r}")
        self.policy = policy
        self.nodes: dict[Key, Node] = {}
        self.next_tick = 0
        self.next_leaf_seq = 0

    def clone(self) -> LineageIndex:
        twin = LineageIndex(self.policy)
        twin.nodes = {k: attrs.evolve(n, children=set(n.children)) for k, n in self.nodes.items()}
        twin.next_tick, twin.next_leaf_seq = self.next_tick, self.next_leaf_seq
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
        if plh.parent_key is not None and node.parent is None:  # link to the parent, once
            parent = self.nodes.get(plh.parent_key)
            if parent is None:  # rule 4: a placeholder ghost, itself linked to nothing
                parent = self.nodes[plh.parent_key] = Node()
            parent.children.add(key)
            node.parent = plh.parent_key
        if not node.children:
            self._became_leaf(node)

    def remove(self, plh: Plh) -> int:
        node = self.nodes.get(plh.key)
        if node is None or node.plh != plh:
            raise KeyError(plh)
        block_id = node.block_id
        node.plh = node.block_id = node.tick = node.leaf_since = None  # rule 3/5: now a Ghost
        key = plh.key
        while not self.nodes[key].children:  # prune childless ghosts upward
            pruned = self.nodes.pop(key)
            if pruned.parent is None:
                break
            parent = self.nodes[pruned.parent]
            parent.children.discard(key)
            if parent.children:
                break
            if parent.is_real:
                self._became_leaf(parent)
                break
            key = pruned.parent
        return block_id

    def leaves(self) -> list[Node]:
        """The evictable nodes: every node without children (all of them Real, rule 1)."""
        return [n for n in self.nodes.values() if not n.children]

    def victim(self) -> Node:
        """Rule 2: oldest tick (Tick) or oldest leaf-since (Fifo) among the leaves."""
        if self.policy == "tick":
            return min(self.leaves(), key=lambda n: n.tick)
        return min(self.leaves(), key=lambda n: n.leaf_since)

    def evict(self) -> tuple[Plh, int]:
        node = self.victim()
        plh = node.plh
        return plh, self.remove(plh)

    def _became_leaf(self, node: Node) -> None:
        node.leaf_since = self.next_leaf_seq
        self.next_leaf_seq += 1

    # -- queries ------------------------------------------------------------------------------

    def __contains__(self, plh: Plh) -> bool:
        node = self.nodes.get(plh.key)
        return node is not None and node.plh == plh

    def __len__(self) -> int:
        return sum(1 for n in self.nodes.values() if n.is_real)


def make_backend(eviction: str, frequency: Any, thresholds: tuple[int, int, int] = DEFAULT_THRESHOLDS) -> _Backend:
    """The backend named by ``BlockPool(eviction=...)``."""
    if eviction == "lineage":
        return LineageIndex("tick")
    if eviction == "lineage_fifo":
        return LineageIndex("fifo")
    if eviction == "lru":
        return LruIndex()
    if eviction == "multi_lru":
        return MultiLruIndex(frequency, thresholds)
    raise InvalidArgument(f"unknown eviction backend {eviction!r}; use lineage, lineage_fifo, lru or multi_lru")


__all__ = ["DEFAULT_THRESHOLDS", "LineageIndex", "LruIndex", "MultiLruIndex", "Node", "check_thresholds", "make_backend", "tier_for"]
