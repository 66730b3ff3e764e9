"""Target ``dynamo-mocker``: Dynamo 1.6.1's mocker, replayed one request at a time.

The wheel ``ai-dynamo-runtime==1.6.1`` (extra ``dynamo``) exposes the mocker only as a whole-trace
replay, ``dynamo._core.run_mocker_trace_replay``.  :class:`MockerReplay` gives it the interface of
:class:`kvspec.model.admission.SequentialReplay`: it keeps the rows submitted so far and, on each
``submit``, replays them all (``replay_concurrency=1``, one worker, ``trace_block_size`` equal to
the engine block size) and returns the last row's ``(status, reused_input_tokens, output_length)``.  Re-running
the prefix is sound because a sequential replay's answer for row ``k`` depends only on rows
``0..k``.

Failures are mapped to kvspec errors so the differential runner can compare them: the mocker's
"effect-free zero-duration pass" abort becomes :class:`~kvspec.errors.ReplayStalled`, a rejected
row (``input_length`` beyond its ``hash_ids``) :class:`~kvspec.errors.InvalidArgument`; on either
the row is dropped, so the adapter's state is unchanged, like the model's.

Importing this module never imports Dynamo; resolving the target does.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kvspec.adapters.dynamo.runtime import DIST_NAME, engine_version, import_core
from kvspec.errors import InvalidArgument, ReplayStalled, TargetError
from kvspec.mooncake import MooncakeRow, dump_mooncake, validate_row

TARGET_NAME = "dynamo-mocker"
WHEEL = DIST_NAME
MOCKER_BACKENDS = ("vllm", "sglang", "trtllm")


def _core() -> Any:
    try:
        return import_core()
    except ImportError as exc:
        raise TargetError(
            f"target {TARGET_NAME!r} needs the {WHEEL} wheel (pip install '{WHEEL}==1.6.1'): {exc}"
        ) from None


def wheel_version() -> str | None:
    found = engine_version()
    return None if found == "unknown" else found


def available() -> bool:
    """Whether the mocker can be run here (the wheel imports)."""
    try:
        _core()
    except TargetError:
        return False
    return True


def run_trace(
    rows: Sequence[MooncakeRow],
    num_gpu_blocks: int,
    *,
    block_size: int = 16,
    backend: str = "vllm",
    enable_prefix_caching: bool = True,
    engine: dict[str, Any] | None = None,
) -> list[tuple[str, int, int]]:
    """Replay ``rows`` through the real mocker; ``(terminal_status, reused_input_tokens,
    output_length)`` per row,
    in trace order (the report lists requests by completion, so rows are matched by session id)."""
    core = _core()
    if not rows:
        return []
    options = {
        "backend": backend,
        "num_gpu_blocks": num_gpu_blocks,
        "block_size": block_size,
        "enable_prefix_caching": enable_prefix_caching,
        **(engine or {}),
    }
    with tempfile.TemporaryDirectory(prefix="kvspec-mocker-") as tmp:
        path = Path(tmp) / "trace.jsonl"
        path.write_text(dump_mooncake(rows))
        try:
            result = core.run_mocker_trace_replay(
                [str(path)],
                extra_engine_args={"engine": options},
                trace_block_size=block_size,
                replay_concurrency=1,
                capture_per_request=True,
            )
        except Exception as exc:  # noqa: BLE001 - the binding raises plain Exception/ValueError
            message = str(exc)
            if "effect-free zero-duration pass" in message:
                raise ReplayStalled(f"mocker aborted the replay: {message}") from None
            if "exceeds hash_ids capacity" in message:
                raise InvalidArgument(f"mocker refused the request log: {message}") from None
            raise TargetError(f"mocker replay failed: {type(exc).__name__}: {message}") from None
    by_session = {
        record["session_id"]: (
            record["terminal_status"],
            int(record["reused_input_tokens"]),
            int(record["output_length"]),
        )
        for record in result.per_request
    }
    try:
        return [by_session[f"request_{i + 1}"] for i in range(len(rows))]
    except KeyError as exc:
        raise TargetError(f"mocker report lacks {exc}; sessions: {sorted(by_session)}") from None


class MockerReplay:
    """The real mocker behind :class:`kvspec.model.admission.SequentialReplay`'s interface."""

    def __init__(
        self,
        num_gpu_blocks: int,
        block_size: int = 16,
        backend: str = "vllm",
        enable_prefix_caching: bool = True,
    ) -> None:
        if backend not in MOCKER_BACKENDS:
            raise InvalidArgument(f"backend must be one of {MOCKER_BACKENDS}, got {backend!r}")
        _core()
        self.num_gpu_blocks = num_gpu_blocks
        self.block_size = block_size
        self.backend = backend
        self.enable_prefix_caching = enable_prefix_caching
        self.rows: list[MooncakeRow] = []

    def submit(self, input_length: int, output_length: int, hash_ids: Sequence[int]) -> tuple[str, int, int]:
        hash_ids = validate_row(input_length, output_length, hash_ids, self.block_size)
        row = MooncakeRow(input_length, output_length, hash_ids, float(len(self.rows)))
        outcomes = run_trace(
            [*self.rows, row],
            self.num_gpu_blocks,
            block_size=self.block_size,
            backend=self.backend,
            enable_prefix_caching=self.enable_prefix_caching,
        )
        self.rows.append(row)
        return outcomes[-1]
