"""``Differential(observe="checkpoints")``, the fuzz mode's cheaper observation, against the
default that compares every observer after every step."""

import types

import pytest

from kvspec.errors import InvalidArgument
from kvspec.stateful.engine.differential import Differential, Divergence, StaleObservation, replay


class Counter:
    """A subject with one state observer and one drain."""

    def __init__(self, slip_at=None):
        self.total, self.events, self.calls, self.slip_at = 0, [], 0, slip_at

    def add(self, n):
        if n < 0:
            raise InvalidArgument("negative")
        self.calls += 1
        self.total += n + (1 if self.calls == self.slip_at else 0)  # the target's planted slip
        self.events.append(n)

    def value(self):
        return self.total

    def drain_events(self):
        out, self.events = self.events, []
        return out


def sides(slip_at=None):
    model = types.SimpleNamespace(Counter=Counter)
    target = types.SimpleNamespace(Counter=lambda: Counter(slip_at))
    return model, target


OBSERVERS = {"Counter": ["value", "drain_events"]}


def run(slip_at=None, **options):
    diff = Differential(*sides(slip_at), observers=OBSERVERS, **options)
    diff.create("c", "Counter")
    return diff


def steps_until_divergence(diff, n=10):
    for i in range(n):
        try:
            diff.call("c", "add", 1)
        except Divergence as d:
            return i + 1, d
    return None, None


def test_every_step_mode_stops_at_the_exact_step():
    at, divergence = steps_until_divergence(run(slip_at=2))
    assert at == 2 and "value()" in divergence.summary


def test_checkpoint_mode_finds_the_state_difference_at_the_next_checkpoint():
    at, divergence = steps_until_divergence(run(slip_at=2, observe="checkpoints", checkpoint_every=4))
    assert at == 4 and divergence.summary.startswith("at a checkpoint: value()")
    # a replay with every observer after every step names the step that caused it
    exact = replay(divergence.steps, *sides(slip_at=2), observers=OBSERVERS)
    assert exact.index == 2  # create, add, add


def test_checkpoint_at_the_end_of_a_run():
    diff = run(slip_at=1, observe="checkpoints", checkpoint_every=100)
    diff.call("c", "add", 1)
    with pytest.raises(Divergence):
        diff.checkpoint()


def test_values_errors_and_drains_are_still_compared_every_step():
    model, _ = sides()

    class Loud(Counter):
        def add(self, n):
            super().add(n)
            self.events.append("extra")

    diff = Differential(model, types.SimpleNamespace(Counter=Loud), observers=OBSERVERS, observe="checkpoints",
                        checkpoint_every=100)
    diff.create("c", "Counter")
    with pytest.raises(Divergence, match="drain_events"):
        diff.call("c", "add", 1)


def test_an_agreed_error_passes_and_a_silent_change_shows_at_the_checkpoint():
    class Sloppy(Counter):
        def add(self, n):
            if n < 0:
                self.total += 1  # changes state, then raises like the model
            super().add(n)

    model, _ = sides()
    diff = Differential(model, types.SimpleNamespace(Counter=Sloppy), observers=OBSERVERS, observe="checkpoints",
                        checkpoint_every=3)
    diff.create("c", "Counter")
    with pytest.raises(InvalidArgument):
        diff.call("c", "add", -1)
    diff.call("c", "add", 1)
    with pytest.raises(Divergence, match="value"):
        diff.call("c", "add", 1)


def test_state_observers_are_read_only_when_asked_and_only_while_current():
    diff = run(observe="checkpoints", checkpoint_every=100)
    diff.call("c", "add", 5)
    first = diff.outcomes[-1][0].observed
    assert first["drain_events"] == [5]
    assert "value" in first and first["value"] == 5  # read on demand
    diff.call("c", "add", 1)
    diff.call("c", "add", 1)
    stale = diff.outcomes[-2][0].observed
    with pytest.raises(StaleObservation) as info:
        stale["value"]
    assert info.value.name == "value"
    assert diff.outcomes[-1][0].observed["value"] == 7


def test_eager_observers_are_read_after_every_step():
    diff = run(observe="checkpoints", checkpoint_every=100, eager=["value"])
    diff.call("c", "add", 2)
    diff.call("c", "add", 3)
    assert diff.outcomes[-2][0].observed["value"] == 2


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        Differential(*sides(), observers=OBSERVERS, observe="sometimes")


def test_the_hot_path_builds_the_same_steps_and_outcomes_as_their_constructors():
    from kvspec.stateful.engine.differential import Outcome, Step, _outcome, _step

    assert _step("c", "add", (1,), {"k": 2}) == Step("c", "add", (1,), {"k": 2})
    assert _outcome(3, "InvalidArgument", "bad", {"value": 1}) == Outcome(3, "InvalidArgument", "bad", {"value": 1})
    diff = run(observe="checkpoints", checkpoint_every=100)
    diff.call("c", "add", 5)
    step, (expected, actual) = diff.steps[-1], diff.outcomes[-1]
    assert type(step) is Step and step == Step("c", "add", (5,), {}) and step.describe() == "c.add(5)"
    assert type(expected) is Outcome and (expected.value, expected.error, expected.message) == (None, None, "")
    assert expected.observed["value"] == actual.observed["value"] == 5
