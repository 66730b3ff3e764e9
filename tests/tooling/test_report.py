"""`kvspec report`: the Markdown report and its standalone pytest file.

The generated file is run with pytest in a subprocess, with Hypothesis blocked: it must fail
against the broken target and pass against a correct one.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import toy_machine
from hypothesis import given, settings
from hypothesis import strategies as st
from toy_machine import divergence_trace

from kvspec import codec
from kvspec.cli import main
from kvspec.events import Cleared, KvCacheEvent, Removed, RouterEvent, StorageTier, Stored, StoredBlock
from kvspec.hashing import Plh
from kvspec.protocol import Deref, FullBlock, PartialBlock, Use
from kvspec.stateful.engine.differential import Outcome, Step, exact_compare
from kvspec.stateful.traces.report import Literals, build_report
from kvspec.stateful.traces.schema import write_trace

HERE = Path(__file__).parent
REPO = HERE.parent.parent

#: run a pytest file with Hypothesis unimportable: the report promises it is not needed
RUNNER = ("import sys; sys.modules['hypothesis'] = None; import pytest; "
          "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-p', 'no:hypothesispytest', sys.argv[1]]))")


def run_generated(path: Path, target: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KVSPEC_TARGET": target, "PYTHONPATH": str(HERE), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("CI", None)
    return subprocess.run([sys.executable, "-c", RUNNER, str(path)], capture_output=True, text=True, env=env,
                          cwd=path.parent, timeout=300)


@pytest.fixture(autouse=True)
def toy(monkeypatch):
    toy_machine.install(monkeypatch)


def _report(tmp_path, trace, target=None):
    path = write_trace(trace, tmp_path)
    report = build_report(str(path), target)
    test_file = tmp_path / "test_generated.py"
    test_file.write_text(report.test_source)
    return report, test_file


def test_markdown_has_every_section(tmp_path):
    report, _ = _report(tmp_path, divergence_trace("toy-broken"))
    md = report.markdown
    assert md.startswith("# [kvspec] toy-broken: `Shelf.take` drain_events() differs from the model")
    for heading in ("## Environment", "## Steps to reproduce (3 steps", "## Expected vs actual at step 3",
                    "## Standalone test", "## Replay"):
        assert heading in md
    assert "| `drain_events()` **differs** |" in md
    # issue 11: every step says whether it is in-contract or adversarial
    assert "3. `shelf.take(FullBlock(hash=0))` → model: `-> 0` — *in-contract* **← diverges here**" in md
    embedded = re.search(r"```python\n(.*?)```", md, re.S).group(1)
    assert embedded == report.test_source
    assert report.reproduced


def test_generated_file_is_literal_and_hypothesis_free(tmp_path):
    report, _ = _report(tmp_path, divergence_trace("toy-broken"))
    src = report.test_source
    assert "hypothesis" not in src and "kvspec.stateful" not in src
    assert "shelf = ns.Shelf(1)" in src
    # issue 11: values in variables and a plain `==`, so pytest's assertion rewriting shows the diff
    assert ("actual = shelf.drain_events()\n"
            "    expected = [KvCacheEvent(event_id=1, data=Removed(block_hashes=(0,)))]\n"
            "    assert canonical(actual) == canonical(expected)") in src
    assert "from kvspec.events import" in src and "from kvspec.protocol import FullBlock" in src
    compile(src, "generated", "exec")


def test_generated_file_fails_on_the_bug_and_passes_on_correct_targets(tmp_path):
    _, test_file = _report(tmp_path, divergence_trace("toy-broken"))
    broken = run_generated(test_file, "toy_shelf:BROKEN")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "drain_events()" in broken.stdout and "1 failed" in broken.stdout
    for good in ("toy_shelf:GOOD", "toy_shelf:MODEL"):
        ok = run_generated(test_file, good)
        assert ok.returncode == 0, ok.stdout + ok.stderr


def test_error_class_is_asserted_exactly(tmp_path):
    report, test_file = _report(tmp_path, divergence_trace("toy-crashy", steps=(("create", 1), ("take", 3))))
    assert "with raises_exactly(InvalidArgument):" in report.test_source
    assert "from kvspec.errors import InvalidArgument" in report.test_source
    crashy = run_generated(test_file, "toy_shelf:CRASHY")
    assert crashy.returncode == 1 and "KeyError" in crashy.stdout
    assert run_generated(test_file, "toy_shelf:GOOD").returncode == 0


def test_error_trace_report_calls_check(tmp_path):
    trace = divergence_trace("toy-broken")
    trace = {k: v for k, v in trace.items() if k != "divergence"}
    trace.update(kind="error", target={"name": "toy-sloppy", "version": "0", "mode": "exact"},
                 error={"type": "AssertionError", "message": "capacity drifted", "after_step": 2})
    report, test_file = _report(tmp_path, trace)
    assert "shelf._check()" in report.test_source and "## Failure (after step 3)" in report.markdown
    assert run_generated(test_file, "toy_shelf:SLOPPY").returncode == 1
    assert run_generated(test_file, "toy_shelf:GOOD").returncode == 0


def test_fixed_target_report_says_so(tmp_path, capsys):
    path = write_trace(divergence_trace("toy-broken"), tmp_path)
    out = tmp_path / "bug.md"
    code = main(["report", str(path), "--target", "toy-good", "-o", str(out), "--pytest", str(tmp_path / "t.py")])
    assert code == 0
    assert "no** divergence" in out.read_text()
    assert "no longer diverges" in capsys.readouterr().err
    assert (tmp_path / "t.py").read_text().startswith('"""kvspec regression')


def test_non_exact_comparator_falls_back_to_replay(tmp_path, monkeypatch):
    """A machine with its own comparator cannot be written as literal equalities: the file replays."""
    import attrs

    import kvspec.stateful.engine.registry as base

    def lenient(step: Step, expected: Outcome, actual: Outcome):
        return exact_compare(step, attrs.evolve(expected, observed={}), attrs.evolve(actual, observed={}))

    class Lenient(toy_machine.ShelfMachine):
        compare = staticmethod(lenient)

    spec = attrs.evolve(toy_machine.SPEC, name="toy-lenient", factory=Lenient)
    monkeypatch.setattr(base, "all_machines", lambda: [spec, toy_machine.SPEC])
    trace = divergence_trace("toy-crashy", steps=(("create", 1), ("take", 3)))
    trace["machine"] = "toy-lenient"
    report, _ = _report(tmp_path, trace)
    assert "assert_replays_clean(TRACE, TARGET)" in report.test_source
    namespace = {}
    exec(compile(report.test_source, "generated", "exec"), namespace)
    test = next(v for k, v in namespace.items() if k.startswith("test_"))
    with pytest.raises(AssertionError, match="DIVERGENCE"):
        test()
    namespace["TARGET"] = "toy-good"
    test()


# -- literals -----------------------------------------------------------------------------------

u64 = st.integers(0, 2**64 - 1)
plhs = st.builds(Plh, st.integers(0, 50), u64, st.none() | u64)
full = st.builds(FullBlock, u64)
blocks = full | st.builds(PartialBlock, st.integers(0, 99))
event_data = (st.builds(Stored, st.none() | u64, st.lists(st.builds(StoredBlock, u64, u64), max_size=3))
              | st.builds(Removed, st.lists(u64, max_size=3)) | st.just(Cleared()))
events = st.builds(KvCacheEvent, u64, event_data, st.integers(0, 3))
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.floats() | st.sampled_from(StorageTier)
    | full | plhs | events | st.builds(RouterEvent, u64, events, st.sampled_from(StorageTier))
    | st.builds(Deref, st.lists(blocks, max_size=3)),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner) | st.tuples(inner, inner)
    | st.dictionaries(st.integers() | st.text(max_size=3), inner, max_size=3)
    | st.frozensets(st.integers() | full, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(values)
def test_literals_evaluate_back_to_the_value(value):
    literals = Literals()
    source = literals.render(value)
    namespace = {"frozenset": frozenset, "float": float}
    for name, module in literals.imports.items():
        namespace[name] = getattr(__import__(module, fromlist=[name]), name)
    if literals.needs_json:
        namespace["recorded"] = lambda text: codec.decode(json.loads(text))
    back = eval(source, namespace)  # noqa: S307
    assert json.dumps(codec.encode(back)) == json.dumps(codec.encode(value))  # as text: NaN equals itself


def test_literal_forms_read_like_python():
    literals = Literals()
    use = Use([FullBlock(1), PartialBlock(2)], [5], [Plh(0, 1)], parent=None)
    # arguments equal to their default are left out
    assert literals.render(use) == ("Use(blocks=(FullBlock(hash=1), PartialBlock(uuid=2)), local_hashes=(5,), "
                                    "plhs=(Plh(position=0, current=1),))")
    assert literals.render(Use([], [], [], parent=FullBlock(3))) == (
        "Use(blocks=(), local_hashes=(), plhs=(), parent=FullBlock(hash=3))")
    assert literals.render({StorageTier.HOST_PINNED: [1]}) == "{StorageTier.HOST_PINNED: [1]}"
    assert literals.render(frozenset()) == "frozenset()" and literals.render((1,)) == "(1,)"
    assert literals.render(float("inf")) == "float('inf')"
    assert set(literals.imports) == {"Use", "FullBlock", "PartialBlock", "Plh", "StorageTier"}


# -- end to end on a real planted bug --------------------------------------------------------------


def test_mutant_from_check_to_failing_pytest_file(tmp_path, capsys):
    """`kvspec check` finds a planted bug, `replay` shows it, `report` writes a test that fails on it
    and passes on impl."""
    traces = tmp_path / "traces"
    code = main(["check", "--target", "mutant:tracker-passthrough-dedups", "--machine", "tracker[passthrough]",
                 "--profile", "ci", "--max-examples", "20", "--trace-dir", str(traces), "--progress", "0"])
    assert code == 1
    (trace,) = traces.glob("*.json")
    capsys.readouterr()
    assert main(["replay", str(trace)]) == 1
    assert "DIVERGENCE" in capsys.readouterr().out
    assert main(["replay", str(trace), "--target", "impl"]) == 0
    test_file = tmp_path / "test_bug.py"
    assert main(["report", str(trace), "-o", str(tmp_path / "bug.md"), "--pytest", str(test_file)]) == 0
    assert run_generated(test_file, "mutant:tracker-passthrough-dedups").returncode == 1
    ok = run_generated(test_file, "impl")
    assert ok.returncode == 0, ok.stdout + ok.stderr
