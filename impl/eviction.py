"""Fast inactive-pool backends (same rules as :mod:`kvspec.model.eviction`, ``docs/upstream.md`` P10).

Interface (shared with the model): ``insert(plh, block_id)``, ``remove(plh) -> block_id``,
``evict() -> (plh, block_id)``, ``order() -> list[Plh]`` (no mutation), ``len()``, plus ``_check()``.
The pool keeps its own ``plh -> slot`` map, so backends never need a membership scan.

Complexities (n = inactive blocks):

=============  =================  ===================  ================  ==============
backend        insert             remove (resurrect)   evict             order()
=============  =================  ===================  ================  ==============
LRU            O(1)               O(1)                 O(1)              O(n)
MultiLRU       O(1) + count()     O(1)                 O(1) (4 tiers)    O(n)
Lineage/Tick   O(log n) amort.    O(depth pruned)      O(log n) amort.   O(n log n)
Lineage/Fifo   O(1)               O(depth pruned)      O(1)              O(n)
HashMap/FIFO   O(1)               O(1)                 O(1) amortised    O(n log n)
=============  =================  ===================  ================  ==============

"depth pruned" is the number of childless ghosts removed upward, each created by one earlier
insert, so it is O(1) amortised.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from typing import Any

from kvspec import checks
from kvspec.checks import DEFAULT_THRESHOLDS
from kvspec.errors import DuplicateLineage
from kvspec.hashing import Plh

__all__ = ["BACKENDS", "HashMapIndex", "LineageFifoIndex", "LineageIndex", "LruIndex", "MultiLruIndex", "make_backend", "tier_for"]


class _Built:
    """``Backend.build(frequency, thresholds)``: how ``BlockPool(eviction=name)`` makes a backend."""

    __slots__ = ()
    needs_frequency = False

    @classmethod
    def build(cls, frequency: Any, thresholds: tuple[int, int, int]) -> Any:
        return cls()


def tier_for(count: int, thresholds: tuple[int, int, int]) -> int:
    a, b, c = thresholds
    return 0 if count < a else 1 if count < b else 2 if count < c else 3


# --- LRU -------------------------------------------------------------------------------------


class LruIndex(_Built):
    """OrderedDict ``plh -> block_id`` in release order (oldest first).  Invariant: nothing else."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: OrderedDict[Plh, int] = OrderedDict()

    def insert(self, plh: Plh, block_id: int) -> None:
        self._entries[plh] = block_id

    def remove(self, plh: Plh) -> int:
        return self._entries.pop(plh)

    def evict(self) -> tuple[Plh, int]:
        return self._entries.popitem(last=False)

    def order(self) -> list[Plh]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def _check(self) -> None:
        assert len(set(self._entries.values())) == len(self._entries), "a block id is cached twice"


# --- MultiLRU --------------------------------------------------------------------------------


class MultiLruIndex(_Built):
    """Four LRU OrderedDicts; ``_tier[plh]`` says which one holds ``plh``.

    Invariants: ``_tier`` has exactly the keys of the four tiers, each key in one tier; the tier
    was fixed at insertion from ``frequency.count`` and never changes while the entry lives.
    """

    __slots__ = ("_frequency", "_thresholds", "_tiers", "_tier")
    needs_frequency = True

    @classmethod
    def build(cls, frequency: Any, thresholds: tuple[int, int, int]) -> MultiLruIndex:
        return cls(frequency, thresholds)

    def __init__(self, frequency: Any, thresholds: tuple[int, int, int] = DEFAULT_THRESHOLDS) -> None:
        thresholds = checks.multi_lru_options(frequency, thresholds)
        self._frequency = frequency
        self._thresholds = tuple(thresholds)
        self._tiers: list[OrderedDict[Plh, int]] = [OrderedDict() for _ in range(4)]
        self._tier: dict[Plh, int] = {}

    def insert(self, plh: Plh, block_id: int) -> None:
        tier = tier_for(self._frequency.count(plh), self._thresholds)
        self._tiers[tier][plh] = block_id
        self._tier[plh] = tier

    def remove(self, plh: Plh) -> int:
        return self._tiers[self._tier.pop(plh)].pop(plh)

    def evict(self) -> tuple[Plh, int]:
        for tier in self._tiers:
            if tier:
                plh, block_id = tier.popitem(last=False)
                del self._tier[plh]
                return plh, block_id
        raise IndexError("evict from an empty pool")

    def order(self) -> list[Plh]:
        return [plh for tier in self._tiers for plh in tier]

    def __len__(self) -> int:
        return len(self._tier)

    def _check(self) -> None:
        assert sum(len(t) for t in self._tiers) == len(self._tier)
        for i, tier in enumerate(self._tiers):
            for plh in tier:
                assert self._tier[plh] == i, f"{plh} filed in tier {i} but recorded in {self._tier[plh]}"


# --- Lineage ---------------------------------------------------------------------------------


class _Node:
    """A graph node.  ``plh is None`` <=> Ghost.  ``children`` is a set of nodes (order irrelevant)."""

    __slots__ = ("key", "plh", "block_id", "parent", "children", "tick")

    def __init__(self, key: tuple[int, int]) -> None:
        self.key = key
        self.plh: Plh | None = None
        self.block_id: int | None = None
        self.parent: _Node | None = None
        self.children: set[_Node] = set()
        self.tick: int | None = None


class LineageIndex(_Built):
    """Lineage graph with Tick (heap) or Fifo (OrderedDict) leaf queue.

    Structure:

    * ``_nodes: key -> _Node``; parent/children are direct references.
    * ``_real``: number of Real nodes (= ``len``).
    * Tick: ``_heap`` of ``(tick, key)`` with *lazy deletion*.  An entry is live iff the node at
      ``key`` is Real, has that tick and has no children; ``_queued`` is the set of ticks that
      have an entry (so a re-leafed node whose old entry is still in the heap is not pushed
      twice — it simply becomes live again, at its original tick, which is the rule).  The heap is
      rebuilt from the live leaves when it exceeds ``2 * len(_nodes) + 32`` entries, so its size
      stays O(n) (amortised O(1) per operation).
    * Fifo: ``_fifo`` is an OrderedDict of the leaves in the order they became leaves.

    Invariants (``_check``): every Ghost has children; child/parent links are mutual; every leaf
    is Real; Tick: every Real leaf's tick is in ``_queued`` and ``_queued`` equals the heap's
    ticks; Fifo: ``_fifo`` holds exactly the Real leaves.
    """

    def __init__(self, policy: str = "tick") -> None:
        checks.choice("lineage leaf policy", policy, checks.LEAF_POLICIES)
        self._tick_policy = policy == "tick"
        self._nodes: dict[tuple[int, int], _Node] = {}
        self._real = 0
        self._next_tick = 0
        self._heap: list[tuple[int, tuple[int, int]]] = []
        self._queued: set[int] = set()
        self._fifo: OrderedDict[tuple[int, int], _Node] = OrderedDict()

    # -- leaf policy hooks ------------------------------------------------------------------------

    def _leaf_added(self, node: _Node) -> None:
        if self._tick_policy:
            if node.tick not in self._queued:
                self._queued.add(node.tick)
                heapq.heappush(self._heap, (node.tick, node.key))
        else:
            self._fifo[node.key] = node  # tail: the node became a leaf just now

    def _leaf_gone(self, node: _Node) -> None:
        """A leaf was demoted (got a child) or removed.  Tick: lazy (the entry goes stale)."""
        if not self._tick_policy:
            self._fifo.pop(node.key, None)

    def _new_placeholder(self, key: tuple[int, int]) -> _Node:
        """A Ghost for an absent parent: registered at ``key`` and linked to nothing (rule 4)."""
        ghost = self._nodes[key] = _Node(key)
        return ghost

    # -- operations -------------------------------------------------------------------------------

    def insert(self, plh: Plh, block_id: int) -> None:
        key = plh.key
        node = self._nodes.get(key)
        if node is None:
            node = self._nodes[key] = _Node(key)
        elif node.plh is not None:
            raise DuplicateLineage(f"lineage key {key} already holds {node.plh} (inserting {plh})")
        node.plh, node.block_id = plh, block_id
        node.tick = self._next_tick
        self._next_tick += 1
        self._real += 1
        parent_key = plh.parent_key
        if parent_key is not None and node.parent is None:
            parent = self._nodes.get(parent_key)
            if parent is None:
                parent = self._new_placeholder(parent_key)
            if not parent.children and parent.plh is not None:
                self._leaf_gone(parent)  # demoted: no longer evictable
            parent.children.add(node)
            node.parent = parent
        if not node.children:
            self._leaf_added(node)
        if len(self._heap) > 2 * len(self._nodes) + 32:
            self._compact()

    def remove(self, plh: Plh) -> int:
        node = self._nodes.get(plh.key)
        if node is None or node.plh != plh:
            raise KeyError(plh)
        return self._remove_node(node)

    def _remove_node(self, node: _Node) -> int:
        block_id = node.block_id
        if not node.children:
            self._leaf_gone(node)
        node.plh = node.block_id = node.tick = None
        self._real -= 1
        cur = node
        while not cur.children:
            del self._nodes[cur.key]
            parent = cur.parent
            if parent is None:
                break
            parent.children.discard(cur)
            cur.parent = None
            if parent.children:
                break
            if parent.plh is not None:
                self._leaf_added(parent)  # Tick: back at its original tick; Fifo: at the tail
                break
            cur = parent
        return block_id

    def _victim(self) -> _Node:
        if not self._tick_policy:
            return next(iter(self._fifo.values()))
        heap, nodes = self._heap, self._nodes
        while True:
            tick, key = heap[0]
            node = nodes.get(key)
            if node is not None and node.tick == tick and not node.children:
                return node
            heapq.heappop(heap)
            self._queued.discard(tick)

    def evict(self) -> tuple[Plh, int]:
        node = self._victim()
        plh = node.plh
        return plh, self._remove_node(node)

    def _compact(self) -> None:
        live = [(t, k) for t, k in self._heap
                if (n := self._nodes.get(k)) is not None and n.tick == t and not n.children]
        heapq.heapify(live)
        self._heap = live
        self._queued = {t for t, _ in live}

    # -- copies and queries -----------------------------------------------------------------------

    def _clone(self) -> LineageIndex:
        """An independent copy (O(n)), sharing only the immutable Plhs."""
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        mapping = {}
        for key, node in self._nodes.items():
            twin = _Node(key)
            twin.plh, twin.block_id, twin.tick = node.plh, node.block_id, node.tick
            mapping[key] = twin
        for key, node in self._nodes.items():
            twin = mapping[key]
            if node.parent is not None:
                twin.parent = mapping[node.parent.key]
            twin.children = {mapping[c.key] for c in node.children}
        clone._nodes = mapping
        clone._heap = list(self._heap)
        clone._queued = set(self._queued)
        clone._fifo = OrderedDict((k, mapping[k]) for k in self._fifo)
        return clone

    def order(self) -> list[Plh]:
        """Drain a clone: the exact eviction sequence, O(n log n), nothing here changes."""
        clone = self._clone()
        return [clone.evict()[0] for _ in range(self._real)]

    def __len__(self) -> int:
        return self._real

    def _check(self) -> None:
        real = 0
        for key, node in self._nodes.items():
            assert node.key == key
            if node.plh is None:
                assert node.children, f"childless ghost at {key}"
                assert node.tick is None
            else:
                real += 1
                assert node.plh.key == key
            for child in node.children:
                assert child.parent is node, f"child {child.key} of {key} points elsewhere"
                assert self._nodes.get(child.key) is child
            if node.parent is not None:
                assert node in node.parent.children
                assert self._nodes.get(node.parent.key) is node.parent
        assert real == self._real, f"real count {self._real} != {real}"
        leaves = {k for k, n in self._nodes.items() if not n.children}
        if self._tick_policy:
            assert self._queued == {t for t, _ in self._heap}
            assert len(self._queued) == len(self._heap), "a tick is queued twice"
            for key in leaves:
                assert self._nodes[key].tick in self._queued, f"leaf {key} not queued"
        else:
            assert set(self._fifo) == leaves, "fifo queue != leaves"
            assert all(self._nodes[k] is n for k, n in self._fifo.items())


class LineageFifoIndex(LineageIndex):
    """The lineage graph with the Fifo leaf queue (``eviction="lineage_fifo"``)."""

    def __init__(self) -> None:
        super().__init__("fifo")


class HashMapIndex(_Built):
    """HashMap + FIFO reuse (rule: :class:`kvspec.model.eviction.HashMapIndex`), shaped like upstream.

    ``_seq``: plh -> its insertion sequence number; ``_entry``: sequence number -> (plh, block id)
    (upstream's ``BTreeMap<seq, (id, h)>``).  ``_head`` never exceeds the smallest live sequence
    number, and only moves forward, so ``evict`` skipping the numbers of resurrected entries is
    O(1) amortised.  Invariants (``_check``): the two maps mirror each other; every live number is
    ``>= _head`` and ``< _next``.
    """

    __slots__ = ("_seq", "_entry", "_head", "_next")

    def __init__(self) -> None:
        self._seq: dict[Plh, int] = {}
        self._entry: dict[int, tuple[Plh, int]] = {}
        self._head = 0
        self._next = 0

    def insert(self, plh: Plh, block_id: int) -> None:
        self._seq[plh] = self._next
        self._entry[self._next] = (plh, block_id)
        self._next += 1

    def remove(self, plh: Plh) -> int:
        return self._entry.pop(self._seq.pop(plh))[1]

    def evict(self) -> tuple[Plh, int]:
        while self._head not in self._entry:
            self._head += 1
        plh, block_id = self._entry.pop(self._head)
        del self._seq[plh]
        return plh, block_id

    def order(self) -> list[Plh]:
        return [self._entry[n][0] for n in sorted(self._entry)]

    def __len__(self) -> int:
        return len(self._seq)

    def _check(self) -> None:
        assert len(self._seq) == len(self._entry)
        for plh, n in self._seq.items():
            assert self._entry[n][0] == plh and self._head <= n < self._next


#: every eviction backend by its ``BlockPool(eviction=...)`` name: the same names as
#: :data:`kvspec.model.eviction.BACKENDS` (they are trace schema)
BACKENDS: dict[str, type] = {
    "lineage": LineageIndex,
    "lineage_fifo": LineageFifoIndex,
    "lru": LruIndex,
    "multi_lru": MultiLruIndex,
    "hashmap": HashMapIndex,
}


def make_backend(eviction: str, frequency: Any, thresholds: tuple[int, int, int] = DEFAULT_THRESHOLDS) -> Any:
    """The backend named ``eviction``, built from :data:`BACKENDS`."""
    return BACKENDS[checks.choice("eviction backend", eviction, BACKENDS)].build(frequency, thresholds)
