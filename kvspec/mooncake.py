"""Mooncake request logs: the rows Dynamo's mocker replays (prompt length, output length, hash ids).

A mooncake log is JSON lines, one request per line: ``input_length`` prompt tokens,
``output_length`` tokens to generate, and ``hash_ids``, one id per prompt block of the log's block
size (two requests share a prompt block exactly when they share its id *and* every id before it).
These rows are requests, not kvspec *traces* (a trace is a recorded failing run, see
:mod:`kvspec.stateful.traces`).

>>> parse_mooncake(['{"input_length": 32, "output_length": 2, "hash_ids": [1, 2]}'])
[MooncakeRow(input_length=32, output_length=2, hash_ids=(1, 2), timestamp=0.0)]
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from kvspec.errors import InvalidArgument

__all__ = ["MooncakeRow", "dump_mooncake", "load_mooncake", "parse_mooncake", "validate_row"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@attrs.frozen
class MooncakeRow:
    """One row of a mooncake request log (JSON lines): prompt length, output length, one hash id per trace block."""

    input_length: int
    output_length: int
    hash_ids: tuple[int, ...] = attrs.field(converter=tuple)
    timestamp: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp,
            "input_length": self.input_length,
            "output_length": self.output_length,
            "hash_ids": list(self.hash_ids),
        }


def validate_row(input_length: Any, output_length: Any, hash_ids: Any, block_size: int) -> tuple[int, ...]:
    """Check one row the way the mocker's trace loader does; return ``hash_ids`` as a tuple."""
    if not _is_int(input_length) or input_length < 1:
        raise InvalidArgument(f"input_length must be a positive int, got {input_length!r}")
    if not _is_int(output_length) or output_length < 1:
        raise InvalidArgument(f"output_length must be a positive int, got {output_length!r}")
    if not isinstance(hash_ids, (list, tuple)) or not hash_ids:
        raise InvalidArgument(f"hash_ids must be a non-empty list, got {hash_ids!r}")
    if not all(_is_int(h) and 0 <= h < 2**64 for h in hash_ids):
        raise InvalidArgument(f"hash_ids must be u64 ints, got {hash_ids!r}")
    if input_length > len(hash_ids) * block_size:
        raise InvalidArgument(
            f"input_length {input_length} exceeds hash_ids capacity {len(hash_ids) * block_size}"
        )
    return tuple(hash_ids)


def parse_mooncake(lines: Iterable[str]) -> list[MooncakeRow]:
    """Rows of a mooncake JSON-lines log (blank lines skipped); :class:`InvalidArgument` on bad input."""
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            rows.append(
                MooncakeRow(
                    int(obj["input_length"]),
                    int(obj["output_length"]),
                    tuple(int(h) for h in obj["hash_ids"]),
                    float(obj.get("timestamp", 0.0)),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(f"mooncake line {number}: {exc}") from None
    return rows


def load_mooncake(path: str | Path) -> list[MooncakeRow]:
    return parse_mooncake(Path(path).read_text().splitlines())


def dump_mooncake(rows: Sequence[MooncakeRow]) -> str:
    return "".join(json.dumps(row.to_json()) + "\n" for row in rows)
