"""The mocker's block-movement protocol (``MoveBlock``), as frozen value types.

A request driver (:class:`kvspec.sequence.ActiveSequence`) turns scheduling decisions into these
operations and a block manager applies them with ``process(op)``.  Every class is a frozen attrs
class whose ``repr`` is valid Python, so a shrunk counterexample pastes into a test unchanged
(after ``from kvspec.protocol import *``).

* ``FullBlock(hash)`` — a complete block, identified by its sequence hash (``ExternalSequenceBlockHash``).
* ``PartialBlock(uuid)`` — the request's private, still-filling block (an integer id stands in for
  upstream's UUID so traces stay deterministic).
* ``Use(blocks, local_hashes, plhs, token_ids=None, parent=None)`` — pin ``blocks`` for one request,
  in sequence order.  ``plhs`` has one entry per full block; ``local_hashes`` one per full block or
  none at all (prefix caching off); ``token_ids`` ``None`` or one token list per full block;
  ``parent`` the full block just before ``blocks[0]`` (``None`` for a request's first chunk).
* ``Deref(blocks)`` — drop one reference per listed block.
* ``Promote(uuid, seq_hash, parent_hash, local_hash, plh, token_ids=None)`` — the partial block
  ``uuid`` is now full with identity ``seq_hash``.
* ``Destroy(blocks)`` — legacy (mocker 1.0.2, ``docs/upstream.md`` M6.1) only: drop blocks without retaining them as inactive.

Constructors only check *types*; whether an operation makes sense against a manager's state (a
block not held, lengths that disagree, a partial parent) is the manager's job, and it answers with
a typed error from :mod:`kvspec.errors`.
"""

from __future__ import annotations

from typing import Union

import attrs

from kvspec.hashing import Plh


def _tuple_of(*types: type):
    def convert(value):
        return tuple(value)

    def validate(_inst, attribute, value):
        for item in value:
            if not isinstance(item, types):
                raise TypeError(f"{attribute.name}: {item!r} is not a {' or '.join(t.__name__ for t in types)}")

    return convert, validate


def _optional_token_lists(value):
    if value is None:
        return None
    return tuple(tuple(int(t) for t in tokens) for tokens in value)


def _optional_tokens(value):
    return None if value is None else tuple(int(t) for t in value)


@attrs.frozen
class FullBlock:
    """A complete block, identified by its sequence hash."""

    hash: int = attrs.field(validator=attrs.validators.instance_of(int))


@attrs.frozen
class PartialBlock:
    """A request's private, still-filling block; ``uuid`` is unique per request block."""

    uuid: int = attrs.field(validator=attrs.validators.instance_of(int))


UniqueBlock = Union[FullBlock, PartialBlock]

_blocks_convert, _blocks_validate = _tuple_of(FullBlock, PartialBlock)
_full_convert, _full_validate = _tuple_of(FullBlock)
_ints_convert, _ints_validate = _tuple_of(int)
_plhs_convert, _plhs_validate = _tuple_of(Plh)


@attrs.frozen
class Use:
    """Pin ``blocks`` for one request (see the module docstring for every field)."""

    blocks: tuple[UniqueBlock, ...] = attrs.field(converter=_blocks_convert, validator=_blocks_validate)
    local_hashes: tuple[int, ...] = attrs.field(converter=_ints_convert, validator=_ints_validate)
    plhs: tuple[Plh, ...] = attrs.field(converter=_plhs_convert, validator=_plhs_validate)
    token_ids: tuple[tuple[int, ...], ...] | None = attrs.field(default=None, converter=_optional_token_lists)
    parent: UniqueBlock | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of((FullBlock, PartialBlock))),
    )

    @property
    def full_blocks(self) -> tuple[FullBlock, ...]:
        return tuple(b for b in self.blocks if isinstance(b, FullBlock))


@attrs.frozen
class Deref:
    """Drop one reference per listed block."""

    blocks: tuple[UniqueBlock, ...] = attrs.field(converter=_blocks_convert, validator=_blocks_validate)


@attrs.frozen
class Promote:
    """The partial block ``uuid`` became full with sequence hash ``seq_hash``."""

    uuid: int = attrs.field(validator=attrs.validators.instance_of(int))
    seq_hash: int = attrs.field(validator=attrs.validators.instance_of(int))
    parent_hash: int | None = attrs.field(validator=attrs.validators.optional(attrs.validators.instance_of(int)))
    local_hash: int | None = attrs.field(validator=attrs.validators.optional(attrs.validators.instance_of(int)))
    plh: Plh = attrs.field(validator=attrs.validators.instance_of(Plh))
    token_ids: tuple[int, ...] | None = attrs.field(default=None, converter=_optional_tokens)


@attrs.frozen
class Destroy:
    """Legacy (``docs/upstream.md`` M6.1): drop ``blocks`` from the active pool without keeping them inactive."""

    blocks: tuple[UniqueBlock, ...] = attrs.field(converter=_blocks_convert, validator=_blocks_validate)


MoveBlock = Union[Use, Deref, Promote, Destroy]

__all__ = ["Deref", "Destroy", "FullBlock", "MoveBlock", "PartialBlock", "Plh", "Promote", "UniqueBlock", "Use"]
