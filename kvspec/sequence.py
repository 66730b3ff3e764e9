"""The mocker's request driver: :class:`ActiveSequence` turns one request's life into block signals.

Upstream: ``lib/mocker/src/common/sequence.rs`` (``docs/upstream.md`` M3).  A sequence owns
its tokens and the identity of every block it will ever pin:

* ``unique_blocks`` (``U``) — one :class:`~kvspec.protocol.FullBlock` per complete block, plus a
  trailing :class:`~kvspec.protocol.PartialBlock` when the length is not a multiple of the block size;
* ``block_hashes`` (``H``) — the local hash of every known full block (empty with prefix caching off);
* ``plhs`` (``P``) — one :class:`~kvspec.hashing.Plh` per known full block, computed once and cached.

Hashing follows the router (``docs/decisions.md`` D2): local hash = xxh3 of the tokens
with seed 1337, sequence hash = the seed-1337 chain, ``Plh(position, seq hash, previous seq hash)``.
With prefix caching off every full block gets a random-but-stable identity (drawn once, cached), so a
preempted request re-matches its own inactive blocks but never another request's.

The signals (:mod:`kvspec.protocol`):

* allocation — ``prepare_allocation(cum)`` is *pure*: it returns the ``Use`` that pins every block
  up to ``cum`` tokens that is not pinned yet (``None`` if none); ``commit_allocation(cum)`` records
  that it succeeded.  A chunk ending inside a block allocates that whole block;
* decode — ``push(token)`` returns ``[Promote, Use(partial)]`` or ``[Use(partial)]`` exactly when a
  token opens a new block (``len % block_size == 1``), else nothing.  A block is promoted when the
  token *after* its last one arrives, never at the filling token itself;
* release — ``free_signal()`` is one ``Deref`` per allocated block, leaf first;
  ``reset_with_signal()`` (preemption) returns it and forgets the allocation but keeps every token.

Randomness (random hashes, partial-block ids, unplanned output tokens) comes from an
:class:`IdSource` the caller passes in, so runs are reproducible and sequences sharing one source
never collide on a partial-block id.
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Sequence

import attrs

from kvspec.errors import InvalidArgument
from kvspec.hashing import Plh, block_hashes, chain_hash
from kvspec.protocol import Deref, FullBlock, PartialBlock, Promote, UniqueBlock, Use

U64 = 2**64


class IdSource:
    """Deterministic randomness for sequences: random u64 hashes and never-repeating partial ids.

    Share one source between all the sequences of a run: partial-block ids are unique per source
    (upstream uses fresh UUIDv4s; integers keep traces deterministic and readable).
    """

    def __init__(self, seed: int | random.Random = 0):
        self.random = seed if isinstance(seed, random.Random) else random.Random(seed)
        self._next_uuid = 1

    def uuid(self) -> int:
        """A partial-block id never handed out before by this source."""
        value = self._next_uuid
        self._next_uuid += 1
        return value

    def u64(self) -> int:
        """A random 64-bit hash (prefix caching off)."""
        return self.random.getrandbits(64)

    def u32(self) -> int:
        """A random token."""
        return self.random.getrandbits(32)


_SOURCES: weakref.WeakKeyDictionary[random.Random, IdSource] = weakref.WeakKeyDictionary()


def as_id_source(rng: IdSource | random.Random | int | None) -> IdSource:
    """The :class:`IdSource` for ``rng``; one shared source per ``random.Random`` object."""
    if isinstance(rng, IdSource):
        return rng
    if isinstance(rng, random.Random):
        source = _SOURCES.get(rng)
        if source is None:
            source = _SOURCES[rng] = IdSource(rng)
        return source
    if rng is None or (isinstance(rng, int) and not isinstance(rng, bool)):
        return IdSource(0 if rng is None else rng)
    raise InvalidArgument(f"rng must be an IdSource, a random.Random or an int seed, got {rng!r}")


@attrs.frozen
class SequenceSnapshot:
    """What a manager's ``prefill_cost`` reads from a sequence (a plain, encodable value)."""

    unique_blocks: tuple[UniqueBlock, ...] = attrs.field(converter=tuple)
    plhs: tuple[Plh, ...] = attrs.field(converter=tuple)
    num_input_tokens: int
    enable_prefix_caching: bool


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class ActiveSequence:
    """One request: prompt ``tokens``, then up to ``max_output_tokens`` generated ones.

    ``output_tokens`` (optional) are the planned outputs, consumed in order by :meth:`generate`;
    beyond them, tokens are random.  ``emit_token_ids`` attaches per-block token lists to the
    signals (only when prefix caching is on, as upstream).
    """

    def __init__(
        self,
        tokens: Sequence[int],
        block_size: int = 64,
        max_output_tokens: int = 100,
        enable_prefix_caching: bool = True,
        *,
        output_tokens: Sequence[int] | None = None,
        rng: IdSource | random.Random | int | None = None,
        emit_token_ids: bool = False,
    ):
        if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 2:
            raise InvalidArgument(f"block_size must be an integer >= 2, got {block_size!r}")
        if not isinstance(max_output_tokens, int) or max_output_tokens < 0:
            raise InvalidArgument(f"max_output_tokens must be a non-negative integer, got {max_output_tokens!r}")
        tokens = [int(t) for t in tokens]
        block_hashes(tokens, block_size)  # validates every token is a u32
        self._ids = as_id_source(rng)
        self._block_size = block_size
        self._max_output_tokens = max_output_tokens
        self._prefix_caching = bool(enable_prefix_caching)
        self._emit_token_ids = bool(emit_token_ids) and self._prefix_caching
        self._planned = [int(t) for t in output_tokens] if output_tokens is not None else []
        self._tokens: list[int] = []
        self._seq_hashes: list[int] = []  # true chained hash of every complete block of _tokens
        self._generated = 0
        self._num_input_tokens = len(tokens)
        self._num_allocated_tokens = 0
        self._unique: list[UniqueBlock] = []
        self._hashes: list[int] = []
        self._plhs: list[Plh] = []
        for t in tokens:
            self._append_token(t)
        for position in range(len(self._seq_hashes)):
            block, local, plh = self._identity(position)
            self._unique.append(block)
            if local is not None:
                self._hashes.append(local)
            self._plhs.append(plh)
        if len(self._tokens) % block_size:
            self._unique.append(PartialBlock(self._ids.uuid()))

    # -- token bookkeeping ---------------------------------------------------------------------

    def _append_token(self, token: int) -> None:
        """Append one token; commit its block's hashes the moment the block fills (as upstream)."""
        self._tokens.append(token)
        if len(self._tokens) % self._block_size == 0:
            position = len(self._tokens) // self._block_size - 1
            local = self._local_hash(position)
            parent = self._seq_hashes[-1] if self._seq_hashes else None
            self._seq_hashes.append(local if parent is None else chain_hash(parent, local))

    def _local_hash(self, position: int) -> int:
        bs = self._block_size
        return block_hashes(self._tokens[position * bs : (position + 1) * bs], bs)[0]

    def _block_tokens(self, position: int) -> tuple[int, ...]:
        bs = self._block_size
        return tuple(self._tokens[position * bs : (position + 1) * bs])

    def _identity(self, position: int) -> tuple[FullBlock, int | None, Plh]:
        """The full block, local hash and lineage identity of complete block ``position``.

        Prefix caching on: pure functions of the token prefix.  Off: random, drawn now (once).
        """
        if self._prefix_caching:
            current = self._seq_hashes[position]
            parent = self._seq_hashes[position - 1] if position > 0 else None
            return FullBlock(current), self._local_hash(position), Plh(position, current, parent)
        block = FullBlock(self._ids.u64())
        return block, None, Plh(position, self._ids.u64(), None)

    # -- observers -----------------------------------------------------------------------------

    @property
    def unique_blocks(self) -> tuple[UniqueBlock, ...]:
        return tuple(self._unique)

    @property
    def block_hashes(self) -> tuple[int, ...]:
        return tuple(self._hashes)

    @property
    def plhs(self) -> tuple[Plh, ...]:
        return tuple(self._plhs)

    @property
    def tokens(self) -> tuple[int, ...]:
        return tuple(self._tokens)

    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def num_input_tokens(self) -> int:
        return self._num_input_tokens

    @property
    def num_allocated_tokens(self) -> int:
        return self._num_allocated_tokens

    @property
    def generated_tokens(self) -> int:
        return self._generated

    @property
    def max_output_tokens(self) -> int:
        return self._max_output_tokens

    @property
    def enable_prefix_caching(self) -> bool:
        return self._prefix_caching

    @property
    def is_finished(self) -> bool:
        return self._generated >= self._max_output_tokens

    def __len__(self) -> int:
        return len(self._tokens)

    def snapshot(self) -> SequenceSnapshot:
        return SequenceSnapshot(tuple(self._unique), tuple(self._plhs), self._num_input_tokens, self._prefix_caching)

    # -- allocation ----------------------------------------------------------------------------

    def prepare_allocation(self, cumulative_tokens: int) -> Use | None:
        """The ``Use`` pinning blocks ``[allocated, ceil(cum/bs))`` (clamped to ``U``), or ``None``.

        Pure: calling it twice gives the same signal until :meth:`commit_allocation`.  ``parent`` is
        the block just before the chunk, so the manager can anchor the chunk's Stored event.
        """
        if cumulative_tokens < 0:
            raise InvalidArgument(f"cumulative_tokens must be >= 0, got {cumulative_tokens}")
        bs, n = self._block_size, len(self._unique)
        prev = min(_ceil_div(self._num_allocated_tokens, bs), n)
        target = min(_ceil_div(cumulative_tokens, bs), n)
        if target <= prev:
            return None
        h0, h1 = min(prev, len(self._hashes)), min(target, len(self._hashes))
        p0, p1 = min(prev, len(self._plhs)), min(target, len(self._plhs))
        token_ids = None
        if self._emit_token_ids and h0 < h1:
            token_ids = [self._block_tokens(i) for i in range(h0, h1)]
        parent = self._unique[prev - 1] if prev > 0 else None
        return Use(self._unique[prev:target], self._hashes[h0:h1], self._plhs[p0:p1], token_ids, parent)

    def commit_allocation(self, cumulative_tokens: int) -> None:
        """Record that every block up to ``cumulative_tokens`` is now pinned."""
        if cumulative_tokens < 0:
            raise InvalidArgument(f"cumulative_tokens must be >= 0, got {cumulative_tokens}")
        self._num_allocated_tokens = cumulative_tokens

    def allocate_blocks_for_chunk(self, cumulative_tokens: int) -> Use | None:
        """Prepare and commit in one go (for callers whose allocation cannot fail)."""
        signal = self.prepare_allocation(cumulative_tokens)
        self.commit_allocation(cumulative_tokens)
        return signal

    def take_creation_signal(self) -> Use | None:
        """Allocate everything not yet allocated (the whole known sequence)."""
        return self.allocate_blocks_for_chunk(len(self._tokens))

    # -- decode --------------------------------------------------------------------------------

    def push(self, token: int) -> list[Promote | Use]:
        """Append ``token``; when it opens a new block, promote the previous partial and open one.

        Returns ``[]``, ``[Use(partial)]`` (the last block was already full) or
        ``[Promote(...), Use(partial)]``.  The promoted block's parent is the full block before it.
        """
        if not isinstance(token, int) or isinstance(token, bool) or not 0 <= token < 2**32:
            raise InvalidArgument(f"token {token!r} is not a u32")
        self._append_token(token)
        self._generated += 1
        if len(self._tokens) % self._block_size != 1:
            return []
        signals: list[Promote | Use] = []
        last = self._unique[-1] if self._unique else None
        if isinstance(last, PartialBlock):
            position = len(self._plhs)
            block, local, plh = self._identity(position)
            if local is not None:
                self._hashes.append(local)
            self._plhs.append(plh)
            self._unique.pop()
            parent_hash = self._unique[-1].hash if self._unique else None
            self._unique.append(block)
            token_ids = self._block_tokens(position) if self._emit_token_ids else None
            signals.append(Promote(last.uuid, block.hash, parent_hash, local, plh, token_ids))
        partial = PartialBlock(self._ids.uuid())
        self._unique.append(partial)
        signals.append(Use([partial], [], [], None, None))
        return signals

    def generate(self) -> list[Promote | Use | Deref]:
        """Generate the next output token (planned, else random) and return its signals.

        The last allowed token also returns the terminal ``Deref``\\ s of the whole sequence.
        Raises :class:`InvalidArgument` once ``max_output_tokens`` have been generated.
        """
        if self._generated >= self._max_output_tokens:
            raise InvalidArgument("cannot generate more tokens: max_output_tokens reached")
        index = self._generated
        token = self._planned[index] if index < len(self._planned) else self._ids.u32()
        signals: list[Promote | Use | Deref] = list(self.push(token))
        if self._generated == self._max_output_tokens:
            signals.extend(self._free_signal_for_tokens(len(self._tokens)))
        return signals

    def pop(self) -> None:
        """Undo the last generated token (after a failed decode allocation).

        Only valid while that token sits in the trailing partial block; the partial is dropped
        from ``U`` when the length returns to a block boundary.  A Promote already emitted is not
        undone (the manager processed it).
        """
        if self._generated == 0 or not self._unique or not isinstance(self._unique[-1], PartialBlock):
            raise InvalidArgument("pop() only undoes a generated token in the trailing partial block")
        self._tokens.pop()
        self._generated -= 1
        if len(self._tokens) % self._block_size == 0:
            self._unique.pop()
        elif len(self._tokens) % self._block_size == self._block_size - 1:
            # the popped token had completed a block inside the token sequence: un-commit it
            self._seq_hashes.pop()

    # -- release -------------------------------------------------------------------------------

    def _free_signal_for_tokens(self, active_tokens: int) -> list[Deref]:
        count = min(_ceil_div(active_tokens, self._block_size), len(self._unique))
        return [Deref([block]) for block in reversed(self._unique[:count])]

    def free_signal(self) -> list[Deref]:
        """One ``Deref`` per allocated block, last block first."""
        return self._free_signal_for_tokens(self._num_allocated_tokens)

    def reset_with_signal(self) -> list[Deref]:
        """Preemption: free the allocation, keep every token (re-admission recomputes them all)."""
        signals = self.free_signal()
        self._num_allocated_tokens = 0
        return signals

    def __repr__(self) -> str:
        return (f"ActiveSequence(len={len(self._tokens)}, block_size={self._block_size}, "
                f"allocated={self._num_allocated_tokens}, generated={self._generated}/{self._max_output_tokens})")


__all__ = ["ActiveSequence", "IdSource", "SequenceSnapshot", "as_id_source"]


@attrs.frozen
class PrefillCost:
    """What admitting a sequence would cost a manager (``docs/upstream.md`` M4.5).

    ``new_blocks`` counts every block of the sequence past the cached prefix (a trailing partial
    included); ``cached_tokens`` is the cached prefix in tokens, capped at the prompt length;
    ``new_tokens`` the prompt tokens left to compute; ``active_cached_tokens`` the part of the
    cached prefix held by running requests (not evictable while they run).
    """

    new_blocks: int
    new_tokens: int
    cached_tokens: int
    active_cached_tokens: int


def as_snapshot(sequence: ActiveSequence | SequenceSnapshot) -> SequenceSnapshot:
    """Accept a live sequence or its snapshot (state machines pass snapshots as step arguments)."""
    if isinstance(sequence, SequenceSnapshot):
        return sequence
    if isinstance(sequence, ActiveSequence):
        return sequence.snapshot()
    raise InvalidArgument(f"expected an ActiveSequence or a SequenceSnapshot, got {type(sequence).__name__}")


__all__ += ["PrefillCost", "as_snapshot"]
