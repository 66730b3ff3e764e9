"""Every registered state machine against ``impl`` (and the model against itself) under the active profile."""

import pytest

from kvspec.stateful.base import all_machines
from kvspec.stateful.check import check_machine

pytestmark = pytest.mark.stateful

SPECS = all_machines()


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_machine_against_impl(spec):
    result = check_machine(spec, "impl")
    assert result.status == "passed", f"{result.status}: {result.reason}\n{result.trace}"
    assert result.examples > 0 and result.steps > 0
