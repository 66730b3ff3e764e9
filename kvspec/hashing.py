"""Block hashing, byte-compatible with Dynamo's router (``docs/upstream.md`` R2, ``docs/decisions.md`` D2).

* **Local hash** (``LocalBlockHash``, ``tokens_hash`` on the wire): xxh3-64 over one block's tokens
  as little-endian u32, seeded with 1337.  A LoRA name adds ``xxh3(lora, 0)`` to the seed and a
  cache namespace adds ``xxh3(namespace, 1)`` (mod 2**64); empty strings count as absent.  Multimodal
  hashes of a block are appended as little-endian u64 in ascending order.  Trailing partial blocks
  are never hashed.  Eagle mode hashes a window of ``block_size + 1`` tokens with stride
  ``block_size``.
* **Sequence hash** (the chain, ``ExternalSequenceBlockHash`` of synthetic blocks):
  ``seq[0] = local[0]``, ``seq[i] = xxh3(le_u64(seq[i-1]) + le_u64(local[i]), 1337)``.  The chain
  seed is always 1337 (one mocker revision used 0; kvspec never does).
* **Lineage identity** (:class:`Plh`): ``(position, current, parent)`` where ``current`` is the
  block's sequence hash and ``parent`` its predecessor's (``None`` at position 0).  kvbm-logical
  packs the same triple into a u128 with truncated fragments; kvspec keeps the full values, so two
  identities are related exactly when ``child.position == parent.position + 1`` and
  ``child.parent == parent.current``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import xxhash

from kvspec import checks
from kvspec.errors import InvalidArgument

__all__ = [
    "XXH3_SEED",
    "Plh",
    "block_hashes",
    "chain_hash",
    "lineage",
    "plhs_for_tokens",
    "salt_seed",
    "sequence_hashes",
    "xxh3",
]

XXH3_SEED = 1337
U64 = 2**64
U32 = 2**32


def xxh3(data: bytes, seed: int) -> int:
    """xxh3-64 of ``data`` with ``seed`` as an unsigned integer."""
    return xxhash.xxh3_64_intdigest(data, seed=seed)


def salt_seed(lora_name: str | None = None, cache_namespace: str | None = None) -> int:
    """The seed of the local hash: 1337, salted by the LoRA name and the cache namespace."""
    seed = XXH3_SEED
    if lora_name:
        seed = (seed + xxh3(lora_name.encode("utf-8"), 0)) % U64
    if cache_namespace:
        seed = (seed + xxh3(cache_namespace.encode("utf-8"), 1)) % U64
    return seed


def _check_tokens(tokens: Sequence[int]) -> None:
    for t in tokens:
        if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < U32:
            raise InvalidArgument(f"token {t!r} is not a u32")


def _mm_hashes(info: Any) -> list[int]:
    """The ``mm_hash`` values of one block's multimodal info (a dict with ``mm_objects``, or a list)."""
    if info is None:
        return []
    objects = info.get("mm_objects", []) if isinstance(info, Mapping) else info
    hashes = []
    for obj in objects:
        h = obj["mm_hash"] if isinstance(obj, Mapping) else obj
        if not isinstance(h, int) or not 0 <= h < U64:
            raise InvalidArgument(f"mm_hash {h!r} is not a u64")
        hashes.append(h)
    return sorted(hashes)


def block_hashes(
    tokens: Sequence[int],
    block_size: int,
    *,
    lora_name: str | None = None,
    cache_namespace: str | None = None,
    is_eagle: bool = False,
    block_mm_infos: Sequence[Any] | None = None,
) -> list[int]:
    """Local hashes of every complete block of ``tokens`` (Dynamo's ``compute_block_hash_for_seq``).

    ``block_mm_infos[i]`` is ``None`` or ``{"mm_objects": [{"mm_hash": int, ...}, ...]}`` for block i.
    Raises :class:`InvalidArgument` for a block size below 1 or a token outside u32 (Dynamo raises
    ``ValueError`` / ``OverflowError``).
    """
    if not isinstance(block_size, int) or block_size < 1:
        raise InvalidArgument(f"block_size must be a positive integer, got {block_size!r}")
    tokens = list(tokens)
    _check_tokens(tokens)
    seed = salt_seed(lora_name, cache_namespace)
    window = block_size + 1 if is_eagle else block_size
    out: list[int] = []
    index = 0
    start = 0
    while start + window <= len(tokens):
        data = struct.pack(f"<{window}I", *tokens[start : start + window])
        if block_mm_infos is not None and index < len(block_mm_infos):
            data += b"".join(struct.pack("<Q", h) for h in _mm_hashes(block_mm_infos[index]))
        out.append(xxh3(data, seed))
        start += block_size
        index += 1
    return out


def chain_hash(parent_sequence_hash: int, local_hash: int) -> int:
    """One step of the sequence-hash chain: ``xxh3(le_u64(parent) + le_u64(local), 1337)``."""
    return xxh3(struct.pack("<QQ", parent_sequence_hash, local_hash), XXH3_SEED)


def sequence_hashes(local_hashes: Iterable[int], parent: int | None = None) -> list[int]:
    """The router's chained sequence hashes of ``local_hashes``, optionally continuing ``parent``."""
    out: list[int] = []
    previous = parent
    for local in local_hashes:
        current = local if previous is None else chain_hash(previous, local)
        out.append(current)
        previous = current
    return out


@attrs.frozen(order=True)
class Plh:
    """Positional lineage identity of a full block: ``Plh(position, current, parent)``.

    ``current`` is the block's sequence hash; ``parent`` the sequence hash of the block before it
    (``None`` exactly at position 0 for chains built by :func:`lineage`; generated adversarial
    identities may break that, and the pools must cope).  Equality is on all three fields.
    """

    position: int = attrs.field(validator=checks.attrs_rule(checks.plh_position))
    current: int = attrs.field(validator=checks.attrs_rule(checks.u64))
    parent: int | None = attrs.field(default=None, validator=checks.attrs_rule(checks.optional(checks.u64)))

    @property
    def key(self) -> tuple[int, int]:
        """The lineage graph's node key: ``(position, current)``."""
        return (self.position, self.current)

    @property
    def parent_key(self) -> tuple[int, int] | None:
        """The key of the parent node, or ``None`` for a root (position 0)."""
        if self.position == 0:
            return None
        return (self.position - 1, self.parent if self.parent is not None else 0)

    def extend(self, local_hash: int) -> Plh:
        """The identity of the next block, whose local hash is ``local_hash``."""
        return Plh(self.position + 1, chain_hash(self.current, local_hash), self.current)


def lineage(sequence_hashes_: Sequence[int], *, parent: int | None = None, start: int = 0) -> list[Plh]:
    """The :class:`Plh` of each block of a chain of sequence hashes.

    ``parent`` is the sequence hash of the block before the chain (``None`` when the chain starts at
    the root) and ``start`` its position.
    """
    out: list[Plh] = []
    previous = parent
    for offset, current in enumerate(sequence_hashes_):
        out.append(Plh(start + offset, current, previous))
        previous = current
    return out


def plhs_for_tokens(tokens: Sequence[int], block_size: int, **salt: Any) -> list[Plh]:
    """Convenience: the lineage identities of the complete blocks of ``tokens``."""
    return lineage(sequence_hashes(block_hashes(tokens, block_size, **salt)))
