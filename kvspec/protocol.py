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

Constructors check every field with :mod:`kvspec.checks` (hashes and uuids u64, tokens u32, exact
classes, subclasses refused) and raise :class:`kvspec.errors.InvalidArgument`; whether an operation makes sense against a manager's state (a
block not held, lengths that disagree, a partial parent) is the manager's job, and it answers with
a typed error from :mod:`kvspec.errors`.
"""

from __future__ import annotations

from typing import Union

import attrs

from kvspec import checks
from kvspec.hashing import Plh

_u64 = checks.attrs_rule(checks.u64)
_optional_u64 = checks.attrs_rule(checks.optional(checks.u64))


def _tuple_of(rule):
    """attrs converter + validator: a list or tuple whose elements pass ``rule``, stored as a tuple.

    Non-sequences are left as they are by the converter, so the validator names them."""

    def convert(value):
        return tuple(value) if isinstance(value, list) else value

    def validate(_inst, attribute, value):
        checks.sequence(attribute.name, value, rule)

    return convert, validate


def _token_list(name, value):
    return checks.sequence(name, value, checks.u32)


def _optional_token_lists(value):
    if isinstance(value, list):
        value = tuple(value)
    if isinstance(value, tuple):
        return tuple(tuple(tokens) if isinstance(tokens, list) else tokens for tokens in value)
    return value


def _optional_tokens(value):
    return tuple(value) if isinstance(value, list) else value


@attrs.frozen
class FullBlock:
    """A complete block, identified by its sequence hash."""

    hash: int = attrs.field(validator=_u64)


@attrs.frozen
class PartialBlock:
    """A request's private, still-filling block; ``uuid`` is unique per request block."""

    uuid: int = attrs.field(validator=_u64)


UniqueBlock = Union[FullBlock, PartialBlock]

_unique_block = checks.exact((FullBlock, PartialBlock))
_blocks_convert, _blocks_validate = _tuple_of(_unique_block)
_ints_convert, _ints_validate = _tuple_of(checks.u64)
_plhs_convert, _plhs_validate = _tuple_of(checks.exact(Plh))


@attrs.frozen
class Use:
    """Pin ``blocks`` for one request (see the module docstring for every field)."""

    blocks: tuple[UniqueBlock, ...] = attrs.field(converter=_blocks_convert, validator=_blocks_validate)
    local_hashes: tuple[int, ...] = attrs.field(converter=_ints_convert, validator=_ints_validate)
    plhs: tuple[Plh, ...] = attrs.field(converter=_plhs_convert, validator=_plhs_validate)
    token_ids: tuple[tuple[int, ...], ...] | None = attrs.field(
        default=None, converter=_optional_token_lists,
        validator=checks.attrs_rule(checks.optional(lambda name, v: checks.sequence(name, v, _token_list))))
    parent: UniqueBlock | None = attrs.field(default=None, validator=checks.attrs_rule(checks.optional(_unique_block)))

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

    uuid: int = attrs.field(validator=_u64)
    seq_hash: int = attrs.field(validator=_u64)
    parent_hash: int | None = attrs.field(validator=_optional_u64)
    local_hash: int | None = attrs.field(validator=_optional_u64)
    plh: Plh = attrs.field(validator=checks.attrs_rule(checks.exact(Plh)))
    token_ids: tuple[int, ...] | None = attrs.field(
        default=None, converter=_optional_tokens, validator=checks.attrs_rule(checks.optional(_token_list)))


@attrs.frozen
class Destroy:
    """Legacy (``docs/upstream.md`` M6.1): drop ``blocks`` from the active pool without keeping them inactive."""

    blocks: tuple[UniqueBlock, ...] = attrs.field(converter=_blocks_convert, validator=_blocks_validate)


MoveBlock = Union[Use, Deref, Promote, Destroy]
