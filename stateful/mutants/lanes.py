"""Planted bugs in the laned index; the ``lanes`` machines must catch each.

Each subclasses ``kvspec.impl.lanes.LanedIndex`` and overrides exactly the rule it breaks.
"""

from __future__ import annotations

from kvspec.stateful.mutants import Mutant

LANES_MACHINES = ("lanes", "lanes-router")


def _drain_newest_first():
    from kvspec.impl.lanes import LanedIndex

    class DrainNewestFirst(LanedIndex):
        """A drain applies each lane's queued events newest first (a lane's order is lost)."""

        def drain(self):
            done = 0
            for key in list(self._lanes):
                self._lanes[key].reverse()
                while key in self._lanes:
                    self._apply(key)
                    done += 1
            return done

    return DrainNewestFirst


def _step_loses_event():
    from kvspec.impl.lanes import LanedIndex

    class StepLosesEvent(LanedIndex):
        """Stepping a lane by several events applies the first and silently loses the second."""

        def step(self, worker_id, dp_rank, count=1):
            done = super().step(worker_id, dp_rank, min(count, 1))
            key = (worker_id, dp_rank)
            if count > 1 and key in self._lanes:
                self._lanes[key].popleft()
                self._queued -= 1
                if not self._lanes[key]:
                    del self._lanes[key]
                done += 1
            return done + super().step(worker_id, dp_rank, max(0, count - 2))

    return StepLosesEvent


def _cleared_leaks_to_other_ranks():
    from kvspec.events import Cleared
    from kvspec.impl.lanes import LanedIndex

    class ClearedLeaksToOtherRanks(LanedIndex):
        """A rank's Cleared also drops the device blocks of the worker's other ranks (a cross-lane leak)."""

        def _apply(self, key):
            event = self._lanes[key][0][0]
            super()._apply(key)
            if isinstance(event.data, Cleared):
                for worker, rank in list(self._index._device._table.held):
                    if worker == key[0] and rank != key[1]:
                        self._index._device.remove_worker_dp_rank(worker, rank)

    return ClearedLeaksToOtherRanks


MUTANTS = [
    Mutant("lanes-drain-newest-first", "a drain applies each lane's events newest first",
           {"LanedIndex": _drain_newest_first}, LANES_MACHINES),
    Mutant("lanes-step-loses-event", "stepping a lane by several events loses the second",
           {"LanedIndex": _step_loses_event}, LANES_MACHINES),
    Mutant("lanes-cleared-leaks-to-other-ranks", "a rank's Cleared drops the other ranks' device blocks",
           {"LanedIndex": _cleared_leaks_to_other_ranks}, LANES_MACHINES),
]
