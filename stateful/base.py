"""Old import path, kept working: :mod:`kvspec.stateful.engine.machine` and the machine catalogue
:mod:`kvspec.stateful.engine.registry`.

Bug reports and user code written before kvspec split ``kvspec.stateful`` into packages import
this path (``tests/unit/test_public_api.py`` pins it).
"""

from kvspec.stateful.engine.machine import DifferentialMachine, MachineSpec, RunStats
from kvspec.stateful.engine.registry import all_machines, find_machines

__all__ = ["DifferentialMachine", "MachineSpec", "RunStats", "all_machines", "find_machines"]
