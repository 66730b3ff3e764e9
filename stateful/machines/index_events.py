"""Event streams for the prefix-index machines, drawn from a model of what each worker holds.

Random events would mostly be rejected (unknown parents) and queries would mostly miss.  Instead
:class:`IndexEvents` keeps, per storage tier and worker rank, the blocks the *intended* semantics
say it holds (``kvspec.model.radix`` rules: ``E -> (parent, L)``, removal without cascade), and
draws events that make sense against it, the way an engine would publish them:

* stores chaining off a held parent (or the root), decode-style one-block extensions, copies of a
  path another worker holds (sharing, split into prefix + suffix events), re-stores of a removed
  hole (its stale descendants come back), offloads of a device chain to a lower tier (same E's);
* removals of leaves or mid-chain blocks, in shuffled order; ``Cleared`` per rank;
* queries that follow a stored path for a while and then diverge, or stop short.

External hashes are a function of the L-path that spells it (``(11, 12, 13) -> 111213``), the
same for every worker, so counterexamples read themselves and deleting an unrelated step while
shrinking renames nothing.  With
the adversarial kinds enabled (see :class:`EventMix`) a minority of events break the rules:
unknown parents (often held by *another* worker or rank), removals of blocks not held, a parent
inside its own block list, a repeated hash in one batch, a held E re-stored under other content,
worker-specific E's, repeated hashes in one Removed.

The machines call ``draw_*`` to get a :class:`Draw`, apply its event to the subjects, then
:meth:`IndexEvents.record` it with the error the model raised (or ``None``), so the generator's
picture follows what really happened.  A caller that must respect Dynamo's preconditions turns
kinds off in :class:`EventMix`.

Choices come from a :class:`Tape` (a rule argument: a short list of small integers, see
:func:`tapes`) or from a Hypothesis ``st.data()`` object; both shrink towards the first element
of every choice list, and the lists are ordered plainest first.  Plain rule arguments instead of
one ``st.data()`` draw per choice keep shrinking fast (every draw through ``st.data()`` carries
bookkeeping the shrinker pays for on each attempt).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from hypothesis import strategies as st

from kvspec.events import Cleared, KvCacheEvent, Removed, StorageTier, Stored, StoredBlock
from kvspec.hashing import sequence_hashes

Worker = tuple[int, int]
Blocks = dict[int, tuple[int | None, int]]

#: errors after which an event still (partly) applied
PARTIAL_ERRORS = ("BlockNotFound",)

#: adversarial kinds, by name (a :class:`Draw`'s ``kind``)
ADVERSARIAL_KINDS = frozenset({
    "unknown-parent", "parent-in-blocks", "repeat-in-batch", "refile", "worker-specific-e",
    "remove-unknown", "remove-repeat",
})


class Tape:
    """Pre-drawn choices a rule consumes one by one (cheaper than one ``st.data()`` draw per choice).

    Each choice is a small non-negative integer; Hypothesis shrinks them towards 0, which makes
    every :func:`pick` shrink towards the first element.  An exhausted tape answers 0.
    """

    __slots__ = ("values", "used")

    def __init__(self, values: Sequence[int]) -> None:
        self.values = list(values)
        self.used = 0

    def next(self) -> int:
        if self.used >= len(self.values):
            return 0
        self.used += 1
        return self.values[self.used - 1]

    def __repr__(self) -> str:
        return f"Tape({self.values!r})"


def tapes(length: int = 10) -> st.SearchStrategy[Tape]:
    """The strategy of rule arguments: 4 to ``length`` choices in ``[0, 63]`` (missing ones read 0)."""
    return st.lists(st.integers(0, 63), min_size=4, max_size=length).map(Tape)


_INTEGERS: dict[tuple[int, int], st.SearchStrategy] = {}


def number(data, low: int, high: int) -> int:
    """An integer in ``[low, high]``, from a :class:`Tape` or a Hypothesis ``st.data()`` object."""
    if high <= low:
        return low
    if isinstance(data, Tape):
        return low + data.next() % (high - low + 1)
    strategy = _INTEGERS.get((low, high))
    if strategy is None:
        strategy = _INTEGERS[(low, high)] = st.integers(low, high)
    return data.draw(strategy)


def pick(data, seq: Sequence):
    """One element of ``seq`` (shrinks towards the first)."""
    return seq[number(data, 0, len(seq) - 1)]


def picks(data, seq: Sequence, low: int, high: int, unique: bool = False) -> list:
    """Between ``low`` and ``high`` elements of ``seq`` (distinct ones with ``unique``)."""
    pool = list(seq)
    out = []
    for _ in range(number(data, low, high)):
        if not pool:
            break
        i = number(data, 0, len(pool) - 1)
        out.append(pool.pop(i) if unique else pool[i])
    return out


def shuffled(data, seq: Sequence) -> list:
    """``seq`` in a drawn order (Fisher-Yates; shrinks towards the given order)."""
    out = list(seq)
    for i in range(len(out) - 1):
        j = number(data, i, len(out) - 1)
        out[i], out[j] = out[j], out[i]
    return out


@attrs.frozen
class EventMix:
    """Which event kinds :class:`IndexEvents` may draw (all on by default)."""

    unknown_parent: bool = True
    parent_in_blocks: bool = True
    repeat_in_batch: bool = True
    refile: bool = True
    worker_specific_e: bool = True
    remove_unknown: bool = True
    remove_repeat: bool = True
    mid_chain_removal: bool = True


@attrs.frozen
class Draw:
    """One drawn event: who publishes it, on which tier, and what kind of event it is meant to be."""

    worker_id: int
    event: KvCacheEvent
    tier: StorageTier = StorageTier.DEVICE
    kind: str = ""

    @property
    def worker(self) -> Worker:
        return (self.worker_id, self.event.dp_rank)

    @property
    def adversarial(self) -> bool:
        return self.kind in ADVERSARIAL_KINDS


class IndexEvents:
    """Draws plausible (and some adversarial) index events; see module docs."""

    def __init__(self, *, workers: Sequence[int] = (1, 2), ranks: Sequence[int] = (0, 1),
                 alphabet: Sequence[int] = (11, 12, 13, 14), tiers: Sequence[StorageTier] = (StorageTier.DEVICE,),
                 mix: EventMix = EventMix(), max_blocks: int = 3) -> None:
        self.workers = tuple(workers)
        self.ranks = tuple(ranks)
        self.alphabet = tuple(alphabet)
        self.tiers = tuple(StorageTier(t) for t in tiers)
        self.mix = mix
        self.max_blocks = max_blocks
        #: (tier, worker) -> blocks it holds under the intended semantics
        self.held: dict[tuple[StorageTier, Worker], Blocks] = {}
        #: (tier, worker) -> blocks it held and lost by a removal (holes to re-store)
        self.removed: dict[tuple[StorageTier, Worker], Blocks] = {}
        #: interned external hashes: (L-path, salt) -> E, and back
        self._e_of: dict[tuple[tuple[int, ...], int], int] = {}
        self.path_of: dict[int, tuple[int, ...]] = {}
        self._next_id = 0

    # -- naming ----------------------------------------------------------------------------

    def external(self, path: tuple[int, ...], salt: int = 0) -> int:
        """The external hash of the block ending the L-path ``path``.

        It spells the path, so counterexamples read themselves: ``(11, 12, 13) -> 111213``; a
        worker-specific hash (``salt`` != 0) is prefixed by the salt and a 0: ``(11,), 21 -> 21011``.
        It depends only on the path (not on history), so deleting an unrelated step while
        shrinking renames nothing.  Paths too long to spell in a u64 use the router's chained hash.
        """
        key = (tuple(path), salt)
        e = self._e_of.get(key)
        if e is None:
            digits = "".join(str(local) for local in key[0])
            text = (f"{salt}0" if salt else "") + digits
            if not digits or len(text) > 18:
                e = (sequence_hashes(key[0] or (0,))[-1] + salt) % 2**64
            else:
                e = int(text)
            self._e_of[key] = e
            self.path_of[e] = key[0]
        return e

    def _event(self, data, dp_rank: int) -> KvCacheEvent:
        self._next_id += 1
        return KvCacheEvent(self._next_id, data, dp_rank)

    def blocks(self, tier: StorageTier, worker: Worker) -> Blocks:
        return self.held.get((tier, worker), {})

    def _faster_or_equal(self, tier: StorageTier) -> list[StorageTier]:
        order = [StorageTier.DEVICE, StorageTier.HOST_PINNED, StorageTier.DISK, StorageTier.EXTERNAL]
        return order[: order.index(tier) + 1]

    def _anchored(self, blocks: Blocks) -> dict[int, int]:
        """Held blocks reachable from the root, with their depth."""
        depth: dict[int, int] = {}
        level = [e for e, (p, _) in blocks.items() if p is None]
        d = 1
        while level:
            nxt = []
            for e in level:
                if e not in depth:
                    depth[e] = d
                    nxt += [c for c, (p, _) in blocks.items() if p == e]
            level, d = nxt, d + 1
        return depth

    def _path(self, e: int | None, blocks: Blocks) -> tuple[int, ...]:
        """The L-path of ``e`` as the worker holds it (parents followed, cycles cut)."""
        out: list[int] = []
        seen: set[int] = set()
        while e is not None and e in blocks and e not in seen:
            seen.add(e)
            parent, local = blocks[e]
            out.append(local)
            e = parent
        if e is not None and e not in blocks:  # parent in a faster tier, or a hole
            out += reversed(self.path_of.get(e, ()))
        return tuple(reversed(out))

    # -- draws -----------------------------------------------------------------------------

    def draw_worker(self, data, holding: StorageTier | None = None) -> Worker:
        """A worker rank (rank 0 twice as likely); with ``holding``, the first one at or after the
        drawn one (cyclically) that holds blocks on that tier, if any does.  Drawing from a fixed
        list keeps the choice stable when the shrinker deletes unrelated steps."""
        everyone = [(w, r) for w in self.workers for r in self.ranks[:1] * 2 + self.ranks[1:]]
        i = number(data, 0, len(everyone) - 1)
        if holding is not None:
            for k in range(len(everyone)):
                candidate = everyone[(i + k) % len(everyone)]
                if self.held.get((holding, candidate)):
                    return candidate
        return everyone[i]

    def draw_held_path(self, data) -> tuple[int, ...] | None:
        """The L-path of a block some worker holds (on a drawn tier), or ``None`` if none is held."""
        tier = self.draw_tier(data)
        worker = self.draw_worker(data, holding=tier)
        blocks = self.blocks(tier, worker)
        if not blocks:
            return None
        known: Blocks = {}
        for t in self._faster_or_equal(tier):
            known.update(self.blocks(t, worker))
        return self._path(pick(data, sorted(blocks)), known)

    def draw_tier(self, data) -> StorageTier:
        return pick(data, self.tiers[:1] * 2 + self.tiers[1:]) if len(self.tiers) > 1 else self.tiers[0]

    def _locals(self, data, low: int = 1) -> list[int]:
        return picks(data, self.alphabet, low, self.max_blocks)

    def _chain(self, path: tuple[int, ...], locals_: Sequence[int], salt: int) -> list[StoredBlock]:
        out = []
        for local in locals_:
            path = path + (local,)
            out.append(StoredBlock(self.external(path, salt), local))
        return out

    def draw_store(self, data, tier: StorageTier | None = None) -> Draw:
        """A Stored event; kinds: extend, decode, copy, restore, offload, and the adversarial ones."""
        tier = self.draw_tier(data) if tier is None else tier
        # lower-tier stores come from workers that hold device blocks (offload), when any does
        worker = self.draw_worker(data, holding=None if tier is StorageTier.DEVICE else StorageTier.DEVICE)
        kinds = ["extend", "copy", "decode", "extend", "copy", "restore", "restore"]
        if tier is not StorageTier.DEVICE:  # lower tiers mostly receive offloaded device chains
            kinds = ["offload", "extend", "offload", "copy", "decode", "offload", "restore"]
        m = self.mix
        kinds += [k for k, on in (("unknown-parent", m.unknown_parent), ("parent-in-blocks", m.parent_in_blocks),
                                  ("repeat-in-batch", m.repeat_in_batch), ("refile", m.refile),
                                  ("worker-specific-e", m.worker_specific_e)) if on]
        kind = pick(data, kinds)
        own = self.blocks(tier, worker)
        # parents a store may chain off: own blocks of this tier, or (lower tiers) of a faster tier
        parents: Blocks = {}
        for t in self._faster_or_equal(tier):
            parents.update(self.blocks(t, worker))
        anchored = self._anchored(parents)
        parent: int | None = None
        salt = 0
        if kind == "restore":
            holes = {e: pl for e, pl in self.removed.get((tier, worker), {}).items()
                     if pl[0] is None or pl[0] in parents}
            if holes:
                e = pick(data, sorted(holes))
                parent, local = holes[e]
                return Draw(worker[0], self._event(Stored(parent, [StoredBlock(e, local)]), worker[1]), tier, kind)
            kind = "extend"
        if kind == "offload":
            device = self.blocks(StorageTier.DEVICE, worker)
            chain = sorted(self._anchored(device))
            if chain:
                e = pick(data, chain)
                run = [e]  # e and its ancestors, root first
                while device[run[0]][0] is not None and len(run) < self.max_blocks:
                    run.insert(0, device[run[0]][0])
                cut = number(data, 0, len(run) - 1)
                parent = device[run[cut]][0]
                blocks = [StoredBlock(x, device[x][1]) for x in run[cut:]]
                return Draw(worker[0], self._event(Stored(parent, blocks), worker[1]), tier, kind)
            kind = "extend"
        if kind == "copy":
            target = self.draw_held_path(data)
            if target:
                # chain off the longest proper prefix of the path this worker already holds
                held_paths = {self._path(e, parents): e for e in anchored}
                start = max((k for k in range(1, len(target)) if target[:k] in held_paths), default=0)
                parent = held_paths[target[:start]] if start else None
                blocks = self._chain(target[:start], target[start:], 0)
                return Draw(worker[0], self._event(Stored(parent, blocks), worker[1]), tier, kind)
            kind = "extend"
        if kind == "unknown-parent":
            others = sorted({e for (t, w), b in self.held.items() if w != worker for e in b} - set(parents))
            candidates = others + sorted(set(self.removed.get((tier, worker), {})) - set(parents)) + [99]
            parent = pick(data, candidates)
            blocks = self._chain(self.path_of.get(parent, (parent,)), self._locals(data), 0)
            return Draw(worker[0], self._event(Stored(parent, blocks), worker[1]), tier, kind)
        if kind == "refile" and own:
            e = pick(data, sorted(own))
            base = pick(data, [None] + sorted(anchored))
            if base == e:
                base = None
            local = pick(data, self.alphabet)
            return Draw(worker[0], self._event(Stored(base, [StoredBlock(e, local)]), worker[1]), tier, kind)
        if kind == "refile":
            kind = "extend"
        if kind == "worker-specific-e":
            salt = worker[0] * 10 + worker[1] + 1
        # extend / decode / parent-in-blocks / repeat-in-batch / worker-specific-e
        if anchored:
            if kind == "decode":  # the deepest held chain grows by one block
                deepest = max(anchored.values())
                parent = min(e for e, d in anchored.items() if d == deepest)
            else:  # a held parent four times out of five, else the root
                choices = sorted(anchored)
                parent = pick(data, choices * 4 + [None] * max(1, len(choices)))
        locals_ = [pick(data, self.alphabet)] if kind == "decode" else self._locals(data)
        blocks = self._chain(self._path(parent, parents), locals_, salt)
        if kind == "parent-in-blocks":
            if parent is None:
                parent = blocks[0].block_hash
            else:
                blocks.insert(number(data, 0, len(blocks)), StoredBlock(parent, blocks[0].tokens_hash))
        elif kind == "repeat-in-batch":
            blocks.append(StoredBlock(blocks[0].block_hash, pick(data, self.alphabet)))
        return Draw(worker[0], self._event(Stored(parent, blocks), worker[1]), tier, kind)

    def draw_remove(self, data, tier: StorageTier | None = None) -> Draw:
        """A Removed event: leaves or mid-chain blocks, shuffled; sometimes names blocks not held."""
        tier = self.draw_tier(data) if tier is None else tier
        worker = self.draw_worker(data, holding=tier)
        own = self.blocks(tier, worker)
        kinds = ["suffix"] + (["mid", "mid"] if self.mix.mid_chain_removal else [])
        kinds += [k for k, on in (("remove-unknown", self.mix.remove_unknown),
                                  ("remove-repeat", self.mix.remove_repeat)) if on]
        kind = pick(data, kinds)
        if kind == "suffix" or not self.mix.mid_chain_removal:
            parents = {p for p, _ in own.values()}
            pool = sorted(e for e in own if e not in parents) or sorted(own)
        else:
            pool = sorted(own)
        names = picks(data, pool, 1, 3, unique=True) if pool else []
        if kind == "remove-unknown" or not names and self.mix.remove_unknown:
            others = sorted({e for (t, w), b in self.held.items() for e in b} - set(own)) + [99]
            names.append(pick(data, others))
            kind = "remove-unknown"
        elif kind == "remove-repeat" and names:
            names.append(names[0])
        names = shuffled(data, names)
        return Draw(worker[0], self._event(Removed(names), worker[1]), tier, kind)

    def draw_cleared(self, data) -> Draw:
        worker = self.draw_worker(data, holding=StorageTier.DEVICE)
        tier = self.draw_tier(data)
        return Draw(worker[0], self._event(Cleared(), worker[1]), tier, "cleared")

    def draw_query(self, data) -> list[int]:
        """A query that follows a stored path for a while, then maybe diverges; sometimes random."""
        how = pick(data, ["follow", "follow", "diverge", "random"])
        path = self.draw_held_path(data) if how != "random" else None
        if path is None:
            return picks(data, self.alphabet, 0, 6)
        path = list(path)
        if how == "diverge":
            cut = number(data, 0, len(path))
            path = path[:cut] + self._locals(data, low=0)
        else:
            path += picks(data, self.alphabet, 0, 2)
        return path

    # -- bookkeeping -----------------------------------------------------------------------

    def record(self, draw: Draw, error: str | None) -> None:
        """Update the picture after ``draw`` was applied and the model raised ``error`` (or not)."""
        if error is not None and error not in PARTIAL_ERRORS:
            return
        data = draw.event.data
        worker = draw.worker
        if isinstance(data, Cleared):
            for tier in self.tiers:
                self.held.pop((tier, worker), None)
            return
        key = (draw.tier, worker)
        if isinstance(data, Stored):
            blocks = self.held.setdefault(key, {})
            parent = data.parent_hash
            holes = self.removed.get(key, {})
            for block in data.blocks:
                blocks[block.block_hash] = (parent, block.tokens_hash)
                holes.pop(block.block_hash, None)
                parent = block.block_hash
            if not blocks:
                del self.held[key]
        elif isinstance(data, Removed):
            blocks = self.held.get(key, {})
            for h in data.block_hashes:
                if h in blocks:
                    self.removed.setdefault(key, {})[h] = blocks.pop(h)
            if key in self.held and not blocks:
                del self.held[key]

    def forget(self, worker_id: int, dp_rank: int | None = None) -> None:
        """``remove_worker`` (every rank) or ``remove_worker_dp_rank``, on every tier."""
        for key in [k for k in self.held if k[1][0] == worker_id and (dp_rank is None or k[1][1] == dp_rank)]:
            del self.held[key]
