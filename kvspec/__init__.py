"""kvspec — an executable specification and conformance suite for LLM KV-cache block management
and KV-aware routing indexes.

The layers, each importing only the ones before it (enforced by ``tests/unit/test_layering.py``):

1. **vocabulary** — :mod:`kvspec.errors`, :mod:`kvspec.hashing`, :mod:`kvspec.protocol`,
   :mod:`kvspec.events`, :mod:`kvspec.scores`, :mod:`kvspec.sequence`, :mod:`kvspec.tracker_events`,
   :mod:`kvspec.codec` with its one list of value types :mod:`kvspec.vocabulary`,
   :mod:`kvspec.checks` (every argument rule, stated once), :mod:`kvspec.escape`;
2. **the spec and its implementation** — :mod:`kvspec.model` (small, literal) and
   :mod:`kvspec.impl` (fast); neither imports the other;
3. **targets** — :mod:`kvspec.targets`: what can be checked; adapters (:mod:`kvspec.adapters`) and
   mutants (:mod:`kvspec.stateful.mutants`) are plugins found by entry point, imported only when
   one of their targets is resolved;
4. **conformance** — :mod:`kvspec.stateful.engine` (the differential engine, the machine base and
   catalogue), then :mod:`kvspec.stateful.machines` (one module per family);
5. **trace tooling** — :mod:`kvspec.stateful.traces` (schema, replay, minimize, report, corpus),
   then the runner :mod:`kvspec.stateful.runner` (``kvspec check`` writes failures as traces);
6. **front ends** — :mod:`kvspec.cli` and the benchmarks :mod:`kvspec.bench`.

This package re-exports the vocabulary a user's adapter or test needs; the names are pinned by
``tests/unit/test_public_api.py``.

>>> from kvspec import FullBlock, Use, block_hashes
>>> block_hashes([1, 2, 3, 4], 2) == block_hashes([1, 2, 3, 4], block_size=2)
True
"""

__version__ = "0.1.0"

from kvspec import vocabulary as _vocabulary  # noqa: F401 - registers the codec's value types
from kvspec.codec import canonical
from kvspec.errors import (BlockNotFound, BlockNotHeld, BlockStateError, DuplicateLineage, IndexEventError,
                           InvalidArgument, InvalidBlockSequence, InvalidParent, KvSpecError, LengthMismatch,
                           ParentBlockNotFound, PoolExhausted, ReplayStalled, TargetError, TraceError,
                           UnknownPartialBlock)
from kvspec.events import Cleared, KvCacheEvent, Removed, RouterEvent, StorageTier, Stored, StoredBlock
from kvspec.hashing import Plh, block_hashes, sequence_hashes
from kvspec.protocol import Deref, Destroy, FullBlock, PartialBlock, Promote, Use
from kvspec.scores import OverlapScores, TieredMatches

__all__ = [
    "__version__",
    # errors
    "BlockNotFound", "BlockNotHeld", "BlockStateError", "DuplicateLineage", "IndexEventError",
    "InvalidArgument", "InvalidBlockSequence", "InvalidParent", "KvSpecError", "LengthMismatch",
    "ParentBlockNotFound", "PoolExhausted", "ReplayStalled", "TargetError", "TraceError",
    "UnknownPartialBlock",
    # hashing and the block protocol
    "Plh", "block_hashes", "sequence_hashes",
    "Deref", "Destroy", "FullBlock", "PartialBlock", "Promote", "Use",
    # events and index answers
    "Cleared", "KvCacheEvent", "Removed", "RouterEvent", "StorageTier", "Stored", "StoredBlock",
    "OverlapScores", "TieredMatches",
    # comparison
    "canonical",
]
