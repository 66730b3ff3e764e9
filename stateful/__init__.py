"""Conformance: Hypothesis state machines that drive the reference model and a target side by side.

Packages, lowest first (each imports only those before it; ``tests/unit/test_layering.py``):

* :mod:`kvspec.stateful.engine` — the differential engine (steps, outcomes, comparison), the
  machine base class and the catalogue of machines;
* :mod:`kvspec.stateful.machines` — the machines, one module per family, and their shared
  strategies;
* :mod:`kvspec.stateful.mutants` — self-test targets with one planted bug each (a target-family
  plugin: imported only when a ``mutant:...`` target is resolved);
* :mod:`kvspec.stateful.traces` — trace files, replay, minimization, bug reports, the corpus;
* :mod:`kvspec.stateful.runner` — ``kvspec check``: machines under a profile, failures written as
  minimized traces; :mod:`kvspec.stateful.corpus` — the regression corpus, one trace per mutant.

The modules ``base``, ``check``, ``differential``, ``replay`` and ``trace`` directly in this
package are the import paths of earlier releases, kept as re-exports.
"""
