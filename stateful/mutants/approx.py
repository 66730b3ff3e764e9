"""Planted bugs in the approximate (predict-on-route) indexer; the ``approx*`` machines must catch each.

Each subclasses ``kvspec.impl.approx`` and overrides exactly the rule it breaks, keeping the
structure's invariants (``_check``) intact, so a catch is a divergence on an observable.
"""

from __future__ import annotations

from kvspec.stateful.mutants import Mutant

APPROX_MACHINES = ("approx", "approx-router-primary", "approx-router-side")


def _prune_shallowest_first():
    from kvspec.impl.approx import ApproxIndex

    class PruneShallowestFirst(ApproxIndex):
        """Among equal expiries prune pops the *shallowest* block first (its descendants dangle)."""

        def prune(self):
            size = self.size()
            if size <= self.config.max_tree_size:
                return []
            order = sorted(self.entries(), key=lambda e: (e.expiry, e.position, -e.block_hash, -e.worker_id,
                                                          -e.dp_rank))
            chosen = order[: size - self.config.target_size()]
            for e in chosen:
                self._timers._take((e.worker_id, e.dp_rank, e.block_hash))
            return self._detach(chosen)

    return PruneShallowestFirst


def _reroute_keeps_expiry():
    from kvspec.hashing import sequence_hashes
    from kvspec.impl.approx import ApproxIndex

    class RerouteKeepsExpiry(ApproxIndex):
        """Routing a block again does not refresh its expiry (it keeps the first one)."""

        def record_routing_decision(self, worker_id, dp_rank, local_hashes):
            keys = [(worker_id, dp_rank, e) for e in sequence_hashes(list(local_hashes))] \
                if isinstance(local_hashes, (list, tuple)) and all(isinstance(h, int) and 0 <= h < 2**64
                                                                    for h in local_hashes) else []
            old = {k: self._timers.timers[k] for k in keys if k in self._timers.timers}
            pruned = super().record_routing_decision(worker_id, dp_rank, local_hashes)
            for key, (expiry, position) in old.items():
                if key in self._timers.timers:
                    self._timers.insert(key, expiry, position)
            return pruned

    return RerouteKeepsExpiry


def _expiry_exclusive():
    from kvspec import checks
    from kvspec.impl.approx import ApproxIndex

    class ExpiryExclusive(ApproxIndex):
        """An entry survives the tick of its expiry (removed only once ``now > expiry``)."""

        def advance(self, ticks):
            self._now += checks.ticks(ticks)
            return self._detach(self._timers.pop_expired(self._now - 1))

    return ExpiryExclusive


def _side_overrides_primary():
    from kvspec.impl.approx import RouterIndexer
    from kvspec.scores import OverlapScores

    class SideOverridesPrimary(RouterIndexer):
        """The side index's score replaces the primary's instead of taking the maximum."""

        def find_matches(self, local_hashes, early_exit=False):
            scores = dict(self._primary.find_matches(local_hashes, early_exit).scores) if self._primary else {}
            if self._approx is not None:
                scores.update(self._approx.find_matches(local_hashes, early_exit).scores)
            return OverlapScores(scores, ())

    return SideOverridesPrimary


def _side_double_counts():
    from kvspec.impl.approx import RouterIndexer
    from kvspec.scores import TieredMatches

    class SideDoubleCounts(RouterIndexer):
        """Lower tiers keep the primary walk's hits even where the prediction already counted them
        (Dynamo 1.6.1's behaviour, finding F3): device + host can exceed the query."""

        def find_matches_by_tier(self, local_hashes):
            device = self.find_matches(local_hashes)
            lower = self._primary.find_matches_by_tier(local_hashes).lower_tier if self._primary else {}
            return TieredMatches(device, lower)

    return SideDoubleCounts


def _combined_configuration_accepted():
    from kvspec.impl.approx import RouterIndexer

    class CombinedConfigurationAccepted(RouterIndexer):
        """No KV events plus a predicted TTL is accepted (the predicted TTL is silently ignored)."""

        def __init__(self, use_kv_events=True, router_ttl=120, router_predicted_ttl=None, *args, **kwargs):
            if not use_kv_events:
                router_predicted_ttl = None
            super().__init__(use_kv_events, router_ttl, router_predicted_ttl, *args, **kwargs)

    return CombinedConfigurationAccepted


MUTANTS = [
    Mutant("approx-prune-shallowest-first", "prune pops the shallowest block first among equal expiries",
           {"ApproxIndex": _prune_shallowest_first}, ("approx",)),
    Mutant("approx-reroute-keeps-expiry", "re-routing a block does not refresh its expiry",
           {"ApproxIndex": _reroute_keeps_expiry}, ("approx",)),
    Mutant("approx-expiry-exclusive", "an entry survives the tick of its expiry",
           {"ApproxIndex": _expiry_exclusive}, ("approx",)),
    Mutant("approx-side-overrides-primary", "merged device score is the side's, not the maximum",
           {"RouterIndexer": _side_overrides_primary}, ("approx-router-side",)),
    Mutant("approx-side-double-counts", "lower-tier hits re-count blocks the prediction already counted (F3)",
           {"RouterIndexer": _side_double_counts}, ("approx-router-side",)),
    Mutant("approx-combined-configuration-accepted", "no KV events plus a predicted TTL is accepted",
           {"RouterIndexer": _combined_configuration_accepted}, APPROX_MACHINES[1:]),
]
