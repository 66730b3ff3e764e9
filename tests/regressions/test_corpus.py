"""The regression corpus: every trace in this directory, replayed against every target it applies to.

Drop a trace written by ``kvspec check`` here and it becomes a permanent test: ``impl`` and
``model`` must agree with the model on all its steps, and a ``mutant:<name>`` it was recorded
against must still diverge (see :mod:`kvspec.stateful.corpus`).  ``kvspec corpus --out
tests/regressions`` regenerates the ``mutant-*.json`` seeds, one per self-test mutant.
"""

from pathlib import Path

import pytest

from kvspec.errors import KvSpecError
from kvspec.stateful.corpus import corpus_files, expectations, unavailable
from kvspec.stateful.traces.replay import render_result, replay_trace
from kvspec.stateful.traces.schema import load_trace

HERE = Path(__file__).parent


def _cases():
    cases = []
    for path in corpus_files(HERE):
        try:
            plan = expectations(load_trace(path))
        except KvSpecError:  # an unreadable trace is a failing test, not a collection error
            cases.append(pytest.param(path, None, False, id=f"{path.stem}-unreadable"))
            continue
        for target, must_diverge in plan:
            cases.append(pytest.param(path, target, must_diverge, id=f"{path.stem}@{target}"))
    return cases


@pytest.mark.parametrize(("path", "target", "must_diverge"), _cases())
def test_corpus_trace(path, target, must_diverge):
    trace = load_trace(path)  # raises (and fails the test) if the file became unreadable
    try:
        result = replay_trace(trace, target)
    except KvSpecError as exc:
        reason = unavailable(target, exc)  # an engine not installed: skipped with its install hint
        if reason is not None:
            pytest.skip(reason)
        raise
    if must_diverge:
        assert result.divergence is not None or result.failure is not None, (
            f"{path.name}: {target} no longer diverges; the trace is stale (regenerate with kvspec corpus)\n"
            + render_result(result))
    else:
        assert not result.reproduced, render_result(result)


def _run_generated(source: str, target: str) -> BaseException | None:
    namespace: dict = {"__name__": "kvspec_generated"}
    exec(compile(source, "generated_report_test", "exec"), namespace)  # noqa: S102 - our own generated file
    namespace["TARGET"] = target
    test = next(v for k, v in namespace.items() if k.startswith("test_") and callable(v))
    try:
        test()
    except BaseException as exc:  # noqa: BLE001 - pytest.fail/raises errors included
        return exc
    return None


@pytest.mark.parametrize("path", [p for p in corpus_files(HERE) if p.name.startswith("mutant-")],
                         ids=lambda p: p.stem)
def test_corpus_report_fails_on_the_mutant_and_passes_on_impl(path):
    """The pytest file `kvspec report` writes for each corpus trace is a working bug reproducer."""
    from kvspec.stateful.traces.report import build_report

    trace = load_trace(path)
    report = build_report(trace)
    assert report.reproduced
    failure = _run_generated(report.test_source, trace.target)
    assert failure is not None, f"the generated test passes against {trace.target}:\n{report.test_source}"
    assert _run_generated(report.test_source, "impl") is None


def test_corpus_command_writes_a_verified_trace(tmp_path, capsys):
    from kvspec.cli import main

    (tmp_path / "mutant-no-longer-exists.json").write_text("{}")
    code = main(["corpus", "--out", str(tmp_path), "--mutant", "tracker-passthrough-dedups"])
    out = capsys.readouterr().out
    assert code == 0, out
    trace = load_trace(tmp_path / "mutant-tracker-passthrough-dedups.json")
    assert trace.target == "mutant:tracker-passthrough-dedups" and trace.machine == "tracker[passthrough]"
    assert "ok     " in out and "stale  " in out and "mutant-no-longer-exists.json" in out
    assert main(["corpus", "--out", str(tmp_path), "--mutant", "no-such-mutant"]) == 2


@pytest.mark.parametrize(("trace_name", "engine", "package"), [
    ("mutant-vllm-dedupe-copies.json", "vllm", "kvspec.adapters.vllm.runtime"),
    ("mutant-sglang-split-forgets-lock.json", "sglang", "kvspec.adapters.sglang"),
])
def test_an_engine_replay_is_skipped_with_the_install_hint_when_the_engine_is_absent(
        monkeypatch, trace_name, engine, package):
    """Engine machines' traces are also replayed against the real engine; without it installed the
    case is skipped, saying how to install it, instead of failing (whether or not it is installed here)."""
    import importlib

    from kvspec.stateful.corpus import verify

    absent = f"{engine} not importable (ModuleNotFoundError: simulated); run: kvspec install-engine {engine}"
    monkeypatch.setattr(importlib.import_module(package).ENGINE, "_error", absent)
    monkeypatch.setattr(importlib.import_module(package).ENGINE, "_loaded", None)
    trace = load_trace(HERE / trace_name)
    assert (engine, False) in expectations(trace)
    with pytest.raises(KvSpecError) as info:
        replay_trace(trace, engine)
    reason = unavailable(engine, info.value)
    assert reason is not None and f"kvspec install-engine {engine}" in reason
    assert verify(trace) == []  # the corpus command skips it too
    with pytest.raises(KvSpecError) as broken:
        replay_trace(HERE / "mutant-impostor-accepted.json", "no_such_module_anywhere")
    assert unavailable("impl", broken.value) is None  # a real problem is not a skip


def test_every_mutant_has_a_corpus_trace(capsys):
    """Each self-test mutant, the engine machines' included, has its minimized trace here; the
    command that writes the missing ones says none is missing."""
    from kvspec.cli import main
    from kvspec.stateful.mutants import MUTANTS

    have = {p.stem[len("mutant-"):] for p in corpus_files(HERE) if p.name.startswith("mutant-")}
    missing = sorted(set(MUTANTS) - have)
    assert not missing, f"no corpus trace for {missing}: run kvspec corpus --missing --out tests/regressions"
    assert main(["corpus", "--out", str(HERE), "--missing"]) == 0
    assert f"none missing: every mutant ({len(MUTANTS)}) has a trace" in capsys.readouterr().out
