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
from array import array
from collections import OrderedDict, deque
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

_NONE = -1  # "no node" / "no tick" in the int arrays below
_ID_BITS = 32  # a queue entry packs (tick, node id) into one int: tick << 32 | node id
_ID_MASK = (1 << _ID_BITS) - 1


class LineageIndex(_Built):
    """Lineage graph with Tick (oldest-tick leaf first) or Fifo (oldest leaf first) leaf queue.

    Layout: *parallel arrays indexed by a node id*, no object per node.  At a million blocks a
    node object with a set of children costs two cyclic-GC-tracked containers per block, scanned
    at every full collection, and pointer chasing through scattered memory; a slot of a few int
    lists costs neither (ints are never GC-tracked, and one list is one GC object).

    * ``_nodes: key -> node id`` for every node, Real or Ghost (``key = (position, current)``).
    * per node id: ``_key`` (``None`` when the id is spare), ``_plh`` (``None`` <=> Ghost),
      ``_block``, ``_parent`` (node id or ``_NONE``), ``_children`` (how many nodes name this one
      as parent: the only thing about the children any rule reads), ``_tick`` (Real only, else
      ``_NONE``), ``_queued`` (1 when the queue holds an entry with the node's current tick).
      The int fields are machine-int arrays (``array("q")``, ``bytearray``): the value sits in the
      array itself, so reading a cold node costs one cache line per field, not a line for the
      list slot plus one for the int object it points to.
    * ``_spare``: ids of deleted nodes, reused before the arrays grow.
    * ``_real``: number of Real nodes (= ``len``).
    * Tick queue, *lazy deletion*: an entry ``tick << 32 | id`` is live iff node ``id`` still has
      that tick (so it is Real, the same incarnation) and no children.  A node becomes a leaf
      either on insertion, with the newest tick — appended to the deque ``_fresh``, which so stays
      sorted — or when it loses its last child, with its old tick — pushed on the heap
      ``_heap``.  The victim is the smaller live head of the two.  A re-leafed node whose old
      entry is still queued is not queued twice (it simply becomes live again, at its original
      tick, which is the rule).  Both are rebuilt from the live entries when together they exceed
      ``2 * len(_nodes) + 32`` entries, so they stay O(n) (amortised O(1) per operation).
    * Fifo queue: ``_fifo`` is an OrderedDict of the leaf ids in the order they became leaves.

    Invariants (``_check``, O(n + queued entries)): every Ghost has children; ``_children`` equals
    the number of nodes naming the node as parent, and every parent is a node; every key maps to
    an id that stores that key; ``_real`` counts the Real nodes; Tick: ``_fresh`` is sorted, the
    heap is a heap, a node's ``_queued`` flag says exactly whether an entry with its tick is
    queued (at most one), and every Real leaf is queued; Fifo: ``_fifo`` holds exactly the Real
    leaves.
    """

    def __init__(self, policy: str = "tick") -> None:
        checks.choice("lineage leaf policy", policy, checks.LEAF_POLICIES)
        self._tick_policy = policy == "tick"
        self._nodes: dict[tuple[int, int], int] = {}
        self._key: list[tuple[int, int] | None] = []
        self._plh: list[Plh | None] = []
        self._block: list[int] = []
        self._parent = array("q")
        self._children = array("q")
        self._tick = array("q")
        self._queued = bytearray()
        self._spare: list[int] = []
        self._real = 0
        self._next_tick = 0
        self._fresh: deque[int] = deque()
        self._heap: list[int] = []
        self._fifo: OrderedDict[int, None] = OrderedDict()

    # -- node ids ---------------------------------------------------------------------------------

    def _new_node(self, key: tuple[int, int]) -> int:
        """A Ghost at ``key``, linked to nothing (rule 4 for an absent parent).  O(1) amortised."""
        if self._spare:
            node = self._spare.pop()
            self._key[node] = key
        else:
            node = len(self._key)
            self._key.append(key)
            self._plh.append(None)
            self._block.append(_NONE)
            self._parent.append(_NONE)
            self._children.append(0)
            self._tick.append(_NONE)
            self._queued.append(0)
        self._nodes[key] = node
        return node

    def _new_placeholder(self, key: tuple[int, int]) -> int:
        """The Ghost standing in for an absent parent at ``key``: registered, linked to nothing (rule 4)."""
        return self._new_node(key)

    def _delete_node(self, node: int) -> None:
        """Forget a childless Ghost: its id becomes spare.  O(1)."""
        del self._nodes[self._key[node]]
        self._key[node] = None
        self._parent[node] = _NONE
        self._spare.append(node)

    # -- leaf policy hooks ------------------------------------------------------------------------

    def _leaf_added(self, node: int, newest: bool) -> None:
        """``node`` (Real) has no children now; ``newest``: it was inserted just now.  O(log n) at worst."""
        if self._tick_policy:
            if not self._queued[node]:
                self._queued[node] = 1
                entry = self._tick[node] << _ID_BITS | node
                if newest:
                    self._fresh.append(entry)  # the largest tick so far: the deque stays sorted
                else:
                    heapq.heappush(self._heap, entry)
        else:
            self._fifo[node] = None  # tail: the node became a leaf just now

    def _leaf_gone(self, node: int) -> None:
        """A leaf was demoted (got a child) or removed.  Tick: lazy (the entry goes stale).  O(1)."""
        if not self._tick_policy:
            self._fifo.pop(node, None)

    def _unqueued(self, entry: int) -> None:
        """``entry`` left the tick queue: clear its node's flag if it was the node's current entry."""
        node = entry & _ID_MASK
        if self._tick[node] == entry >> _ID_BITS:
            self._queued[node] = 0

    # -- operations -------------------------------------------------------------------------------

    def insert(self, plh: Plh, block_id: int) -> None:
        """O(1) amortised (Tick, Fifo); the parent, a Ghost placeholder if absent, is linked."""
        key = plh.key
        nodes = self._nodes
        node = nodes.get(key)
        if node is None:
            node = self._new_node(key)
        elif self._plh[node] is not None:
            raise DuplicateLineage(f"lineage key {key} already holds {self._plh[node]} (inserting {plh})")
        self._plh[node] = plh
        self._block[node] = block_id
        self._tick[node] = self._next_tick
        self._queued[node] = 0  # a new tick: nothing queued under it yet
        self._next_tick += 1
        self._real += 1
        parent_key = plh.parent_key
        if parent_key is not None and self._parent[node] == _NONE:
            parent = nodes.get(parent_key)
            if parent is None:
                parent = self._new_placeholder(parent_key)
            children = self._children
            if not children[parent] and self._plh[parent] is not None:
                self._leaf_gone(parent)  # demoted: no longer evictable
            children[parent] += 1
            self._parent[node] = parent
        if not self._children[node]:
            self._leaf_added(node, True)
        if len(self._fresh) + len(self._heap) > 2 * len(nodes) + 32:
            self._compact()

    def remove(self, plh: Plh) -> int:
        """O(depth pruned): the childless Ghosts above it go too (each made by one earlier insert)."""
        node = self._nodes.get(plh.key)
        if node is None or self._plh[node] != plh:
            raise KeyError(plh)
        return self._remove_node(node)

    def _remove_node(self, node: int) -> int:
        block_id = self._block[node]
        children, parents = self._children, self._parent
        if not children[node]:
            self._leaf_gone(node)
        self._plh[node] = None
        self._block[node] = self._tick[node] = _NONE
        self._real -= 1
        cur = node
        while not children[cur]:
            parent = parents[cur]
            self._delete_node(cur)
            if parent == _NONE:
                break
            children[parent] -= 1
            if children[parent]:
                break
            if self._plh[parent] is not None:
                self._leaf_added(parent, False)  # Tick: back at its original tick; Fifo: at the tail
                break
            cur = parent
        return block_id

    def _live(self, entry: int) -> bool:
        node = entry & _ID_MASK
        return self._tick[node] == entry >> _ID_BITS and not self._children[node]

    def _victim(self) -> int:
        """The Real leaf with the smallest tick (Tick) or the oldest leaf (Fifo); dequeued.  O(log n) amortised."""
        if not self._tick_policy:
            return next(iter(self._fifo))
        fresh, heap, live = self._fresh, self._heap, self._live
        while fresh and not live(fresh[0]):
            self._unqueued(fresh.popleft())
        while heap and not live(heap[0]):
            self._unqueued(heapq.heappop(heap))
        entry = heapq.heappop(heap) if heap and (not fresh or heap[0] < fresh[0]) else fresh.popleft()
        self._unqueued(entry)
        return entry & _ID_MASK

    def evict(self) -> tuple[Plh, int]:
        node = self._victim()
        plh = self._plh[node]
        return plh, self._remove_node(node)

    def _compact(self) -> None:
        """Drop the stale queue entries: O(entries)."""
        live = self._live
        for entry in self._fresh:
            if not live(entry):
                self._unqueued(entry)
        for entry in self._heap:
            if not live(entry):
                self._unqueued(entry)
        self._fresh = deque(entry for entry in self._fresh if live(entry))
        self._heap = [entry for entry in self._heap if live(entry)]
        heapq.heapify(self._heap)

    # -- copies and queries -----------------------------------------------------------------------

    def _clone(self) -> LineageIndex:
        """An independent copy (O(n)), sharing only the immutable Plhs and keys."""
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        for name in ("_key", "_plh", "_block", "_parent", "_children", "_tick", "_heap", "_spare"):
            setattr(clone, name, getattr(self, name)[:])
        clone._nodes = dict(self._nodes)
        clone._queued = bytearray(self._queued)
        clone._fresh = deque(self._fresh)
        clone._fifo = OrderedDict(self._fifo)
        return clone

    def order(self) -> list[Plh]:
        """Drain a clone: the exact eviction sequence, O(n log n), nothing here changes."""
        clone = self._clone()
        return [clone.evict()[0] for _ in range(self._real)]

    def _queue_len(self) -> int:
        """Entries in the tick queue, live or stale (O(1))."""
        return len(self._fresh) + len(self._heap)

    def __len__(self) -> int:
        return self._real

    def _check(self) -> None:
        size = len(self._key)
        assert all(len(a) == size for a in (self._plh, self._block, self._parent, self._children,
                                             self._tick, self._queued)), "node arrays differ in length"
        assert len(set(self._spare)) == len(self._spare) == size - len(self._nodes), "spare ids"
        assert all(self._key[n] is None for n in self._spare), "a spare id still has a key"
        counts = [0] * size
        real = 0
        for key, node in self._nodes.items():
            assert self._key[node] == key, f"node {node} does not store its key {key}"
            plh = self._plh[node]
            if plh is None:
                assert self._children[node], f"childless ghost at {key}"
                assert self._tick[node] == _NONE
            else:
                real += 1
                assert plh.key == key and self._tick[node] >= 0
            parent = self._parent[node]
            if parent != _NONE:
                assert self._key[parent] is not None, f"{key} names a deleted parent"
                counts[parent] += 1
        for node in self._nodes.values():
            assert counts[node] == self._children[node], f"child count of {self._key[node]}"
        assert real == self._real, f"real count {self._real} != {real}"
        leaves = {n for n in self._nodes.values() if self._plh[n] is not None and not self._children[n]}
        if self._tick_policy:
            fresh = list(self._fresh)
            assert fresh == sorted(fresh), "fresh leaves out of tick order"
            heap = self._heap
            assert all(heap[(i - 1) // 2] <= heap[i] for i in range(1, len(heap))), "heap property"
            current = [e for e in fresh + heap if self._tick[e & _ID_MASK] == e >> _ID_BITS]
            ids = [e & _ID_MASK for e in current]
            assert len(set(ids)) == len(ids), "a tick is queued twice"
            assert set(ids) == {n for n in range(size) if self._queued[n] and self._tick[n] != _NONE}
            assert leaves <= set(ids), "a leaf is not queued"
        else:
            assert set(self._fifo) == leaves, "fifo queue != leaves"


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
