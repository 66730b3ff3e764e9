"""Readable failures: structural diffs name the element, field or key, and look-alike types."""

import attrs

from kvspec.events import KvCacheEvent, Removed
from kvspec.scores import OverlapScores
from kvspec.stateful.traces.render import TYPE_NOTE, step_contract, structural_diff


def test_missing_list_element_is_named_not_every_later_one():
    want = [KvCacheEvent(1, Removed([5])), KvCacheEvent(2, Removed([6])), KvCacheEvent(3, Removed([7]))]
    got = [want[0], want[2]]
    assert structural_diff(want, got) == [f"element [1]: target lacks {want[1]!r}"]


def test_extra_element_and_changed_field():
    want = [KvCacheEvent(1, Removed([5]))]
    assert structural_diff(want, [*want, KvCacheEvent(2, Removed([6]))])[0].startswith("element [1]: extra in target")
    [line] = structural_diff(want, [KvCacheEvent(1, Removed([9]))])
    assert line == "element [0].data.block_hashes[0]: model 5, target 9"


def test_dictionary_keys_missing_and_extra():
    want, got = OverlapScores({(1, 0): 2, (2, 0): 1}, ()), OverlapScores({(1, 0): 3, (3, 0): 1}, ())
    assert structural_diff(want, got) == [
        "field scores[(1, 0)]: model 2, target 3",
        "field scores[(2, 0)]: missing in target (model: 1)",
        "field scores[(3, 0)]: extra in target: 1",
    ]


@attrs.frozen
class OverlapScoresLookAlike:  # an adapter's own class with kvspec's name and fields
    scores: dict
    frequencies: tuple = ()

    def __repr__(self):
        return f"OverlapScores(scores={self.scores!r}, frequencies={self.frequencies!r})"


def test_values_that_print_alike_say_their_types_differ():
    want = OverlapScores({(1, 0): 2}, ())
    [line] = structural_diff(want, OverlapScoresLookAlike({(1, 0): 2}))
    assert "kvspec.scores.OverlapScores" in line and "OverlapScoresLookAlike" in line and TYPE_NOTE in line


def test_steps_are_in_contract_unless_the_model_rejects_them():
    assert step_contract(None) == ("in-contract", "the model accepts it")
    assert step_contract("ParentBlockNotFound") == (
        "adversarial", "the model rejects it with ParentBlockNotFound; nothing changes")
    assert step_contract("BlockNotFound", ("BlockNotFound",))[1].endswith("the rest of it applies")


def test_a_divergence_between_look_alikes_says_so_in_its_summary():
    from kvspec.stateful.engine.differential import Divergence, Outcome, Step
    from kvspec.stateful.engine.registry import find_machines
    from kvspec.stateful.traces.schema import trace_from_divergence
    from kvspec.targets import resolve

    step = Step("idx", "find_matches", ([11],))
    divergence = Divergence("return value: differs", steps=[Step("idx", "__init__", (), {}, "RadixIndex"), step],
                            index=1, expected=Outcome(OverlapScores({(1, 0): 1}, ())),
                            actual=Outcome(OverlapScoresLookAlike({(1, 0): 1})), differences=["return value: x"])
    trace = trace_from_divergence(divergence, spec=find_machines(["radix"])[0], target=resolve("impl"),
                                  profile="ci", seed=None)
    assert "print alike but their types differ: model kvspec.scores.OverlapScores" in trace["summary"]
