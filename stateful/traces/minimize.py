"""Shrink a trace further by deleting steps, checking each candidate by replay.

Hypothesis shrinks the *choices* that generate a run, and gives up after five minutes of slow
progress (a loaded CI machine, a long stateful run); the traces it leaves can still carry steps the
bug does not need.  :func:`minimize_trace` finishes the job on the steps themselves: it deletes
chunks of steps (halves, quarters, ... single steps; never a construction step, never the failing
step) and keeps a deletion when a replay of the shorter sequence still diverges *the same way*:
at a step calling the same method, with the same differing fields (error, return value, the same
observers) — so the report still describes the same bug.  Every candidate is a plain replay
(milliseconds), and the result is verified by one final replay.

A deleted step can make a later one invalid (a block never stored); that is fine as long as model
and target agree on the resulting error, exactly as when the machine generates such a step.
"""

from __future__ import annotations

import time

from typing import Any

from kvspec.errors import KvSpecError
from kvspec.stateful.engine.differential import Step
from kvspec.stateful.traces.replay import flagged_fields, outcome_diff, prepare, replay_trace
from kvspec.stateful.traces.schema import Trace, trace_from_divergence, validate_trace
from kvspec.targets import Target

__all__ = ["minimize_trace"]


def _signature(steps: list[Step], divergence: Any) -> tuple:
    """What "the same way" means: the step's subject and method, the differing fields, the errors,
    and the kinds of the differences that name no field (a machine's own check in its comparator,
    e.g. ``over-claim: ...``: the text before the first colon)."""
    step = steps[divergence.index]
    only, other = flagged_fields(divergence.differences)
    labels = tuple(sorted(line.strip() for line in outcome_diff(divergence.expected, divergence.actual, only)
                          if not line.startswith("    ")))
    kinds = tuple(sorted({text.split(":", 1)[0].strip() for text in other}))
    return (step.subject, step.method, labels, kinds, divergence.expected.error, divergence.actual.error)


def _with_steps(trace: Trace, steps: list[Step]) -> Trace:
    data = dict(trace.data)
    data["steps"] = [s.to_json() for s in steps]
    data["divergence"] = {**data["divergence"], "index": len(steps) - 1}
    return Trace(data, tuple(steps), trace.source)


def minimize_trace(trace: Trace, target: str | Target | None = None, *, budget: int = 400,
                   seconds: float = 60.0, spec: Any = None, should_stop: Any = None) -> Trace:
    """A trace with as few steps as replay-checked deletion finds (``trace`` itself if none helps).

    ``budget`` caps the number of candidate replays and ``seconds`` the wall time;
    ``should_stop()`` returning true (Ctrl-C, a time budget) also ends the search; the smallest
    trace found so far is returned.  Only ``divergence`` traces are minimized.
    """
    deadline = time.monotonic() + seconds
    if trace.kind != "divergence":
        return trace
    prepared = prepare(trace, target, spec=spec)
    spec = prepared.spec
    first = replay_trace(trace, prepared.target, spec=spec)
    if first.divergence is None:
        return trace
    steps = list(trace.steps[: first.divergence.index + 1])
    wanted = _signature(steps, first.divergence)
    replays = 0

    def still_fails(candidate: list[Step]) -> list[Step] | None:
        nonlocal replays
        replays += 1
        if should_stop is not None and should_stop():
            return None
        try:
            result = replay_trace(_with_steps(trace, candidate), prepared.target, spec=spec)
        except KvSpecError:
            return None
        d = result.divergence
        if d is None or _signature(candidate, d) != wanted:
            return None
        return candidate[: d.index + 1]

    chunk = max(1, len(steps) // 2)
    while chunk >= 1 and replays < budget and time.monotonic() < deadline:
        i = 0
        progressed = False
        while i < len(steps) - 1 and replays < budget and time.monotonic() < deadline:
            removable = [j for j in range(i, min(i + chunk, len(steps) - 1)) if not steps[j].is_create]
            if removable:
                candidate = [s for j, s in enumerate(steps) if j not in removable]
                shorter = still_fails(candidate)
                if shorter is not None:
                    steps = shorter
                    progressed = True
                    continue  # retry the same position: the next chunk slid into it
            i += chunk
        if not progressed:
            chunk //= 2
    if len(steps) == len(trace.steps):
        return trace
    final = replay_trace(_with_steps(trace, steps), prepared.target, spec=spec)
    if final.divergence is None or _signature(steps, final.divergence) != wanted:
        return trace  # never hand back something that does not reproduce
    rebuilt = trace_from_divergence(final.divergence, spec=spec, target=prepared.target,
                                    profile=trace.data.get("profile"), seed=trace.data.get("seed"),
                                    max_examples=trace.data.get("max_examples"))
    for key in ("created", "environment", "command"):
        if key in trace.data:
            rebuilt[key] = trace.data[key]
    rebuilt["minimized"] = {"from_steps": len(trace.steps), "replays": replays}
    return validate_trace(rebuilt, source=trace.source)
