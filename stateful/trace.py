"""Trace files: a failing run as JSON that replays without Hypothesis.

A trace records who ran what (kvspec and target versions, machine, profile, seed), the shrunk
steps with their full arguments (encoded by :mod:`kvspec.codec`), and at the first divergence the
model's and the target's outcome of that step.  Schema version :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from kvspec import __version__
from kvspec.stateful.base import MachineSpec
from kvspec.stateful.differential import Divergence, Step
from kvspec.targets import Target

SCHEMA_VERSION = 1


def trace_from_divergence(divergence: Divergence, *, spec: MachineSpec, target: Target, profile: str,
                          seed: int | None) -> dict[str, Any]:
    """The JSON-ready trace of a divergence raised by ``spec`` against ``target``."""
    steps = divergence.steps[: divergence.index + 1]
    return {
        "schema_version": SCHEMA_VERSION,
        "kvspec_version": __version__,
        "target": {"name": target.name, "version": target.version, "mode": target.mode},
        "machine": spec.name,
        "profile": profile,
        "seed": seed,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "summary": divergence.summary,
        "steps": [s.to_json() for s in steps],
        "divergence": {
            "index": divergence.index,
            "step": steps[-1].describe(),
            "expected": divergence.expected.to_json(),
            "actual": divergence.actual.to_json(),
            "differences": divergence.differences,
        },
    }


def write_trace(trace: dict[str, Any], directory: str | os.PathLike[str]) -> Path:
    """Write ``trace`` under ``directory`` with a descriptive file name; return the path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{trace['machine']}-{trace['target']['name']}")
    path = directory / f"{safe}-{int(time.time() * 1000)}.json"
    path.write_text(json.dumps(trace, indent=1) + "\n")
    return path


def steps_of(trace: dict[str, Any]) -> list[Step]:
    return [Step.from_json(s) for s in trace["steps"]]
