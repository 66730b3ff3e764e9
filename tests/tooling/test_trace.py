"""Trace files: complete contents, round trip, and `kvspec check` writing one per failing run."""

import json

import pytest
import toy_machine
from toy_machine import divergence_trace

from kvspec.cli import main
from kvspec.protocol import FullBlock
from kvspec.stateful.runner import check, check_machine
from kvspec.stateful.engine.differential import Step
from kvspec.stateful.traces.schema import SCHEMA_VERSION, load_trace, parse_trace, write_trace


@pytest.fixture(autouse=True)
def toy(monkeypatch):
    toy_machine.install(monkeypatch)


def test_divergence_trace_records_everything_a_report_needs():
    trace = divergence_trace("toy-broken")
    assert trace["schema_version"] == SCHEMA_VERSION and trace["kind"] == "divergence"
    assert trace["kvspec_version"] and set(trace["environment"]) >= {"kvspec", "python", "hypothesis", "platform"}
    assert trace["target"] == {"name": "toy-broken", "version": "0-toy", "mode": "exact"}
    assert trace["machine"] == "toy-shelf" and trace["profile"] == "ci" and trace["seed"] is None
    assert trace["observers"] == {"Shelf": ["contents", "tiers", "drain_events"]}
    assert "--target toy-broken" in trace["command"] and "--machine toy-shelf" in trace["command"]
    steps = [Step.from_json(s) for s in trace["steps"]]
    assert [s.describe() for s in steps] == [
        "shelf = Shelf(1)", "shelf.put(FullBlock(hash=0))", "shelf.take(FullBlock(hash=0))"]
    div = trace["divergence"]
    assert div["index"] == 2 and div["step"] == "shelf.take(FullBlock(hash=0))"
    # the model's and the target's outcome of the failing step: value, error, every observer
    assert div["expected"]["value"] == 0 and div["actual"]["value"] == 0
    assert div["expected"]["error"] is None and div["actual"]["error"] is None
    assert len(div["expected"]["observed"]["drain_events"]) == 1 and div["actual"]["observed"]["drain_events"] == []
    assert div["differences"] and div["differences"][0].startswith("drain_events()")
    assert "\n" not in trace["summary"] and trace["summary"].startswith("shelf.take(FullBlock(hash=0))")


def test_write_and_load_round_trip(tmp_path):
    trace = divergence_trace("toy-broken")
    path = write_trace(trace, tmp_path)
    assert path.parent == tmp_path and path.suffix == ".json" and "toy-shelf-toy-broken" in path.name
    second = write_trace(trace, tmp_path)
    assert second != path  # never overwrites an earlier trace
    loaded = load_trace(path)
    assert loaded.machine == "toy-shelf" and loaded.target == "toy-broken" and loaded.index == 2
    assert loaded.steps[1] == Step("shelf", "put", (FullBlock(0),))
    assert json.loads(path.read_text()) == trace
    assert not list(tmp_path.glob("*.tmp"))


def test_error_kind_round_trips():
    trace = divergence_trace("toy-broken")
    trace = {k: v for k, v in trace.items() if k != "divergence"}
    trace.update(kind="error", error={"type": "AssertionError", "message": "x", "after_step": 2})
    assert parse_trace(json.dumps(trace)).kind == "error"


def test_check_machine_returns_a_trace_for_a_divergence():
    result = check_machine(toy_machine.SPEC, "toy-broken", profile="ci", max_examples=30, database=None)
    assert result.status == "failed" and result.failing_examples >= 1
    trace = parse_trace(json.dumps(result.trace))
    assert trace.kind == "divergence" and trace.data["max_examples"] == 30
    assert len(trace.steps) <= 4  # shrunk: create, put, take (plus at most one more)


def test_check_machine_returns_an_error_trace_for_an_invariant_failure():
    result = check_machine(toy_machine.SPEC, "toy-sloppy", profile="ci", max_examples=60, database=None)
    assert result.status == "error" and "AssertionError" in result.reason
    trace = parse_trace(json.dumps(result.trace))
    assert trace.kind == "error" and trace.data["error"]["type"] == "AssertionError"
    assert any(s.method == "take" for s in trace.steps)


def test_impl_equivalent_passes_and_writes_nothing(tmp_path, capsys):
    code = main(["check", "--target", "toy-good", "--machine", "toy-shelf", "--profile", "ci",
                 "--max-examples", "10", "--trace-dir", str(tmp_path), "--progress", "0"])
    assert code == 0
    assert not list(tmp_path.iterdir())
    assert "1 passed, 0 failed" in capsys.readouterr().out


def test_cli_check_prints_where_it_wrote_the_trace(tmp_path, capsys):
    code = main(["check", "--target", "toy-broken", "--machine", "toy-shelf", "--profile", "ci",
                 "--max-examples", "30", "--trace-dir", str(tmp_path / "t"), "--progress", "0"])
    out = capsys.readouterr().out
    assert code == 1
    (path,) = (tmp_path / "t").glob("*.json")
    assert f"trace written to {path}" in out and f"kvspec replay {path}" in out
    assert load_trace(path).machine == "toy-shelf"


def test_progress_lines_while_running():
    lines = []
    result = check_machine(toy_machine.SPEC, "toy-good", profile="ci", max_examples=40, database=None,
                           progress_every=0.05, on_progress=lambda p: lines.append(p.line()))
    assert result.status == "passed"
    assert lines, "no progress reported"
    # issue 11 format: examples done / budget (never above it) and an ETA while generating
    assert all("toy-shelf vs toy-good" in line and "steps/s" in line and "/40 examples" in line for line in lines)
    assert all(int(line.split("/40 examples")[0].split()[-1]) <= 40 for line in lines)


def test_seed_makes_runs_reproducible():
    a = check_machine(toy_machine.SPEC, "toy-broken", profile="dev", max_examples=30, seed=1234, database=None)
    b = check_machine(toy_machine.SPEC, "toy-broken", profile="dev", max_examples=30, seed=1234, database=None)
    assert a.status == b.status == "failed"
    assert a.trace["steps"] == b.trace["steps"] and a.trace["seed"] == 1234
    assert "--seed 1234" in a.trace["command"]


def test_database_directory_is_used(tmp_path):
    db = tmp_path / "db"
    result = check_machine(toy_machine.SPEC, "toy-broken", profile="dev", max_examples=200, seed=5,
                           database=str(db))
    assert result.status == "failed"
    assert any(p.is_file() for p in db.rglob("*")), "the failing example was not saved"


def test_redis_database_without_the_extra_is_a_clear_error(capsys):
    try:
        import redis  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the redis client is installed here")
    code = main(["check", "--target", "toy-good", "--machine", "toy-shelf", "--database", "redis://localhost:1"])
    assert code == 2
    assert "hypothesis[redis]" in capsys.readouterr().err


def test_jobs_spread_machines_over_processes(monkeypatch):
    # two machines (the toy machine twice, under two names) in two worker processes (fork inherits
    # the monkeypatched registry)
    import attrs

    import kvspec.stateful.engine.registry as base

    twin = attrs.evolve(toy_machine.SPEC, name="toy-shelf-twin")
    real = base.all_machines
    monkeypatch.setattr(base, "all_machines", lambda: [*real(), twin])
    seen = []
    results = check("toy-broken", ["toy-shelf"], profile="ci", max_examples=100, jobs=2, database="none",
                    on_result=seen.append)
    assert [r.machine for r in results] == ["toy-shelf", "toy-shelf-twin"]
    assert all(r.status == "failed" and r.trace for r in results)
    assert len(seen) == 2
