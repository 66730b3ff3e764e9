"""Hypothesis profiles for kvspec's state machines: ``dev``, ``ci`` and ``nightly``.

Decision: kvspec registers its **own** ``ci`` profile, replacing the one Hypothesis loads by itself
when ``CI`` is set.  Hypothesis's built-in ``ci`` profile derandomizes and disables the deadline,
which suits unit tests; conformance runs need a fixed, known budget of examples and steps so that
CI time is predictable and the self-test mutants are caught under exactly the budget the quality
tests assert.  kvspec's ``ci`` keeps derandomization (a CI failure reproduces bit for bit) and adds
that budget.

* ``dev``     — quick local feedback (default outside CI).
* ``ci``      — what ``.ci/run`` and ``kvspec check`` use when ``CI`` is set; derandomized.
* ``nightly`` — long runs for the ``nightly`` job (``kvspec check --profile nightly``).

Every profile: no deadline (the model is deliberately slow), no ``too_slow`` health check (a step
may legitimately do a lot of work), one reported bug per run (the shrunk one).

Every profile is registered on top of Hypothesis's ``default`` profile, never on top of whatever
profile is active: Hypothesis activates its own ``ci`` profile at import time when ``CI`` is set,
and a profile registered without a parent inherits from the active one — ``nightly`` would then
silently be derandomized and lose its example database under CI.  (Found by
``tests/unit/test_trace_profiles.py``.)

The example database: ``dev`` and ``nightly`` use Hypothesis's default local directory
(``.hypothesis/examples``), so a failure found once is replayed first on the next run;
``kvspec check --database DIR|none|redis://host:port`` chooses another (``redis://`` needs
``pip install 'hypothesis[redis]'`` and shares failures between machines, e.g. CI runners).
``ci`` is derandomized: the same examples every run, so it neither needs nor uses a database.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["PROFILES", "default_profile", "get", "load"]

_COMMON = dict(
    deadline=None,
    # ``filter_too_much`` stays on: rules are chosen without filtering (stateful/engine/rule_choice),
    # so a machine that throws examples away is a machine to fix, not a warning to hide
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    report_multiple_bugs=False,
    print_blob=True,
)

PROFILES = {
    "dev": dict(max_examples=40, stateful_step_count=40, derandomize=False),
    "ci": dict(max_examples=60, stateful_step_count=50, derandomize=True),
    "nightly": dict(max_examples=1000, stateful_step_count=120, derandomize=False),
}

#: Hypothesis's own defaults, whatever profile it activated at import (see the module docstring)
_BASE = settings.get_profile("default")

for _name, _values in PROFILES.items():
    settings.register_profile(_name, parent=_BASE, **_COMMON, **_values)


def default_profile() -> str:
    """``KVSPEC_PROFILE`` if set, else ``ci`` when the ``CI`` variable is set, else ``dev``."""
    explicit = os.environ.get("KVSPEC_PROFILE")
    if explicit:
        return explicit
    return "ci" if os.environ.get("CI") else "dev"


def get(name: str | None = None) -> settings:
    """The settings object of the named profile (or :func:`default_profile`), without activating it.

    ``kvspec check`` passes these settings explicitly to each run, so checking never changes the
    Hypothesis profile of the process that calls it (a user's test suite, say).

    >>> get("ci").max_examples, get("ci").derandomize
    (60, True)
    """
    name = name or default_profile()
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return settings.get_profile(name)


def load(name: str | None = None) -> settings:
    """Activate the named profile for the whole process (kvspec's own test suite does, in conftest)."""
    chosen = get(name)
    settings.load_profile(name or default_profile())
    return chosen
