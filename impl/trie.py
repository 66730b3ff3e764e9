"""The device index's query structure: a compressed trie over local-hash paths, one *lane* per worker.

Contract: ``kvspec.model.radix``.  Every block a worker holds hangs under its parent, so it has a
*path*: the local hashes ``L`` from the root down to it.  When external hashes are a function of
the path (what Dynamo's router assumes: ``E`` is the chained hash of the ``L``\\ s, the same
function on every worker), each path has one block ``E``, whoever holds it, and every worker's
blocks fit in one trie over paths that names each block once::

    Node.labels          [L, L, ...]     a run of path positions depth .. depth+len-1
    Node.blocks          [E, E, ...]     the block at each of those positions (one per path)
    Node.ends[w]         depth+len       w has a *lane* here (holds or held every position);
                                         the lane's score if a query passes the whole node
    Node.gaps[w]         {offset, ...}   the lane's holes: blocks removed, not re-stored
    Node.first[w]        depth           where the lane's first hole is (a cache of ``gaps``)
    Node.kids[L]         child node      keyed by the child's first label
    Node.below[w]        count           how many children hold a lane of w (None iff no kids)
    LaneTrie.owner[E]    node            the node naming each block of the trie
    LaneTrie.parent[n]   node            the parent of every node but the root
    LaneTrie.nodes[w]    {node, ...}     the nodes where w has a lane
    LaneTrie.held[w]     count           how many blocks w holds (slots of its lanes, holes not)
    LaneTrie.workers[w]  w               the one tuple naming ``w`` in every dict of the trie

A slot ``(node, offset)`` of ``w``'s lane holds ``node.blocks[offset]`` unless it is a hole; its
parent is the block (or hole) at the slot above, so a worker's score for a query is the depth of
the first slot along the query's path that it lacks or that is a hole.  Removal never cascades:
it leaves a hole (O(1)), the blocks below keep their slots, and re-storing the same block under
the same parent fills the hole (O(1)); blocks behind a hole simply stop counting.  Holder sets
are nested: ``w`` has a lane in a child only if it has one in the parent (lanes are only ever cut
from the bottom).  Nodes split where a lane starts or stops mid-run, so a lane covers its node.

Because a block is named once, a worker joining a run other workers hold costs one comparison of
its chain with ``Node.blocks`` (C) and O(1) bookkeeping — no per-block entry, list or check: its
blocks are that run's, and the run's blocks are on no other path.  Only blocks new to the trie
are entered in ``owner`` (one store each).

A worker whose blocks do *not* fit — a block that another path already names (two blocks on one
path, a block re-filed under another parent, a hole re-stored with another hash, or external
hashes computed otherwise than the first holder of a path computed them), a chain under a parent
the worker does not hold — is moved, whole, to an :class:`~kvspec.impl.radix.BlockTable` (the
general edge table; O(score) per query for that worker) and stays there until it holds nothing.
That is the hybrid: workers that agree on the hash function get the trie, anything else stays
exact.

Query (``scores``): a dict descent whose steps compare whole runs (``q[p:p+n] == labels``, C
code), then one ``dict.update`` with a precomputed ``ends`` per node where the holder count
drops, and a correction for holes on the path.  Cost: ``O(nodes on the path + workers at the
nodes where the holder count drops + holes on the path)``, independent of the blocks held and of
workers that do not match; a miss is one dict lookup.

GC: per-block state lives in lists of ints and one ``E -> node`` dict; no tuple, set or dict is
created per block, so storing a chain allocates O(1) container objects, not O(blocks); joining a
run or continuing a leaf run allocates none.  The young-generation collector walks every young
list item by item, about one cache miss per int, so a new node's lists come from
:class:`AgedLists` (made a batch earlier: usually old already), and a cut keeps the larger side's
lists, cut in place.  The trie has no reference cycle (parents are kept in ``LaneTrie.parent``,
not on the nodes), so a dropped index or node is freed by reference counting at once, never left
for a full collection.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter

__all__ = ["AgedLists", "Irregular", "LaneTrie", "Node", "block_hash_of", "common_prefix", "tokens_hash_of"]

Worker = tuple[int, int]
Blocks = dict[int, tuple[int | None, int]]


class Node:
    """One run of path positions, their blocks, and the lanes of the workers that hold (or held)
    all of them (module docs)."""

    __slots__ = ("labels", "blocks", "depth", "kids", "below", "ends", "gaps", "first")

    def __init__(self, labels: list[int], blocks: list[int], depth: int, worker: Worker | None = None) -> None:
        """A node of ``labels`` / ``blocks`` at ``depth``: without lanes, or with ``worker``'s alone."""
        self.labels = labels
        self.blocks = blocks
        self.depth = depth
        self.kids: dict[int, Node] | None = None
        #: worker -> number of children where it has a lane (so "a lane below?" is O(1))
        self.below: dict[Worker, int] | None = None
        self.ends: dict[Worker, int] = {} if worker is None else {worker: depth + len(labels)}
        self.gaps: dict[Worker, set[int]] | None = None
        #: depth of each worker's first hole here; None when stale (rebuilt by the next query)
        self.first: dict[Worker, int] | None = None

    @property
    def end(self) -> int:
        return self.depth + len(self.labels)

    def offset(self, e: int) -> int:
        """Where block ``e`` (one of ``blocks``) sits: O(1) at the end, else O(len) in C."""
        blocks = self.blocks
        return len(blocks) - 1 if blocks[-1] == e else blocks.index(e)

    def holes(self, worker: Worker) -> set[int] | None:
        """``worker``'s holes here (None when it has none): O(1)."""
        gaps = self.gaps
        return gaps.get(worker) if gaps is not None else None


def common_prefix(labels: list[int], at: int, query: list[int], start: int, span: int) -> int:
    """Largest ``k <= span`` with ``labels[at:at+k] == query[start:start+k]``: O(span) in C
    (one whole-slice comparison, then a binary search of O(log span) slice comparisons)."""
    if labels[at:at + span] == query[start:start + span]:
        return span
    lo, hi = 0, span
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if labels[at:at + mid] == query[start:start + mid]:
            lo = mid
        else:
            hi = mid
    return lo


class Irregular(Exception):
    """Raised inside a placement when the worker's blocks stop fitting one block per path."""


class AgedLists:
    """Empty lists handed out a batch after they were made, for a node's ``labels`` and ``blocks``.

    Why: CPython's cyclic GC walks every young container it tracks, item by item, at each young
    collection (twice: generation 0, then 1), and walking a list of ints costs about one cache
    miss per int.  A node's lists hold its whole run, so lists made for new nodes were ~90% of
    the collector's work in an apply-heavy run (``kvspec bench indexing`` reports the GC share).
    A list made empty and left alone for a batch has usually been promoted to the old
    generation by the time it is filled, and young collections never walk an old list, however
    many ints are added to it later.  Costs: two batches of empty lists (56 B each) per process;
    O(1) amortized per list taken.  A full collection still walks everything, as it must.

    >>> lists = AgedLists(batch=2)
    >>> a = lists.take(); a.append(1); a
    [1]
    """

    __slots__ = ("batch", "ready", "aging")

    def __init__(self, batch: int = 2048) -> None:
        self.batch = batch
        self.ready: list[list] = []
        self.aging: list[list] = [[] for _ in range(batch)]

    def take(self) -> list:
        """An empty list, made at least one batch of takes ago (O(1) amortized).  Safe to share
        between threads: ``pop`` is atomic, and two threads refilling at once lose nothing but the
        ageing of one batch."""
        try:
            return self.ready.pop()
        except IndexError:
            self.ready, self.aging = self.aging, [[] for _ in range(self.batch)]
            return self.take()


#: the process's pool (the lists are interchangeable, so every trie shares it)
_aged = AgedLists().take


def _deepest_first(node: Node) -> int:
    return -node.depth


class LaneTrie:
    """The trie of lanes (module docs) for the workers whose blocks fit it."""

    __slots__ = ("root", "owner", "parent", "nodes", "held", "workers")

    def __init__(self) -> None:
        self.root = Node([], [], 0)
        self.owner: dict[int, Node] = {}
        #: each node's parent, kept here rather than on the node: a child pointing back at its
        #: parent would make the trie a web of reference cycles, which only the cyclic GC can
        #: free (a full collection); without them, dropping an index frees it at once
        self.parent: dict[Node, Node] = {}
        self.nodes: dict[Worker, dict[Node, None]] = {}
        self.held: dict[Worker, int] = {}
        #: each worker's tuple as first stored: every dict of the trie is keyed by that one
        #: object, so the query's merges of ``ends`` compare worker keys by identity, not by value
        self.workers: dict[Worker, Worker] = {}

    # -- lookups -----------------------------------------------------------------------------

    def holds(self, worker: Worker, e: int) -> bool:
        """O(1), or O(node) in C to find a hole's offset when the worker has holes there."""
        node = self.owner.get(e)
        if node is None or worker not in node.ends:
            return False
        gaps = node.holes(worker)
        return not gaps or node.offset(e) not in gaps

    def blocks_of(self, worker: Worker) -> Blocks:
        """``E -> (parent E, L)`` for every held block of ``worker``: O(its slots + its nodes)."""
        out: Blocks = {}
        root = self.root
        for node in self.nodes.get(worker, ()):
            gaps = node.holes(worker) or ()
            up = self.parent[node]
            above = up.blocks[-1] if up is not root else None
            labels = node.labels
            for offset, e in enumerate(node.blocks):
                if offset not in gaps:
                    out[e] = (above, labels[offset])
                above = e
        return out

    # -- storing -----------------------------------------------------------------------------

    def extend_leaf(self, worker: Worker, parent: int, es: list[int], blocks) -> bool:
        """The common case of :meth:`store`, O(k) in C plus one dict store per block: ``parent``
        ends ``worker``'s lane in a leaf nobody else holds, so the chain ``es`` (of ``blocks``)
        continues that run in place — two list extends and the stores, no container created.

        Returns False, changing nothing, when that is not the case, when a block of ``es`` is
        already in the trie, or when ``es`` names a block twice (then the caller decides:
        :meth:`store`, or the event's error).  So a caller may skip the acyclic-batch rule
        (:func:`kvspec.checks.stored_acyclic`) when this returns True: ``parent`` is in the trie
        and no block of ``es`` is, so ``parent`` is not among them, and the stores added
        ``len(es)`` blocks, so no name repeats.  A repeat is found after its stores, which are
        then undone (all of ``es`` were new): the rare invalid event pays, not the valid one.
        """
        node = self.owner.get(parent)
        if node is None or node.kids is not None or len(node.ends) != 1 or worker not in node.ends:
            return False
        path = node.blocks
        gaps = node.holes(worker)
        if path[-1] != parent or (gaps and len(path) - 1 in gaps):
            return False
        owner = self.owner
        if not owner.keys().isdisjoint(es):
            return False
        size = len(owner)
        for e in es:  # a loop of stores beats building a dict to merge (no temporary)
            owner[e] = node
        if len(owner) - size != len(es):  # a name repeats: undo
            for e in es:
                owner.pop(e, None)
            return False
        node.labels += map(tokens_hash_of, blocks)
        path += es
        node.ends[worker] = node.depth + len(path)
        self.held[worker] += len(es)
        return True

    def store(self, worker: Worker, parent: int | None, es: list[int], ls: list[int]) -> None:
        """File the chain ``es`` (local hashes ``ls``) under ``parent`` (held, or None for the root).

        Two phases, so that a chain that does not fit changes nothing: the walk checks every
        block and plans the changes (slots re-stored, runs joined, where to cut, the new run),
        then they are made.  The walk descends the runs the chain repeats or joins — each checked
        by one comparison of the chain with ``Node.blocks`` (a run's blocks are distinct and on no
        other path) — and the blocks left over must be new to the trie (``owner``): they are
        entered first, and if they grew ``owner`` by fewer than their number, a name repeats.
        So a chain that passes names no block twice and not its parent (the acyclic-batch rule,
        :func:`kvspec.checks.stored_acyclic`, holds without its set).  Raises :class:`Irregular`,
        having changed nothing, when the chain does not fit or names a block twice (the caller
        tells which).

        O(len(es)) in C plus O(nodes walked) in Python, plus one ``owner`` store per new block; a
        cut costs O(the smaller side + holders + holes).
        """
        canonical = self.workers.get(worker, worker)
        owner = self.owner
        if parent is None:
            node, offset = self.root, -1
        else:
            node = owner[parent]
            offset = node.offset(parent)
        i, k = 0, len(es)
        refills: list | None = None  # (node, gaps, start, stop): holes the chain fills again
        joins: list | None = None  # (node, child, j): runs the worker starts holding
        cut: tuple[Node, int] | None = None  # leave ``node`` mid-run: cut it there first
        while i < k:
            size = len(node.labels)
            if offset + 1 < size:  # inside ``node``, where the worker has a lane
                span = min(size - offset - 1, k - i)
                if offset == -1 and span == size and ls[i:i + size] == node.labels:
                    j = size  # the usual repeat: the whole node, one comparison
                else:
                    j = common_prefix(node.labels, offset + 1, ls, i, span)
                if not j:
                    cut = (node, offset + 1)
                    break
                if node.blocks[offset + 1:offset + 1 + j] != es[i:i + j]:
                    raise Irregular  # this path's blocks are named otherwise
                gaps = node.holes(canonical)
                if gaps:
                    refills = refills or []
                    refills.append((node, gaps, offset + 1, offset + 1 + j))
                i += j
                offset += j
                continue
            child = node.kids.get(ls[i]) if node.kids else None
            if child is None:
                break
            if canonical in child.ends:
                node, offset = child, -1
                continue
            size = len(child.labels)
            if k - i >= size and ls[i:i + size] == child.labels:
                j = size  # the usual join: the whole node, one comparison
                if child.blocks != es[i:i + size]:
                    raise Irregular
            else:
                j = common_prefix(child.labels, 0, ls, i, min(size, k - i))
                if child.blocks[:j] != es[i:i + j]:
                    raise Irregular
            joins = joins or []
            joins.append((node, child, j))
            i += j
            if j < size:  # the chain ends inside ``child``, or leaves it there
                break
            node, offset = child, j - 1
        rest = None
        if i < k:  # new blocks: under the end of ``node``, of the joined run's top part, or of a cut
            rest, locals_ = (es, ls) if i == 0 else (es[i:], ls[i:])
            if not owner.keys().isdisjoint(rest):
                raise Irregular  # a block another path already names
            in_place = cut is None and joins is None and node.kids is None and len(node.ends) == 1 \
                and node is not self.root
            target = node if in_place else Node(_aged(), _aged(), 0, canonical)
            size = len(owner)
            for e in rest:
                owner[e] = target
            if len(owner) - size != len(rest):  # a name repeats: undo
                for e in rest:
                    owner.pop(e, None)
                raise Irregular
        # -- the plan holds: make it ------------------------------------------------------------
        nodes = self.nodes.get(canonical)
        if nodes is None:
            nodes = self.nodes[canonical] = {}
            self.held[canonical] = 0
            self.workers[canonical] = canonical
        added = 0
        for node_, gaps, start, stop in refills or ():
            added += self._refill(canonical, node_, gaps, start, stop)
        for up, child, j in joins or ():
            if j < len(child.labels):
                child = self._split(child, j)[0]
            child.ends[canonical] = child.depth + j
            up.below[canonical] = up.below.get(canonical, 0) + 1
            nodes[child] = None
            added += j
            node = child
        if cut is not None:
            node = self._split(*cut)[0]
        if rest is not None:
            if target is node:  # the worker's own leaf run: extend it in place
                node.labels += locals_
                node.blocks += rest
                node.ends[canonical] = node.depth + len(node.labels)
            else:
                target.labels += locals_  # old lists: no GC walk (AgedLists)
                target.blocks += rest
                target.depth = node.depth + len(node.labels)
                target.ends[canonical] = target.depth + len(locals_)
                self.parent[target] = node
                if node.kids is None:
                    node.kids, node.below = {}, {}
                node.kids[locals_[0]] = target
                node.below[canonical] = node.below.get(canonical, 0) + 1
                nodes[target] = None
            added += len(rest)
        self.held[canonical] += added

    def _refill(self, worker: Worker, node: Node, gaps: set[int], start: int, stop: int) -> int:
        """The worker re-stores slots ``start..stop-1`` of its lane with their own blocks: its holes
        among them are filled.  Returns how many.  O(min(stop - start, holes))."""
        if len(gaps) < stop - start:
            filled = [o for o in gaps if start <= o < stop]
        else:
            filled = [o for o in range(start, stop) if o in gaps]
        if filled:
            gaps.difference_update(filled)
            node.first = None
            if not gaps:
                del node.gaps[worker]
                if not node.gaps:
                    node.gaps = None
        return len(filled)

    def _split(self, node: Node, at: int) -> tuple[Node, Node]:
        """Cut ``node`` before offset ``at`` (0 < at < len): return (top, bottom).

        The side with fewer slots becomes the new node (its blocks re-entered in ``owner``) and
        the other keeps its lists, cut in place: O(min(at, len - at) + holders + holes).
        """
        size = len(node.labels)
        ends = node.ends
        if at <= size - at:  # a new top node
            top = Node(node.labels[:at], node.blocks[:at], node.depth)
            top.kids = {node.labels[at]: node}
            top.below = dict.fromkeys(ends, 1)
            up = self.parent[top] = self.parent[node]
            up.kids[node.labels[0]] = top
            self.parent[node] = top
            del node.labels[:at]
            del node.blocks[:at]
            node.depth += at
            top.ends = dict.fromkeys(ends, top.end)
            moved, high, low = top, top, node
        else:  # a new bottom node
            bottom = Node(node.labels[at:], node.blocks[at:], node.depth + at)
            self.parent[bottom] = node
            bottom.kids, bottom.below = node.kids, node.below
            if bottom.kids:
                for kid in bottom.kids.values():
                    self.parent[kid] = bottom
            node.kids = {bottom.labels[0]: bottom}
            node.below = dict.fromkeys(ends, 1)
            del node.labels[at:]
            del node.blocks[at:]
            bottom.ends = ends
            node.ends = dict.fromkeys(ends, node.end)
            moved, high, low = bottom, node, bottom
        owner = self.owner
        for e in moved.blocks:
            owner[e] = moved
        nodes = self.nodes
        for worker in ends:
            nodes[worker][moved] = None
        if node.gaps:
            high_gaps: dict[Worker, set[int]] = {}
            low_gaps: dict[Worker, set[int]] = {}
            for worker, gaps in node.gaps.items():
                upper = {o for o in gaps if o < at}
                lower = {o - at for o in gaps if o >= at}
                if upper:
                    high_gaps[worker] = upper
                if lower:
                    low_gaps[worker] = lower
            high.gaps = high_gaps or None
            low.gaps = low_gaps or None
            high.first = low.first = None
            if low.gaps:
                self._shed(low)
        return high, low

    def _shed(self, low: Node) -> None:
        """After a split: a lane that is holes only in the bottom part, with nothing below, leaves it
        (the top part then still holds a block of that lane, so nothing above changes).  O(lanes)."""
        below = low.below or ()
        for worker, gaps in list(low.gaps.items()):
            if len(gaps) == len(low.labels) and worker not in below:
                self._drop_lane(worker, low)

    # -- removing ----------------------------------------------------------------------------

    def remove(self, worker: Worker, hashes: Iterable[int]) -> list[int]:
        """Leave a hole at each named held block; return the names not held (each once).

        O(1) per name plus, per lane touched, O(its node) in C to find offsets and :meth:`_trim`.
        A name repeated within one event is not an error (an event names a set).
        """
        if worker not in self.nodes:
            return list(dict.fromkeys(hashes))
        worker = self.workers[worker]
        names = hashes if type(hashes) is list else list(hashes)
        if not names:
            return []
        found = list(map(self.owner.get, names))  # O(k) in C
        touched: dict[Node | None, list[int]]
        if found.count(found[0]) == len(found):  # the common case: one node
            touched = {found[0]: names}
        else:
            touched = {}
            for e, node in zip(names, found):
                touched.setdefault(node, []).append(e)
        missing: list[int] = []
        above: list[Node] = []
        removed = 0
        for node, group in touched.items():
            if node is None or worker not in node.ends:
                missing += group
                continue
            path = node.blocks
            cut = len(path) - len(group)
            if cut >= 0 and node.kids is None and node.gaps is None and len(node.ends) == 1 \
                    and (path[cut:] == group[::-1] or path[cut:] == group):
                # the common case, O(k) in C: the tail of the worker's own leaf run goes (the
                # blocks are distinct, so the group is too)
                removed += len(group)
                if cut:
                    self._cut_leaf(worker, node, cut)
                else:  # the whole run: the node goes, the lane above may now end in holes
                    above.append(self.parent[node])
                    self._drop_lane(worker, node)
                continue
            if len(group) > 1:
                group = list(dict.fromkeys(group))
            offsets = dict(zip(path, range(len(path)))) if len(group) > 2 else None
            gaps = node.holes(worker)
            if gaps is None:
                gaps = set()
                if node.gaps is None:
                    node.gaps = {}
                node.gaps[worker] = gaps
            before = len(gaps)
            for e in group:
                offset = offsets[e] if offsets is not None else path.index(e)
                if offset in gaps:
                    missing.append(e)  # a hole already
                else:
                    gaps.add(offset)
            removed += len(gaps) - before
            if gaps:
                node.first = None
            else:
                del node.gaps[worker]
                if not node.gaps:
                    node.gaps = None
        for node in touched:
            if node is not None:
                self._trim(worker, node)
        for node in above:
            self._trim(worker, node)
        held = self.held[worker] - removed
        if held:
            self.held[worker] = held
        else:  # the worker holds nothing: its holes go too
            self.drop(worker)
        return list(dict.fromkeys(missing)) if missing else missing

    def _trim(self, worker: Worker, node: Node) -> None:
        """Drop trailing holes nobody needs: a lane of holes only, with no lane of the worker below,
        leaves its node (the node goes when its last lane does), and a lone lane with no node
        below loses its trailing holes.  O(holes dropped + nodes climbed): ``below`` answers "a lane
        of the worker below?" in O(1)."""
        root = self.root
        while node is not root:
            if worker not in node.ends:
                return
            gaps = node.holes(worker)
            last = len(node.labels) - 1
            if not gaps or last not in gaps:
                return
            if node.below and worker in node.below:
                return
            node.first = None
            if len(gaps) == len(node.labels):  # holes only: the lane leaves the node
                up = self.parent[node]
                self._drop_lane(worker, node)
                node = up
                continue
            if len(node.ends) == 1 and not node.kids:
                cut = last
                while cut - 1 in gaps:
                    cut -= 1
                gaps.difference_update(range(cut, last + 1))
                self._cut_leaf(worker, node, cut)
                if not gaps:
                    del node.gaps[worker]
                    if not node.gaps:
                        node.gaps = None
            return

    def _cut_leaf(self, worker: Worker, node: Node, cut: int) -> None:
        """Shorten ``worker``'s lone leaf run to its first ``cut`` slots (0 < cut): the blocks cut
        leave ``owner``.  O(len - cut), the lists cut in place."""
        owner, path = self.owner, node.blocks
        for e in path[cut:]:  # a loop of deletes beats mapping a bound method
            del owner[e]
        del path[cut:]
        del node.labels[cut:]
        node.ends[worker] = node.depth + cut

    def _drop_lane(self, worker: Worker, node: Node) -> None:
        """Remove ``worker``'s lane (and its holes) from ``node``; unlink the node once empty (its
        blocks leave ``owner``: O(its length))."""
        del node.ends[worker]
        if node.gaps and worker in node.gaps:
            node.first = None
            del node.gaps[worker]
            if not node.gaps:
                node.gaps = None
        del self.nodes[worker][node]
        parent = self.parent[node]
        count = parent.below[worker] - 1
        if count:
            parent.below[worker] = count
        else:
            del parent.below[worker]
        if not node.ends:
            del self.parent[node]
            del parent.kids[node.labels[0]]
            if not parent.kids:
                parent.kids = parent.below = None
            owner = self.owner
            for e in node.blocks:
                del owner[e]

    def drop(self, worker: Worker) -> None:
        """Forget every lane of ``worker``: O(its nodes) in Python + O(slots of nodes it alone held) in C."""
        nodes = self.nodes.get(worker)
        if nodes is not None:
            for node in sorted(nodes, key=_deepest_first):  # unlink leaves first
                self._drop_lane(worker, node)
        self.nodes.pop(worker, None)
        self.held.pop(worker, None)
        self.workers.pop(worker, None)

    # -- queries -----------------------------------------------------------------------------

    def scores(self, query: list[int], path: list | None = None) -> dict[Worker, int]:
        """Every lane's score for ``query`` (module docs); ``path`` collects ``(node, matched)``.
        See :meth:`walk`."""
        return self.walk(query, path)[0]

    def walk(self, query: list[int], path: list | None = None) -> tuple[dict[Worker, int], int]:
        """``(scores, reached)``: every lane's score for ``query`` (module docs), and how many of
        its hashes the walk found equal to stored labels (each of those equals a stored local
        hash, so it is a valid u64: a caller needs to range-check only ``query[reached:]``).
        ``path`` collects ``(node, matched)``.

        O(nodes on the path) slice comparisons + one ``dict.update`` per drop in holder count
        (C, O(holders there)) + O(holes on the path).
        """
        kids = self.root.kids
        if not query or kids is None:
            return {}, 0
        node = kids.get(query[0])
        if node is None:
            return {}, 0
        n = len(query)
        out: dict[Worker, int] = {}
        cuts: dict[Worker, int] | None = None
        pos = 0
        last = None  # the deepest node passed whole whose ``ends`` is not yet in ``out``
        while True:
            labels = node.labels
            end = pos + len(labels)
            if end <= n and query[pos:end] == labels:
                if last is not None and len(node.ends) < len(last.ends):
                    if out:
                        out.update(last.ends)
                    else:  # the first (largest) merge: a copy, in C, beats inserting one by one
                        out = last.ends.copy()
                if node.gaps:
                    cuts = self._cuts(node, len(labels), cuts)
                if path is not None:
                    path.append((node, len(labels)))
                last = node
                pos = end
                if pos == n or node.kids is None:
                    break
                node = node.kids.get(query[pos])
                if node is None:
                    break
                continue
            if end > n and query[pos:] == labels[:n - pos]:  # the query ends inside the node
                matched = n - pos
            else:
                matched = common_prefix(labels, 0, query, pos, min(len(labels), n - pos))
            if last is not None:
                if out:
                    out.update(last.ends)
                else:
                    out = last.ends.copy()
                last = None
            score = pos + matched
            if len(node.ends) > 4:
                out.update(dict.fromkeys(node.ends, score))
            else:  # the usual partial match, a worker's own run: a loop beats a temporary dict
                for worker in node.ends:
                    out[worker] = score
            if node.gaps:
                cuts = self._cuts(node, matched, cuts)
            if path is not None:
                path.append((node, matched))
            pos += matched
            break
        if last is not None:
            if out:
                out.update(last.ends)
            else:
                out = last.ends.copy()
        if cuts:
            out.update(cuts)  # a cut lies above the end of the lane it cuts: it is the new score
            if 0 in cuts.values():
                for worker in [w for w, depth in cuts.items() if depth == 0]:
                    del out[worker]
        return out, pos

    @staticmethod
    def _cuts(node: Node, matched: int, cuts: dict | None) -> dict:
        """Merge the first holes among the first ``matched`` slots of ``node`` into ``cuts``
        (shallower cuts, from nodes above, win).  O(workers with holes here), in C when the
        node is passed whole; the per-node cache ``first`` is rebuilt only after a change."""
        first = node.first
        if first is None:
            depth = node.depth
            first = node.first = {worker: depth + min(gaps) for worker, gaps in node.gaps.items()}
        if matched < len(node.labels):
            limit = node.depth + matched
            first = {worker: depth for worker, depth in first.items() if depth < limit}
        return first.copy() if cuts is None else first | cuts

    def anchors(self, query: list[int]) -> dict[Worker, tuple[int, int]]:
        """``worker -> (score, E at its last matched slot)``: the walk plus O(workers x log path)."""
        path: list = []
        scores = self.scores(query, path)
        depths = [node.depth for node, _ in path]
        from bisect import bisect_right

        out = {}
        for worker, score in scores.items():
            node, _ = path[bisect_right(depths, score - 1) - 1]
            out[worker] = (score, node.blocks[score - 1 - node.depth])
        return out

    # -- invariants --------------------------------------------------------------------------

    def _check(self) -> None:
        """Every invariant of the module docs: O(nodes + slots + lanes)."""
        root = self.root
        assert not root.labels and not root.blocks and not root.ends and root.gaps is None
        owner: dict[int, Node] = {}
        held: dict[Worker, int] = {}
        nodes_of: dict[Worker, set[Node]] = {}
        keys: list[Worker] = [*self.nodes, *self.held]
        stack = [root]
        count = 0
        while stack:
            node = stack.pop()
            keys += [*node.ends, *(node.gaps or ()), *(node.below or ())]
            if node is not root:
                count += 1
                size = len(node.labels)
                assert size and len(node.blocks) == size, "a node without positions, or blocks and labels disagree"
                assert node.ends, "a node without lanes is kept"
                assert all(end == node.end for end in node.ends.values()), "stale ends"
                parent = self.parent[node]
                assert parent.kids[node.labels[0]] is node and node.depth == parent.end
                for e in node.blocks:
                    assert e not in owner, "a block named on two paths"
                    owner[e] = node
                for worker in node.ends:
                    assert parent is root or worker in parent.ends, "holder sets not nested"
                    gaps = node.holes(worker) or set()
                    assert all(0 <= o < size for o in gaps), "a hole outside its node"
                    held[worker] = held.get(worker, 0) + size - len(gaps)
                    nodes_of.setdefault(worker, set()).add(node)
                    if len(gaps) == size:
                        assert worker in (node.below or {}), "a lane of holes only with nothing below"
                if node.gaps is not None:
                    assert node.gaps and all(node.gaps.values()) and set(node.gaps) <= set(node.ends)
                if node.first is not None:
                    assert node.first == {w: node.depth + min(g) for w, g in (node.gaps or {}).items()}, \
                        "stale first-hole cache"
            counts: dict[Worker, int] = {}
            for kid in (node.kids or {}).values():
                for worker in kid.ends:
                    counts[worker] = counts.get(worker, 0) + 1
            assert node.below == (counts if node.kids is not None else None), "stale lane counts below"
            if node.kids is not None:
                assert node.kids, "an empty child map is kept"
                for label, kid in node.kids.items():
                    assert kid.labels[0] == label and self.parent[kid] is node
                    stack.append(kid)
        assert owner == self.owner, "owner disagrees with the nodes' blocks"
        assert held == self.held and all(held.values()), "held counts are stale, or a worker holding nothing is kept"
        assert {w: set(n) for w, n in self.nodes.items()} == nodes_of, "nodes disagrees with the lanes"
        assert self.workers.keys() == self.nodes.keys(), "workers and nodes disagree"
        assert len(self.parent) == count, "a parent kept for a node no longer in the trie"
        assert all(self.workers[w] is w for w in keys), "a worker named by a second tuple"


block_hash_of = attrgetter("block_hash")
tokens_hash_of = attrgetter("tokens_hash")
