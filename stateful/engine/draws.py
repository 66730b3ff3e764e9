"""Draw values from Hypothesis strategies with a seeded :class:`random.Random`, without its engine.

The fuzz mode (:mod:`kvspec.stateful.fuzz`) calls the machines' own rules with arguments drawn
from the machines' own strategies.  Through Hypothesis's engine one integer costs ~55 µs: the
choice-sequence bookkeeping that shrinking and the example database need.  :func:`drawer` compiles
a strategy once into a plain function ``draw(rng) -> value``; ``FuzzData`` stands in for the
object ``st.data()`` hands a rule.

Compiled directly (O(size of the value) per draw): ``integers``, ``booleans``, ``sampled_from`` and
``just`` (with their ``map``/``filter`` chains), ``none``, ``one_of``, ``lists`` (unique ones too),
``tuples``, ``fixed_dictionaries``, ``builds``, ``permutations``, ``.map``, ``.filter``,
``deferred`` and ``data``.  Any other strategy falls back to a draw through Hypothesis's own
``ConjectureData`` fed by the same PRNG (correct, ~50-150 µs) and is counted in :data:`FALLBACKS`, so
a benchmark can show when a machine gained a strategy worth compiling.

Distributions have Hypothesis's shape, not its details: bounded integers are uniform (as
Hypothesis draws ranges under 2**24) with a 1/16 chance of each bound; unbounded ones pick a
width first (8 bits most often, then 16, 32, 64, 128, Hypothesis's weights) and a sign; lists
are as long as Hypothesis's average (``min(max(2 min, min + 5), (min + max) / 2)``) on average, by
a geometric length cut at ``max_size``; ``one_of`` picks a branch uniformly.  No mutation, no
constants collected from the source: those help Hypothesis find boundary cases in few examples,
where the fuzz mode runs many.

>>> import random
>>> from hypothesis import strategies as st
>>> draw = drawer(st.lists(st.integers(0, 3), min_size=1, max_size=4).map(tuple))
>>> value = draw(random.Random(7))
>>> isinstance(value, tuple) and 1 <= len(value) <= 4 and all(0 <= v <= 3 for v in value)
True
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from hypothesis.errors import StopTest, UnsatisfiedAssumption

__all__ = ["FALLBACKS", "Draw", "FuzzData", "drawer"]

#: a compiled strategy
Draw = Callable[[random.Random], Any]

#: strategy type name -> draws that went through Hypothesis's engine (not compiled)
FALLBACKS: Counter[str] = Counter()

#: Hypothesis's widths for unbounded integers and their weights
_WIDTHS = (8, 16, 32, 64, 128)
_WIDTH_WEIGHTS = (4.0, 8.0, 1.0, 1.0, 0.5)
#: tries before a filter gives up (Hypothesis then discards the example; so does the fuzz driver)
_FILTER_TRIES = 100

_CACHE: dict[int, tuple[Any, Draw]] = {}
_CACHE_LIMIT = 4096


class FuzzData:
    """What a rule taking ``st.data()`` receives in fuzz mode: ``draw(strategy)`` from the PRNG."""

    __slots__ = ("rng",)

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def draw(self, strategy: Any, label: Any = None) -> Any:
        if type(strategy).__name__ == "SampledFromStrategy" and not strategy._transformations:
            # ``data.draw(st.sampled_from(items))`` with a fresh list each call: no compiling, no caching
            elements = strategy.elements
            return elements[int(self.rng.random() * len(elements))]
        return drawer(strategy)(self.rng)

    def __repr__(self) -> str:
        return "FuzzData(...)"


def drawer(strategy: Any) -> Draw:
    """The compiled form of ``strategy`` (cached per strategy object: O(1) after the first call)."""
    entry = _CACHE.get(id(strategy))
    if entry is not None and entry[0] is strategy:
        return entry[1]
    draw = _compile(strategy)
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.clear()
    _CACHE[id(strategy)] = (strategy, draw)  # the entry keeps the strategy alive: its id stays its own
    return draw


def _compile(strategy: Any) -> Draw:
    kind = type(strategy).__name__
    compile_kind = _COMPILERS.get(kind)
    if compile_kind is not None:
        compiled = compile_kind(strategy)
        if compiled is not None:
            return compiled
    return _fallback(strategy)


# -- one compiler per strategy type ------------------------------------------------------------------


def _lazy(s: Any) -> Draw:
    fast = _LAZY_FAST.get(getattr(s.function, "__name__", ""))
    args, kwargs = s._LazyStrategy__args, s._LazyStrategy__kwargs
    if fast is None or getattr(s.function, "__module__", "") != "hypothesis.strategies._internal.core":
        return drawer(s.wrapped_strategy)
    draw = fast(*args, **kwargs)
    for name, f, *_ in s._transformations:
        draw = _then(draw, name, f)
    return draw


def _then(draw: Draw, name: str, f: Callable[[Any], Any]) -> Draw:
    if name == "map":
        return lambda rng: f(draw(rng))

    def filtered(rng: random.Random) -> Any:
        for _ in range(_FILTER_TRIES):
            value = draw(rng)
            if f(value):
                return value
        raise UnsatisfiedAssumption()

    return filtered


def _permutations_of(values: Any) -> Draw:
    """``st.permutations(values)`` without building the strategy (rules build it per call)."""
    values = list(values)

    def draw(rng: random.Random) -> list:
        out = list(values)
        rng.shuffle(out)
        return out

    return draw


def _integers(s: Any) -> Draw:
    low, high = s.start, s.end
    if low is not None and high is not None:
        if high <= low:
            return lambda rng: low
        span = high - low
        if span < 2**32:  # int(random() * n) is uniform to within 2**-21 here, at a third of randrange's cost
            size = span + 1

            def small(rng: random.Random) -> int:
                r = rng.random()
                if r < 0.0625:
                    return low if r < 0.03125 else high
                return low + int(rng.random() * size)

            return small

        def bounded(rng: random.Random) -> int:
            r = rng.random()
            if r < 0.0625:
                return low if r < 0.03125 else high
            return low + rng.randrange(span + 1)

        return bounded

    def unbounded(rng: random.Random) -> int:
        width = rng.choices(_WIDTHS, _WIDTH_WEIGHTS)[0]
        value = rng.getrandbits(width - 1) * (-1 if rng.random() < 0.5 else 1)
        if low is not None and value < low:
            return low + abs(value)
        if high is not None and value > high:
            return high - abs(value)
        return value

    return unbounded


def _booleans(s: Any) -> Draw:
    return lambda rng: rng.random() < 0.5


def _sampled_from(s: Any) -> Draw | None:
    elements = list(s.elements)
    steps = [(t[0], t[1]) for t in getattr(s, "_transformations", ())]
    if not elements:
        return None
    n = len(elements)
    if not steps:
        if n == 1:
            only = elements[0]
            return lambda rng: only
        return lambda rng: elements[int(rng.random() * n)]

    def transformed(value: Any) -> tuple[bool, Any]:
        for name, f in steps:
            if name == "map":
                value = f(value)
            elif not f(value):
                return False, None
        return True, value

    def draw(rng: random.Random) -> Any:
        for _ in range(3):
            ok, value = transformed(elements[rng.randrange(n)])
            if ok:
                return value
        allowed = [v for ok, v in map(transformed, elements) if ok]  # what Hypothesis does next
        if not allowed:
            raise UnsatisfiedAssumption()
        return allowed[rng.randrange(len(allowed))]

    if any(name not in ("map", "filter") for name, _ in steps):
        return None
    return draw


def _one_of(s: Any) -> Draw:
    branches = [drawer(b) for b in s.original_strategies]
    n = len(branches)
    return lambda rng: branches[int(rng.random() * n)](rng)


def _length(s: Any) -> Callable[[random.Random], int]:
    """Hypothesis's average length, by a geometric law cut at ``max_size`` (its continue
    probability solved so that the *cut* law has that average, as Hypothesis does)."""
    low = s.min_size
    high = s.max_size if s.max_size is not None and not math.isinf(s.max_size) else None
    average = getattr(s, "average_size", None)
    if average is None:
        average = min(max(low * 2, low + 5), 0.5 * (low + (high if high is not None else low + 10)))
    p_continue = _p_continue(max(0.0, average - low), None if high is None else high - low)

    def length(rng: random.Random) -> int:
        n = low
        while (high is None or n < high) and rng.random() < p_continue:
            n += 1
        return n

    return length


def _p_continue(extra: float, room: int | None) -> float:
    """``q`` with ``E[min(Geometric(q), room)] = extra``: ``q / (1 - q)`` uncut, else by bisection
    on ``q (1 - q**room) / (1 - q)``, which grows with ``q``.  O(40) once per strategy."""
    if extra <= 0 or room == 0:
        return 0.0
    if room is None:
        return extra / (1.0 + extra)
    if extra >= room:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(40):
        q = (lo + hi) / 2
        if q * (1 - q**room) / (1 - q) < extra:
            lo = q
        else:
            hi = q
    return (lo + hi) / 2


def _lists(s: Any) -> Draw:
    element = drawer(s.element_strategy)
    length = _length(s)
    return lambda rng: [element(rng) for _ in range(length(rng))]


def _unique_lists(s: Any) -> Draw:
    element = drawer(s.element_strategy)
    length = _length(s)
    keys = tuple(getattr(s, "keys", ()) or (lambda v: v,))
    low = s.min_size

    def draw(rng: random.Random) -> list:
        wanted = length(rng)
        out: list = []
        seen: list[set] = [set() for _ in keys]
        misses = 0
        while len(out) < wanted and misses < 10 + 2 * wanted:
            value = element(rng)
            ks = [k(value) for k in keys]
            if any(k in seen_k for k, seen_k in zip(ks, seen)):
                misses += 1
                continue
            for k, seen_k in zip(ks, seen):
                seen_k.add(k)
            out.append(value)
        if len(out) < low:
            raise UnsatisfiedAssumption()
        return out

    return draw


def _tuples(s: Any) -> Draw:
    parts = [drawer(e) for e in s.element_strategies]
    return lambda rng: tuple(p(rng) for p in parts)


def _mapped(s: Any) -> Draw:
    inner, pack = drawer(s.mapped_strategy), s.pack
    return lambda rng: pack(inner(rng))


def _filtered(s: Any) -> Draw:
    inner = drawer(s.filtered_strategy)
    conditions = tuple(s.flat_conditions)

    def draw(rng: random.Random) -> Any:
        for _ in range(_FILTER_TRIES):
            value = inner(rng)
            if all(c(value) for c in conditions):
                return value
        raise UnsatisfiedAssumption()

    return draw


def _fixed_dict(s: Any) -> Draw | None:
    mapping = getattr(s, "mapping", None)
    if not isinstance(mapping, dict):
        return None
    required = [(k, drawer(v)) for k, v in mapping.items()]
    optional = [(k, drawer(v)) for k, v in (getattr(s, "optional", None) or {}).items()]

    def draw(rng: random.Random) -> dict:
        out = {k: d(rng) for k, d in required}
        out.update((k, d(rng)) for k, d in optional if rng.random() < 0.5)
        return out

    return draw


def _builds(s: Any) -> Draw:
    target = s.target
    args = [drawer(a) for a in s.args]
    kwargs = [(k, drawer(v)) for k, v in s.kwargs.items()]
    return lambda rng: target(*(a(rng) for a in args), **{k: d(rng) for k, d in kwargs})


def _permutations(s: Any) -> Draw:
    return _permutations_of(s.values)


def _data(s: Any) -> Draw:
    return FuzzData


def _fallback(strategy: Any) -> Draw:
    from hypothesis.internal.conjecture.data import ConjectureData

    name = type(strategy).__name__

    def draw(rng: random.Random) -> Any:
        FALLBACKS[name] += 1
        try:
            return ConjectureData(random=rng).draw(strategy)
        except StopTest:  # an empty strategy, or a filter nothing passes: Hypothesis discards the example
            raise UnsatisfiedAssumption() from None

    return draw


#: lazily defined strategies drawn straight from their arguments (no strategy object is built)
_LAZY_FAST: dict[str, Callable[..., Draw]] = {"permutations": _permutations_of}

_COMPILERS: dict[str, Callable[[Any], Draw | None]] = {
    "LazyStrategy": _lazy,
    "DeferredStrategy": _lazy,
    "IntegersStrategy": _integers,
    "BooleansStrategy": _booleans,
    "SampledFromStrategy": _sampled_from,
    "JustStrategy": _sampled_from,
    "OneOfStrategy": _one_of,
    "ListStrategy": _lists,
    "UniqueListStrategy": _unique_lists,
    "UniqueSampledListStrategy": _unique_lists,
    "TupleStrategy": _tuples,
    "MappedStrategy": _mapped,
    "FilteredStrategy": _filtered,
    "FixedDictStrategy": _fixed_dict,
    "BuildsStrategy": _builds,
    "PermutationStrategy": _permutations,
    "DataStrategy": _data,
}
