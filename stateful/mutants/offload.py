"""Planted bugs in the G1→G2 offload; the ``offload-*`` machines must catch each.

Each subclasses ``kvspec.impl.offload.OffloadKvManager`` and overrides exactly the rule it breaks.
"""

from __future__ import annotations

from kvspec.stateful.mutants import Mutant

OFFLOAD_MACHINES = ("offload-manager", "offload-pipeline")


def _slot_released_at_once():
    from kvspec.impl.offload import OffloadKvManager

    class SlotReleasedAtOnce(OffloadKvManager):
        """The evicted block's G1 slot is freed when the copy starts, not when it completes."""

        def _offload(self, evicted, slots):
            for slot in slots:
                self._pool.release_mutable(slot)
            super()._offload(evicted, [])

    return SlotReleasedAtOnce


def _g2_eviction_on_device_tier():
    from kvspec.events import Removed, StorageTier
    from kvspec.impl.offload import OffloadKvManager

    class G2EvictionOnDeviceTier(OffloadKvManager):
        """A G2 eviction is announced as a *device* Removed (the wrong tier)."""

        def _publish(self, data, tier=StorageTier.DEVICE):
            if tier is StorageTier.HOST_PINNED and isinstance(data, Removed):
                tier = StorageTier.DEVICE
            super()._publish(data, tier)

    return G2EvictionOnDeviceTier


def _announced_before_arrival():
    from kvspec.events import StorageTier, Stored, StoredBlock
    from kvspec.impl.offload import OffloadKvManager

    class AnnouncedBeforeArrival(OffloadKvManager):
        """The host Stored is published when the copy is queued, not when it arrives."""

        def _offload(self, evicted, slots):
            before = {b.plh for link in self._engine.links.values() for batch in link for b in batch.blocks}
            super()._offload(evicted, slots)
            self._early = getattr(self, "_early", set())
            for batch in self._engine.links["offload"]:
                for b in batch.blocks:
                    if b.plh not in before and b.seq_hash not in self._early:
                        self._early.add(b.seq_hash)
                        super()._publish(Stored(b.parent_hash, (StoredBlock(b.seq_hash, b.local_hash),)),
                                         StorageTier.HOST_PINNED)

        def _publish(self, data, tier=StorageTier.DEVICE):
            early = getattr(self, "_early", set())
            if tier is StorageTier.HOST_PINNED and isinstance(data, Stored) and data.blocks[0].block_hash in early:
                early.discard(data.blocks[0].block_hash)
                return
            super()._publish(data, tier)

    return AnnouncedBeforeArrival


MUTANTS = [
    Mutant("offload-slot-released-at-once", "the withheld G1 slot is freed when the copy starts",
           {"OffloadKvManager": _slot_released_at_once}, OFFLOAD_MACHINES),
    Mutant("offload-g2-eviction-on-device-tier", "a G2 eviction is announced on the device tier",
           {"OffloadKvManager": _g2_eviction_on_device_tier}, OFFLOAD_MACHINES),
    Mutant("offload-announced-before-arrival", "the host Stored is published when the copy is queued",
           {"OffloadKvManager": _announced_before_arrival}, OFFLOAD_MACHINES),
]
