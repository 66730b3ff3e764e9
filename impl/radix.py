"""Optimized device-tier prefix index: one shared edge table, per-worker coverage.

Same contract as the reference model (``kvspec.model.radix``): per worker ``w = (worker_id,
dp_rank)`` a map ``E -> (parent E, L)``; a query scores the longest root-anchored chain of held
blocks spelling the query's prefix; removal never cascades.

Structure (:class:`BlockTable`), shared by all workers of one tier::

    edges[(parent E | None, L)] -> {E: holders}     # every held block, grouped by where it hangs
    held[w]                    -> {E: (parent, L)}  # what each worker holds (parent lookups, removal)
    ranks[worker_id]           -> {dp_rank}         # which ranks a worker id has (remove_worker)

Invariants (``_check``): ``w in edges[(p, l)][e]`` iff ``held[w][e] == (p, l)``; no empty holder
set, child map, block map or rank set is kept; ``ranks`` lists exactly the ranks in ``held``.
Workers with identical (E-consistent) histories share every edge, so the table grows with the
number of distinct blocks, not with workers times blocks.

Complexity: storing or removing ``k`` blocks is ``O(k)``; ``remove_worker`` is ``O(blocks of that
worker)``.  A query walks a layered frontier ``E -> workers still matching there``: moving one
step intersects each frontier set with the holders of the matching child edges, and Python's set
intersection iterates the smaller side, so one step costs ``O(workers still matching)`` (times the
number of distinct external hashes filed under one ``(parent, L)``, which is 1 whenever E is a
function of the L-path), in C-level set operations.  The whole query is ``O(sum of the scores)``
set work plus ``O(workers matched)`` Python-level work (each worker's score is assigned once, from
the deepest layer up): bounded by the answer's size and independent of workers that do not match.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence

from kvspec import checks
from kvspec.checks import U64
from kvspec.errors import BlockNotFound, ParentBlockNotFound
from kvspec.events import Cleared, KvCacheEvent, Removed, RouterEvent, StorageTier, Stored, StoredBlock
from kvspec.impl.trie import Blocks, Irregular, LaneTrie, block_hash_of, tokens_hash_of
from kvspec.scores import Continuation, OverlapScores

Worker = tuple[int, int]
_EVERY_WORKER = None  # frontier marker at the root when every worker may start there


#: the acyclic-batch rule (:func:`kvspec.checks.stored_acyclic`), under the name mutants import
check_acyclic_batch = checks.stored_acyclic


class BlockTable:
    """Shared edge table of one tier (see module docs for structure, invariants, complexity)."""

    __slots__ = ("edges", "held", "ranks")

    def __init__(self) -> None:
        self.edges: dict[tuple[int | None, int], dict[int, set[Worker]]] = {}
        self.held: dict[Worker, dict[int, tuple[int | None, int]]] = {}
        self.ranks: dict[int, set[int]] = {}

    # -- mutation, O(1) per block ----------------------------------------------------------

    def attach(self, worker: Worker, e: int, parent: int | None, local: int) -> None:
        blocks = self.held.get(worker)
        if blocks is None:
            blocks = self.held[worker] = {}
            self.ranks.setdefault(worker[0], set()).add(worker[1])
        old = blocks.get(e)
        if old == (parent, local):
            return
        if old is not None:
            self._unlink(worker, e, old)
        blocks[e] = (parent, local)
        self.edges.setdefault((parent, local), {}).setdefault(e, set()).add(worker)

    def store_chain(self, worker: Worker, parent: int | None, blocks: Sequence[StoredBlock]) -> None:
        """File ``blocks`` one under the other, the first under ``parent``: O(1) per block."""
        if not blocks:
            return
        held = self.held.get(worker)
        if held is None:
            held = self.held[worker] = {}
            self.ranks.setdefault(worker[0], set()).add(worker[1])
        edges = self.edges
        for block in blocks:
            e = block.block_hash
            key = (parent, block.tokens_hash)
            old = held.get(e)
            if old != key:
                if old is not None:
                    self._unlink(worker, e, old)
                held[e] = key
                children = edges.get(key)
                if children is None:
                    edges[key] = {e: {worker}}
                else:
                    holders = children.get(e)
                    if holders is None:
                        children[e] = {worker}
                    else:
                        holders.add(worker)
            parent = e

    def detach(self, worker: Worker, e: int) -> bool:
        """Drop one block of ``worker``; ``False`` if it did not hold it."""
        blocks = self.held.get(worker)
        if blocks is None or e not in blocks:
            return False
        self._unlink(worker, e, blocks.pop(e))
        if not blocks:
            self._forget(worker)
        return True

    def drop_worker(self, worker: Worker) -> None:
        blocks = self.held.get(worker)
        if blocks is None:
            return
        for e, key in blocks.items():
            self._unlink(worker, e, key)
        self._forget(worker)

    def drop_worker_id(self, worker_id: int) -> None:
        for rank in list(self.ranks.get(worker_id, ())):
            self.drop_worker((worker_id, rank))

    def _unlink(self, worker: Worker, e: int, key: tuple[int | None, int]) -> None:
        children = self.edges[key]
        holders = children[e]
        holders.discard(worker)
        if not holders:
            del children[e]
            if not children:
                del self.edges[key]

    def _forget(self, worker: Worker) -> None:
        del self.held[worker]
        rank_set = self.ranks[worker[0]]
        rank_set.discard(worker[1])
        if not rank_set:
            del self.ranks[worker[0]]

    # -- queries ---------------------------------------------------------------------------

    def root_holders(self, local: int) -> set[Worker]:
        """Workers holding a root block with local hash ``local``."""
        out: set[Worker] = set()
        for holders in self.edges.get((None, local), {}).values():
            out |= holders
        return out

    def _layers(self, query: Sequence[int], seeds: Mapping[Worker, Continuation] | None,
                early_exit: bool) -> list[tuple[int, dict[int, set[Worker]]]]:
        """The walk: for each position reached, ``E -> workers whose chain reaches it at E``.

        ``seeds=None`` starts every worker at the root (a marker, not a set of all workers, so
        workers that match nothing cost nothing).  Each step intersects the frontier's worker
        sets with the holders of the child edges matching the next local hash (C-level set
        operations, iterating the smaller side).  ``early_exit`` stops after the first position
        reached by exactly one worker.
        """
        history: list[tuple[int, dict[int, set[Worker]]]] = []
        layers: dict[int, dict] = {}
        if seeds is None:
            layers[0] = {None: _EVERY_WORKER}
        else:
            for worker, start in seeds.items():
                layer = layers.setdefault(start.position, {})
                for anchor in (start.anchors if start.position > 0 else (None,)):
                    layer.setdefault(anchor, set()).add(worker)
        edges = self.edges
        position = min(layers, default=len(query))
        while position < len(query) and layers:
            layer = layers.pop(position, None)
            if layer:
                nxt = layers.setdefault(position + 1, {})
                local = query[position]
                for anchor, workers in layer.items():
                    children = edges.get((anchor, local))
                    if children is None:
                        continue
                    for e, holders in children.items():
                        moved = holders.copy() if workers is _EVERY_WORKER else workers & holders
                        if moved:
                            bucket = nxt.get(e)
                            if bucket is None:
                                nxt[e] = moved
                            else:
                                bucket |= moved
                if not nxt:
                    del layers[position + 1]
                else:
                    history.append((position + 1, nxt))
                    if early_exit:
                        sets = list(nxt.values())
                        alone = len(sets[0]) == 1 if len(sets) == 1 else len(set().union(*sets)) == 1
                        if alone:
                            break
            position += 1
        return history

    def walk(self, query: Sequence[int], seeds: Mapping[Worker, Continuation] | None,
             early_exit: bool = False) -> dict[Worker, Continuation]:
        """Extend every seed along ``query``; ``seeds=None`` starts every worker at the root.

        Returns each worker's reached continuation (seeds included, extended or not; with
        ``seeds=None`` only workers that matched at least one block).  Reading the layers from
        the deepest, each worker is assigned once, at the deepest position it reached.
        """
        reached: dict[Worker, Continuation] = dict(seeds) if seeds else {}
        assigned: set[Worker] = set()
        for position, layer in reversed(self._layers(query, seeds, early_exit)):
            ends: dict[Worker, list[int]] = {}
            for e, workers in layer.items():
                for worker in workers - assigned:
                    ends.setdefault(worker, []).append(e)
            for worker, anchors in ends.items():
                reached[worker] = Continuation(position, anchors)
            assigned.update(ends)
        return reached

    def scores(self, query: Sequence[int], early_exit: bool = False) -> dict[Worker, int]:
        """Root walk, positions only (no continuation objects): the device query's hot path."""
        out: dict[Worker, int] = {}
        assigned: set[Worker] = set()
        for position, layer in reversed(self._layers(query, None, early_exit)):
            for workers in layer.values():
                fresh = workers - assigned
                if fresh:
                    assigned |= fresh
                    out.update(dict.fromkeys(fresh, position))
        return out

    # -- dumps and checks ------------------------------------------------------------------

    def dump(self, tier: StorageTier, only_anchored: bool, first_id: int) -> list[RouterEvent]:
        """Stored events of every worker (:func:`dump_blocks`): O(blocks log blocks)."""
        return dump_blocks(self.held, tier, only_anchored, first_id)

    def _check(self) -> None:
        count = 0
        for worker, blocks in self.held.items():
            assert blocks, f"empty block map kept for {worker}"
            assert worker[1] in self.ranks.get(worker[0], ()), f"{worker} missing from ranks"
            for e, key in blocks.items():
                assert worker in self.edges[key][e], f"{worker} holds {e} but is not on edge {key}"
            count += len(blocks)
        listed = 0
        for key, children in self.edges.items():
            assert children, f"empty child map kept for {key}"
            for e, holders in children.items():
                assert holders, f"empty holder set kept for {key} -> {e}"
                for worker in holders:
                    assert self.held[worker][e] == key, f"edge {key} -> {e} lists {worker} wrongly"
                listed += len(holders)
        assert listed == count, "edge table and block maps disagree in size"
        for worker_id, rank_set in self.ranks.items():
            assert rank_set, f"empty rank set kept for {worker_id}"
            for rank in rank_set:
                assert (worker_id, rank) in self.held


def dump_blocks(held: Mapping[Worker, Blocks], tier: StorageTier, only_anchored: bool,
                first_id: int) -> list[RouterEvent]:
    """Stored events, per worker: anchored chains root to leaf (unbranched runs merged into one
    event), then (unless ``only_anchored``) every other block as its own event.  O(blocks log blocks)."""
    events: list[RouterEvent] = []

    def emit(worker: Worker, parent: int | None, run: list[int], blocks: Blocks) -> None:
        stored = Stored(parent, [StoredBlock(e, blocks[e][1]) for e in run])
        event = KvCacheEvent(first_id + len(events), stored, worker[1])
        events.append(RouterEvent(worker[0], event, tier))

    for worker in sorted(held):
        blocks = held[worker]
        children: dict[int | None, list[int]] = {}
        for e, (parent, _) in blocks.items():
            children.setdefault(parent, []).append(e)
        seen: set[int] = set()
        stack: list[tuple[int | None, int]] = [(None, e) for e in sorted(children.get(None, []), reverse=True)]
        while stack:
            parent, first = stack.pop()
            run = [first]
            seen.add(first)
            while True:
                below = [c for c in children.get(run[-1], []) if c not in seen]
                if len(below) != 1:
                    break
                run.append(below[0])
                seen.add(below[0])
            emit(worker, parent, run, blocks)
            stack += [(run[-1], c) for c in sorted(below, reverse=True)]
        if not only_anchored:
            for e in sorted(e for e in blocks if e not in seen):
                emit(worker, blocks[e][0], [e], blocks)
    return events


class DeviceTable:
    """The device tier's store: a :class:`LaneTrie` for the workers that fit it, a
    :class:`BlockTable` for the rest (``irregular``), and the ranks of each worker id.

    Invariants (``_check``, O(pairs held)): each worker is in exactly one of the two structures;
    ``ranks`` lists exactly the ranks holding blocks; both structures pass their own checks.
    """

    __slots__ = ("trie", "irregular", "ranks")

    def __init__(self) -> None:
        self.trie = LaneTrie()
        self.irregular = BlockTable()
        self.ranks: dict[int, set[int]] = {}

    @property
    def held(self) -> dict[Worker, Blocks]:
        """``worker -> {E: (parent E, L)}``, built on demand: O(pairs held) (for tests and mutants)."""
        out = {worker: self.trie.blocks_of(worker) for worker in self.trie.nodes}
        out.update(self.irregular.held)
        return out

    def holds(self, worker: Worker, e: int) -> bool:
        """O(1), or O(its node) in C when the worker has holes there (:meth:`LaneTrie.holds`)."""
        if worker in self.trie.nodes:
            return self.trie.holds(worker, e)
        return e in self.irregular.held.get(worker, ())

    def blocks_of(self, worker: Worker) -> Blocks:
        """O(the worker's blocks)."""
        if worker in self.irregular.held:
            return dict(self.irregular.held[worker])
        return self.trie.blocks_of(worker)

    # -- mutation ----------------------------------------------------------------------------

    def store_event(self, worker: Worker, parent: int | None, blocks: Sequence[StoredBlock],
                    names: list[int], leaf_tried: bool = False) -> None:
        """A Stored event's chain (``names`` its block hashes, whose acyclic-batch rule the caller
        may have left unchecked): :class:`InvalidBlockSequence` when the rule fails, else
        :class:`ParentBlockNotFound` unless ``worker`` holds ``parent``, else :meth:`store_chain`'s
        work.  The rule costs a set of the names; a trie worker's chain is checked by the trie
        instead (:meth:`LaneTrie.store`, :meth:`LaneTrie.extend_leaf`: a chain that passes obeys
        the rule, one that fails changed nothing), so the set is built only on the way to an
        error or to the edge table.  The hot path, unless the caller already tried it
        (``leaf_tried``): the chain continues the worker's own leaf run (O(k) in C)."""
        trie = self.trie
        if worker in trie.nodes:
            if parent is not None:
                if not trie.holds(worker, parent):
                    checks.acyclic_names(parent, names)
                    raise ParentBlockNotFound(f"worker {worker} does not hold parent block {parent}")
                if not leaf_tried and trie.extend_leaf(worker, parent, names, blocks):
                    return
            if blocks:
                self._store_in_trie(worker, parent, blocks, names)
            return
        held = self.irregular.held.get(worker)
        if held is not None or parent is not None:
            checks.acyclic_names(parent, names)
            if parent is not None and (held is None or parent not in held):
                raise ParentBlockNotFound(f"worker {worker} does not hold parent block {parent}")
        self.store_chain(worker, parent, blocks, names)

    def store_chain(self, worker: Worker, parent: int | None, blocks: Sequence[StoredBlock],
                    names: list[int] | None = None) -> None:
        """File ``blocks`` one under the other, the first under ``parent``.

        Trie workers: O(k) in C + O(nodes walked) (:meth:`LaneTrie.store`); a chain that does not
        fit moves the worker to the edge table (O(its blocks), once).  Edge-table workers: O(k).
        """
        if not blocks:
            return
        if worker not in self.irregular.held:
            es = names if names is not None else list(map(block_hash_of, blocks))
            known = worker in self.trie.nodes
            if parent is None or (known and self.trie.holds(worker, parent)):
                self._store_in_trie(worker, parent, blocks, es)
                return
            self._to_irregular(worker)
        self._add_rank(worker)
        self.irregular.store_chain(worker, parent, blocks)

    def _store_in_trie(self, worker: Worker, parent: int | None, blocks: Sequence[StoredBlock],
                       es: list[int]) -> None:
        """:meth:`LaneTrie.store` for a trie worker or a new one (``parent`` None or held in the
        trie).  A chain the trie refuses changed nothing: if it breaks the acyclic-batch rule that
        is the error; else the worker moves to the edge table (O(its blocks), once) and the chain
        is filed there."""
        try:
            self.trie.store(worker, parent, es, list(map(tokens_hash_of, blocks)))
        except Irregular:
            checks.acyclic_names(parent, es)
            self._to_irregular(worker)
            self.irregular.store_chain(worker, parent, blocks)
        self._add_rank(worker)

    def _add_rank(self, worker: Worker) -> None:
        """Record that ``worker``'s id has its rank (O(1); no set built when it is known)."""
        ranks = self.ranks.get(worker[0])
        if ranks is None:
            self.ranks[worker[0]] = {worker[1]}
        else:
            ranks.add(worker[1])

    def _to_irregular(self, worker: Worker) -> None:
        """Move ``worker`` from the trie to the edge table: O(its blocks + its nodes).

        Called with the trie holding the worker's state before the current chain (or a prefix of
        the chain: storing the whole chain again in the edge table gives the same result).
        """
        blocks = self.trie.blocks_of(worker)
        self.trie.drop(worker)
        for e, (parent, local) in blocks.items():
            self.irregular.attach(worker, e, parent, local)

    def detach(self, worker: Worker, e: int) -> bool:
        """Drop one block of ``worker``; ``False`` if it did not hold it.  O(1) (+ trim)."""
        return not self.remove(worker, (e,))

    def remove(self, worker: Worker, hashes: Iterable[int]) -> list[int]:
        """Drop the named blocks (no cascade); return the names not held.  O(1) per name."""
        if worker in self.irregular.held:
            missing = [h for h in dict.fromkeys(hashes) if not self.irregular.detach(worker, h)]
        else:
            missing = self.trie.remove(worker, hashes)
        self._sync_ranks(worker)
        return missing

    def drop_worker(self, worker: Worker) -> None:
        """O(the worker's blocks)."""
        self.trie.drop(worker)
        self.irregular.drop_worker(worker)
        self._sync_ranks(worker)

    def drop_worker_id(self, worker_id: int) -> None:
        for rank in list(self.ranks.get(worker_id, ())):
            self.drop_worker((worker_id, rank))

    def _sync_ranks(self, worker: Worker) -> None:
        if worker not in self.trie.nodes and worker not in self.irregular.held:
            ranks = self.ranks.get(worker[0])
            if ranks is not None:
                ranks.discard(worker[1])
                if not ranks:
                    del self.ranks[worker[0]]

    # -- queries -----------------------------------------------------------------------------

    def scores(self, query: list[int]) -> dict[Worker, int]:
        """Trie scores plus the edge table's: see :meth:`LaneTrie.scores`, :meth:`BlockTable.scores`."""
        out = self.trie.scores(query)
        if self.irregular.held:
            out.update(self.irregular.scores(query))
        return out

    def walk(self, query: list[int]) -> dict[Worker, Continuation]:
        """Each matching worker's continuation (position and chain ends)."""
        out = {w: Continuation(s, (e,)) for w, (s, e) in self.trie.anchors(query).items()}
        if self.irregular.held:
            out.update(self.irregular.walk(query, None))
        return out

    def dump(self, tier: StorageTier, only_anchored: bool, first_id: int) -> list[RouterEvent]:
        return dump_blocks(self.held, tier, only_anchored, first_id)

    def _check(self) -> None:
        self.trie._check()
        self.irregular._check()
        assert not set(self.trie.nodes) & set(self.irregular.held), "a worker in both structures"
        holding = set(self.trie.nodes) | set(self.irregular.held)
        assert {(w, r) for w, ranks in self.ranks.items() for r in ranks} == holding, "ranks are stale"
        assert all(self.ranks.values())


def early_exit_scores(scores: dict[Worker, int]) -> dict[Worker, int]:
    """Apply the early-exit rule to full scores: O(workers).

    Scores are nested along the query (a worker matching depth d matches every depth above), so
    the walk is down to one worker at depth ``second best + 1``: the best worker gets that depth
    when it is alone there (a lone worker gets 1).
    """
    if len(scores) == 1:
        return dict.fromkeys(scores, 1)
    if scores:
        best, second = heapq.nlargest(2, scores.values())
        if best > second:
            out = dict(scores)
            out[next(w for w, s in scores.items() if s == best)] = second + 1
            return out
    return scores


#: ``OverlapScores`` filled in place: its converter copies the scores, and a query's fresh dict
#: needs no copy, so ``find_matches`` builds the frozen instance with ``object.__new__`` and the
#: two slots' own setters (O(1), no attribute lookup)
_new = object.__new__
_set_scores = OverlapScores.__dict__["scores"].__set__
_set_frequencies = OverlapScores.__dict__["frequencies"].__set__


class RadixIndex:
    """Device-tier prefix index over a :class:`DeviceTable` (contract: ``kvspec.model.radix``)."""

    def __init__(self) -> None:
        self._table = DeviceTable()
        self._extend_leaf = self._table.trie.extend_leaf  # the hot path, bound once

    def apply_event(self, worker_id: int, event: KvCacheEvent) -> None:
        """O(k) for an event naming k blocks (see :meth:`DeviceTable.store_event`).

        The checks of :func:`kvspec.checks.device_event` are decided with less work for a Stored
        event of the usual types: the publisher and event types inline, and the acyclic-batch
        rule by the trie itself when the worker's chain goes there (see
        :meth:`DeviceTable.store_event`; a chain the trie refuses changed nothing, and then the
        rule is checked in full).  Any other event takes the checks in full.  So bad input gets
        the rule's own error and changes nothing.  The hot path, a Stored chain continuing the
        worker's own leaf run, is tried first.
        """
        if type(event) is KvCacheEvent and type(worker_id) is int and 0 <= worker_id < U64:
            data = event.data
            if type(data) is Stored:
                parent = data.parent_hash
                blocks = data.blocks
                names = list(map(block_hash_of, blocks))
                worker = (worker_id, event.dp_rank)
                if parent is not None and self._extend_leaf(worker, parent, names, blocks):
                    return
                self._table.store_event(worker, parent, blocks, names, parent is not None)
                return
        self._apply(worker_id, event, checks.device_event(worker_id, event, KvCacheEvent))

    def _apply(self, worker_id: int, event: KvCacheEvent, names: list[int] | None) -> None:
        """:meth:`apply_event` once its arguments passed their checks; ``names`` are the Stored
        payload's block hashes (None for any other payload).  O(k)."""
        worker = (worker_id, event.dp_rank)
        data = event.data
        if names is not None:  # Stored
            self._table.store_event(worker, data.parent_hash, data.blocks, names)
        elif isinstance(data, Removed):
            self._remove(worker, data.block_hashes)
        elif isinstance(data, Cleared):
            self._table.drop_worker(worker)
        else:  # pragma: no cover
            raise TypeError(f"unknown event data {data!r}")

    def _remove(self, worker: Worker, hashes: Iterable[int]) -> None:
        """Drop each named block (no cascade); names not held raise BlockNotFound afterwards.  O(k)."""
        missing = self._table.remove(worker, hashes)
        if missing:
            raise BlockNotFound(f"worker {worker} does not hold blocks {sorted(missing)}")

    def remove_worker(self, worker_id: int) -> None:
        """O(blocks of the worker)."""
        checks.worker_id("worker_id", worker_id)
        self._table.drop_worker_id(worker_id)

    def remove_worker_dp_rank(self, worker_id: int, dp_rank: int) -> None:
        """O(blocks of the rank)."""
        checks.worker(worker_id, dp_rank)
        self._table.drop_worker((worker_id, dp_rank))

    def clear_all_blocks(self, worker_id: int) -> None:
        """O(blocks of the worker)."""
        checks.worker_id("worker_id", worker_id)
        self._table.drop_worker_id(worker_id)

    def match_details(self, local_hashes: Sequence[int]) -> dict[Worker, Continuation]:
        """O(query length to validate + query walk + workers matched x log path)."""
        return self._table.walk(checks.query_list(local_hashes))

    def find_matches(self, local_hashes: Sequence[int], early_exit: bool = False) -> OverlapScores:
        """O(query length to validate + nodes on the path + workers where the holder count drops).

        The hot path.  Validation is :func:`kvspec.checks.query`'s rule, decided with less work
        for the usual argument, a list of exact ints: it is walked first, and only the hashes the
        walk did not find among stored labels are range-checked afterwards (one equal to a stored
        local hash is a valid u64).  A bad hash then raises the rule's own error; nothing changed.
        """
        table = self._table
        if early_exit is False and type(local_hashes) is list and checks.exact_ints(local_hashes):
            query = local_hashes
            scores, reached = table.trie.walk(query)
            if reached < len(query) and not checks.u64s_from(query, reached):
                checks.query_list(query)  # raises the rule's error
        else:
            query = checks.query_list(local_hashes, early_exit)
            scores = table.trie.walk(query)[0]
        if table.irregular.held:  # DeviceTable.scores, inlined
            scores.update(table.irregular.scores(query))
        if early_exit:
            scores = early_exit_scores(scores)
        out = _new(OverlapScores)  # takes ownership of ``scores``: no copy
        _set_scores(out, scores)
        _set_frequencies(out, ())
        return out

    def dump_events(self) -> list[RouterEvent]:
        """O(blocks log blocks)."""
        return self._table.dump(StorageTier.DEVICE, True, 0)

    def _check(self) -> None:
        """O(pairs held): see :meth:`DeviceTable._check`."""
        self._table._check()
