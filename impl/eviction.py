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

_NONE = -1  # "no node" / "no block" / "not Real" in the node records below
_ID_BITS = 32  # a queue entry packs (tick, node id) into one int: tick << 32 | node id
_ID_MASK = (1 << _ID_BITS) - 1

#: a node's record: ``_WIDTH`` machine ints at ``_rec[_WIDTH * node:]``, one per field below
_BLOCK, _PARENT, _CHILDREN, _TICK, _POS = range(5)
_WIDTH = 5
#: the record of a node id that is not in use
_BLANK = (_NONE, _NONE, 0, _NONE, _NONE)


class LineageIndex(_Built):
    """Lineage graph with Tick (oldest-tick leaf first) or Fifo (oldest leaf first) leaf queue.

    Layout: *one packed record per node id*, no object per node.  At a million blocks a node
    object with a set of children costs two cyclic-GC-tracked containers per block, scanned at
    every full collection, and pointer chasing through scattered memory; parallel arrays cost a
    cache line per field; a record of five machine ints side by side costs one line (two when it
    straddles) for everything a rule reads about a node but its identity.

    * The key index, every node (Real or Ghost) once under its key ``(position, current)``:
      ``_nodes: current -> node id``, the position being the node's ``_POS`` (read on the record's
      line anyway), so a node costs no key object (a tuple per node is one more scattered object
      to allocate, compare against and free); ``_clash: (position, current) -> node id`` holds
      the rare key whose ``current`` ``_nodes`` already filed for another position.  A lookup
      (:meth:`_node_at`) is one dict probe, two when ``_clash`` is not empty.
    * per node id: ``_key`` (its ``current``, ``None`` when the id is spare), ``_plh`` (``None`` <=>
      Ghost), and the record ``_rec[5 * id : 5 * id + 5]`` (``array("q")``: the ints sit in the
      array, no int object per field): ``_BLOCK`` (block id, ``_NONE`` unless Real), ``_PARENT``
      (node id or ``_NONE``), ``_CHILDREN`` (how many nodes name this one as parent: the only thing
      about the children any rule reads), ``_TICK`` (Real only, else ``_NONE``: ``tick << 1 |
      queued``, where ``queued`` is 1 when the queue holds an entry with the node's current tick),
      ``_POS`` (its key's position).
    * ``_spare``: ids of deleted nodes, reused (last deleted first, while its record is likely
      still cached) before the record array grows.
    * ``_real``: number of Real nodes (= ``len``).
    * Tick queue, *lazy deletion*: an entry ``tick << 32 | id`` is live iff node ``id`` still has
      that tick (so it is Real, the same incarnation) and no children.  A node becomes a leaf
      either on insertion, with the newest tick — appended to the deque ``_fresh``, which so stays
      sorted — or when it loses its last child, with its old tick — pushed on the heap
      ``_heap``.  The victim is the smaller live head of the two.  A re-leafed node whose old
      entry is still queued is not queued twice (it simply becomes live again, at its original
      tick, which is the rule).  Both are rebuilt from the live entries when together they exceed
      ``2 * (nodes) + 32`` entries, so they stay O(n) (amortised O(1) per operation).
    * Fifo queue: ``_fifo`` is an OrderedDict of the leaf ids in the order they became leaves.

    Invariants (``_check``, O(n + queued entries)): every node is filed once, under its own key,
    and no two share a key; every Ghost has children; ``_children`` equals
    the number of nodes naming the node as parent, and every parent is a node; a spare id has a blank record; ``_real`` counts the Real nodes;
    Tick: ``_fresh`` is sorted, the heap is a heap, a node's queued bit says exactly whether an
    entry with its tick is queued (at most one), and every Real leaf is queued; Fifo: ``_fifo``
    holds exactly the Real leaves.
    """

    def __init__(self, policy: str = "tick") -> None:
        checks.choice("lineage leaf policy", policy, checks.LEAF_POLICIES)
        self._tick_policy = policy == "tick"
        self._nodes: dict[int, int] = {}
        self._clash: dict[tuple[int, int], int] = {}
        self._key: list[int | None] = []
        self._plh: list[Plh | None] = []
        self._rec = array("q")
        self._spare: list[int] = []
        self._real = 0
        self._next_tick = 0
        self._fresh: deque[int] = deque()
        self._heap: list[int] = []
        self._fifo: OrderedDict[int, None] = OrderedDict()

    # -- node ids ---------------------------------------------------------------------------------

    def _node_at(self, position: int, current: int) -> int | None:
        """The node at key ``(position, current)``, or ``None``.  O(1)."""
        node = self._nodes.get(current)
        if node is not None and self._rec[_WIDTH * node + _POS] == position:
            return node
        return self._clash.get((position, current)) if self._clash else None

    def _new_node(self, position: int, current: int) -> int:
        """A Ghost at key ``(position, current)``, linked to nothing (rule 4 for an absent parent).  O(1) amortised."""
        if self._spare:
            node = self._spare.pop()  # its record is blank (see _delete_node)
            self._key[node] = current
        else:
            node = len(self._key)
            self._key.append(current)
            self._plh.append(None)
            self._rec.extend(_BLANK)
        self._rec[_WIDTH * node + _POS] = position
        if current in self._nodes:
            self._clash[position, current] = node
        else:
            self._nodes[current] = node
        return node

    def _new_placeholder(self, position: int, current: int) -> int:
        """The Ghost standing in for an absent parent at ``(position, current)``: registered, linked to nothing (rule 4)."""
        return self._new_node(position, current)

    def _delete_node(self, node: int) -> None:
        """Forget a childless Ghost: its id becomes spare, its record blank.  O(1)."""
        current = self._key[node]
        at = _WIDTH * node
        if self._nodes.get(current) == node:
            del self._nodes[current]
        else:
            del self._clash[self._rec[at + _POS], current]
        self._key[node] = None
        self._rec[at + _PARENT] = self._rec[at + _POS] = _NONE  # a Ghost's block and tick are _NONE already
        self._spare.append(node)

    def _node_count(self) -> int:
        return len(self._nodes) + len(self._clash)

    # -- leaf policy hooks ------------------------------------------------------------------------

    def _leaf_added(self, node: int, newest: bool) -> None:
        """``node`` (Real) has no children now; ``newest``: it was inserted just now.  O(log n) at worst."""
        if self._tick_policy:
            at = _WIDTH * node + _TICK
            tick = self._rec[at]
            if not tick & 1:
                self._rec[at] = tick | 1
                entry = tick >> 1 << _ID_BITS | node
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
        """``entry`` left the tick queue: clear its node's queued bit if it was the node's current entry."""
        at = _WIDTH * (entry & _ID_MASK) + _TICK
        tick = self._rec[at]
        if tick >> 1 == entry >> _ID_BITS:  # never for _NONE (-1 >> 1 == -1)
            self._rec[at] = tick & ~1

    # -- operations -------------------------------------------------------------------------------

    def insert(self, plh: Plh, block_id: int) -> None:
        """O(1) amortised (Tick, Fifo); the parent, a Ghost placeholder if absent, is linked."""
        position, current, rec = plh.position, plh.current, self._rec
        node = self._nodes.get(current)  # _node_at, inlined: the hot path
        if node is None or rec[_WIDTH * node + _POS] != position:
            node = self._clash.get((position, current)) if self._clash else None
        if node is None:
            node = self._new_node(position, current)
        elif self._plh[node] is not None:
            raise DuplicateLineage(f"lineage key {plh.key} already holds {self._plh[node]} (inserting {plh})")
        at = _WIDTH * node
        self._plh[node] = plh
        rec[at + _BLOCK] = block_id
        rec[at + _TICK] = self._next_tick << 1  # a new tick: nothing queued under it yet
        self._next_tick += 1
        self._real += 1
        if position and rec[at + _PARENT] == _NONE:  # plh.parent_key, without a tuple
            parent_current = plh.parent if plh.parent is not None else 0
            parent = self._nodes.get(parent_current)
            if parent is None or rec[_WIDTH * parent + _POS] != position - 1:
                parent = self._clash.get((position - 1, parent_current)) if self._clash else None
            if parent is None:
                parent = self._new_placeholder(position - 1, parent_current)
            children = _WIDTH * parent + _CHILDREN
            if not rec[children] and self._plh[parent] is not None:
                self._leaf_gone(parent)  # demoted: no longer evictable
            rec[children] += 1
            rec[at + _PARENT] = parent
        if not rec[at + _CHILDREN]:
            self._leaf_added(node, True)
        if len(self._fresh) + len(self._heap) > 2 * (len(self._nodes) + len(self._clash)) + 32:
            self._compact()

    def remove(self, plh: Plh) -> int:
        """O(depth pruned): the childless Ghosts above it go too (each made by one earlier insert)."""
        node = self._node_at(plh.position, plh.current)
        if node is None or self._plh[node] != plh:
            raise KeyError(plh)
        return self._remove_node(node)

    def _remove_node(self, node: int) -> int:
        rec = self._rec
        at = _WIDTH * node
        block_id = rec[at + _BLOCK]
        if not rec[at + _CHILDREN]:
            self._leaf_gone(node)
        self._plh[node] = None
        rec[at + _BLOCK] = rec[at + _TICK] = _NONE
        self._real -= 1
        cur = node
        while not rec[_WIDTH * cur + _CHILDREN]:
            parent = rec[_WIDTH * cur + _PARENT]
            self._delete_node(cur)
            if parent == _NONE:
                break
            children = _WIDTH * parent + _CHILDREN
            rec[children] -= 1
            if rec[children]:
                break
            if self._plh[parent] is not None:
                self._leaf_added(parent, False)  # Tick: back at its original tick; Fifo: at the tail
                break
            cur = parent
        return block_id

    def _live(self, entry: int) -> bool:
        at = _WIDTH * (entry & _ID_MASK)
        return self._rec[at + _TICK] >> 1 == entry >> _ID_BITS and not self._rec[at + _CHILDREN]

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
        for name in ("_key", "_plh", "_rec", "_heap", "_spare"):
            setattr(clone, name, getattr(self, name)[:])
        clone._nodes = dict(self._nodes)
        clone._clash = dict(self._clash)
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

    def _field(self, node: int, field: int) -> int:
        return self._rec[_WIDTH * node + field]

    def _check(self) -> None:
        size = len(self._key)
        field = self._field
        assert len(self._plh) == size and len(self._rec) == _WIDTH * size, "node arrays differ in length"
        assert len(set(self._spare)) == len(self._spare) == size - self._node_count(), "spare ids"
        for n in self._spare:
            assert self._key[n] is None and self._plh[n] is None, "a spare id still has a key"
            assert tuple(self._rec[_WIDTH * n:_WIDTH * n + _WIDTH]) == _BLANK, "a spare id's record is not blank"
        counts = [0] * size
        real = 0
        filed = [((field(node, _POS), current), node) for current, node in self._nodes.items()]
        filed += self._clash.items()
        assert len({node for _, node in filed}) == len({key for key, _ in filed}) == len(filed), "a node or key filed twice"
        for key, node in filed:
            assert (field(node, _POS), self._key[node]) == key, f"node {node} does not store its key {key}"
            plh = self._plh[node]
            if plh is None:
                assert field(node, _CHILDREN), f"childless ghost at {key}"
                assert field(node, _TICK) == _NONE and field(node, _BLOCK) == _NONE
            else:
                real += 1
                assert plh.key == key and field(node, _TICK) >= 0 and field(node, _BLOCK) >= 0
            parent = field(node, _PARENT)
            if parent != _NONE:
                assert self._key[parent] is not None, f"{key} names a deleted parent"
                counts[parent] += 1
        for key, node in filed:
            assert counts[node] == field(node, _CHILDREN), f"child count of {key}"
        assert real == self._real, f"real count {self._real} != {real}"
        leaves = {n for _, n in filed if self._plh[n] is not None and not field(n, _CHILDREN)}
        if self._tick_policy:
            fresh = list(self._fresh)
            assert fresh == sorted(fresh), "fresh leaves out of tick order"
            heap = self._heap
            assert all(heap[(i - 1) // 2] <= heap[i] for i in range(1, len(heap))), "heap property"
            current = [e for e in fresh + heap if field(e & _ID_MASK, _TICK) >> 1 == e >> _ID_BITS]
            ids = [e & _ID_MASK for e in current]
            assert len(set(ids)) == len(ids), "a tick is queued twice"
            assert set(ids) == {n for n in range(size) if field(n, _TICK) != _NONE and field(n, _TICK) & 1}
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
