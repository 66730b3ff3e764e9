"""Every registered state machine against ``impl`` (and the model against itself) under the active profile."""

import pytest

from kvspec.stateful.base import all_machines
from kvspec.stateful.check import check_machine

pytestmark = pytest.mark.stateful

#: machines for ``contract``-mode targets only (third-party engines, e.g. ``contract-radix``) do not
#: run against ``impl``; tests/dynamo checks them against the model presented as a contract target
SPECS = [s for s in all_machines() if "exact" in s.modes]


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_machine_against_impl(spec):
    result = check_machine(spec, "impl")
    assert result.status == "passed", f"{result.status}: {result.reason}\n{result.trace}"
    assert result.examples > 0 and result.steps > 0
