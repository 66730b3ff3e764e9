"""The contract machines themselves, without Dynamo: they pass on a conforming target and fail on broken ones.

A contract that cannot fail proves nothing.  Here ``contract-radix`` and ``contract-router`` run
against kvspec's own reference model presented as a ``contract``-mode target (it must pass: the
model satisfies its own contract), then against deliberately broken indexes (each must be caught):
one that ignores removals (overcount), one that cascades a removal into every worker's subtree
(undercount below the sticky bound), one that merges the data-parallel ranks of a worker, and one
that reports a parent error for a block still held (an error the model does not raise).
"""

from __future__ import annotations

import types

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

import kvspec.model
from kvspec import profiles
from kvspec.stateful.engine.differential import Divergence
from kvspec.errors import ParentBlockNotFound
from kvspec.events import Removed, StorageTier, Stored
from kvspec.stateful.engine.registry import find_machines
from kvspec.stateful.runner import check_machine
from kvspec.stateful.machines.radix_contract import ContractModel
from kvspec.targets import Target


def spec(name):
    (found,) = [s for s in find_machines([name]) if s.name == name]
    return found


def caught(machine, target, max_examples=30):
    """Whether ``machine`` finds a divergence on ``target`` (generation only: no shrinking, it is slow)."""
    built = spec(machine).build(target)
    quick = settings(profiles.get("ci"), max_examples=max_examples, database=None,
                     phases=[Phase.explicit, Phase.generate])
    try:
        run_state_machine_as_test(built, settings=quick)
    except Divergence:
        return True
    return False


def contract_target(name, **classes):
    namespace = types.SimpleNamespace(RadixIndex=kvspec.model.RadixIndex, TieredIndex=kvspec.model.TieredIndex)
    for key, value in classes.items():
        setattr(namespace, key, value)
    return Target(name, namespace, "test", mode="contract")


class DropsRemovals(kvspec.model.RadixIndex):
    """Removed events are acknowledged but change nothing."""

    def apply_event(self, worker_id, event):
        if isinstance(event.data, Removed):
            return None
        return super().apply_event(worker_id, event)


class CascadesAcrossWorkers(kvspec.model.RadixIndex):
    """A removal drops the block and its whole subtree for *every* worker (a shared-node cascade)."""

    def apply_event(self, worker_id, event):
        try:
            return super().apply_event(worker_id, event)
        finally:
            if isinstance(event.data, Removed):
                doomed = set(event.data.block_hashes)
                grew = True
                while grew:
                    grew = False
                    for blocks in self._held.values():
                        for e, (parent, _) in blocks.items():
                            if parent in doomed and e not in doomed:
                                doomed.add(e)
                                grew = True
                for blocks in self._held.values():
                    for e in doomed:
                        blocks.pop(e, None)


class MergesRanks(kvspec.model.RadixIndex):
    """Every dp rank of a worker is filed as rank 0 (ownership by worker id only)."""

    def apply_event(self, worker_id, event):
        import attrs

        return super().apply_event(worker_id, attrs.evolve(event, dp_rank=0))

    def find_matches(self, local_hashes, early_exit=False):
        result = super().find_matches(local_hashes, early_exit)
        # report the merged score for every rank the machine knows, as a rank-blind index would
        scores = {}
        for (worker_id, _), score in result.scores.items():
            for rank in (0, 1):
                scores[(worker_id, rank)] = score
        return type(result)(scores, result.frequencies)


class SpuriousParentError(kvspec.model.RadixIndex):
    """Rejects a Stored under a parent that is not the last block stored by that worker."""

    def __init__(self):
        super().__init__()
        self._last = {}

    def apply_event(self, worker_id, event):
        data, worker = event.data, (worker_id, event.dp_rank)
        if isinstance(data, Stored) and data.parent_hash is not None and data.parent_hash != self._last.get(worker):
            raise ParentBlockNotFound("spurious")
        super().apply_event(worker_id, event)
        if isinstance(data, Stored) and data.blocks:
            self._last[worker] = data.blocks[-1].block_hash


def test_contract_radix_passes_on_the_reference_model():
    result = check_machine(spec("contract-radix"), contract_target("model-as-contract"), profile="ci",
                           max_examples=30, database=None)
    assert result.status == "passed", result.reason
    assert result.steps > 300


@pytest.mark.parametrize("broken", [DropsRemovals, CascadesAcrossWorkers, MergesRanks, SpuriousParentError],
                         ids=lambda c: c.__name__)
@pytest.mark.parametrize("machine", ["contract-radix", "contract-radix-events"])
def test_contract_radix_catches(machine, broken):
    assert caught(machine, contract_target(broken.__name__, RadixIndex=broken)), f"{broken.__name__} not caught"


def test_contract_radix_events_passes_on_the_reference_model():
    result = check_machine(spec("contract-radix-events"), contract_target("model-as-contract"), profile="ci",
                           max_examples=20, database=None)
    assert result.status == "passed", result.reason


def test_contract_router_passes_on_the_reference_model():
    result = check_machine(spec("contract-router"), contract_target("model-as-contract"), profile="ci",
                           max_examples=15, database=None)
    assert result.status == "passed", result.reason


def test_contract_router_catches_dropped_lower_tier_removals():
    class DropsTierRemovals(kvspec.model.TieredIndex):
        def apply_event(self, worker_id, event, storage_tier=StorageTier.DEVICE):
            if isinstance(event.data, Removed) and StorageTier(storage_tier) is not StorageTier.DEVICE:
                return None
            return super().apply_event(worker_id, event, storage_tier)

    assert caught("contract-router", contract_target("drops-tier-removals", TieredIndex=DropsTierRemovals), 40)


def test_machines_skip_exact_targets():
    assert spec("contract-radix").applies_to(Target("impl", kvspec.model)) == "machine does not support exact mode"


# -- the sticky-reachability model on the documented examples (docs/upstream.md R6/R8) -------------


def test_sticky_bounds_on_mid_chain_removal_and_restore():
    c = ContractModel()
    w = (1, 0)
    c.stored(w, None, [(100, 11), (101, 12), (102, 13), (103, 14)])
    assert c.device_bounds(w, [11, 12, 13, 14]) == (4, 4)
    c.removed(w, [101])  # a hole with held children: the worker becomes dirty
    assert w in c.dirty
    assert c.device_bounds(w, [11, 12, 13, 14]) == (1, 1)
    c.stored(w, 100, [(101, 12)])  # only the re-stored block becomes sticky again
    assert c.device_bounds(w, [11, 12, 13, 14]) == (2, 4)
    c.cleared(w)
    assert c.device_bounds(w, [11]) == (0, 0) and w not in c.dirty


def test_sticky_suffix_removal_keeps_bounds_equal():
    c = ContractModel()
    w = (2, 1)
    c.stored(w, None, [(100, 11), (101, 12), (102, 13)])
    c.removed(w, [102])
    c.removed(w, [101])
    assert w not in c.dirty
    assert c.device_bounds(w, [11, 12, 13]) == (1, 1)
