"""The regression corpus: every trace in this directory, replayed against every target it applies to.

Drop a trace written by ``kvspec check`` here and it becomes a permanent test: ``impl`` and
``model`` must agree with the model on all its steps, and a ``mutant:<name>`` it was recorded
against must still diverge (see :mod:`kvspec.stateful.corpus`).  ``kvspec corpus --out
tests/regressions`` regenerates the ``mutant-*.json`` seeds, one per self-test mutant.
"""

from pathlib import Path

import pytest

from kvspec.errors import KvSpecError
from kvspec.stateful.corpus import corpus_files, expectations
from kvspec.stateful.replay import render_result, replay_trace
from kvspec.stateful.trace import load_trace

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
        if "cannot run against" in str(exc):
            pytest.skip(str(exc))
        raise
    if must_diverge:
        assert result.divergence is not None or result.failure is not None, (
            f"{path.name}: {target} no longer diverges; the trace is stale (regenerate with kvspec corpus)\n"
            + render_result(result))
    else:
        assert not result.reproduced, render_result(result)
