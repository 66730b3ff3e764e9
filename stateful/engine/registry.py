"""The catalogue of state machines that ``kvspec check`` walks.

The families kvspec ships are named in one explicit list, :data:`FAMILIES`; a third-party package
adds its own with an entry point in the ``kvspec.machines`` group (``name = "pkg.module"``, a
module exposing ``machines() -> list[MachineSpec]``).  Family modules are imported by name, here
and only when the catalogue is asked for: the engine never imports the machines statically (they
sit above it and import it), and nothing is discovered by scanning a directory.

>>> [spec.name for spec in find_machines(["radix"])]
['radix']
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from importlib.metadata import entry_points

from kvspec.errors import TargetError, TraceError
from kvspec.stateful.engine.machine import MachineSpec

__all__ = ["ENTRY_POINT_GROUP", "FAMILIES", "all_machines", "find_machines", "lookup_machine"]

#: The machine families kvspec ships, in listing order (one module each under kvspec.stateful.machines).
FAMILIES = (
    "kvspec.stateful.machines.approx",
    "kvspec.stateful.machines.approx_contract",
    "kvspec.stateful.machines.lanes",
    "kvspec.stateful.machines.legacy",
    "kvspec.stateful.machines.manager",
    "kvspec.stateful.machines.mocker",
    "kvspec.stateful.machines.offload",
    "kvspec.stateful.machines.pipeline",
    "kvspec.stateful.machines.pool",
    "kvspec.stateful.machines.radix",
    "kvspec.stateful.machines.radix_contract",
    "kvspec.stateful.machines.router",
    "kvspec.stateful.machines.sglang",
    "kvspec.stateful.machines.tiered",
    "kvspec.stateful.machines.tracker",
    "kvspec.stateful.machines.vllm",
)

#: Entry-point group for machine families of other packages.
ENTRY_POINT_GROUP = "kvspec.machines"


def _family_modules() -> list[str]:
    extra = sorted(ep.value for ep in entry_points(group=ENTRY_POINT_GROUP))
    return [*FAMILIES, *(m for m in extra if m not in FAMILIES)]


def all_machines() -> list[MachineSpec]:
    """Every machine of every family, in :data:`FAMILIES` order (then entry-point families).  O(machines)."""
    specs: list[MachineSpec] = []
    for name in _family_modules():
        module = importlib.import_module(name)
        provider = getattr(module, "machines", None)
        if not callable(provider):
            raise TargetError(f"machine family {name} has no machines() function")
        specs.extend(provider())
    return specs


def find_machines(patterns: Sequence[str] | None) -> list[MachineSpec]:
    """Machines whose name equals or starts with one of ``patterns`` (all when none given)."""
    specs = all_machines()
    if not patterns:
        return specs
    return [s for s in specs if any(s.name == p or s.name.startswith(p) for p in patterns)]


def lookup_machine(name: str) -> MachineSpec:
    """The machine called exactly ``name`` (a trace names its machine this way)."""
    specs = all_machines()
    for spec in specs:
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in specs) or "none registered"
    raise TraceError(f"unknown machine {name!r} (known: {known})")
