"""The value types kvspec encodes in traces, in one explicit list.

:mod:`kvspec.codec` decodes only registered types (a trace is untrusted input: nothing is built
by a name the file gives).  Every type a step argument, a return value or an observation can hold
is listed in :data:`TYPES` and registered here, once, when :mod:`kvspec` is imported — not as a
side effect of whichever module happens to be imported first.  The names are part of the trace
schema: renaming a class breaks every recorded trace.

>>> from kvspec import codec
>>> codec.decode(codec.encode(FullBlock(7)))
FullBlock(hash=7)
"""

from __future__ import annotations

from kvspec import codec
from kvspec.events import Cleared, KvCacheEvent, Removed, RouterEvent, StorageTier, Stored, StoredBlock
from kvspec.hashing import Plh
from kvspec.offload import G2OffloadBlock, SwapInHandle, SwapInOutcome, TierEvent
from kvspec.protocol import Deref, Destroy, FullBlock, PartialBlock, Promote, Use
from kvspec.scores import Continuation, LowerTierMatches, OverlapScores, TieredMatches
from kvspec.sequence import PrefillCost, SequenceSnapshot
from kvspec.tracker_events import ConsolidatedClearAll, ConsolidatedRemove, ConsolidatedStore, EventSource
from kvspec.ttl import TtlEntry

__all__ = ["TYPES"]

#: Every encodable value type (attrs classes and enums), by concept.
TYPES = (
    # hashing and the block protocol
    Plh, FullBlock, PartialBlock, Use, Deref, Promote, Destroy,
    # KV events as Dynamo's router receives them
    StoredBlock, Stored, Removed, Cleared, KvCacheEvent, RouterEvent, StorageTier,
    # index answers
    OverlapScores, Continuation, LowerTierMatches, TieredMatches,
    # the request driver
    SequenceSnapshot, PrefillCost,
    # the cache-status tracker
    ConsolidatedStore, ConsolidatedRemove, ConsolidatedClearAll, EventSource,
    # the approximate (TTL) index and the G1 -> G2 offload
    TtlEntry, TierEvent, G2OffloadBlock, SwapInHandle, SwapInOutcome,
)

for _cls in TYPES:
    codec.register(_cls)
