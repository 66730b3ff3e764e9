"""The ``tiered`` machine: the tiered index (``TieredIndex``) against the reference model.

Same rules as the ``radix`` machine (:class:`~kvspec.stateful.machines.radix.IndexRules`), with events
spread over the four storage tiers (device twice as often): lower-tier stores chain off device
blocks (offloaded suffixes), copy device chains with the same external hashes (the case where a
block must not be counted twice), or start at the root (host-only workers).  Queries call
``find_matches_by_tier`` (device scores, per-tier hits and continuations compared exactly) and
``find_matches``.  Dumps are compared as multisets of ``(worker, rank, tier, parent, E, L)``.
"""

from __future__ import annotations

from hypothesis.stateful import precondition, rule

from kvspec.events import StorageTier
from kvspec.stateful.engine.machine import MachineSpec, weight
from kvspec.stateful.machines.index_events import Draw, tapes
from kvspec.stateful.machines.radix import IndexRules, _holds_blocks


class TieredMachine(IndexRules):
    """``TieredIndex`` compared exactly with the reference model."""

    index_class = "TieredIndex"
    tiers = (StorageTier.DEVICE, StorageTier.HOST_PINNED, StorageTier.DISK, StorageTier.EXTERNAL)

    def apply_args(self, draw: Draw) -> tuple:
        return (draw.worker_id, draw.event, draw.tier)

    @weight(2)
    @precondition(_holds_blocks)
    @rule(data=tapes())
    def find_matches_by_tier(self, data) -> None:
        self.run.call(self.subject, "find_matches_by_tier", self.events.draw_query(data))


def machines() -> list[MachineSpec]:
    return [
        MachineSpec(
            "tiered",
            TieredMachine,
            ("TieredIndex",),
            description="tiered index: device + host/disk/external events, find_matches_by_tier "
                        "(continuations, no double counting, root seeding), dumps as multisets",
        )
    ]
