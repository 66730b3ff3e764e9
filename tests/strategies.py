"""Valid and bad argument values, as Hypothesis strategies, for the bad-input property suite.

Every bad strategy draws a :class:`Bad` — the value and the *family* it belongs to — so a failure
names what kind of mistake it was.  The families (``FAMILIES``) are the classes of bad input
kvspec promises to refuse with a typed error (:mod:`kvspec.checks` states the rules):

wrong type, bool as int, negative, beyond u32, beyond u64, None, NaN, float, string, empty list,
huge list, duplicates in one batch, a bad element third in a batch, unknown enum or option, unknown
id, subclass of a value type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from kvspec.hashing import Plh

__all__ = [
    "FAMILIES", "Bad", "bad_enum", "bad_flag", "bad_hash_list", "bad_int", "bad_plh", "bad_plh_list",
    "hashes", "plh_chain", "subclass_of", "u32s", "u64s",
]


@dataclass(frozen=True)
class Bad:
    """A bad argument value and the family of mistakes it belongs to."""

    family: str
    value: Any

    def __repr__(self) -> str:
        text = repr(self.value)
        return f"Bad({self.family}, {text if len(text) < 60 else text[:57] + '...'})"


def _family(name: str, values: st.SearchStrategy) -> st.SearchStrategy[Bad]:
    return values.map(lambda v: Bad(name, v))


def subclass_of(cls: type) -> type:
    """A subclass of ``cls`` that changes nothing: kvspec refuses it all the same."""
    return type(f"Sub{cls.__name__}", (cls,), {})


# --- valid values ---------------------------------------------------------------------------

u64s = st.integers(0, 2**64 - 1)
u32s = st.integers(0, 2**32 - 1)
#: a small hash domain, so that hits, repeats and collisions of identity happen often
hashes = st.integers(1, 12)


@st.composite
def plh_chain(draw, max_len: int = 4) -> list[Plh]:
    """A chain of identities over the small hash domain (root first)."""
    currents = draw(st.lists(hashes, min_size=1, max_size=max_len, unique=True))
    out, parent = [], None
    for position, current in enumerate(currents):
        out.append(Plh(position, current, parent))
        parent = current
    return out


# --- bad values, by family -----------------------------------------------------------------

_WRONG_TYPES = st.sampled_from([object(), [1], {1: 2}, b"1", (1,), {1}])
_INT_FAMILIES = {
    "wrong type": _WRONG_TYPES,
    "bool as int": st.booleans(),
    "None": st.none(),
    "NaN": st.just(math.nan),
    "float": st.floats(allow_nan=False) | st.integers(0, 10).map(float),
    "string": st.text(max_size=4) | st.integers(0, 99).map(str),
}


def bad_int(kind: str) -> st.SearchStrategy[Bad]:
    """A bad value for an int argument of ``kind``: ``u64``, ``u32``, ``size`` (capacity, block
    size), ``count`` (``n``, ``fresh``) or ``id`` (slot or copy ids: any int is of the right type)."""
    families = dict(_INT_FAMILIES)
    if kind in ("u64", "u32", "size", "count"):
        families["negative"] = st.integers(max_value=-1)
    if kind == "u32":
        families["beyond u32"] = st.integers(2**32, 2**64 - 1)
    if kind in ("u64", "u32"):
        families["beyond u64"] = st.integers(min_value=2**64)
    if kind == "size":
        families["negative"] = st.integers(max_value=0)
        families["beyond u64"] = st.integers(min_value=2**32)
    return st.one_of([_family(name, s) for name, s in families.items()])


def _third_bad(good: st.SearchStrategy, bad: st.SearchStrategy) -> st.SearchStrategy[list]:
    return st.tuples(good, good, bad).map(list)


def bad_hash_list() -> st.SearchStrategy[Bad]:
    """A bad list of u64 hashes: not a list, or a bad element (third, anywhere, or after many)."""
    bad_element = bad_int("u64").map(lambda b: b.value)
    return st.one_of(
        _family("wrong type", st.sampled_from([5, {1, 2}, {1: 2}, b"12", object()])),
        _family("None", st.none()),
        _family("string", st.text(min_size=1, max_size=5)),
        _family("bad element third in a batch", _third_bad(u64s, bad_element)),
        _family("huge list", st.tuples(st.integers(1_000, 4_000), bad_element).map(lambda t: list(range(t[0])) + [t[1]])),
    )


def bad_flag() -> st.SearchStrategy[Bad]:
    return st.one_of(_family("bool as int", st.sampled_from([0, 1])), _family("None", st.none()),
                     _family("string", st.text(max_size=3)))


def bad_enum(spellings: list[str]) -> st.SearchStrategy[Bad]:
    """An unknown option: not one of ``spellings`` (wrong case, other text, other types)."""
    return st.one_of(
        _family("unknown enum", st.text(max_size=8).filter(lambda t: t not in spellings)),
        _family("unknown enum", st.sampled_from(spellings).map(str.upper).filter(lambda t: t not in spellings)),
        _family("None", st.none()),
        _family("wrong type", st.sampled_from([1, b"x", ["x"], 1.5])),
    )


def bad_plh() -> st.SearchStrategy[Bad]:
    return st.one_of(
        _family("None", st.none()),
        _family("wrong type", st.sampled_from([5, (0, 1), "plh", [0, 1, None]])),
        _family("subclass of a value type", st.tuples(st.integers(0, 3), hashes).map(
            lambda t: subclass_of(Plh)(t[0], t[1]))),
    )


def bad_plh_list(good: st.SearchStrategy) -> st.SearchStrategy[Bad]:
    return st.one_of(
        _family("wrong type", st.sampled_from([5, "ab", b"x"])),
        _family("None", st.none()),
        _family("bad element third in a batch", _third_bad(good, bad_plh().map(lambda b: b.value))),
        _family("huge list", st.integers(1_000, 2_000).map(lambda n: [Plh(0, i + 1) for i in range(n)] + [None])),
    )


#: every family the strategies above can draw, plus the state-dependent ones the suite builds
#: itself (unknown id, duplicates in one batch, empty list where one is required)
FAMILIES = sorted(
    set(_INT_FAMILIES) | {"negative", "beyond u32", "beyond u64", "bad element third in a batch", "huge list",
                          "unknown enum", "subclass of a value type", "unknown id", "duplicates in one batch",
                          "empty list"}
)
