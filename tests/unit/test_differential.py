"""The differential engine: agreement passes, every kind of disagreement is reported."""

import types

import pytest

from kvspec.errors import BlockNotHeld, KvSpecError
from kvspec.stateful.engine.differential import Differential, Divergence, Step, replay


class Counter:
    """A toy subject: counts up; ``take`` fails on an empty counter and leaves it unchanged."""

    def __init__(self, start=0):
        self.n = start
        self.log = []

    def add(self, k):
        self.n += k
        self.log.append(k)
        return self.n

    def take(self):
        if self.n == 0:
            raise BlockNotHeld("nothing to take")
        self.n -= 1
        return self.n

    def value(self):
        return self.n

    def drain_log(self):
        out, self.log = self.log, []
        return out


class OffByOne(Counter):
    def add(self, k):
        return super().add(k + (1 if k == 3 else 0))


class WrongError(Counter):
    def take(self):
        if self.n == 0:
            raise KeyError("boom")
        return super().take()


class MutatesOnError(Counter):
    def take(self):
        if self.n == 0:
            self.n = 5
            raise BlockNotHeld("nothing")
        return super().take()


def ns(cls):
    return types.SimpleNamespace(Counter=cls)


OBSERVERS = {"Counter": ["value", "drain_log"]}


def run(target_cls):
    d = Differential(ns(Counter), ns(target_cls), observers=OBSERVERS)
    d.create("c", "Counter", 1)
    d.call("c", "add", 2)
    with pytest.raises(KvSpecError):
        for _ in range(5):
            d.call("c", "take")
    d.call("c", "add", 3)
    return d


def test_agreement():
    d = run(Counter)
    assert [s.method for s in d.steps] == ["__init__", "add", "take", "take", "take", "take", "add"]


@pytest.mark.parametrize("cls,needle", [
    (OffByOne, "return value"),
    (WrongError, "crash:KeyError"),
    (MutatesOnError, "changed value()"),
])
def test_divergences_are_reported(cls, needle):
    with pytest.raises(Divergence) as info:
        run(cls)
    assert needle in str(info.value)
    steps = info.value.steps
    assert replay(steps, ns(Counter), ns(Counter), observers=OBSERVERS) is None
    again = replay(steps, ns(Counter), ns(cls), observers=OBSERVERS)
    assert again is not None and again.index == info.value.index


def test_step_json_round_trip():
    step = Step("c", "add", (3,), {"k": (1, 2)})
    assert Step.from_json(step.to_json()) == step
    assert step.describe() == "c.add(3, k=(1, 2))"
    assert Step("c", "__init__", (1,), {}, "Counter").describe() == "c = Counter(1)"
