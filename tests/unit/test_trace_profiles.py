"""Profiles (kvspec.profiles): kvspec's own ``ci`` replaces Hypothesis's when ``CI`` is set."""

import os
import subprocess
import sys

import pytest

from kvspec import profiles

PROBE = ("import hypothesis, kvspec.profiles as p; s = p.load(); "
         "print(p.default_profile(), s.max_examples, s.stateful_step_count, s.derandomize, s.deadline)")


def probe(**env):
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "KVSPEC_PROFILE")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                         check=True, timeout=120)
    return out.stdout.split()


def test_ci_variable_selects_kvspecs_ci_profile_not_hypothesis():
    # Hypothesis's own ci profile would keep max_examples=100 and stateful_step_count=50
    assert probe(CI="true") == ["ci", "60", "50", "True", "None"]


def test_default_is_dev_and_explicit_choice_wins():
    assert probe() == ["dev", "40", "40", "False", "None"]
    assert probe(CI="true", KVSPEC_PROFILE="nightly") == ["nightly", "1000", "120", "False", "None"]


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown profile 'weekly'"):
        profiles.load("weekly")


def test_checking_never_changes_the_callers_profile():
    """``kvspec check`` passes its profile's settings explicitly; the caller's stays active."""
    from hypothesis import settings

    import toy_machine
    from kvspec.stateful.runner import check_machine

    settings.register_profile("callers-own", max_examples=7)
    settings.load_profile("callers-own")
    try:
        target = toy_machine.TARGETS["toy-good"]()
        result = check_machine(toy_machine.SPEC, target, profile="nightly", max_examples=3, database=None)
        assert result.status == "passed"
        assert settings.default.max_examples == 7
        assert profiles.get("nightly").max_examples == 1000
    finally:
        profiles.load()  # what tests/conftest.py activates
