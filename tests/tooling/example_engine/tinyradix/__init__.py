"""tinyradix: a small prefix-cache index, standing in for "your engine" in kvspec's adapter guide.

It is deliberately *not* kvspec-shaped: its own names (``BlockIndex``, ``insert``, ``evict``,
``overlap``), its own exceptions, plain tuples for results.  ``tinyradix_kvspec`` adapts it to the
interface kvspec's ``radix`` machine drives (``docs/adapters.md``).

Per worker rank it keeps ``block -> (parent block, token hash)`` and the children of every block,
so a lookup walks down from the root level by level.

``BlockIndex(cascade_evict=True)`` is the *planted bug* of the guide's example: evicting a block
also evicts everything below it, which a real engine's index must not do (the descendants are
still in the worker's cache and come back into use when the hole is stored again).
"""

__version__ = "0.3.0"


class UnknownParent(KeyError):
    """``insert`` named a parent block this worker rank does not hold."""


class CyclicInsert(ValueError):
    """``insert`` would make a cycle: the parent is among the blocks, or a block appears twice."""


class MissingBlocks(KeyError):
    """``evict`` named blocks this worker rank does not hold (the others were evicted)."""


class _Rank:
    def __init__(self):
        self.blocks = {}     # block -> (parent or None, token hash)
        self.children = {}   # parent or None -> set of blocks

    def put(self, block, parent, tokens):
        if block in self.blocks:
            self.unlink(block)
        self.blocks[block] = (parent, tokens)
        self.children.setdefault(parent, set()).add(block)

    def unlink(self, block):
        parent, _ = self.blocks.pop(block)
        self.children[parent].discard(block)


class BlockIndex:
    """Which worker ranks hold which chains of blocks, and how far a request matches each."""

    def __init__(self, cascade_evict=False):
        self._ranks = {}
        self._cascade = cascade_evict

    def insert(self, worker, rank, parent, blocks):
        """Chain ``blocks`` (``[(block, token hash), ...]``) under ``parent`` (``None``: the root)."""
        names = [b for b, _ in blocks]
        if parent in names or len(set(names)) != len(names):
            raise CyclicInsert(names)
        held = self._ranks.get((worker, rank))
        if parent is not None and (held is None or parent not in held.blocks):
            raise UnknownParent(parent)
        if not blocks:
            return
        held = self._ranks.setdefault((worker, rank), _Rank())
        for block, tokens in blocks:
            held.put(block, parent, tokens)
            parent = block

    def evict(self, worker, rank, blocks):
        """Forget ``blocks``; raise :class:`MissingBlocks` naming those not held, after the rest."""
        held = self._ranks.get((worker, rank), _Rank())
        missing = sorted({b for b in blocks if b not in held.blocks})
        for block in set(blocks):
            if block in held.blocks:
                self._evict(held, block)
        if not held.blocks:
            self._ranks.pop((worker, rank), None)
        if missing:
            raise MissingBlocks(missing)

    def _evict(self, held, block):
        if self._cascade:  # the planted bug: children go too
            for child in list(held.children.get(block, ())):
                if child in held.blocks:
                    self._evict(held, child)
        held.unlink(block)

    def drop(self, worker, rank=None):
        """Forget one rank of ``worker``, or all of them."""
        for key in [k for k in self._ranks if k[0] == worker and rank in (None, k[1])]:
            del self._ranks[key]

    def overlap(self, tokens, stop_when_unique=False):
        """``{(worker, rank): blocks matched}`` for a request's token hashes (zeros left out)."""
        depth = {}
        for key, held in self._ranks.items():
            frontier, n = {None}, 0
            while n < len(tokens):
                frontier = {c for p in frontier for c in held.children.get(p, ()) if held.blocks[c][1] == tokens[n]}
                if not frontier:
                    break
                n += 1
            if n:
                depth[key] = n
        if stop_when_unique:
            for level in range(1, max(depth.values(), default=0) + 1):
                still = [k for k, d in depth.items() if d >= level]
                if len(still) == 1:
                    depth[still[0]] = level
                    break
        return depth

    def chains(self):
        """``(worker, rank, parent, block, token hash)`` of every block reachable from the root."""
        for (worker, rank), held in sorted(self._ranks.items()):
            frontier = [None]
            while frontier:
                parent = frontier.pop(0)
                for block in sorted(held.children.get(parent, ())):
                    yield worker, rank, parent, block, held.blocks[block][1]
                    frontier.append(block)
