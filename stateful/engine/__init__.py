"""The conformance engine: run the model and a target side by side and compare every step.

* :mod:`~kvspec.stateful.engine.differential` — steps, outcomes, the comparison, divergences;
* :mod:`~kvspec.stateful.engine.machine` — the machine base class and :class:`MachineSpec`;
* :mod:`~kvspec.stateful.engine.registry` — the catalogue of machine families.

Running machines under a profile (``kvspec check``) is :mod:`kvspec.stateful.runner`, above the
trace tooling, because a failing run is written as a minimized trace.

Layer: imports the vocabulary (``kvspec.*``), the model and the target registry; never the
machines, the mutants or the trace tooling above it (``tests/test_layering.py``).
"""
