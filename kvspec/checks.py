"""The argument rules, stated once: every public class of :mod:`kvspec.model` and
:mod:`kvspec.impl`, and every value type of :mod:`kvspec.protocol`, :mod:`kvspec.events`,
:mod:`kvspec.scores` and :mod:`kvspec.hashing`, calls these functions and nothing else to decide
whether an argument is acceptable.

Why one module: kvspec promises that bad input gets *the same* typed error on the model and on
the implementation, and leaves both unchanged.  Two copies of a rule drift (they did: ``dp_rank``
was a u32 on one manager and "non-negative, bool allowed" on the other), so each rule lives here
and both sides call it *before* they change anything.  The error contract itself (which error
for which mistake, in which order) is written out in ``docs/lifecycle.md``, section "Error
contract".

The rules
  * **Integers are ints, never bools** (``True`` is an ``int`` to Python, not to kvspec).
    Hashes, sequence hashes, uuids and worker ids are **u64** (``0 <= v < 2**64``); data-parallel
    ranks are **u32**; a Plh position is below ``2**24`` (upstream's ``PLH::new`` asserts it).
  * **Sizes** (capacities, block sizes) are positive ints up to a documented limit
    (:data:`MAX_CAPACITY`, :data:`MAX_BLOCK_SIZE`); counts (``allocate(n)``, ``fresh``) are
    non-negative ints.
  * **Sequences** are a ``list`` or a ``tuple`` (not a string, not a generator) whose every
    element obeys the element rule; the first bad element is named in the message.
  * **Enums** are a member of their enum or its documented spelling (``StorageTier.DISK`` or
    ``"disk"``); options (``eviction=``, ``duplication=``) are one of the listed strings.
  * **Types are exact**: an operation, a block, a :class:`~kvspec.hashing.Plh` or an event must be
    *of* the documented class, and a subclass is refused.  A subclass can override what
    validation reads (``Use.full_blocks``, ``__eq__``, ``__hash__``) and so make a checked value
    lie after the check; kvspec's traces also record values by class name.  Both sides refuse it
    with :class:`~kvspec.errors.InvalidArgument`.

Every rule raises :class:`~kvspec.errors.InvalidArgument` (a ``ValueError``) unless it names
another :mod:`kvspec.errors` class: :class:`~kvspec.errors.LengthMismatch` for parallel lists,
:class:`~kvspec.errors.InvalidParent` for a partial ``Use.parent``,
:class:`~kvspec.errors.InvalidBlockSequence` for a cyclic Stored event.

>>> u64("worker_id", 7)
7
>>> u64("worker_id", True)
Traceback (most recent call last):
...
kvspec.errors.InvalidArgument: worker_id must be an int in [0, 2**64), got True
>>> sequence("local_hashes", [11, None], u64)
Traceback (most recent call last):
...
kvspec.errors.InvalidArgument: local_hashes[1] must be an int in [0, 2**64), got None
"""

from __future__ import annotations

import enum
import math
from array import array
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter, countOf
from typing import Any, TypeVar

from kvspec.errors import InvalidArgument, InvalidBlockSequence, InvalidParent, LengthMismatch

__all__ = [
    "DEFAULT_SKETCH_CAPACITY",
    "DEFAULT_THRESHOLDS",
    "DUPLICATIONS",
    "LEAF_POLICIES",
    "MAX_BLOCK_SIZE",
    "MAX_CAPACITY",
    "MAX_COUNT",
    "MAX_POSITION",
    "U32",
    "U64",
    "VLLM_EVENT_MODES",
    "acyclic_names",
    "attrs_rule",
    "block_id",
    "block_size",
    "capacity",
    "choice",
    "clock_to",
    "count",
    "device_event",
    "dp_rank",
    "enum_member",
    "exact",
    "exact_ints",
    "flag",
    "frequency_spec",
    "index_event",
    "integer",
    "is_int",
    "kv_manager_options",
    "lane_count",
    "manager_options",
    "multi_lru_options",
    "one_of",
    "operation",
    "optional",
    "plh_position",
    "pool_options",
    "query",
    "query_list",
    "queued_event",
    "routed_request",
    "sample_size",
    "sequence",
    "sglang_tokens",
    "stored_acyclic",
    "swap_in",
    "thresholds",
    "ticks",
    "u32",
    "u64",
    "u64_sequence",
    "u64s_from",
    "use_lengths",
    "use_parent",
    "vllm_cache_options",
    "vllm_request",
    "vllm_tokens",
    "worker",
    "worker_id",
]

Rule = Callable[[str, Any], Any]

U64 = 2**64
U32 = 2**32
_LIST_OR_TUPLE = (list, tuple)
_block_hash_of = attrgetter("block_hash")
#: upstream's ``PLH::new`` asserts ``position < 2**24``
MAX_POSITION = 2**24
#: the largest pool (in blocks) kvspec builds: a trace or a caller cannot make a structure of
#: more slots than this (GPU pools of the mocker are ~10^4-10^6 blocks)
MAX_CAPACITY = 2**22
#: the largest block size in tokens (kvbm-logical's builder accepts 1..=1024; the mocker any size)
MAX_BLOCK_SIZE = 2**16


def _spell(bound: int) -> str:
    exponent = bound.bit_length() - 1
    return f"2**{exponent}" if bound == 1 << exponent else str(bound)


# --- integers ------------------------------------------------------------------------------


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool``.

    >>> is_int(3), is_int(True), is_int(3.0)
    (True, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool)


def integer(name: str, value: Any, low: int = 0, high: int | None = None) -> int:
    """``value`` is an int (not a bool) with ``low <= value < high`` (no upper bound when ``None``).

    >>> integer("n", 0)
    0
    >>> integer("n", -1)
    Traceback (most recent call last):
    ...
    kvspec.errors.InvalidArgument: n must be an int >= 0, got -1
    """
    if type(value) is int and low <= value and (high is None or value < high):
        return value  # the common case, first: this runs for every hash of every operation
    if not is_int(value) or value < low or (high is not None and value >= high):
        wanted = f"an int in [{low}, {_spell(high)})" if high is not None else f"an int >= {low}"
        raise InvalidArgument(f"{name} must be {wanted}, got {_short(value)}")
    return value


def u64(name: str, value: Any) -> int:
    """A hash, sequence hash, uuid or worker id: an int in ``[0, 2**64)``."""
    return integer(name, value, 0, U64)


def u32(name: str, value: Any) -> int:
    """A 32-bit unsigned field (data-parallel rank, token id): an int in ``[0, 2**32)``."""
    return integer(name, value, 0, U32)


#: a worker id (Dynamo's ``WorkerId``) is a u64
worker_id = u64
#: a data-parallel rank (Dynamo's ``DpRank``) is a u32
dp_rank = u32


def plh_position(name: str, value: Any) -> int:
    """A block's position in its sequence: an int in ``[0, 2**24)``.

    >>> plh_position("position", 2**24)
    Traceback (most recent call last):
    ...
    kvspec.errors.InvalidArgument: position must be an int in [0, 2**24), got 16777216
    """
    return integer(name, value, 0, MAX_POSITION)


def capacity(name: str, value: Any) -> int:
    """A number of blocks a structure holds: ``1 <= value <= MAX_CAPACITY``.

    The limit bounds memory: every structure's size is bounded by its capacity.
    """
    return integer(name, value, 1, MAX_CAPACITY + 1)


def block_size(name: str, value: Any) -> int:
    """Tokens per block: ``1 <= value <= MAX_BLOCK_SIZE``."""
    return integer(name, value, 1, MAX_BLOCK_SIZE + 1)


def count(name: str, value: Any) -> int:
    """How many of something to take (``allocate(n)``, ``fresh``): a non-negative int."""
    return integer(name, value, 0)


def block_id(name: str, value: Any) -> int:
    """A slot or copy id: any int (not a bool).  Whether it names a slot is the structure's
    business: an id outside the pool (negative included) names no slot in the right *state*
    (:class:`~kvspec.errors.BlockStateError` / :class:`~kvspec.errors.BlockNotHeld`), it is not of
    the wrong *type*.

    >>> block_id("block_id", -1)
    -1
    """
    if not is_int(value):
        raise InvalidArgument(f"{name} must be an int, got {_short(value)}")
    return value


def flag(name: str, value: Any) -> bool:
    """A switch (``early_exit``): exactly ``True`` or ``False``.

    >>> flag("early_exit", 1)
    Traceback (most recent call last):
    ...
    kvspec.errors.InvalidArgument: early_exit must be True or False, got 1
    """
    if value is not True and value is not False:
        raise InvalidArgument(f"{name} must be True or False, got {_short(value)}")
    return value


def optional(rule: Rule) -> Rule:
    """``rule``, or ``None``.

    >>> optional(u64)("parent_hash", None) is None
    True
    """

    def check(name: str, value: Any) -> Any:
        return None if value is None else rule(name, value)

    check.__name__ = f"optional_{getattr(rule, '__name__', 'rule')}"
    return check


# --- types, sequences, options -------------------------------------------------------------


def exact(cls: type | tuple[type, ...]) -> Rule:
    """A rule accepting instances of ``cls`` (a class or a tuple of classes) and no subclass.

    >>> exact(int)("n", 3)
    3
    >>> exact(int)("n", True)
    Traceback (most recent call last):
    ...
    kvspec.errors.InvalidArgument: n must be a int, got bool
    """
    classes = cls if isinstance(cls, tuple) else (cls,)
    names = " or ".join(c.__name__ for c in classes)

    def check(name: str, value: Any) -> Any:
        if type(value) not in classes:
            raise InvalidArgument(f"{name} must be a {names}, got {type(value).__name__}")
        return value

    check.__name__ = f"exact_{names}"
    return check


def sequence(name: str, value: Any, rule: Rule) -> tuple:
    """A ``list`` or ``tuple`` whose every element passes ``rule``; returned as a tuple.

    >>> sequence("hashes", (1, 2), u64)
    (1, 2)
    >>> sequence("hashes", "12", u64)
    Traceback (most recent call last):
    ...
    kvspec.errors.InvalidArgument: hashes must be a list or a tuple, got str
    """
    if not isinstance(value, (list, tuple)):
        raise InvalidArgument(f"{name} must be a list or a tuple, got {type(value).__name__}")
    for index, item in enumerate(value):
        try:
            rule(name, item)
        except InvalidArgument:
            rule(f"{name}[{index}]", item)  # again, to name the element (only on the failure path)
            raise
    return tuple(value)


def choice(name: str, value: Any, options: Iterable[str]) -> str:
    """One of the listed option strings.

    >>> choice("duplication", "allow", ("allow", "reject"))
    'allow'
    >>> choice("duplication", "both", ("allow", "reject"))
    Traceback (most recent call last):
    ...
    kvspec.errors.InvalidArgument: unknown duplication 'both'; use allow, reject
    """
    options = tuple(options)
    if type(value) is not str or value not in options:
        raise InvalidArgument(f"unknown {name} {_short(value)}; use {', '.join(options)}")
    return value


def one_of(options: Iterable[str]) -> Rule:
    """:func:`choice` as a rule (for :func:`sequence` or :func:`attrs_rule`)."""
    options = tuple(options)
    return lambda name, value: choice(name, value, options)


E = TypeVar("E", bound=enum.Enum)


def enum_member(name: str, value: Any, enum_cls: type[E]) -> E:
    """A member of ``enum_cls`` or its documented spelling (the member's ``value``).

    >>> from kvspec.events import StorageTier
    >>> enum_member("storage_tier", "disk", StorageTier)
    StorageTier.DISK
    >>> enum_member("storage_tier", "bogus", StorageTier)
    Traceback (most recent call last):
    ...
    kvspec.errors.InvalidArgument: unknown storage_tier 'bogus'; use device, host_pinned, disk, external
    """
    if type(value) is enum_cls:
        return value
    if type(value) is str:
        for member in enum_cls:
            if member.value == value:
                return member
    spellings = ", ".join(str(m.value) for m in enum_cls)
    raise InvalidArgument(f"unknown {name} {_short(value)}; use {spellings}")


def operation(owner: str, value: Any, kinds: tuple[type, ...]) -> type:
    """The exact class of an operation ``owner.process`` accepts; a subclass is refused.

    >>> from kvspec.protocol import Deref, Use
    >>> operation("KvManager", Deref(()), (Use, Deref)).__name__
    'Deref'
    """
    kind = type(value)
    if kind not in kinds:
        names = ", ".join(k.__name__ for k in kinds)
        raise InvalidArgument(f"{owner} processes {names} (exactly), got {kind.__name__}")
    return kind


def attrs_rule(rule: Rule):
    """Adapt ``rule(name, value)`` to an attrs field validator ``(instance, attribute, value)``."""

    def validate(_instance: Any, attribute: Any, value: Any) -> None:
        rule(attribute.name, value)

    return validate


def manager_options(capacity_: Any, block_size_: Any, dp_rank_: Any) -> None:
    """A mocker KV manager's constructor (``KvManager``, ``LegacyKvManager``): ``capacity`` and
    ``block_size`` sizes, ``dp_rank`` a u32 — the same rule for both managers."""
    capacity("capacity", capacity_)
    block_size("block_size", block_size_)
    dp_rank("dp_rank", dp_rank_)


def kv_manager_options(capacity_: Any, block_size_: Any, dp_rank_: Any, eviction: Any, frequency: Any,
                       backends: dict[str, Any]) -> Any:
    """``KvManager``'s constructor: :func:`manager_options`, ``eviction`` a name of ``backends``
    (the side's ``BACKENDS`` table).  Returns the frequency argument to build the pool with: a
    backend that reads frequencies (MultiLRU) gets ``"exact"`` by default, as the mocker builds a
    TinyLFU tracker for it; the pool checks the argument itself."""
    manager_options(capacity_, block_size_, dp_rank_)
    choice("eviction", eviction, backends)
    if frequency is None and backends[eviction].needs_frequency:
        return "exact"
    return frequency


# --- composite rules of the block protocol -------------------------------------------------


def use_lengths(owner: str, op: Any, *, plhs_required: bool = True) -> int:
    """A ``Use``'s parallel lists match its full blocks; returns the number of full blocks.

    ``plhs`` has one entry per full block (legacy managers: none at all, or one per full block);
    ``local_hashes`` one per full block or none; ``token_ids`` ``None`` or one list per full block.
    Checked in that order, each a :class:`~kvspec.errors.LengthMismatch`.
    """
    fulls = sum(1 for block in op.blocks if type(block).__name__ == "FullBlock")
    if len(op.plhs) != fulls and (plhs_required or op.plhs):
        raise LengthMismatch(f"{owner} Use: {len(op.plhs)} plhs for {fulls} full blocks")
    if op.local_hashes and len(op.local_hashes) != fulls:
        raise LengthMismatch(f"{owner} Use: {len(op.local_hashes)} local hashes for {fulls} full blocks")
    if op.token_ids is not None and len(op.token_ids) != fulls:
        raise LengthMismatch(f"{owner} Use: {len(op.token_ids)} token lists for {fulls} full blocks")
    return fulls


def use_parent(owner: str, op: Any, *, allowed: bool = True) -> None:
    """``Use.parent`` is a full block or ``None`` (:class:`~kvspec.errors.InvalidParent`);
    with ``allowed=False`` (the legacy protocol has no parent) it must be ``None``
    (:class:`~kvspec.errors.InvalidArgument`)."""
    if op.parent is None:
        return
    if not allowed:
        raise InvalidArgument(f"{owner}: the legacy protocol has no Use.parent")
    if type(op.parent).__name__ != "FullBlock":
        raise InvalidParent(f"{owner}: Use.parent must be a full block, got {op.parent!r}")


def stored_acyclic(stored: Any) -> list[int]:
    """A Stored event may not name its parent among its blocks, nor one block twice: either would
    make a cycle in a worker's chain (:class:`~kvspec.errors.InvalidBlockSequence`).  Returns the
    block hashes, in order (callers reuse them).  O(k)."""
    return acyclic_names(stored.parent_hash, list(map(_block_hash_of, stored.blocks)))


def acyclic_names(parent: int | None, names: list[int]) -> list[int]:
    """:func:`stored_acyclic` for a payload whose block hashes the caller already read (the one
    place the rule is written): returns ``names``.  O(k).

    >>> acyclic_names(None, [1, 2])
    [1, 2]
    """
    distinct = set(names)
    if parent is not None and parent in distinct:
        raise InvalidBlockSequence(f"parent {parent} is one of the stored blocks")
    if len(distinct) != len(names):
        raise InvalidBlockSequence("a stored block list names the same block hash twice")
    return names


# --- prefix indexes ----------------------------------------------------------------------------


def index_event(worker_id_: Any, event: Any, event_type: type, storage_tier: Any = None,
                tier_type: type | None = None) -> Any:
    """``apply_event(worker_id, event[, storage_tier])``: a u64 worker id, an event of exactly
    ``event_type`` (``KvCacheEvent``; its fields were checked when it was built), and a tier of
    ``tier_type`` or its spelling.  Returns the tier (``None`` when there is none).  A Stored
    payload must also be acyclic (:func:`stored_acyclic`)."""
    _publisher_and_event(worker_id_, event, event_type)
    tier = None if tier_type is None else enum_member("storage_tier", storage_tier, tier_type)
    if hasattr(event.data, "parent_hash"):
        stored_acyclic(event.data)
    return tier


def device_event(worker_id_: Any, event: Any, event_type: type) -> list[int] | None:
    """:func:`index_event` for an index without tiers, returning what the check read: a Stored
    payload's block hashes, in order (``None`` for any other payload), so the caller reads them
    once.  O(k)."""
    _publisher_and_event(worker_id_, event, event_type)
    return stored_acyclic(event.data) if hasattr(event.data, "parent_hash") else None


def _publisher_and_event(worker_id_: Any, event: Any, event_type: type) -> None:
    """The head of :func:`index_event`: a u64 worker id, then an event of exactly ``event_type``
    (the usual case decided without a further call)."""
    if type(worker_id_) is not int or not 0 <= worker_id_ < U64:
        worker_id("worker_id", worker_id_)
    if type(event) is not event_type:
        exact(event_type)("event", event)


def query(local_hashes: Any, early_exit: Any = False) -> tuple[int, ...]:
    """``find_matches(local_hashes, early_exit)``: a list or tuple of u64 local hashes and a flag."""
    flag("early_exit", early_exit)
    return u64_sequence("local_hashes", local_hashes)


def query_list(local_hashes: Any, early_exit: Any = False) -> list[int]:
    """:func:`query`'s rule, returning the hashes as a list (for an index that compares list
    slices and only reads them): a list argument itself, else a new list."""
    if early_exit is not False and early_exit is not True:
        flag("early_exit", early_exit)
    if _u64s_in_c(local_hashes):
        return local_hashes if type(local_hashes) is list else list(local_hashes)
    return list(sequence("local_hashes", local_hashes, u64))


def exact_ints(value: Any) -> bool:
    """True when ``value`` is a list or tuple of exact ints (no ``bool``, no subclass), decided
    in C in one pass.  With :func:`u64s_from` it makes :func:`u64_sequence`'s fast path; an index
    may walk such a query before range-checking it, since a hash it finds equal to a stored (valid)
    one is in range.  O(len).

    >>> exact_ints([1, 2**70]), exact_ints([1, True]), exact_ints("ab")
    (True, False, False)
    """
    return type(value) in _LIST_OR_TUPLE and countOf(map(type, value), int) == len(value)


#: scratch for :func:`u64s_from`: filling one array with ``fromlist`` costs about half of building
#: a new ``array('Q', values)`` (which fetches each item through the generic sequence protocol).
#: Only the exception matters, never the content, so callers sharing it cannot disturb each other;
#: with exact ints no Python code runs inside ``fromlist`` (the GIL is held throughout).
_U64_SCRATCH = array("Q")


def u64s_from(values: list[int] | tuple[int, ...], start: int = 0) -> bool:
    """True when the exact ints ``values[start:]`` all lie in ``[0, 2**64)``: one conversion to
    machine integers in C, which overflows outside the range.  O(len - start).

    >>> u64s_from([2**64, 5], 1), u64s_from([5, -1])
    (True, False)
    """
    rest = values[start:] if start else values
    if type(rest) is not list:  # ``fromlist`` takes a list
        rest = list(rest)
    try:
        _U64_SCRATCH.fromlist(rest)
    except OverflowError:
        return False
    finally:
        del _U64_SCRATCH[:]
    return True


def _u64s_in_c(value: Any) -> bool:
    """True when ``value`` is a list or tuple of exact ints in ``[0, 2**64)``, decided in C
    (:func:`exact_ints`, :func:`u64s_from`).  False says nothing (an int subclass, say): the caller
    then checks element by element.  O(len)."""
    return exact_ints(value) and u64s_from(value)


def u64_sequence(name: str, value: Any) -> tuple[int, ...]:
    """``sequence(name, value, u64)``, decided in C when it can be (:func:`_u64s_in_c`); anything
    else goes the element-by-element way, which names the first bad element.  O(len) either way.

    >>> u64_sequence("hashes", [1, 2**64 - 1])
    (1, 18446744073709551615)
    >>> u64_sequence("hashes", [1, True])
    Traceback (most recent call last):
    ...
    kvspec.errors.InvalidArgument: hashes[1] must be an int in [0, 2**64), got True
    """
    if _u64s_in_c(value):
        return tuple(value)
    return sequence(name, value, u64)


def worker(worker_id_: Any, dp_rank_: Any = 0) -> tuple[int, int]:
    """A worker rank ``(worker_id, dp_rank)``: a u64 and a u32."""
    return worker_id("worker_id", worker_id_), dp_rank("dp_rank", dp_rank_)


# --- clocks, lanes, routing decisions, swap-ins ------------------------------------------------


def ticks(value: Any) -> int:
    """``advance(ticks)``: a clock advance is an int number of ticks, ``>= 0``."""
    if not is_int(value) or value < 0:
        raise InvalidArgument(f"ticks must be an integer >= 0, got {value!r}")
    return value


def clock_to(clock: int, now: Any) -> int:
    """``tick(now)``: the clock moves to an int ``now``, never backwards."""
    if not is_int(now) or now < clock:
        raise InvalidArgument(f"the clock is at {clock}; cannot tick to {now!r}")
    return now


def lane_count(value: Any) -> int:
    """``step(worker_id, dp_rank, count)``: how many queued events to apply, an int ``>= 0``."""
    if not is_int(value) or value < 0:
        raise InvalidArgument(f"count must be an integer >= 0, got {value!r}")
    return value


def queued_event(value: Any, event_type: type) -> Any:
    """``apply_event`` of an event lane: an instance of ``event_type`` (checked when the lane
    reaches it, the rest of the event rules apply then)."""
    if not isinstance(value, event_type):
        raise InvalidArgument(f"apply_event needs a {event_type.__name__}, got {value!r}")
    return value


def routed_request(worker_id_: Any, dp_rank_: Any, local_hashes: Any) -> list[int]:
    """``record_routing_decision(worker_id, dp_rank, local_hashes)``: a u64 worker id, a u32 rank
    and any sequence (not a string) of u64 local hashes."""
    for name, value, bound in (("worker_id", worker_id_, U64), ("dp_rank", dp_rank_, U32)):
        if not is_int(value) or not 0 <= value < bound:
            raise InvalidArgument(f"{name} {value!r} is out of range")
    if isinstance(local_hashes, (str, bytes)) or not isinstance(local_hashes, Sequence):
        raise InvalidArgument(f"local_hashes must be a sequence of integers, got {local_hashes!r}")
    out = list(local_hashes)
    for h in out:
        if not is_int(h) or not 0 <= h < U64:
            raise InvalidArgument(f"local hash {h!r} is not a u64")
    return out


def swap_in(plhs: Any, parent_hash: Any, plh_type: type) -> None:
    """``swap_in(plhs, parent_hash)``: a list or tuple of ``plh_type`` and a u64 or ``None``."""
    if not isinstance(plhs, (list, tuple)) or not all(isinstance(p, plh_type) for p in plhs):
        raise InvalidArgument(f"swap_in needs a list of Plh, got {plhs!r}")
    if parent_hash is not None and (not is_int(parent_hash) or not 0 <= parent_hash < U64):
        raise InvalidArgument(f"parent_hash must be a u64 or None, got {parent_hash!r}")


# --- block-pool options ----------------------------------------------------------------------

#: frequency counters are 4-bit nibbles upstream: they saturate at 15
MAX_COUNT = 15
#: upstream's default TinyLFU sketch capacity (``FrequencyTrackingCapacity::Medium``)
DEFAULT_SKETCH_CAPACITY = 2**21
#: MultiLRU's default tier thresholds (upstream ``with_multi_lru_backend``)
DEFAULT_THRESHOLDS = (3, 8, 15)


def thresholds(value: Any) -> tuple[int, int, int]:
    """MultiLRU tier thresholds ``(a, b, c)``: three ints with ``1 <= a < b < c <= 15``.

    Upstream's ``with_multi_lru_backend_custom_thresholds`` panics otherwise (counters saturate at
    15, so a larger threshold could never be reached).

    >>> thresholds((3, 8, 15))
    (3, 8, 15)
    >>> thresholds([8, 3, 15])
    Traceback (most recent call last):
    ...
    kvspec.errors.InvalidArgument: MultiLRU thresholds must be 3 ints 1 <= a < b < c <= 15, got [8, 3, 15]
    """
    if (not isinstance(value, (list, tuple)) or len(value) != 3 or not all(is_int(t) for t in value)
            or not 1 <= value[0] < value[1] < value[2] <= MAX_COUNT):
        raise InvalidArgument(f"MultiLRU thresholds must be 3 ints 1 <= a < b < c <= 15, got {_short(value)}")
    return tuple(value)


def multi_lru_options(frequency: Any, thresholds_: Any) -> tuple[int, int, int]:
    """A MultiLRU backend: valid :func:`thresholds` and a frequency tracker (upstream's builder
    fails without one).  Returns the thresholds as a tuple."""
    checked = thresholds(thresholds_)
    if frequency is None:
        raise InvalidArgument("MultiLRU needs a frequency tracker (upstream's build fails without one)")
    return checked


#: the lineage backend's leaf policies (upstream's ``LineageEviction::{Tick, Fifo}``)
LEAF_POLICIES = ("tick", "fifo")

#: ``BlockPool(duplication=...)``: upstream's ``BlockDuplicationPolicy``
DUPLICATIONS = ("allow", "reject")


def pool_options(total_blocks: Any, eviction: Any, duplication: Any, thresholds_: Any, backends: Iterable[str]) -> None:
    """A block pool's constructor: ``total_blocks`` a capacity, ``eviction`` a name of
    ``backends`` (the side's ``BACKENDS`` table), ``duplication`` ``"allow"`` or ``"reject"``,
    ``thresholds`` valid (checked for every backend, used only by MultiLRU)."""
    capacity("total_blocks", total_blocks)
    choice("eviction", eviction, backends)
    choice("duplication", duplication, DUPLICATIONS)
    thresholds(thresholds_)


def sample_size(capacity: int) -> int:
    """TinyLFU's ``FixedDecayPolicy::from_capacity``: decay every ``min(10 * capacity, 2**32 - 1)``
    counted increments.  The mocker builds its tracker with the pool's capacity
    (``TinyLFUTracker::new(max_capacity)``); kvspec sizes every ``"exact"`` tracker that way, which
    also bounds its memory: at most ``2 * sample_size`` keys are ever counted at once.

    >>> sample_size(8)
    80
    """
    return min(capacity * 10, U32 - 1)


def frequency_spec(value: Any, capacity: int) -> tuple[str, int] | Any | None:
    """A ``frequency=`` argument of a structure of ``capacity`` blocks: ``None``; ``"exact"`` (decay
    every :func:`sample_size` ``(capacity)`` counted increments); ``"exact:<n>"`` (decay every ``n``
    counted increments, ``1 <= n < 2**32``); or a tracker object with ``touch`` and ``count``
    methods, used as is (and shared, not copied).

    Returns ``None``, ``("exact", sample size)`` or the tracker object.

    >>> frequency_spec("exact", 8)
    ('exact', 80)
    >>> frequency_spec("exact:12", 8)
    ('exact', 12)
    >>> frequency_spec("exact:0", 8)
    Traceback (most recent call last):
    ...
    kvspec.errors.InvalidArgument: frequency 'exact:0': the sample size must be an int in [1, 2**32)
    """
    if value is None:
        return None
    if type(value) is str:
        kind, colon, arg = value.partition(":")
        if kind != "exact":
            raise InvalidArgument(f"unknown frequency tracker {_short(value)} (use None, 'exact' or 'exact:<n>')")
        if not colon:
            return ("exact", sample_size(capacity))
        if not (arg.isascii() and arg.isdigit()) or not 1 <= int(arg) < U32:
            raise InvalidArgument(f"frequency {value!r}: the sample size must be an int in [1, 2**32)")
        return ("exact", int(arg))
    if callable(getattr(value, "touch", None)) and callable(getattr(value, "count", None)):
        return value
    raise InvalidArgument(f"frequency must be None, 'exact', 'exact:<n>' or a tracker with touch/count, "
                          f"got {_short(value)}")


# --- messages --------------------------------------------------------------------------------


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` cut to ``limit`` characters (bad input may be huge), floats spelled plainly."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- engine caches (vLLM, SGLang) -------------------------------------------------------------


def vllm_tokens(tokens: Any, what: str = "tokens") -> list[int]:
    """vLLM's prompt or output tokens: a list or tuple of u32 token ids (``what`` names it)."""
    if not isinstance(tokens, (list, tuple)) or not all(is_int(t) and 0 <= t < 2**32 for t in tokens):
        raise InvalidArgument(f"{what} must be a list of u32 token ids, got {tokens!r}")
    return list(tokens)


def sglang_tokens(tokens: Any) -> list[int]:
    """SGLang's token keys: a list or tuple of non-negative int31 token ids (its tensors are int32)."""
    if not isinstance(tokens, (list, tuple)) or not all(is_int(t) and 0 <= t < 2**31 for t in tokens):
        raise InvalidArgument(f"tokens must be a list of non-negative int31 token ids, got {tokens!r}")
    return list(tokens)


#: how a vLLM prefix cache publishes events: one per physical copy (vLLM's behaviour) or per hash
VLLM_EVENT_MODES = ("per-copy", "per-hash")


def vllm_cache_options(num_blocks: Any, block_size: Any, events: Any) -> None:
    """``VllmPrefixCache(num_blocks, block_size, events)``: block 0 is vLLM's null block, so at least two."""
    if not is_int(num_blocks) or num_blocks < 2:
        raise InvalidArgument(f"num_blocks must be an int >= 2 (block 0 is the null block), got {num_blocks!r}")
    if not is_int(block_size) or block_size < 1:
        raise InvalidArgument(f"block_size must be a positive int, got {block_size!r}")
    if events not in VLLM_EVENT_MODES:
        raise InvalidArgument(f"events must be one of {VLLM_EVENT_MODES}, got {events!r}")


def vllm_request(request_id: Any, prompt: Any, report_full: Any) -> list[int]:
    """``add_request(request_id, prompt, report_full)``: a non-empty id, a non-empty prompt of u32
    tokens, a bool.  Returns the prompt as a list."""
    if not isinstance(request_id, str) or not request_id:
        raise InvalidArgument(f"request_id must be a non-empty str, got {request_id!r}")
    prompt = vllm_tokens(prompt, "prompt")
    if not prompt:
        raise InvalidArgument("prompt must not be empty")
    if not isinstance(report_full, bool):
        raise InvalidArgument(f"report_full must be a bool, got {report_full!r}")
    return prompt
