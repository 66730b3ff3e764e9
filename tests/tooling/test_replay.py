"""`kvspec replay`: deterministic re-execution, readable diffs, exit codes, and untrusted input.

Bad traces (truncated, unknown schema, unknown machine/target, impossible steps, random garbage)
must give one line on stderr and exit 2 — never a traceback, never code execution.
"""

import copy
import json
import sys

import pytest
import toy_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from toy_machine import divergence_trace

from kvspec.cli import main
from kvspec.errors import KvSpecError, TraceError
from kvspec.stateful.traces.replay import assert_replays_clean, render_result, replay_trace
from kvspec.stateful.traces.schema import parse_trace, write_trace


@pytest.fixture(autouse=True)
def toy(monkeypatch):
    toy_machine.install(monkeypatch)


@pytest.fixture
def broken_trace(tmp_path):
    return write_trace(divergence_trace("toy-broken"), tmp_path)


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_replay_shows_the_divergence_as_a_diff_and_exits_1(broken_trace, capsys):
    code, out, err = run_cli(capsys, "replay", str(broken_trace))
    assert code == 1 and not err
    assert ">> 3  shelf.take(FullBlock(hash=0))" in out
    assert "DIVERGENCE at step 3" in out
    assert "- model : [KvCacheEvent(event_id=1, data=Removed(block_hashes=(0,)), dp_rank=0)]" in out
    assert "+ target: []" in out
    assert "2  shelf.put(FullBlock(hash=0))  -> 1" in out  # the model's outcome of each step


def test_replay_exits_0_once_fixed(broken_trace, capsys):
    for fixed in ("toy-good", "toy-model"):
        code, out, _ = run_cli(capsys, "replay", str(broken_trace), "--target", fixed)
        assert code == 0, out
        assert f"OK: {fixed} agrees with the model on all 3 steps" in out
        assert "(recorded against toy-broken)" in out


def test_replay_is_deterministic(broken_trace):
    first = replay_trace(str(broken_trace))
    second = replay_trace(str(broken_trace))
    assert first.records == second.records and render_result(first) == render_result(second)


def test_crash_of_the_target_is_a_divergence(tmp_path, capsys):
    path = write_trace(divergence_trace("toy-crashy", steps=(("create", 1), ("take", 3))), tmp_path)
    code, out, _ = run_cli(capsys, "replay", str(path))
    assert code == 1
    assert "- model : InvalidArgument" in out and "+ target: crash:KeyError" in out


def test_error_trace_is_reproduced_by_the_targets_check(tmp_path, capsys):
    trace = divergence_trace("toy-broken")
    trace = {k: v for k, v in trace.items() if k != "divergence"}
    trace.update(kind="error", target={"name": "toy-sloppy", "version": "0", "mode": "exact"},
                 error={"type": "AssertionError", "message": "capacity drifted", "after_step": 2})
    path = write_trace(trace, tmp_path)
    code, out, _ = run_cli(capsys, "replay", str(path))
    assert code == 1 and "_check() raised AssertionError: capacity drifted to 0" in out
    code, out, _ = run_cli(capsys, "replay", str(path), "--target", "toy-good")
    assert code == 0 and "the steps now agree" in out


def test_assert_replays_clean_helper(broken_trace):
    assert_replays_clean(str(broken_trace), "toy-good")
    with pytest.raises(AssertionError, match="DIVERGENCE at step 3"):
        assert_replays_clean(str(broken_trace))


# -- bad input --------------------------------------------------------------------------------


def _write(tmp_path, text, name="bad.json"):
    path = tmp_path / name
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    return path


def _edited(**changes):
    trace = divergence_trace("toy-broken")
    for dotted, value in changes.items():
        node = trace
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is DELETE:
            del node[int(last) if isinstance(node, list) else last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return json.dumps(trace)


DELETE = object()

BAD = {
    "truncated": lambda: json.dumps(divergence_trace("toy-broken"))[:200],
    "empty": lambda: "",
    "not utf-8": lambda: b"\xff\xfe{}",
    "a list": lambda: "[1, 2]",
    "no schema": lambda: _edited(schema_version=DELETE),
    "future schema": lambda: _edited(schema_version=99),
    "unknown machine": lambda: _edited(machine="no-such-machine"),
    "unknown mutant": lambda: _edited(target={"name": "mutant:no-such", "version": "x", "mode": "exact"}),
    "import-path target": lambda: _edited(target={"name": "os:path", "version": "x", "mode": "exact"}),
    "use before create": lambda: _edited(steps__0=DELETE),
    "unknown method": lambda: _edited(steps__1__method="explode"),
    "private method": lambda: _edited(steps__1__method="__class__"),
    "class not in machine": lambda: _edited(steps__0__cls="KvManager"),
    "module attribute as class": lambda: _edited(steps__0__cls="types"),
    "wrong arity": lambda: _edited(steps__1__args=[1, 2, 3]),
    "bad value type": lambda: _edited(steps__1__args=[{"$type": "os.system", "fields": {}}]),
    "invalid attrs value": lambda: _edited(steps__1__args=[{"$type": "FullBlock", "fields": {"hash": "x"}}]),
    "model raises TypeError": lambda: _edited(steps__1__args=["not a block"]),
    "index out of range": lambda: _edited(divergence__index=7),
    "huge int": lambda: '{"schema_version": 1, "x": ' + "9" * 5000 + "}",
    "deep nesting": lambda: "[" * 100000 + "]" * 100000,
    "NaN": lambda: _edited(seed=float("nan")),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_trace_is_one_line_and_exit_2(case, tmp_path, capsys):
    path = _write(tmp_path, BAD[case]())
    code, out, err = run_cli(capsys, "replay", str(path))
    assert code == 2, (case, out, err)
    assert err.startswith("kvspec replay: ") and err.count("\n") == 1, err
    assert "Traceback" not in err + out
    code, out, err2 = run_cli(capsys, "report", str(path))
    assert code == 2 and err2.count("\n") == 1 and not out


def test_missing_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "replay", str(tmp_path / "nope.json"))
    assert code == 2 and "cannot read" in err


def test_a_trace_never_imports_a_module(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_target.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _write(tmp_path, _edited(target={"name": "evil_target", "version": "x", "mode": "exact"}))
    code, _, err = run_cli(capsys, "replay", str(path))
    assert code == 2 and "--target evil_target" in err
    assert not marker.exists()
    sys.modules.pop("evil_target", None)


# -- generated garbage --------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)

VALID = divergence_trace("toy-broken")
KEYS = ["$tuple", "$dict", "$set", "$type", "$enum", "fields", "value", "subject", "method", "args", "kwargs",
        "cls", "FullBlock", "Shelf", "take", "put", "__init__", "index", "schema_version", "KvCacheEvent"]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


ALL_PATHS = list(_paths(VALID))[1:]

mutations = st.tuples(
    st.sampled_from(ALL_PATHS),
    st.sampled_from(["replace", "delete", "rename"]),
    json_values | st.sampled_from(KEYS) | st.integers(-3, 10),
)


def _mutate(trace, path, how, value):
    trace = copy.deepcopy(trace)
    node = trace
    for key in path[:-1]:
        node = node[key]
    last = path[-1]
    if how == "replace":
        node[last] = value
    elif how == "delete":
        del node[last]
    elif isinstance(node, dict):
        node[str(value)] = node.pop(last)
    return trace


def _loads_or_trace_error(text, target=None):
    """Parsing, preparing and replaying garbage either works or raises a kvspec error."""
    try:
        trace = parse_trace(text)
    except TraceError as exc:
        assert "\n" not in str(exc)
        return
    try:
        replay_trace(trace, target)
    except KvSpecError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(json_values)
def test_random_json_never_crashes_the_loader(value):
    with pytest.raises(TraceError):
        parse_trace(json.dumps(value))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(mutations, min_size=1, max_size=3))
def test_mutated_traces_fail_cleanly_or_replay(edits):
    trace = VALID
    for path, how, value in edits:
        try:
            trace = _mutate(trace, path, how, value)
        except (KeyError, IndexError, TypeError):
            continue
    _loads_or_trace_error(json.dumps(trace))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, len(json.dumps(VALID)) - 1))
def test_truncated_traces_fail_cleanly(cut):
    with pytest.raises(TraceError):
        parse_trace(json.dumps(VALID)[:cut])


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_fail_cleanly(raw):
    with pytest.raises(TraceError):
        parse_trace(raw)


# -- minimizing ---------------------------------------------------------------------------------

PADDED = (("create", 3), ("put", 1), ("put", 2), ("take", 2), ("put", 0), ("take", 1), ("take", 5), ("take", 0))


def test_minimize_deletes_steps_the_divergence_does_not_need(tmp_path, capsys):
    from kvspec.stateful.traces.minimize import minimize_trace
    from kvspec.stateful.traces.schema import load_trace

    path = write_trace(divergence_trace("toy-broken", steps=PADDED), tmp_path)
    trace = load_trace(path)
    assert len(trace.steps) == 8
    small = minimize_trace(trace)
    assert [s.describe() for s in small.steps] == [
        "shelf = Shelf(3)", "shelf.put(FullBlock(hash=0))", "shelf.take(FullBlock(hash=0))"]
    assert small.data["minimized"]["from_steps"] == 8
    assert replay_trace(small).divergence is not None and not replay_trace(small, "toy-good").reproduced
    # the same bug: the failing step's method and the differing observer are kept
    assert small.summary.startswith("shelf.take(FullBlock(hash=0)): drain_events()")
    code, out, _ = run_cli(capsys, "minimize", str(path), "--in-place")
    assert code == 0 and "8 -> 3 steps" in out
    assert len(load_trace(path).steps) == 3


def test_minimize_leaves_a_minimal_trace_alone(tmp_path):
    from kvspec.stateful.traces.minimize import minimize_trace
    from kvspec.stateful.traces.schema import load_trace

    trace = load_trace(write_trace(divergence_trace("toy-broken"), tmp_path))
    assert minimize_trace(trace) is trace


def test_diff_shows_only_what_the_comparator_flags():
    from kvspec.stateful.engine.differential import Outcome
    from kvspec.stateful.traces.replay import flagged_fields, outcome_diff

    only, other = flagged_fields(["return value: model 1, target 2", "dump_events(): model [a], target [b]",
                                  "score below the sticky bound"])
    assert only == {"returns", "dump_events()"} and other == ["score below the sticky bound"]
    assert flagged_fields(["a contract clause"]) == (None, ["a contract clause"])
    expected = Outcome(1, None, "", {"dump_events": [1, 2], "size": 3})
    actual = Outcome(2, None, "", {"dump_events": [2, 1], "size": 4})
    assert [line for line in outcome_diff(expected, actual) if not line.startswith("    ")] == [
        "  returns", "  dump_events()", "  size()"]
    assert [line for line in outcome_diff(expected, actual, {"returns"}) if not line.startswith("    ")] == [
        "  returns"]
