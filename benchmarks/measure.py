"""Shared timing rules of kvspec's benchmarks: warm up, interleave, repeat, report the spread.

* :func:`interleaved` times several *sides* (callables doing the same batch of work) in rounds:
  every round runs each side once, in an order that rotates from round to round, after one
  untimed warm-up call per side.  Each timing is the *process's CPU time* (every thread, so a side
  that hands work to another thread is charged for it) per operation: on a shared machine, wall
  time mostly measures the scheduler.
* :class:`Spread` keeps min / median / max of the per-operation times and how many operations
  they rest on; :func:`ratio` refuses (returns ``None``) when either side rests on fewer than
  ``min_ops`` operations, so no ratio is ever printed from a handful of calls.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import attrs

__all__ = ["Spread", "interleaved", "ratio", "fmt_ratio", "fmt_us", "pin_to_one_core"]


@attrs.frozen
class Spread:
    """Per-operation seconds over the timed rounds, and the operations they rest on."""

    times: tuple = ()
    ops: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def low(self) -> float:
        return min(self.times)

    @property
    def high(self) -> float:
        return max(self.times)


def interleaved(sides: dict[str, tuple[Callable[[], int], int]], rounds: int,
                warmup: bool = True) -> dict[str, Spread]:
    """Time ``sides[name] = (batch, n)``: ``batch()`` does ``n`` operations.  See module docs."""
    names = list(sides)
    if warmup:
        for name in names:
            sides[name][0]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            batch, n = sides[name]
            started = time.process_time()
            batch()
            times[name].append((time.process_time() - started) / n)
    return {name: Spread(tuple(times[name]), rounds * sides[name][1]) for name in names}


def ratio(slow: Spread | None, fast: Spread | None, min_ops: int) -> float | None:
    """``slow.median / fast.median``, or ``None`` when either rests on fewer than ``min_ops`` operations."""
    if slow is None or fast is None or slow.ops < min_ops or fast.ops < min_ops or fast.median <= 0:
        return None
    return slow.median / fast.median


def fmt_ratio(value: float | None, width: int = 7) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width - 1}.2f}x"


def fmt_us(spread: Spread | None) -> str:
    """``median [min-max]`` in microseconds."""
    if spread is None:
        return "-"
    return f"{spread.median * 1e6:.2f} [{spread.low * 1e6:.2f}-{spread.high * 1e6:.2f}]"


def pin_to_one_core(cpu: int | None) -> str:
    """Pin this process (every thread it starts later) to one CPU, like ``taskset -c``; say so."""
    import os

    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu} (as taskset -c {cpu})"


def median_of(values: Sequence[float]) -> float:
    return statistics.median(values)
