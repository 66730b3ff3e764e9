"""kvspec's sequential replay against Dynamo 1.6.1's real mocker (needs ``ai-dynamo-runtime``)."""

from __future__ import annotations

import pytest

from kvspec.adapters.dynamo import mocker as dynamo_mocker
from kvspec.errors import ReplayStalled

pytestmark = [pytest.mark.dynamo, pytest.mark.skipif(
    not dynamo_mocker.available(),
    reason="ai-dynamo-runtime is not installed (pip install 'ai-dynamo-runtime==1.6.1'): "
    "the dynamo-mocker comparison cannot run",
)]

from kvspec.model.admission import predict
from kvspec.mooncake import MooncakeRow  # noqa: E402
from kvspec.stateful.runner import check_machine  # noqa: E402
from kvspec.stateful.machines.mocker import MOCKER_CONFIGS, machines, real_mocker, sweep  # noqa: E402

PAIRS = [[1, 2, 3, 4], [1, 2, 5, 6], [7, 8, 9, 10], [1, 2, 3, 4], [1, 2, 5, 6]]


@pytest.mark.parametrize("cap", [64, 6])
def test_five_requests(cap):
    rows = [MooncakeRow(64, 2, h) for h in PAIRS]
    real = dynamo_mocker.run_trace(rows, cap)
    assert real == [(o.status, o.reused_input_tokens, o.output_length) for o in predict(rows, cap)]


def test_stall_is_reported_alike():
    rows = [MooncakeRow(32, 2, [1, 2]), MooncakeRow(64, 20, [1, 2, 3, 4])]
    with pytest.raises(ReplayStalled):
        dynamo_mocker.run_trace(rows, 4)
    with pytest.raises(ReplayStalled):
        predict(rows, 4)


@pytest.mark.parametrize(("name", "backend", "caching"), MOCKER_CONFIGS)
def test_sweep_agrees(name, backend, caching):
    result = sweep(real_mocker, backend=backend, prefix_caching=caching, traces=20, requests=30, seed=11)
    assert result.requests >= 20 * 25
    assert not result.mismatched, result.mismatched[0]


@pytest.mark.parametrize("spec", [s for s in machines() if s.name.startswith("mocker[")], ids=lambda s: s.name)
def test_machine_against_real_mocker(spec):
    result = check_machine(spec, "dynamo-mocker", max_examples=15)
    assert result.status == "passed", result.reason
    assert result.steps > 0
