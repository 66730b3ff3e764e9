"""The device index's query structure: a compressed trie over local-hash paths, one *lane* per worker.

Contract: ``kvspec.model.radix``.  Every block a worker holds hangs under its parent, so it has a
*path*: the local hashes ``L`` from the root down to it.  When a worker's external hashes are a
function of that path (what Dynamo's router assumes: ``E`` is the chained hash of the ``L``\\ s), the
worker has at most one block per path, and all of its blocks fit in one trie over paths::

    Node.labels          [L, L, ...]     a run of path positions depth .. depth+len-1
    Node.lanes[w]        [E | None, ...] the worker's block at each position, None = a hole
    Node.gaps[w]         {offset: E}     which block each hole stood for (removed, not re-stored)
    Node.ends[w]         depth+len       the lane's score if a query passes the whole node
    Node.first[w]        depth           where the lane's first hole is (a cache of ``gaps``)
    Node.kids[L]         child node      keyed by the child's first label
    Node.below[w]        count           how many children hold a lane of w (None iff no kids)
    LaneTrie.parent[n]   node            the parent of every node but the root
    LaneTrie.where[w][E] node            the node holding each held block of ``w`` (a lane entry)
    LaneTrie.holes[w][E] node            the node holding each hole of ``w`` (a gaps entry)
    LaneTrie.workers[w]  w               the one tuple naming ``w`` in every dict of the trie

A slot ``(node, offset)`` of ``w`` holds the block whose parent is the block (or hole) of ``w`` at
the slot above; so a worker's score for a query is the depth of the first slot along the query's
path that it lacks or that is a hole.  Removal never cascades: it leaves a hole (O(1)), the blocks
below keep their slots, and re-storing the same block under the same parent fills the hole
(O(1)); blocks behind a hole simply stop counting.  Holder sets are nested: ``w`` has a lane in a
child only if it has one in the parent (lanes are only ever cut from the bottom).  Nodes split
where a lane starts or stops mid-run, so a lane covers its node entirely.

A worker whose blocks do *not* fit — two blocks on one path, a block re-filed under another
parent, a hole re-stored with another hash, a chain under a parent the worker does not hold — is
moved, whole, to an :class:`~kvspec.impl.radix.BlockTable` (the general edge table; O(score) per
query for that worker) and stays there until it holds nothing.  That is the hybrid: consistent
workers get the trie, anything else stays exact.

Query (``scores``): a dict descent whose steps compare whole runs (``q[p:p+n] == labels``, C
code), then one ``dict.update`` with a precomputed ``ends`` per node where the holder count
drops, and a correction for holes on the path.  Cost: ``O(nodes on the path + workers at the
nodes where the holder count drops + holes on the path)``, independent of the blocks held and of
workers that do not match; a miss is one dict lookup.

GC: per-block state lives in lists of ints and ``E -> node`` dicts; no tuple, set or dict is
created per block, so storing a chain allocates O(1) container objects, not O(blocks), and
continuing a leaf run allocates none.  The trie has no reference cycle (parents are kept in
``LaneTrie.parent``, not on the nodes), so a dropped index or node is freed by reference
counting at once, never left for a full collection.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat
from operator import attrgetter

Worker = tuple[int, int]
Blocks = dict[int, tuple[int | None, int]]


class Node:
    """One run of path positions and the lanes of the workers that hold all of them (module docs)."""

    __slots__ = ("labels", "depth", "kids", "below", "lanes", "ends", "gaps", "first")

    def __init__(self, labels: list[int], depth: int, worker: Worker | None = None,
                 lane: list[int | None] | None = None) -> None:
        """A node of ``labels`` at ``depth``: without lanes, or with ``worker``'s ``lane`` alone."""
        self.labels = labels
        self.depth = depth
        self.kids: dict[int, Node] | None = None
        #: worker -> number of children where it has a lane (so "a lane below?" is O(1))
        self.below: dict[Worker, int] | None = None
        if worker is None:
            self.lanes: dict[Worker, list[int | None]] = {}
            self.ends: dict[Worker, int] = {}
        else:
            self.lanes = {worker: lane}
            self.ends = {worker: depth + len(labels)}
        self.gaps: dict[Worker, dict[int, int]] | None = None
        #: depth of each worker's first hole here; None when stale (rebuilt by the next query)
        self.first: dict[Worker, int] | None = None

    @property
    def end(self) -> int:
        return self.depth + len(self.labels)


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
    """Raised inside a placement when the worker's blocks stop fitting one lane per path."""


class LaneTrie:
    """The trie of lanes (module docs) for the workers whose blocks fit it."""

    __slots__ = ("root", "parent", "where", "holes", "workers")

    def __init__(self) -> None:
        self.root = Node([], 0)
        #: each node's parent, kept here rather than on the node: a child pointing back at its
        #: parent would make the trie a web of reference cycles, which only the cyclic GC can
        #: free (a full collection); without them, dropping an index frees it at once
        self.parent: dict[Node, Node] = {}
        self.where: dict[Worker, dict[int, Node]] = {}
        self.holes: dict[Worker, dict[int, Node]] = {}
        #: each worker's tuple as first stored: every dict of the trie is keyed by that one
        #: object, so the query's merges of ``ends`` compare worker keys by identity, not by value
        self.workers: dict[Worker, Worker] = {}

    # -- lookups, O(1) unless stated ---------------------------------------------------------

    def holds(self, worker: Worker, e: int) -> bool:
        blocks = self.where.get(worker)
        return blocks is not None and e in blocks

    def slot(self, worker: Worker, e: int) -> tuple[Node, int]:
        """Where ``worker``'s held block ``e`` sits: O(1) at a lane's end, else O(lane) in C."""
        node = self.where[worker][e]
        lane = node.lanes[worker]
        return node, (len(lane) - 1 if lane[-1] == e else lane.index(e))

    def blocks_of(self, worker: Worker) -> Blocks:
        """``E -> (parent E, L)`` for every held block of ``worker``: O(its blocks + its nodes)."""
        out: Blocks = {}
        for node in set(self.where.get(worker, {}).values()):
            lane = node.lanes[worker]
            gaps = node.gaps.get(worker, {}) if node.gaps else {}
            above = self._last_of(self.parent[node], worker)
            for offset, e in enumerate(lane):
                if e is not None:
                    out[e] = (above, node.labels[offset])
                above = e if e is not None else gaps[offset]
        return out

    def _last_of(self, node: Node, worker: Worker) -> int | None:
        """The block (or hole's block) of ``worker`` at the last slot of ``node``; None at the root."""
        if node is self.root:
            return None
        e = node.lanes[worker][-1]
        return e if e is not None else node.gaps[worker][len(node.labels) - 1]

    # -- storing -----------------------------------------------------------------------------

    def extend_leaf(self, worker: Worker, parent: int, es: list[int], blocks) -> bool:
        """The common case of :meth:`store`, O(k) in C plus one dict store per block: ``parent``
        ends ``worker``'s lane in a leaf nobody else holds, so the chain ``es`` (of ``blocks``)
        continues that run in place — two list extends and the stores, no container created.

        Returns False, changing nothing, when that is not the case, when a block of ``es`` is
        already held or a hole of the worker, or when ``es`` names a block twice (then the caller
        decides: :meth:`store`, or the event's error).  So a caller may skip the acyclic-batch rule
        (:func:`kvspec.checks.stored_acyclic`) when this returns True: ``parent`` is held and no
        block of ``es`` is, so ``parent`` is not among them, and the stores added ``len(es)``
        blocks, so no name repeats.  A repeat is found after its stores, which are then undone
        (all of ``es`` were new): the rare invalid event pays, not the valid one.
        """
        blocks_of = self.where.get(worker)
        if blocks_of is None:
            return False
        node = blocks_of.get(parent)
        if node is None or node.kids is not None or len(node.lanes) != 1:
            return False
        lane = node.lanes[worker]
        if lane[-1] != parent or not blocks_of.keys().isdisjoint(es):
            return False
        holes = self.holes.get(worker)
        if holes and not holes.keys().isdisjoint(es):
            return False
        size = len(blocks_of)
        for e in es:  # a loop of stores beats building a dict to merge (no temporary)
            blocks_of[e] = node
        if len(blocks_of) - size != len(es):  # a name repeats: undo
            for e in es:
                blocks_of.pop(e, None)
            return False
        node.labels += map(tokens_hash_of, blocks)
        lane += es
        node.ends[worker] = node.depth + len(lane)
        return True

    def store(self, worker: Worker, parent: int | None, es: list[int], ls: list[int]) -> None:
        """File the chain ``es`` (local hashes ``ls``) under ``parent`` (held, or None for the root).

        O(len(es)) in C plus O(nodes walked) in Python; a split costs O(holders x the smaller
        side) ``where`` updates.  Raises :class:`Irregular` (with the trie possibly holding a
        prefix of the chain) when the chain does not fit the worker's lanes.
        """
        blocks = self.where.get(worker)
        if blocks is None:
            blocks = self.where[worker] = {}
            self.workers[worker] = worker
        else:
            worker = self.workers[worker]
        holes = self.holes.get(worker)
        if parent is None:
            node, offset = self.root, -1
        else:
            node = blocks[parent]
            lane = node.lanes[worker]
            offset = len(lane) - 1 if lane[-1] == parent else lane.index(parent)
        i, k = 0, len(es)
        while i < k:
            size = len(node.labels)
            if offset + 1 < size:  # inside ``node``, where the worker has a lane
                span = min(size - offset - 1, k - i)
                if offset == -1 and span == size and ls[i:i + size] == node.labels:
                    j = size  # the usual repeat: the whole node, one comparison
                else:
                    j = common_prefix(node.labels, offset + 1, ls, i, span)
                if j:
                    lane = node.lanes[worker]
                    if lane[offset + 1:offset + 1 + j] != es[i:i + j]:
                        self._refill(worker, node, offset + 1, es[i:i + j])
                    i += j
                    offset += j
                    continue
                node, _ = self._split(node, offset + 1)
                continue
            child = node.kids.get(ls[i]) if node.kids else None
            if child is None:
                rest, locals_ = (es, ls) if i == 0 else (es[i:], ls[i:])
                keys = blocks.keys()
                if not keys.isdisjoint(rest) or (holes and not holes.keys().isdisjoint(rest)):
                    raise Irregular
                if node.kids is None and len(node.lanes) == 1 and node is not self.root:
                    node.labels += locals_  # the worker's own leaf run: extend it in place
                    node.lanes[worker] += rest
                    node.ends[worker] = node.depth + len(node.labels)
                else:
                    child = Node(locals_, node.depth + len(node.labels), worker, rest)
                    self.parent[child] = node
                    if node.kids is None:
                        node.kids, node.below = {}, {}
                    node.kids[ls[i]] = child
                    node.below[worker] = node.below.get(worker, 0) + 1
                    node = child
                for e in rest:
                    blocks[e] = node
                return
            if worker in child.lanes:
                node, offset = child, -1
                continue
            size = len(child.labels)
            if k - i >= size and ls[i:i + size] == child.labels:
                j = size  # the usual join: the whole node, one comparison
            else:
                j = common_prefix(child.labels, 0, ls, i, min(size, k - i))
            run = es if j == k else es[i:i + j]
            if not blocks.keys().isdisjoint(run) or (holes and not holes.keys().isdisjoint(run)):
                raise Irregular
            if j < len(child.labels):
                child, _ = self._split(child, j)
            child.lanes[worker] = run
            node.below[worker] = node.below.get(worker, 0) + 1
            child.ends[worker] = child.end
            for e in run:
                blocks[e] = child
            i += j
            node, offset = child, j - 1

    def _refill(self, worker: Worker, node: Node, at: int, run: list[int]) -> None:
        """Slots ``at..`` already exist for ``worker``: each must hold the same block (a repeat) or a
        hole left by that very block (filled again).  Anything else raises :class:`Irregular`.
        O(len(run))."""
        lane = node.lanes[worker]
        gaps = node.gaps.get(worker) if node.gaps else None
        for t, e in enumerate(run):
            current = lane[at + t]
            if current == e:
                continue
            if current is not None or gaps is None or gaps.get(at + t) != e:
                raise Irregular
        node.first = None
        for t, e in enumerate(run):  # all checked: fill the holes
            if lane[at + t] is None:
                lane[at + t] = e
                del gaps[at + t]
                del self.holes[worker][e]
                self.where[worker][e] = node
        if not gaps:
            del node.gaps[worker]
            if not node.gaps:
                node.gaps = None

    def _split(self, node: Node, at: int) -> tuple[Node, Node]:
        """Cut ``node`` before offset ``at`` (0 < at < len): return (top, bottom).

        The side with fewer slots becomes the new node, so the ``where``/``holes`` updates cost
        O(holders x min(at, len - at)).
        """
        size = len(node.labels)
        if at <= size - at:  # a new top node
            top = Node(node.labels[:at], node.depth)
            top.kids = {node.labels[at]: node}
            top.below = dict.fromkeys(node.lanes, 1)
            up = self.parent[top] = self.parent[node]
            up.kids[node.labels[0]] = top
            self.parent[node] = top
            node.labels = node.labels[at:]
            node.depth += at
            moved, kept = top, node
            for worker, lane in node.lanes.items():
                top.lanes[worker] = lane[:at]
                node.lanes[worker] = lane[at:]
            top.ends = dict.fromkeys(top.lanes, top.end)
            new_bottom = False
        else:  # a new bottom node
            bottom = Node(node.labels[at:], node.depth + at)
            self.parent[bottom] = node
            bottom.kids, bottom.below = node.kids, node.below
            if bottom.kids:
                for kid in bottom.kids.values():
                    self.parent[kid] = bottom
            node.kids = {bottom.labels[0]: bottom}
            node.below = dict.fromkeys(node.lanes, 1)
            node.labels = node.labels[:at]
            moved, kept = bottom, node
            for worker, lane in node.lanes.items():
                bottom.lanes[worker] = lane[at:]
                node.lanes[worker] = lane[:at]
            bottom.ends = node.ends
            node.ends = dict.fromkeys(node.lanes, node.end)
            new_bottom = True
        for worker, lane in moved.lanes.items():
            blocks = self.where[worker]
            blocks.update(dict.fromkeys(lane, moved))
            blocks.pop(None, None)
        if node.gaps:
            top_gaps: dict[Worker, dict[int, int]] = {}
            low_gaps: dict[Worker, dict[int, int]] = {}
            for worker, gaps in node.gaps.items():
                for offset, e in gaps.items():
                    if offset < at:
                        top_gaps.setdefault(worker, {})[offset] = e
                    else:
                        low_gaps.setdefault(worker, {})[offset - at] = e
            top_node, low_node = (kept, moved) if new_bottom else (moved, kept)
            top_node.gaps = top_gaps or None
            low_node.gaps = low_gaps or None
            top_node.first = low_node.first = None
            for worker, gaps in moved.gaps.items() if moved.gaps else ():
                holes = self.holes[worker]
                for e in gaps.values():
                    holes[e] = moved
        low = moved if new_bottom else kept
        if low.gaps:
            self._shed(low)
        return (kept, moved) if new_bottom else (moved, kept)

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

        O(1) per name plus, per lane touched, O(lane) in C to find offsets and :meth:`_trim`.
        A name repeated within one event is not an error (an event names a set).
        """
        blocks = self.where.get(worker)
        if blocks is None:
            return list(dict.fromkeys(hashes))
        worker = self.workers[worker]
        names = hashes if type(hashes) is list else list(hashes)
        if not names:
            return []
        size = len(blocks)
        found = list(map(blocks.pop, names, repeat(None)))  # O(k) in C
        touched: dict[Node, list[int]]
        if size - len(blocks) == len(names):  # each name held, none repeated: nothing missing
            missing = []
            if found.count(found[0]) == len(found):  # the common case: one lane
                touched = {found[0]: names}
            else:
                touched = {}
                for e, node in zip(names, found):
                    touched.setdefault(node, []).append(e)
        else:  # a repeat pops None the second time: the names that no pop found are missing
            got = {e: node for e, node in zip(names, found) if node is not None}
            missing = [e for e in dict.fromkeys(names) if e not in got]
            if not got:
                return missing
            touched = {}
            for e, node in got.items():
                touched.setdefault(node, []).append(e)
        holes = self.holes.setdefault(worker, {})
        above: list[Node] = []
        for node, names in touched.items():
            lane = node.lanes[worker]
            cut = len(lane) - len(names)
            if cut >= 0 and node.kids is None and node.gaps is None and len(node.lanes) == 1 \
                    and _is_tail(lane, cut, names, blocks):
                # the common case, O(k) in C: the tail of the worker's own leaf run goes
                if cut:
                    del lane[cut:]
                    del node.labels[cut:]
                    node.ends[worker] = node.depth + cut
                else:  # the whole run: the node goes, the lane above may now end in holes
                    above.append(self.parent[node])
                    self._drop_lane(worker, node)
                continue
            offsets = dict(zip(lane, range(len(lane)))) if len(names) > 2 else None
            if node.gaps is None:
                node.gaps = {}
            node.first = None
            gaps = node.gaps.setdefault(worker, {})
            for e in names:
                offset = offsets[e] if offsets is not None else lane.index(e)
                lane[offset] = None
                gaps[offset] = e
                holes[e] = node
        for node in touched:
            self._trim(worker, node)
        for node in above:
            self._trim(worker, node)
        if not self.holes.get(worker, True):
            del self.holes[worker]
        if not blocks:
            self._forget(worker)
        return missing

    def _trim(self, worker: Worker, node: Node) -> None:
        """Drop trailing holes nobody needs: a lane of holes only, with no lane of the worker below,
        leaves its node (the node goes when its last lane does), and a lone lane with no node
        below loses its trailing holes.  O(holes dropped + nodes climbed): ``below`` answers "a lane
        of the worker below?" in O(1)."""
        root = self.root
        while node is not root:
            lane = node.lanes.get(worker)
            if lane is None or lane[-1] is not None:
                return
            if node.below and worker in node.below:
                return
            gaps = node.gaps[worker]
            node.first = None
            if len(gaps) == len(lane):  # holes only: the lane leaves the node
                up = self.parent[node]
                self._drop_lane(worker, node)
                node = up
                continue
            if len(node.lanes) == 1 and not node.kids:
                cut = len(lane)
                while lane[cut - 1] is None:
                    cut -= 1
                holes = self.holes[worker]
                for offset in range(cut, len(lane)):
                    del holes[gaps.pop(offset)]
                del lane[cut:]
                del node.labels[cut:]
                node.ends[worker] = node.end
                if not gaps:
                    node.gaps = None
            return

    def _drop_lane(self, worker: Worker, node: Node) -> None:
        """Remove ``worker``'s lane (and its holes) from ``node``; unlink the node once empty."""
        del node.lanes[worker]
        del node.ends[worker]
        if node.gaps and worker in node.gaps:
            node.first = None
            holes = self.holes[worker]
            for e in node.gaps.pop(worker).values():
                del holes[e]
            if not holes:
                del self.holes[worker]
            if not node.gaps:
                node.gaps = None
        parent = self.parent[node]
        count = parent.below[worker] - 1
        if count:
            parent.below[worker] = count
        else:
            del parent.below[worker]
        if not node.lanes:
            del self.parent[node]
            del parent.kids[node.labels[0]]
            if not parent.kids:
                parent.kids = parent.below = None

    def drop(self, worker: Worker) -> None:
        """Forget every lane of ``worker``: O(its blocks) in C + O(its nodes) in Python."""
        nodes = set(self.where.get(worker, {}).values())
        nodes.update(self.holes.get(worker, {}).values())
        for node in sorted(nodes, key=lambda n: -n.depth):  # deepest first: unlink leaves first
            if worker in node.lanes:
                self._drop_lane(worker, node)
        self.where.pop(worker, None)
        self.holes.pop(worker, None)
        self.workers.pop(worker, None)

    def _forget(self, worker: Worker) -> None:
        """The worker holds nothing any more: drop its remaining holes."""
        if self.holes.get(worker):
            self.drop(worker)
        self.where.pop(worker, None)
        self.holes.pop(worker, None)
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
            if len(node.lanes) > 4:
                out.update(dict.fromkeys(node.lanes, score))
            else:  # the usual partial match, a worker's own run: a loop beats a temporary dict
                for worker in node.lanes:
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
            out[worker] = (score, node.lanes[worker][score - 1 - node.depth])
        return out

    # -- invariants --------------------------------------------------------------------------

    def _check(self) -> None:
        """Every invariant of the module docs: O(nodes + slots), i.e. O(pairs held)."""
        seen: dict[Worker, dict[int, Node]] = {}
        seen_holes: dict[Worker, dict[int, Node]] = {}
        stack = [self.root]
        nodes = 0
        assert not self.root.labels and not self.root.lanes and self.root.gaps is None
        while stack:
            node = stack.pop()
            if node is not self.root:
                assert node.labels, "a node without positions"
                assert node.lanes, "a node without lanes is kept"
                assert node.ends == dict.fromkeys(node.lanes, node.end), "stale ends"
                parent = self.parent[node]
                assert parent.kids[node.labels[0]] is node and node.depth == parent.end
                nodes += 1
                for worker, lane in node.lanes.items():
                    assert len(lane) == len(node.labels), "a lane not covering its node"
                    assert parent is self.root or worker in parent.lanes, "holder sets not nested"
                    gaps = (node.gaps or {}).get(worker, {})
                    for offset, e in enumerate(lane):
                        if e is None:
                            seen_holes.setdefault(worker, {})[gaps[offset]] = node
                        else:
                            assert offset not in gaps
                            seen.setdefault(worker, {})[e] = node
                    assert len(gaps) == lane.count(None), "gaps and holes disagree"
                    if len(gaps) == len(lane):
                        assert worker in (node.below or {}), "a lane of holes only with nothing below"
                if node.gaps is not None:
                    assert node.gaps and all(node.gaps.values()) and set(node.gaps) <= set(node.lanes)
                if node.first is not None:
                    assert node.first == {w: node.depth + min(g) for w, g in (node.gaps or {}).items()}, \
                        "stale first-hole cache"
            counts: dict[Worker, int] = {}
            for kid in (node.kids or {}).values():
                for worker in kid.lanes:
                    counts[worker] = counts.get(worker, 0) + 1
            assert node.below == (counts if node.kids is not None else None), "stale lane counts below"
            if node.kids is not None:
                assert node.kids, "an empty child map is kept"
                for label, kid in node.kids.items():
                    assert kid.labels[0] == label and self.parent[kid] is node
                    stack.append(kid)
        assert {w: b for w, b in self.where.items() if b} == seen, "where disagrees with the lanes"
        assert self.workers.keys() == self.where.keys(), "workers and where disagree"
        assert len(self.parent) == nodes, "a parent kept for a node no longer in the trie"
        keys = [*self.where, *self.holes]
        stack = [self.root]
        while stack:
            node = stack.pop()
            keys += [*node.lanes, *node.ends, *(node.gaps or ()), *(node.below or ())]
            stack += (node.kids or {}).values()
        assert all(self.workers[w] is w for w in keys), "a worker named by a second tuple"
        assert all(self.where.values()), "an empty block map is kept"
        assert {w: h for w, h in self.holes.items() if h} == seen_holes, "holes disagree with the gaps"


def _is_tail(lane: list[int | None], cut: int, names: list[int], held: dict[int, Node]) -> bool:
    """Are ``names`` — distinct blocks of ``lane``, no longer in ``held`` — exactly ``lane[cut:]``?
    O(len(names)) in C: the usual orders (leaf first, or root first) in one comparison, else no
    block of the tail still held."""
    tail = lane[cut:]
    return tail == names[::-1] or tail == names or held.keys().isdisjoint(tail)


block_hash_of = attrgetter("block_hash")
tokens_hash_of = attrgetter("tokens_hash")


