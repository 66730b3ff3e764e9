"""Typed errors shared by the reference model, the implementation and every target adapter.

Rule: bad input raises one of these *before* anything mutates, so the object is left exactly as
it was.  Upstream Dynamo panics half-way through a batch instead; kvspec does better on purpose
(``docs/decisions.md`` D4).  The state machines compare errors by class, so model and
target must raise the same class for the same misuse; the message is for humans only.

Every error derives from :class:`KvSpecError`.  Errors that upstream names (the radix index's
``KvCacheEventError`` variants) keep upstream's wording in their docstring so adapters can map
them one to one.
"""

from __future__ import annotations


class KvSpecError(Exception):
    """Base class of every error kvspec raises on purpose."""


# --- protocol misuse (block managers) ------------------------------------------------------


class InvalidArgument(KvSpecError, ValueError):
    """A size, count or option is out of range (zero or negative capacity, unknown policy...)."""


class InvalidConfiguration(InvalidArgument):
    """A combination of settings that cannot work together (e.g. two approximate indexers)."""


class LengthMismatch(KvSpecError, ValueError):
    """Parallel lists disagree in length (``plhs`` vs full blocks, ``local_hashes``, ``token_ids``)."""


class BlockNotHeld(KvSpecError, KeyError):
    """A ``Deref``/``Destroy``/release names a block that holds no reference the caller may drop."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message.
        return Exception.__str__(self)


class UnknownPartialBlock(BlockNotHeld):
    """A ``Promote`` names a partial block (by uuid) that is not currently allocated."""


class InvalidParent(KvSpecError, ValueError):
    """A ``Use.parent`` is not a full block (upstream panics on a partial parent)."""


class BlockStateError(KvSpecError, ValueError):
    """A block-pool call names a slot in the wrong state (e.g. registering a slot that is not mutable)."""


class DuplicateLineage(KvSpecError, ValueError):
    """Two blocks with the same lineage identity would be live in a place that allows only one."""


# --- radix index (names follow Dynamo's KvCacheEventError) ---------------------------------


class IndexEventError(KvSpecError):
    """An event could not be applied (fully) to a prefix index."""


class ParentBlockNotFound(IndexEventError):
    """Dynamo: ``Failed to find parent block`` — a Stored event's parent is not held by that worker."""


class BlockNotFound(IndexEventError):
    """Dynamo: ``Failed to find block`` — a Removed event names a block the worker does not hold.

    The rest of the event still applies; the error is reported afterwards.
    """


class InvalidBlockSequence(IndexEventError):
    """Dynamo: ``Invalid block sequence`` — e.g. a Stored event whose parent is one of its own blocks."""


# --- traces, targets, CLI ------------------------------------------------------------------


class TraceError(KvSpecError):
    """A trace file is unreadable: truncated, wrong schema version, unknown machine or step."""


class TargetError(KvSpecError):
    """A ``--target`` could not be resolved or imported."""


# --- mocker replay (kvspec.model.admission, model/native_pool.py) -------------------------------------


class PoolExhausted(KvSpecError):
    """The native block pool cannot supply the requested blocks; nothing was changed."""


class ReplayStalled(KvSpecError):
    """A sequential replay cannot make progress: the request fits at admission but its decode
    needs more blocks than the whole pool (the 1.6.1 mocker aborts the replay here)."""


__all__ = [name for name, obj in dict(globals()).items() if isinstance(obj, type) and issubclass(obj, KvSpecError)]
