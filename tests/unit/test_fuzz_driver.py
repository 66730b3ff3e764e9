"""The fuzz driver (:mod:`kvspec.stateful.fuzz`) reads the machines' rules, it does not copy them."""

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from kvspec.stateful.engine.machine import MachineSpec
from kvspec.stateful.engine.registry import find_machines
from kvspec.stateful.fuzz import FuzzRules, fuzz, fuzz_command, fuzz_machine
from kvspec.stateful.machines.radix import RadixMachine


class RadixWithANewRule(RadixMachine):
    """A machine that gained a rule after the fuzz driver was written."""

    seen: list = []

    @precondition(lambda self: self.events.held)
    @rule(depth=st.integers(1, 3), early_exit=st.booleans())
    def query_again(self, depth, early_exit):
        type(self).seen.append((depth, early_exit))
        self.run.call(self.subject, "find_matches", [11] * depth, early_exit)


def test_a_new_rule_is_fuzzed_without_any_change_to_the_driver():
    spec = MachineSpec("radix-plus", RadixWithANewRule, ("RadixIndex",))
    result = fuzz_machine(spec, "impl", steps=2_000, seed=3)
    assert result.status == "passed"
    assert result.rule_counts["query_again"] > 0
    assert {d for d, _ in RadixWithANewRule.seen} == {1, 2, 3}
    assert set(result.rule_counts) == {r.function.__name__ for r in RadixWithANewRule.setup_state().rules} | {
        r.function.__name__ for r in RadixWithANewRule.setup_state().initializers}


def test_every_rule_of_the_pool_machine_runs():
    spec = next(s for s in find_machines(["pool[lru,allow]"]))
    result = fuzz_machine(spec, "impl", steps=5_000, seed=0)
    assert result.status == "passed" and result.steps >= 5_000
    assert FuzzRules(spec.build(__import__("kvspec.targets").targets.resolve("impl"))).names
    assert all(count > 0 for count in result.rule_counts.values()), result.rule_counts


def test_a_seed_reproduces_a_run():
    spec = next(s for s in find_machines(["radix"]))
    a = fuzz_machine(spec, "impl", steps=500, seed=11)
    b = fuzz_machine(spec, "impl", steps=500, seed=11)
    assert (a.steps, a.rule_counts) == (b.steps, b.rule_counts)


def test_budget_in_seconds_and_skips():
    results = fuzz("impl", ["radix", "contract-radix"], seconds=0.2, seed=1)
    assert results[0].status == "passed" and {r.status for r in results[1:]} == {"skipped"}
    assert results[0].steps > 0


def test_the_command_names_the_seed():
    assert fuzz_command("pool[lru,allow]", "mutant:x", 42) == \
        "kvspec check --fuzz --target mutant:x --machine 'pool[lru,allow]' --seed 42"
