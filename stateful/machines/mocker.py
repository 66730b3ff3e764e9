"""Machines for the 1.6.1 mocker's native vLLM block pool and its sequential replay.

Three families, discovered by ``kvspec check``:

* ``native-pool`` — :class:`NativeBlockPool` of the model against the target's (``impl``):
  acquire / cache / release with duplicates, pins and evictions; observers are the resident
  copies, the LRU order, free and active counts, and the removed hashes.
* ``replay[...]`` — :class:`kvspec.model.admission.SequentialReplay` over the model pool against the same
  over the target's pool: whole requests (the admission rule) instead of pool calls.
* ``mocker[...]`` — the model's sequential replay against target ``dynamo-mocker``: the real
  Dynamo 1.6.1 mocker (``MockerReplay``).  Each step submits one request — a fresh prompt, a
  prompt sharing a prefix with an earlier one, or an exact repeat; prompt lengths exact multiples
  of the block size or not; outputs short or long; GPU block counts from 4 to 64, small enough to
  force evictions — and compares ``(status, reused_input_tokens)``.  A mismatch shrinks to a
  minimal list of requests.  The mocker hides its pool, so it has no observers: eviction order is
  seen only through later hits (``docs/mocker.md``).  Targets without ``MockerReplay`` skip it.

:func:`sweep` is the same comparison without Hypothesis, for large batches: random traces run
once each through both sides, any mismatch shrunk by dropping requests (``docs/mocker.md``).
"""

from __future__ import annotations

import random
import types
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule

from kvspec.errors import KvSpecError
from kvspec.model.admission import SequentialReplay
from kvspec.mooncake import MooncakeRow
from kvspec.stateful.engine.machine import DifferentialMachine, MachineSpec

BLOCK_SIZE = 16

# --- the native pool, model against target -------------------------------------------------------

#: hashes drawn from a small alphabet so duplicates and hits are common
hashes = st.integers(0, 11)


class NativePoolMachine(DifferentialMachine):
    observers = {"NativeBlockPool": ["copies", "resident", "inactive_order", "num_free", "num_active", "drain_removed"]}

    @initialize(capacity=st.integers(1, 10))
    def setup(self, capacity: int) -> None:
        self.run.create("pool", "NativeBlockPool", capacity)

    def _held(self) -> list[int]:
        pool = self.run.model("pool")
        return [c for c, h, refs in pool.copies() if h is None or refs > 0]

    def _private(self) -> list[int]:
        return [c for c, h, _ in self.run.model("pool").copies() if h is None]

    @rule(chain=st.lists(hashes, max_size=4), fresh=st.integers(0, 4))
    def acquire_resident_prefix(self, chain: list[int], fresh: int) -> None:
        """Reference the resident part of ``chain`` (how a request admits) plus fresh copies."""
        n = self.run.call("pool", "longest_prefix", chain)
        self.attempt("pool", "acquire", chain[:n], fresh)

    @rule(prefix=st.lists(hashes, max_size=3), fresh=st.integers(0, 3))
    def acquire_any(self, prefix: list[int], fresh: int) -> None:
        """Also names hashes that are not resident: both sides must refuse alike."""
        self.attempt("pool", "acquire", prefix, fresh)

    @precondition(lambda self: self._private())
    @rule(data=st.data(), hash_=hashes)
    def cache(self, data: st.DataObject, hash_: int) -> None:
        copy_id = data.draw(st.sampled_from(self._private()))
        self.run.call("pool", "cache", copy_id, hash_)

    @precondition(lambda self: self._held())
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        copy_id = data.draw(st.sampled_from(self._held()))
        self.run.call("pool", "release", copy_id)

    @rule(copy_id=st.integers(-1, 30), hash_=st.one_of(hashes, st.just(-3)))
    def misuse(self, copy_id: int, hash_: int) -> None:
        """Any id (held, inactive, freed, unknown) and bad hashes: same error class, no change."""
        self.attempt("pool", "cache", copy_id, hash_)
        self.attempt("pool", "release", copy_id)


# --- requests: shared by the replay machines and the sweep ---------------------------------------

outputs = st.one_of(st.integers(1, 4), st.integers(5, 40), st.integers(41, 120))
gpu_blocks = st.one_of(st.integers(4, 10), st.integers(11, 24), st.sampled_from([32, 48, 64]))


def _length(blocks: int, tail: int) -> int:
    """A prompt of ``blocks`` trace blocks; ``tail`` tokens short of a multiple (0 = exact)."""
    return blocks * BLOCK_SIZE - min(tail, BLOCK_SIZE - 1)


class _RequestRules(DifferentialMachine):
    """Rules that submit requests to subject ``"replay"``; subclasses create it."""

    subject_class: str = "MockerReplay"

    def _start(self, num_gpu_blocks: int) -> None:
        self.prompts: list[tuple[int, tuple[int, ...]]] = []
        self.next_hash = 1
        self.run.create("replay", self.subject_class, num_gpu_blocks, BLOCK_SIZE, self.params["backend"],
                        self.params.get("prefix_caching", True))

    def _fresh(self, n: int) -> list[int]:
        ids = list(range(self.next_hash, self.next_hash + n))
        self.next_hash += n
        return ids

    def _submit(self, length: int, output: int, hash_ids: Sequence[int]) -> None:
        _, error = self.attempt("replay", "submit", length, output, list(hash_ids))
        if error is None:
            self.prompts.append((length, tuple(hash_ids)))

    @rule(blocks=st.integers(1, 6), tail=st.integers(0, 15), output=outputs)
    def fresh_prompt(self, blocks: int, tail: int, output: int) -> None:
        self._submit(_length(blocks, tail), output, self._fresh(blocks))

    @precondition(lambda self: self.prompts)
    @rule(data=st.data(), keep=st.integers(1, 5), extra=st.integers(0, 3), tail=st.integers(0, 15),
          output=outputs)
    def shared_prefix(self, data: st.DataObject, keep: int, extra: int, tail: int, output: int) -> None:
        """A prompt starting with up to ``keep`` blocks of an earlier one (a prefix group)."""
        _, earlier = data.draw(st.sampled_from(self.prompts))
        prefix = list(earlier[:keep])
        blocks = len(prefix) + extra
        if blocks == 0:
            return
        self._submit(_length(blocks, tail if extra else 0), output, prefix + self._fresh(extra))

    @precondition(lambda self: self.prompts)
    @rule(data=st.data(), output=outputs)
    def repeat(self, data: st.DataObject, output: int) -> None:
        """Exactly an earlier prompt again (the 48-of-64 rule, duplicate copies)."""
        length, hash_ids = data.draw(st.sampled_from(self.prompts))
        self._submit(length, output, hash_ids)


class ReplayMachine(_RequestRules):
    """Sequential replay over the model pool against the same over the target's pool."""

    subject_class = "SequentialReplay"
    observers = {"SequentialReplay": ["pool_state"]}

    @initialize(num_gpu_blocks=gpu_blocks)
    def setup(self, num_gpu_blocks: int) -> None:
        self._start(num_gpu_blocks)


class MockerMachine(_RequestRules):
    """The model's sequential replay against the real mocker (target ``dynamo-mocker``)."""

    model_namespace = types.SimpleNamespace(MockerReplay=SequentialReplay)

    @initialize(num_gpu_blocks=gpu_blocks)
    def setup(self, num_gpu_blocks: int) -> None:
        self._start(num_gpu_blocks)


def _bound_replay_machine() -> type[ReplayMachine]:
    class BoundReplayMachine(ReplayMachine):
        model_namespace = types.SimpleNamespace(SequentialReplay=SequentialReplay)

        def __init__(self) -> None:
            super().__init__()
            pool_cls = type(self).target.get("NativeBlockPool")
            target_ns = types.SimpleNamespace(SequentialReplay=_replay_with_pool(pool_cls))
            self.run.target_ns = target_ns

    BoundReplayMachine.__name__ = BoundReplayMachine.__qualname__ = "ReplayMachine"
    return BoundReplayMachine


def _replay_with_pool(pool_cls: type) -> type:
    """``SequentialReplay`` as the machine builds it (same arguments), driving the target's pool."""
    class TargetReplay(SequentialReplay):
        def __init__(self, num_gpu_blocks: Any, *args: Any) -> None:
            super().__init__(num_gpu_blocks, *args, pool=pool_cls(num_gpu_blocks))

    TargetReplay.__name__ = TargetReplay.__qualname__ = "SequentialReplay"
    return TargetReplay


#: Modelled configurations of the mocker: (name, backend, prefix caching).
MOCKER_CONFIGS = (
    ("vllm", "vllm", True),
    ("trtllm", "trtllm", True),
    ("vllm,no-prefix-cache", "vllm", False),
)


def machines() -> list[MachineSpec]:
    specs = [
        MachineSpec(
            name="native-pool",
            factory=NativePoolMachine,
            requires=("NativeBlockPool",),
            description="vLLM native block pool of the 1.6.1 mocker (copies, pins, LRU)",
        )
    ]
    replay = _bound_replay_machine()
    for name, backend, caching in MOCKER_CONFIGS:
        params = {"backend": backend, "prefix_caching": caching}
        specs.append(MachineSpec(
            name=f"replay[{name}]",
            factory=replay,
            requires=("NativeBlockPool",),
            params=params,
            description=f"sequential replay ({name}) over the target's NativeBlockPool",
        ))
        specs.append(MachineSpec(
            name=f"mocker[{name}]",
            factory=MockerMachine,
            requires=("MockerReplay",),
            params=params,
            description=f"per-request reuse of Dynamo 1.6.1's mocker ({name}), replay_concurrency=1",
        ))
    return specs


# --- sweep: many random traces, one mocker run each ----------------------------------------------


@attrs.frozen
class TraceSpec:
    """A generated trace and the engine it runs on."""

    num_gpu_blocks: int
    rows: tuple[MooncakeRow, ...]
    backend: str = "vllm"
    prefix_caching: bool = True


def random_trace(rng: random.Random, requests: int, num_gpu_blocks: int, backend: str = "vllm",
                 prefix_caching: bool = True) -> TraceSpec:
    """Requests mixing prefix groups, exact repeats and fresh prompts, lengths on and off the
    block grid, short and long outputs.  Every request completes on its own (no stall): a stall
    aborts the real replay as a whole, so it is tested by the machine, not here."""
    groups = [[rng.randrange(1, 10**9) for _ in range(rng.randint(1, 3))] for _ in range(3)]
    rows: list[MooncakeRow] = []
    guard = 0
    while len(rows) < requests and guard < requests * 50:
        guard += 1
        output = rng.choice([rng.randint(1, 4), rng.randint(5, 40), rng.randint(41, 120)])
        kind = rng.random()
        if rows and kind < 0.25:
            earlier = rng.choice(rows)
            length, hash_ids = earlier.input_length, earlier.hash_ids
        else:
            prefix = list(rng.choice(groups)) if kind < 0.7 else []
            blocks = rng.randint(max(1, len(prefix)), len(prefix) + 3)
            hash_ids = tuple((prefix + [rng.randrange(1, 10**9) for _ in range(blocks)])[:blocks])
            exact = rng.random() < 0.5
            length = BLOCK_SIZE * blocks - (0 if exact else rng.randint(1, BLOCK_SIZE - 1))
        if backend != "trtllm" and -(-(length + output - 1) // BLOCK_SIZE) > num_gpu_blocks:
            continue  # would stall the whole replay
        rows.append(MooncakeRow(length, output, hash_ids, float(len(rows))))
    return TraceSpec(num_gpu_blocks, tuple(rows), backend, prefix_caching)


def predict_trace(spec: TraceSpec, pool: Any = None) -> list[tuple[str, int, int]]:
    replay = SequentialReplay(spec.num_gpu_blocks, BLOCK_SIZE, spec.backend, spec.prefix_caching, pool=pool)
    return [replay.submit(r.input_length, r.output_length, r.hash_ids) for r in spec.rows]


def mismatches(spec: TraceSpec, run: Callable[[TraceSpec], list[tuple[str, int, int]]]) -> list[int]:
    """Indexes of rows where ``run`` (the real mocker) disagrees with the model."""
    try:
        real: list[Any] = run(spec)
    except KvSpecError as exc:
        real = [type(exc).__name__] * len(spec.rows)
    try:
        predicted: list[Any] = predict_trace(spec)
    except KvSpecError as exc:
        predicted = [type(exc).__name__] * len(spec.rows)
    return [i for i, (a, b) in enumerate(zip(predicted, real, strict=True)) if a != b]


def shrink(spec: TraceSpec, run: Callable[[TraceSpec], list[tuple[str, int, int]]]) -> TraceSpec:
    """Smallest trace (by dropping rows, then the pool) that still disagrees somewhere."""
    first = mismatches(spec, run)[0]
    spec = attrs.evolve(spec, rows=spec.rows[: first + 1])
    changed = True
    while changed:
        changed = False
        for i in range(len(spec.rows) - 1, -1, -1):
            smaller = attrs.evolve(spec, rows=spec.rows[:i] + spec.rows[i + 1:])
            if smaller.rows and mismatches(smaller, run):
                spec, changed = smaller, True
    return spec


@attrs.define
class SweepResult:
    traces: int = 0
    requests: int = 0
    mismatched: list[TraceSpec] = attrs.field(factory=list)


def sweep(run: Callable[[TraceSpec], list[tuple[str, int, int]]], *, backend: str = "vllm",
          prefix_caching: bool = True, traces: int = 50, requests: int = 30, seed: int = 0,
          block_counts: Sequence[int] = (4, 5, 6, 8, 10, 12, 16, 24, 32, 48, 64)) -> SweepResult:
    """Compare ``traces`` random traces of ``requests`` requests; mismatches come back shrunk."""
    rng = random.Random(seed)
    result = SweepResult()
    for _ in range(traces):
        spec = random_trace(rng, requests, rng.choice(list(block_counts)), backend, prefix_caching)
        result.traces += 1
        result.requests += len(spec.rows)
        if mismatches(spec, run):
            result.mismatched.append(shrink(spec, run))
    return result


def real_mocker(spec: TraceSpec) -> list[tuple[str, int, int]]:
    """Run ``spec`` through Dynamo's mocker (needs the ``ai-dynamo-runtime`` wheel)."""
    from kvspec.adapters.dynamo.mocker import run_trace

    return run_trace(list(spec.rows), spec.num_gpu_blocks, block_size=BLOCK_SIZE, backend=spec.backend,
                     enable_prefix_caching=spec.prefix_caching)
