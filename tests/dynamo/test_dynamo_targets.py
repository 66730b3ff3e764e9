"""Targets ``dynamo`` and ``dynamo-router``: registration, skip behaviour, the adapter, quick contract runs.

The first group runs without the wheel (it simulates its absence); the rest needs
``ai-dynamo-runtime`` and is skipped with the import error as the reason.
"""

from __future__ import annotations

import pytest

from kvspec import cli, targets
from kvspec.adapters.dynamo import radix as dynamo
from kvspec.adapters.dynamo import runtime
from kvspec.adapters.dynamo import router as dynamo_router
from kvspec.errors import BlockNotFound, InvalidBlockSequence, ParentBlockNotFound
from kvspec.events import Cleared, EventDecodeError, KvCacheEvent, Removed, RouterEvent, Stored, StoredBlock
from kvspec.stateful.engine.registry import find_machines
from kvspec.stateful.runner import check_machine

REASON = dynamo_router.unavailable_reason()
needs_wheel = pytest.mark.skipif(REASON is not None, reason=f"needs the Dynamo wheel: {REASON}")


def spec(name):
    (found,) = [s for s in find_machines([name]) if s.name == name]
    return found


# -- without the wheel ---------------------------------------------------------------------------


def test_targets_are_registered():
    names = targets.registered_targets()
    assert {"dynamo", "dynamo-router", "dynamo-router-threads4"} <= set(names)


@pytest.fixture
def no_wheel(monkeypatch):
    def missing():
        raise ImportError("No module named 'dynamo'")

    monkeypatch.setattr(runtime, "import_core", missing)


@pytest.mark.parametrize("name", ["dynamo", "dynamo-router", "dynamo-router-threads4"])
def test_missing_wheel_resolves_to_an_empty_contract_target(no_wheel, name):
    target = targets.resolve(name)
    assert target.provided() == []
    assert target.mode == "contract"
    assert target.version.startswith("unavailable: ai-dynamo-runtime not importable")


def test_missing_wheel_reports_skipped_rows(no_wheel, capsys):
    assert check_machine(spec("contract-radix"), "dynamo").status == "skipped"
    code = cli.main(["check", "--target", "dynamo", "--machine", "contract-"])
    out = capsys.readouterr().out
    assert code == 0
    assert "unavailable: ai-dynamo-runtime not importable" in out
    assert "0 passed, 0 failed" in out and "skipped" in out


# -- the adapter -----------------------------------------------------------------------------------


@needs_wheel
def test_target_provides_radix_index_in_contract_mode():
    target = targets.resolve("dynamo")
    assert target.provided() == ["RadixIndex"] and target.mode == "contract"
    assert target.version.startswith("ai-dynamo-runtime 1.6")
    assert targets.resolve("dynamo-router").provided() == ["TieredIndex", "LanedIndex"]


@needs_wheel
def test_adapter_maps_errors_and_parses_dumps():
    index = dynamo.RadixIndex()
    index.apply_event(1, KvCacheEvent(1, Stored(None, [StoredBlock(100, 11), StoredBlock(101, 12)])))
    with pytest.raises(ParentBlockNotFound):
        index.apply_event(1, KvCacheEvent(2, Stored(999, [StoredBlock(200, 21)])))
    with pytest.raises(InvalidBlockSequence):
        index.apply_event(3, KvCacheEvent(3, Stored(301, [StoredBlock(300, 31), StoredBlock(301, 32)])))
    with pytest.raises(BlockNotFound):  # the rest of the event still applies (docs/upstream.md R8 exp. C1)
        index.apply_event(1, KvCacheEvent(4, Removed([555, 101])))
    assert index.find_matches([11, 12]).scores == {(1, 0): 1}
    with pytest.raises(EventDecodeError):
        index.apply_json(1, b'{"event_id":9,"data":{"cleared":{}},"dp_rank":0}')
    dump = index.dump_events()
    assert all(isinstance(item, RouterEvent) for item in dump)
    assert [(d.worker_id, d.event.data.parent_hash, d.event.data.blocks) for d in dump] == [
        (1, None, (StoredBlock(100, 11),))
    ]
    index.remove_worker_dp_rank(1, 0)
    index.apply_event(1, KvCacheEvent(5, Cleared()))
    assert index.find_matches([11]).scores == {}


# -- quick contract runs (the long ones are `kvspec check --target ... --profile nightly`) ----------


@needs_wheel
@pytest.mark.dynamo
def test_contract_radix_against_dynamo():
    result = check_machine(spec("contract-radix"), "dynamo", profile="ci", max_examples=40, database=None)
    assert result.status == "passed", f"{result.reason}\n{result.trace}"
    assert result.steps > 500


@needs_wheel
@pytest.mark.dynamo
@pytest.mark.parametrize("machine", ["contract-router", "contract-router-device"])
def test_contract_router_single_threaded(machine):
    result = check_machine(spec(machine), "dynamo-router", profile="ci", max_examples=15, database=None)
    assert result.status == "passed", f"{result.reason}\n{result.trace}"
    assert result.steps > 100
