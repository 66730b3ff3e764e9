"""Test configuration: load kvspec's Hypothesis profile (``ci`` under CI, else ``dev``).

Test groups, by cost and purpose (as Hypothesis organises its own suite):

* ``tests/unit``     — fast, example-based and small property tests;
* ``tests/golden``   — upstream scenarios (docs/upstream.md), replayed on model and impl;
* ``tests/stateful`` — every state machine against ``impl`` (marker ``stateful``);
* ``tests/quality``  — the machines catch every planted mutant (marker ``quality``).
"""

from kvspec import profiles

profiles.load()
