"""Planted bugs in the prefix indexes; the ``radix`` and ``tiered`` machines must catch each one.

Every mutant subclasses the optimized implementation and overrides exactly the rule it breaks,
keeping the structure's own invariants (``_check``) intact, so that a catch is a divergence on
an observable, not a crash.
"""

from __future__ import annotations

from kvspec.stateful.mutants import Mutant


def _cascade_removal():
    from kvspec.impl.radix import RadixIndex

    class CascadeRemoval(RadixIndex):
        """Removing a block also drops the worker's blocks below it (``docs/decisions.md`` D3: never cascade)."""

        def _remove(self, worker, hashes):
            blocks = self._table.held.get(worker, {})
            doomed = {h for h in hashes if h in blocks}
            grew = True
            while grew:
                below = {e for e, (parent, _) in blocks.items() if parent in doomed and e not in doomed}
                doomed |= below
                grew = bool(below)
            extra = doomed - set(hashes)
            try:
                super()._remove(worker, hashes)
            finally:
                for e in extra:
                    self._table.detach(worker, e)

    return CascadeRemoval


def _parent_any_worker():
    from kvspec.events import Stored
    from kvspec.impl.radix import RadixIndex, check_acyclic_batch

    class ParentAnyWorker(RadixIndex):
        """A Stored event's parent is accepted if *any* worker or rank holds it."""

        def apply_event(self, worker_id, event):
            data = event.data
            parent = data.parent_hash if isinstance(data, Stored) else None
            worker = (worker_id, event.dp_rank)
            if parent is not None and parent not in self._table.held.get(worker, ()):
                if any(parent in blocks for blocks in self._table.held.values()):
                    check_acyclic_batch(data)
                    self._table.store_chain(worker, parent, data.blocks)
                    return
            super().apply_event(worker_id, event)

    return ParentAnyWorker


def _early_exit_ignored():
    from kvspec.impl.radix import RadixIndex

    class EarlyExitIgnored(RadixIndex):
        """``early_exit`` is dropped on the way to the walk: the lone worker keeps its full score."""

        def find_matches(self, local_hashes, early_exit=False):
            return super().find_matches(local_hashes, False)

    return EarlyExitIgnored


def _early_exit_late():
    from kvspec.impl.radix import RadixIndex
    from kvspec.scores import OverlapScores

    class EarlyExitLate(RadixIndex):
        """``early_exit`` stops one block too late: the lone worker is credited one extra block."""

        def find_matches(self, local_hashes, early_exit=False):
            scores = super().find_matches(local_hashes, early_exit).scores
            if early_exit:
                full = super().find_matches(local_hashes, False).scores
                scores = {w: min(s + 1, full[w]) if s < full[w] else s for w, s in scores.items()}
            return OverlapScores(scores, ())

    return EarlyExitLate


def _unknown_removal_aborts():
    from kvspec.errors import BlockNotFound
    from kvspec.impl.radix import RadixIndex

    class UnknownRemovalAborts(RadixIndex):
        """A Removed event naming an unknown block applies none of its names (upstream applies the rest)."""

        def _remove(self, worker, hashes):
            blocks = self._table.held.get(worker, {})
            if any(h not in blocks for h in hashes):
                raise BlockNotFound("some block is not held")
            super()._remove(worker, hashes)

    return UnknownRemovalAborts


def _cleared_all_ranks():
    from kvspec.events import Cleared
    from kvspec.impl.radix import RadixIndex

    class ClearedAllRanks(RadixIndex):
        """``Cleared`` drops every rank of the worker instead of the publishing rank only."""

        def apply_event(self, worker_id, event):
            if isinstance(event.data, Cleared):
                self._table.drop_worker_id(worker_id)
                return
            super().apply_event(worker_id, event)

    return ClearedAllRanks


def _tiered_double_count():
    from kvspec.impl.tiered import TieredIndex
    from kvspec.scores import Continuation

    class DoubleCount(TieredIndex):
        """Lower tiers restart every root holder at the root, so host copies of device blocks count twice."""

        @staticmethod
        def _seed(table, local_hashes, continuations):
            if local_hashes:
                for worker in table.root_holders(local_hashes[0]):
                    continuations[worker] = Continuation.root()  # BUG: overrides the device seed

    return DoubleCount


def _tiered_seed_non_root():
    from kvspec.impl.tiered import TieredIndex
    from kvspec.scores import Continuation

    class SeedNonRoot(TieredIndex):
        """Every worker holding anything in a lower tier enters it at the root, root block or not."""

        @staticmethod
        def _seed(table, local_hashes, continuations):
            for worker in table.held:  # BUG: should be the holders of the query's root block
                continuations.setdefault(worker, Continuation.root())

    return SeedNonRoot


def _tiered_clear_device_only():
    from kvspec.events import Cleared
    from kvspec.impl.tiered import TieredIndex

    class ClearDeviceOnly(TieredIndex):
        """``Cleared`` reaches the device index only; lower tiers keep the rank's blocks."""

        def apply_event(self, worker_id, event, storage_tier=None):
            if isinstance(event.data, Cleared):
                self._device.apply_event(worker_id, event)
                return
            if storage_tier is None:
                return super().apply_event(worker_id, event)
            return super().apply_event(worker_id, event, storage_tier)

    return ClearDeviceOnly


MUTANTS = [
    Mutant("radix-cascade-removal", "removing a block also drops its descendants (must not cascade)",
           {"RadixIndex": _cascade_removal}, ("radix",)),
    Mutant("radix-parent-any-worker", "a Stored parent is looked up across all workers and ranks",
           {"RadixIndex": _parent_any_worker}, ("radix",)),
    Mutant("radix-early-exit-ignored", "find_matches ignores early_exit",
           {"RadixIndex": _early_exit_ignored}, ("radix",)),
    Mutant("radix-early-exit-late", "early_exit credits the lone worker one block too many",
           {"RadixIndex": _early_exit_late}, ("radix",)),
    Mutant("radix-unknown-removal-aborts", "a Removed naming an unknown block applies nothing",
           {"RadixIndex": _unknown_removal_aborts}, ("radix",)),
    Mutant("radix-cleared-all-ranks", "Cleared drops every dp rank of the worker",
           {"RadixIndex": _cleared_all_ranks}, ("radix",)),
    Mutant("tiered-double-count", "a host copy of a device-matched block is counted again",
           {"TieredIndex": _tiered_double_count}, ("tiered",)),
    Mutant("tiered-seed-non-root", "lower tiers seed workers that do not hold the query's root block",
           {"TieredIndex": _tiered_seed_non_root}, ("tiered",)),
    Mutant("tiered-clear-device-only", "Cleared does not reach the lower tiers",
           {"TieredIndex": _tiered_clear_device_only}, ("tiered",)),
]
