"""Trace tooling: a failing run as a replayable JSON file, and what kvspec makes of it.

* :mod:`~kvspec.stateful.traces.schema` — the trace file: writing, defensive loading, validation;
* :mod:`~kvspec.stateful.traces.replay` — re-run a trace on the model and a target (no Hypothesis);
* :mod:`~kvspec.stateful.traces.minimize` — delete the steps a divergence does not need;
* :mod:`~kvspec.stateful.traces.report` — Markdown bug report and standalone pytest file.

Layer: above the engine, the machines and the mutants; below the runner
(:mod:`kvspec.stateful.runner`) and the corpus (:mod:`kvspec.stateful.corpus`), which run machines.
"""
