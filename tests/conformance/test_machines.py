"""Every state machine that can check ``impl`` runs against it under the active profile.

Machines for ``contract``-mode targets (third-party engines, e.g. ``contract-radix``) and machines
whose subject only an engine adapter provides (``mocker[*]`` needs ``MockerReplay``) do not run
against ``impl``; ``tests/dynamo`` checks those.  So that no machine is dropped by accident, a
machine is excluded only when it names a class outside the shared vocabulary of ``kvspec.impl``.
"""

import pytest

from kvspec._exports import EXPORTS
from kvspec.stateful.engine.registry import all_machines
from kvspec.stateful.runner import check_machine

pytestmark = pytest.mark.stateful

ALL = all_machines()
#: machines documenting a finding of the modelled semantics itself (``known_failures["impl"]``, e.g. the
#: vLLM router-view machines) are checked in tests/engines, not here
SPECS = [s for s in ALL if "exact" in s.modes and set(s.requires) <= set(EXPORTS) and "impl" not in s.known_failures]


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_machine_against_impl(spec):
    result = check_machine(spec, "impl")
    assert result.status == "passed", f"{result.status}: {result.reason}\n{result.trace}"
    assert result.examples > 0 and result.steps > 0


def test_only_engine_machines_are_excluded():
    excluded = [s for s in ALL if s not in SPECS]
    for spec in excluded:
        assert ("contract" in spec.modes or not set(spec.requires) <= set(EXPORTS)
                or "impl" in spec.known_failures), spec.name
    assert len(SPECS) >= 20, [s.name for s in SPECS]
