"""The state machines, one module per family; :mod:`~kvspec.stateful.machines.strategies` holds the
draws they share.

Each family module exposes ``machines() -> list[MachineSpec]`` and is listed in
:data:`kvspec.stateful.engine.registry.FAMILIES`.  A machine's rules read like Hypothesis's
stateful docs: ``@initialize`` builds the subjects (trusted, so no ``ready`` flags), each ``@rule``
is one operation on model and target through ``self.run``, observers compare state after every
step.
"""
