"""The fuzz mode's draws (:mod:`kvspec.stateful.engine.draws`): every strategy type the machines
use is compiled, stays inside its strategy's bounds, and has Hypothesis's shape of distribution."""

import random
import statistics

import pytest
from hypothesis import strategies as st

from kvspec.stateful.engine.draws import FALLBACKS, FuzzData, drawer
from kvspec.stateful.machines.index_events import Tape, tapes


def draws(strategy, n=2000, seed=0):
    rng = random.Random(seed)
    draw = drawer(strategy)
    return [draw(rng) for _ in range(n)]


def test_bounded_integers_cover_the_range_and_hit_both_bounds():
    values = draws(st.integers(-1, 14))
    assert set(values) == set(range(-1, 15))
    assert values.count(-1) > 2000 / 16 * 0.5 + 2000 / 32 * 0.5  # the bound bias on top of uniform


def test_unbounded_integers_mix_widths_and_signs():
    values = draws(st.integers())
    assert any(v < 0 for v in values) and any(v > 0 for v in values)
    assert any(abs(v) >= 2**31 for v in values) and sum(abs(v) < 2**15 for v in values) > 1000
    assert all(v >= 5 for v in draws(st.integers(min_value=5)))


def test_sampled_from_just_none_booleans_one_of():
    assert set(draws(st.sampled_from(["a", "b", "c"]))) == {"a", "b", "c"}
    assert set(draws(st.sampled_from([1, 2, 3]).map(str).filter(lambda s: s != "2"))) == {"1", "3"}
    assert set(draws(st.just(7), 10)) == {7}
    assert set(draws(st.none(), 10)) == {None}
    assert set(draws(st.booleans())) == {False, True}
    assert set(draws(st.one_of(st.just(1), st.just(2)))) == {1, 2}


def test_lists_respect_sizes_and_hypothesis_average():
    values = draws(st.lists(st.integers(0, 2), min_size=1, max_size=5))
    assert {len(v) for v in values} == {1, 2, 3, 4, 5}
    assert all(0 <= x <= 2 for v in values for x in v)
    assert 1.8 < statistics.mean(len(v) for v in draws(st.lists(st.integers(0, 9), max_size=4))) < 2.5
    unbounded = statistics.mean(len(v) for v in draws(st.lists(st.booleans())))
    assert 4 < unbounded < 6  # Hypothesis's average: min(max(2 * 0, 0 + 5), inf) = 5


def test_unique_lists_are_unique():
    for v in draws(st.lists(st.integers(1, 4), min_size=1, max_size=3, unique=True)):
        assert len(set(v)) == len(v) and 1 <= len(v) <= 3
    for v in draws(st.lists(st.sampled_from("abc"), unique=True), 200):
        assert len(set(v)) == len(v)


def test_tuples_maps_filters_dicts_builds_permutations():
    assert all(isinstance(a, int) and b == 3 for a, b in draws(st.tuples(st.integers(0, 1), st.just(3)), 50))
    assert all(v % 2 for v in draws(st.integers(0, 9).filter(lambda x: x % 2), 200))
    assert all(set(d) == {"a"} for d in draws(st.fixed_dictionaries({"a": st.integers(0, 1)}), 20))
    assert all(isinstance(c, complex) for c in draws(st.builds(complex, st.integers(0, 3)), 20))
    assert {tuple(p) for p in draws(st.permutations([1, 2, 3]), 500)} == {
        (1, 2, 3), (1, 3, 2), (2, 1, 3), (2, 3, 1), (3, 1, 2), (3, 2, 1)}
    assert all(len(p) == 2 for p in draws(st.permutations([1, 2, 3]).map(lambda p: p[:2]), 20))


def test_the_machines_tapes_and_data():
    tape = draws(tapes(), 1)[0]
    assert isinstance(tape, Tape) and 4 <= len(tape.values) <= 10
    data = draws(st.data(), 1)[0]
    assert isinstance(data, FuzzData) and 0 <= data.draw(st.integers(0, 3)) <= 3


def test_same_seed_same_values():
    strategy = st.lists(st.tuples(st.integers(0, 99), st.booleans()), max_size=8)
    assert draws(strategy, 100, seed=3) == draws(strategy, 100, seed=3)
    assert draws(strategy, 100, seed=3) != draws(strategy, 100, seed=4)


def test_an_unknown_strategy_falls_back_to_hypothesis_and_is_counted():
    before = FALLBACKS["FloatStrategy"]
    values = draws(st.floats(0, 1, allow_nan=False), 20)
    assert all(0 <= v <= 1 for v in values)
    assert FALLBACKS["FloatStrategy"] - before == 20


@pytest.mark.parametrize("strategy", [st.integers(0, 1).filter(lambda x: x > 5),
                                      st.sampled_from([1, 2]).filter(lambda x: x > 5)])
def test_an_unsatisfiable_filter_discards_the_run(strategy):
    from hypothesis.errors import UnsatisfiedAssumption

    with pytest.raises(UnsatisfiedAssumption):
        drawer(strategy)(random.Random(0))
