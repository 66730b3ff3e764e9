"""A failed router check of the engine machines is a divergence like any other: a trace written by
``kvspec check``, shrunk by Hypothesis and minimized by replay, replayed by ``kvspec replay`` and
reported by ``kvspec report`` (Markdown and a pytest file that fails while the bug is there).

The router check (the router's score of each worker == the blocks it holds, no event rejected)
runs in each step's comparison (:class:`kvspec.stateful.machines.vllm.RoutedMachine`).  These tests
need no engine: finding V1 (``docs/findings.md``) is vLLM's semantics, which kvspec's model and
implementation reproduce, so ``vllm-router[raw]`` fails against ``impl`` exactly as against
``vllm``; a planted bug (a cache that under-reports what it holds) stands in for SGLang's side.
With vLLM installed the same is checked against the real engine.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest

import kvspec.impl
from kvspec.adapters.vllm.runtime import ENGINE
from kvspec.cli import main
from kvspec.stateful.engine.registry import lookup_machine
from kvspec.stateful.runner import check_machine
from kvspec.stateful.traces.replay import replay_trace
from kvspec.stateful.traces.report import build_report
from kvspec.stateful.traces.schema import load_trace, validate_trace
from kvspec.targets import Target

ROUTER_KINDS = ("over-claim", "under-claim", "rejected event")


def _run_generated(source: str, target: str | Target) -> BaseException | None:
    namespace: dict = {"__name__": "kvspec_generated"}
    exec(compile(source, "generated_report_test", "exec"), namespace)  # noqa: S102 - kvspec's own output
    namespace["TARGET"] = target
    test = next(v for k, v in namespace.items() if k.startswith("test_") and callable(v))
    try:
        test()
    except BaseException as exc:  # noqa: BLE001 - pytest.fail and AssertionError alike
        return exc
    return None


def _router_divergence(trace):
    """The trace's recorded divergence is a router check, at its last step."""
    assert trace.kind == "divergence"
    differences = trace.data["divergence"]["differences"]
    assert differences and all(d.split(":", 1)[0] in ROUTER_KINDS for d in differences), differences
    assert trace.index == len(trace.steps) - 1


def test_kvspec_check_writes_a_minimized_router_trace_that_replays_and_reports(tmp_path, capsys):
    traces = tmp_path / "traces"
    code = main(["check", "--target", "impl", "--machine", "vllm-router[raw]", "--profile", "ci",
                 "--max-shrink-seconds", "20", "--trace-dir", str(traces), "--database", "none",
                 "--progress", "0"])
    out = capsys.readouterr().out
    assert code == 0, out  # V1 is a known finding against impl: reported, not failed
    (path,) = traces.glob("*.json")
    trace = load_trace(path)
    _router_divergence(trace)
    minimized = trace.data["minimized"]
    assert minimized["from_steps"] > len(trace.steps), minimized

    assert main(["replay", str(path)]) == 1
    out = capsys.readouterr().out
    assert "DIVERGENCE at step" in out and any(kind in out for kind in ROUTER_KINDS), out

    md, test_file = tmp_path / "bug.md", tmp_path / "test_bug.py"
    assert main(["report", str(path), "-o", str(md), "--pytest", str(test_file)]) == 0
    assert "note: the trace no longer diverges" not in capsys.readouterr().err
    title = md.read_text().splitlines()[0]
    assert any(f"{kind} after `VllmPrefixCache." in title for kind in ROUTER_KINDS), title
    failure = _run_generated(test_file.read_text(), "impl")
    assert isinstance(failure, AssertionError), test_file.read_text()
    assert any(kind in str(failure) for kind in ROUTER_KINDS)


class HoldsLess(kvspec.impl.SglangRadixCache):
    """Planted bug: the cache publishes every page, but its last held page is not really held."""

    def held_hashes(self):
        held = super().held_hashes()
        return held - {max(held)} if held else held


PLANTED = Target("planted-sglang-holds-less", types.SimpleNamespace(SglangRadixCache=HoldsLess), "test")


def test_sglang_router_failure_is_a_replayable_minimized_divergence():
    spec = lookup_machine("sglang-router")
    result = check_machine(spec, PLANTED, profile="ci", database=None, progress_every=None,
                           max_shrink_seconds=20)
    assert result.status == "failed", result.reason
    trace = validate_trace(result.trace)
    _router_divergence(trace)
    assert trace.data["divergence"]["differences"][0].startswith("over-claim")
    assert "minimized" in trace.data or len(trace.steps) <= 4  # already minimal when Hypothesis got there
    assert replay_trace(trace, PLANTED).reproduced
    assert not replay_trace(trace, "impl").reproduced  # the real cache holds what it published
    report = build_report(trace, PLANTED)
    assert report.reproduced and "over-claim" in report.markdown
    assert isinstance(_run_generated(report.test_source, PLANTED), AssertionError)
    assert _run_generated(report.test_source, "impl") is None


@pytest.mark.skipif(ENGINE.unavailable_reason() is not None, reason=f"vLLM: {ENGINE.unavailable_reason()}")
def test_v1_against_real_vllm_is_a_replayable_minimized_trace():
    spec = lookup_machine("vllm-router[raw]")
    result = check_machine(spec, "vllm", profile="ci", database=None, progress_every=None, shrink=False)
    assert result.status == "known" and "V1" in result.reason, result.reason
    trace = validate_trace(result.trace)
    _router_divergence(trace)
    assert trace.data["minimized"]["from_steps"] > len(trace.steps)
    replayed = replay_trace(trace)  # against the recorded target: real vLLM
    assert replayed.target.name == "vllm" and replayed.reproduced
    assert replay_trace(trace, "impl").reproduced  # the same history breaks a router over impl alike


def test_fuzz_mode_router_failure_is_a_replayable_minimized_trace():
    """``kvspec check --fuzz`` compares only differing raw outcomes; the router is then checked by
    an invariant, and the every-step replay names the exact step, minimized."""
    from kvspec.stateful.fuzz import fuzz_machine

    result = fuzz_machine(lookup_machine("vllm-router[raw]"), "impl", steps=20_000, seed=1)
    assert result.status == "known", result.reason
    trace = validate_trace(result.trace)
    _router_divergence(trace)
    assert trace.data["minimized"]["from_steps"] > len(trace.steps)
    assert replay_trace(trace, "impl").reproduced


DATA = Path(__file__).parent / "data"
#: the traces ``kvspec check --target vllm`` (dev profile) wrote for the findings, as written
FINDING_TRACES = {"V1": DATA / "v1-vllm-router-raw.json", "V2": DATA / "v2-vllm-router-refcount-full.json"}


@pytest.mark.parametrize("finding", sorted(FINDING_TRACES))
def test_finding_trace_replays_on_the_model_as_on_vllm(finding):
    """The model and impl reproduce vLLM's semantics, so the finding's trace diverges there too."""
    trace = load_trace(FINDING_TRACES[finding])
    assert trace.target == "vllm" and trace.data["minimized"]["from_steps"] > len(trace.steps)
    assert lookup_machine(trace.machine).known_failures["vllm"] == finding
    for target in ("impl", "model"):
        result = replay_trace(trace, target)
        assert result.divergence is not None and result.divergence.index == len(trace.steps) - 1


@pytest.mark.skipif(ENGINE.unavailable_reason() is not None, reason=f"vLLM: {ENGINE.unavailable_reason()}")
@pytest.mark.parametrize("finding", sorted(FINDING_TRACES))
def test_finding_trace_still_reproduces_on_real_vllm(finding):
    """Like the strict xfails in test_vllm.py: when vLLM fixes the finding this fails; then update
    docs/findings.md and the machine's known_failures."""
    result = replay_trace(load_trace(FINDING_TRACES[finding]))
    assert result.target.name == "vllm" and result.reproduced
    _router_divergence(result.prepared.trace)
    assert result.divergence.differences == result.prepared.trace.data["divergence"]["differences"]
