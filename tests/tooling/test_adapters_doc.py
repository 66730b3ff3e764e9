"""docs/adapters.md cannot drift from the machines, and the pre-flight check says what is missing.

* the method table in the guide is the one generated from the machines' recorded calls;
* recording again (a few machines) finds no call and no error the table lacks;
* the worked example in the guide is the adapter kvspec's end-to-end tests run;
* the pre-flight check names a missing method and an incompatible signature, and accepts a
  keyword-only ``early_exit`` (the calling convention the guide shows).
"""

import re
import types
from pathlib import Path

import pytest

from kvspec.stateful.engine.registry import all_machines, find_machines
from kvspec.stateful.machines import interface
from kvspec.stateful.machines._calls import CALLS, ERRORS
from kvspec.targets import Target

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "adapters.md"
ADAPTER = Path(__file__).parent / "example_engine" / "tinyradix_kvspec" / "adapter.py"


def test_guide_table_is_generated_from_the_machines():
    text = GUIDE.read_text()
    block = re.search(r"<!-- calls:begin -->\n(.*?)\n?<!-- calls:end -->", text, re.S)
    assert block, "docs/adapters.md lost its generated table markers"
    assert block.group(1).strip() == interface.render_table(all_machines()).strip(), (
        "docs/adapters.md's table is stale: regenerate with "
        "`python -m kvspec.stateful.machines.interface && python tests/tooling/test_adapters_doc.py`")


def test_every_machine_has_a_row():
    assert set(CALLS) == {spec.name for spec in all_machines()}


@pytest.mark.parametrize("machine", ["radix", "tiered", "pool[lru,allow]", "tracker[dedup]", "manager[lru]"])
def test_recording_again_finds_nothing_the_table_lacks(machine):
    spec = find_machines([machine])[0]
    errors: dict = {}
    recorded = interface.record_calls(spec, examples=15, steps=25, errors=errors)
    table = interface.calls_of(spec.name)
    for cls, methods in recorded.items():
        for method, shapes in methods.items():
            assert shapes <= set(table.get(cls, {}).get(method, [])), f"{machine} calls {cls}.{method} as {shapes}"
    # errors are not compared: which ones a short derandomized run meets depends on the modules
    # loaded in the process (Hypothesis's constant pool); the table records them over 200 examples
    assert all(isinstance(names, list) for methods in ERRORS.values() for names in methods.values())


def test_worked_example_in_the_guide_is_the_tested_adapter():
    guide = GUIDE.read_text().split("## 8. A worked example", 1)[1]
    code = re.search(r"```python\n(.*?)```", guide, re.S).group(1)
    adapter = [line.rstrip() for line in ADAPTER.read_text().splitlines()]
    position = 0
    for line in (line.rstrip() for line in code.splitlines() if line.strip()):
        assert line in adapter[position:], f"the guide's line {line!r} is not (in order) in {ADAPTER.name}"
        position = adapter.index(line, position) + 1


class _Index:
    def __init__(self):
        pass

    def apply_event(self, worker_id, event):
        pass

    def find_matches(self, local_hashes, *, early_exit=False):
        pass

    def remove_worker(self, worker_id):
        pass

    def remove_worker_dp_rank(self, worker_id, dp_rank):
        pass

    def clear_all_blocks(self, worker_id):
        pass

    def dump_events(self):
        return []


def _target(cls):
    return Target("mine", types.SimpleNamespace(RadixIndex=cls), "1")


def test_preflight_accepts_a_complete_adapter_with_keyword_only_early_exit():
    assert interface.preflight(find_machines(["radix"])[0], _target(_Index)) == []


def test_preflight_names_a_missing_method():
    class Lacking(_Index):
        dump_events = None

    problems = interface.preflight(find_machines(["radix"])[0], _target(Lacking))
    assert problems == ["adapter lacks `RadixIndex.dump_events` (called as dump_events())"]


def test_preflight_names_an_incompatible_signature():
    class Positional(_Index):
        def find_matches(self, local_hashes, early, /):
            pass

    [problem] = interface.preflight(find_machines(["radix"])[0], _target(Positional))
    assert problem.startswith("`RadixIndex.find_matches` cannot be called as find_matches(a1, early_exit=...)")


if __name__ == "__main__":  # rewrite the guide's table from the generated call table
    text = GUIDE.read_text()
    table = interface.render_table(all_machines())
    GUIDE.write_text(re.sub(r"<!-- calls:begin -->\n.*?<!-- calls:end -->",
                            lambda _: f"<!-- calls:begin -->\n{table}\n<!-- calls:end -->", text, flags=re.S))
    print(f"updated {GUIDE}")
