"""Trace files: a failing run as JSON that replays without Hypothesis.

A trace records who ran what (kvspec, Python, Hypothesis and target versions, machine and its
parameters, profile, seed), the shrunk steps with their full arguments (encoded by
:mod:`kvspec.codec`), and at the first divergence the model's and the target's outcome of that step
(return value, error, every observer: events, state) with a one-line summary.  It is plain JSON,
schema :data:`SCHEMA_VERSION`, so it can be attached to a bug report and read by a human.

Two kinds of trace:

* ``divergence`` — model and target disagreed at step ``divergence.index`` (the last step);
* ``error`` — the run failed outside a step (an invariant or a crash in rule code); ``error``
  holds the exception, ``steps`` the steps executed up to it.

Loading is defensive (rule: a trace is untrusted input).  :func:`load_trace` and
:func:`parse_trace` accept only JSON, build only registered value types (:mod:`kvspec.codec`),
refuse private methods, check that every subject is created before it is used, and turn every
problem into a one-line :class:`~kvspec.errors.TraceError`.  They never execute anything; checking
the steps against a machine's classes happens in :mod:`kvspec.stateful.traces.replay`.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import stat
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from kvspec import __version__, codec
from kvspec.errors import TraceError
from kvspec.stateful.engine.differential import Divergence, Step
from kvspec.targets import Target

__all__ = [
    "KINDS", "MAX_TRACE_BYTES", "MODES", "SCHEMA_VERSION", "Trace", "atomic_write", "check_command",
    "environment", "load_trace", "parse_trace", "recorded_outcome", "slug", "trace_from_divergence",
    "trace_from_error", "validate_trace", "write_trace"
]


#: Version of the JSON layout below.  Bump it when a field changes meaning; readers refuse others.
SCHEMA_VERSION = 1

# -- limits: a trace is untrusted, so its size must bound the work and memory it can cause ------------
# (README.md, "A trace is untrusted input", states them; a trace beyond any is refused with a TraceError)

#: Traces bigger than this are refused (a shrunk counterexample is a few kilobytes); read at most this.
MAX_TRACE_BYTES = 8 * 1024 * 1024
#: Steps in one trace (kvspec's machines run at most a few hundred per example).
MAX_STEPS = 10_000
#: Items in all the lists, tuples, sets, dicts and strings of one step's arguments together.
MAX_ITEMS_PER_STEP = 10_000
#: Magnitude of any integer argument: |n| < 2**MAX_INT_BITS (hashes are u64; bad-input cases go beyond).
MAX_INT_BITS = 128
#: Size arguments of a constructor (capacity, block size, ...): a trace cannot ask for a huge structure.
MAX_CONSTRUCTOR_SIZE = 65_536
#: Constructor parameters that size a structure (checked against :data:`MAX_CONSTRUCTOR_SIZE`).
SIZE_PARAMETERS = frozenset({"capacity", "total_blocks", "num_gpu_blocks", "block_size", "max_tree_size"})

KINDS = ("divergence", "error")
MODES = ("exact", "contract")


def environment() -> dict[str, str]:
    """Versions that matter when reproducing a run."""
    try:
        import hypothesis

        hypothesis_version = hypothesis.__version__
    except ImportError:  # pragma: no cover - kvspec depends on it
        hypothesis_version = "absent"
    return {
        "kvspec": __version__,
        "python": platform.python_version(),
        "hypothesis": hypothesis_version,
        "platform": platform.platform(terse=True),
    }


def check_command(machine: str, target: str, profile: str | None, seed: int | None,
                  max_examples: int | None = None) -> str:
    """The ``kvspec check`` command line that re-runs the search that found a trace."""
    parts = ["kvspec", "check", "--target", target, "--machine", machine]
    if profile:
        parts += ["--profile", profile]
    if max_examples is not None:
        parts += ["--max-examples", str(max_examples)]
    if seed is not None:
        parts += ["--seed", str(seed)]
    return shlex.join(parts)


def _header(spec: Any, target: Target, profile: str | None, seed: int | None,
            max_examples: int | None, kind: str, summary: str) -> dict[str, Any]:
    machine_cls = spec.build(target) if hasattr(spec, "build") else None
    observers = {k: list(v) for k, v in getattr(machine_cls, "observers", {}).items()}
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "kvspec_version": __version__,
        "environment": environment(),
        "target": {"name": target.name, "version": str(target.version), "mode": target.mode},
        "machine": spec.name,
        "machine_params": {str(k): _lenient(v) for k, v in dict(getattr(spec, "params", {})).items()},
        "observers": observers,
        "profile": profile,
        "seed": seed,
        "max_examples": max_examples,
        "command": check_command(spec.name, target.name, profile, seed, max_examples),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "summary": _one_line(summary),
    }


def _lenient(value: Any) -> Any:
    try:
        return codec.encode(value)
    except TypeError:
        return {"$repr": repr(value)}


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def trace_from_divergence(divergence: Divergence, *, spec: Any, target: Target, profile: str | None,
                          seed: int | None, max_examples: int | None = None) -> dict[str, Any]:
    """The JSON-ready trace of a divergence raised by ``spec`` against ``target``."""
    steps = divergence.steps[: divergence.index + 1]
    step = steps[-1]
    trace = _header(spec, target, profile, seed, max_examples, "divergence",
                    f"{step.describe()}: {divergence.summary}")
    trace["steps"] = [s.to_json() for s in steps]
    trace["divergence"] = {
        "index": divergence.index,
        "step": step.describe(),
        "expected": divergence.expected.to_json(),
        "actual": divergence.actual.to_json(),
        "differences": list(divergence.differences),
    }
    return trace


def trace_from_error(error: BaseException, steps: Sequence[Step], *, spec: Any, target: Target,
                     profile: str | None, seed: int | None, max_examples: int | None = None) -> dict[str, Any]:
    """The trace of a run that failed outside a step (an invariant, or rule code)."""
    message = f"{type(error).__name__}: {error}"
    after = f" after {steps[-1].describe()}" if steps else ""
    trace = _header(spec, target, profile, seed, max_examples, "error", f"{message}{after}")
    trace["steps"] = [s.to_json() for s in steps]
    trace["error"] = {"type": type(error).__name__, "message": _one_line(str(error), 2000),
                      "after_step": len(steps) - 1}
    return trace


def write_trace(trace: Mapping[str, Any], directory: str | os.PathLike[str] | None = None, *,
                path: str | os.PathLike[str] | None = None) -> Path:
    """Write ``trace`` to ``path``, or under ``directory`` with a descriptive unique name.

    The file is written whole then renamed into place, so a reader never sees half a trace.
    The temporary file is created exclusively (:func:`atomic_write`): no symlink is followed.
    """
    if path is None:
        directory = Path(directory if directory is not None else "kvspec-traces")
        directory.mkdir(parents=True, exist_ok=True)
        safe = f"{slug(str(trace['machine']))}-{slug(str(trace['target']['name']))}"
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        path = directory / f"{safe}-{stamp}.json"
        n = 1
        while path.exists():
            n += 1
            path = directory / f"{safe}-{stamp}-{n}.json"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(trace, indent=1, sort_keys=False) + "\n")
    return path


def atomic_write(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a fresh temporary file in the same directory.

    The temporary name is unpredictable and created with ``O_CREAT | O_EXCL`` (:func:`tempfile.mkstemp`),
    so a symlink planted at a guessable ``<path>.tmp`` is never followed; :func:`os.replace` then
    swaps it in atomically (replacing a symlink at ``path`` itself, not writing through it).
    """
    import tempfile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def slug(text: str) -> str:
    """``pool[lru,allow]`` -> ``pool_lru_allow``: safe in file names and shells."""
    return re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_") or "trace"


# -- reading ----------------------------------------------------------------------------------


@attrs.frozen
class Trace:
    """A validated trace: the raw JSON object and its decoded steps."""

    data: Mapping[str, Any] = attrs.field(repr=False)
    steps: tuple[Step, ...]
    source: str = "<trace>"

    @property
    def kind(self) -> str:
        return self.data["kind"]

    @property
    def machine(self) -> str:
        return self.data["machine"]

    @property
    def target(self) -> str:
        return self.data["target"]["name"]

    @property
    def summary(self) -> str:
        return self.data.get("summary", "")

    @property
    def index(self) -> int:
        """The failing step (a divergence), or the last step run before an error."""
        if self.kind == "divergence":
            return self.data["divergence"]["index"]
        return len(self.steps) - 1


def _fail(source: str, message: str) -> TraceError:
    return TraceError(f"{source}: {message}")


def load_trace(path: str | os.PathLike[str]) -> Trace:
    """Read and validate a trace file; every problem is a one-line :class:`TraceError`.

    Only a regular file is read (a FIFO would block for ever, ``/dev/zero`` never ends), opened
    without blocking and read up to :data:`MAX_TRACE_BYTES` + 1 bytes whatever its size claims.
    """
    source = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise _fail(source, f"cannot read: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _fail(source, "not a regular file")
        raw = os.read(fd, MAX_TRACE_BYTES + 1)
        while len(raw) <= MAX_TRACE_BYTES:
            more = os.read(fd, MAX_TRACE_BYTES + 1 - len(raw))
            if not more:
                break
            raw += more
    except OSError as exc:
        raise _fail(source, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_TRACE_BYTES:
        raise _fail(source, f"too big for a trace (limit {MAX_TRACE_BYTES} bytes)")
    return parse_trace(raw, source=source)


def parse_trace(raw: str | bytes, *, source: str = "<trace>") -> Trace:
    """Validate ``raw`` JSON text as a trace (see :func:`load_trace`)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise _fail(source, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if len(text) > MAX_TRACE_BYTES:
        raise _fail(source, f"too big for a trace (limit {MAX_TRACE_BYTES} bytes)")
    if not text.strip():
        raise _fail(source, "empty file")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        hint = " (truncated?)" if exc.pos >= len(text.rstrip()) - 1 else ""
        raise _fail(source, f"not valid JSON{hint}: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise _fail(source, "JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with too many digits, NaN
        raise _fail(source, f"not acceptable JSON: {_one_line(str(exc), 120)}") from None
    return validate_trace(data, source=source)


def _oversized(values: list[Any]) -> str | None:
    """Why a step's arguments exceed the trace limits (:data:`MAX_ITEMS_PER_STEP`, :data:`MAX_INT_BITS`), if they do."""
    items, todo = 0, list(values)
    while todo:
        value = todo.pop()
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            if value.bit_length() > MAX_INT_BITS:
                return f"an integer of {value.bit_length()} bits (limit {MAX_INT_BITS})"
        elif isinstance(value, (str, bytes)):
            items += len(value)
        elif isinstance(value, dict):
            items += len(value)
            todo.extend(value.keys())
            todo.extend(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            items += len(value)
            todo.extend(value)
        elif attrs.has(type(value)):
            todo.extend(getattr(value, f.name) for f in attrs.fields(type(value)))
        if items > MAX_ITEMS_PER_STEP:
            return f"more than {MAX_ITEMS_PER_STEP} items in its arguments"
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a trace")


def _require(data: Mapping[str, Any], key: str, types: type | tuple[type, ...], source: str,
             what: str | None = None) -> Any:
    if key not in data:
        raise _fail(source, f"missing field {what or key!r}")
    value = data[key]
    if not isinstance(value, types) or isinstance(value, bool) and bool not in _as_tuple(types):
        raise _fail(source, f"field {what or key!r} must be {_type_names(types)}, not {type(value).__name__}")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _type_names(types: type | tuple[type, ...]) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", type(None): "null"}
    return " or ".join(names.get(t, t.__name__) for t in _as_tuple(types))


def validate_trace(data: Any, *, source: str = "<trace>") -> Trace:
    """Check the structure of a decoded trace and decode its steps."""
    if not isinstance(data, dict):
        raise _fail(source, f"a trace is a JSON object, not {type(data).__name__}")
    if "schema_version" not in data:
        raise _fail(source, "missing 'schema_version' (is this a kvspec trace?)")
    version = data["schema_version"]
    if type(version) is not int or version != SCHEMA_VERSION:
        raise _fail(source, f"unsupported trace schema version {str(version)[:40]!r}; "
                            f"this kvspec ({__version__}) reads version {SCHEMA_VERSION}")
    kind = data.get("kind", "divergence")  # version-1 traces written before 'kind' existed
    if kind not in KINDS:
        raise _fail(source, f"unknown trace kind {str(kind)[:40]!r} (expected {' or '.join(KINDS)})")
    machine = _require(data, "machine", str, source)
    if not machine:
        raise _fail(source, "field 'machine' is empty")
    target = _require(data, "target", dict, source)
    name = _require(target, "name", str, source, "target.name")
    if not name:
        raise _fail(source, "field 'target.name' is empty")
    if "mode" in target and target["mode"] not in MODES:
        raise _fail(source, f"unknown target mode {str(target['mode'])[:40]!r}")
    if "version" in target and not isinstance(target["version"], str):
        raise _fail(source, "field 'target.version' must be a string")
    for key, types in (("profile", (str, type(None))), ("seed", (int, type(None))), ("summary", str)):
        if key in data:
            _require(data, key, types, source)
    raw_steps = _require(data, "steps", list, source)
    if not raw_steps:
        raise _fail(source, "a trace needs at least one step")
    if len(raw_steps) > MAX_STEPS:
        raise _fail(source, f"{len(raw_steps)} steps is more than a trace may hold ({MAX_STEPS})")
    steps = []
    created: set[str] = set()
    for i, raw in enumerate(raw_steps):
        try:
            step = Step.from_json(raw)
        except (codec.DecodeError, TypeError, ValueError) as exc:
            raise _fail(source, f"step {i + 1}: {_one_line(str(exc), 160)}") from None
        except RecursionError:
            raise _fail(source, f"step {i + 1}: nested too deeply") from None
        if not step.subject:
            raise _fail(source, f"step {i + 1}: empty subject")
        problem = _oversized([*step.args, *step.kwargs.values()])
        if problem:
            raise _fail(source, f"step {i + 1}: {problem}")
        if not all(isinstance(k, str) and k.isidentifier() for k in step.kwargs):
            raise _fail(source, f"step {i + 1}: keyword argument names must be identifiers")
        if step.is_create:
            if not step.cls.isidentifier():
                raise _fail(source, f"step {i + 1}: {step.cls[:40]!r} is not a class name")
            created.add(step.subject)
        elif step.subject not in created:
            raise _fail(source, f"step {i + 1} ({_one_line(step.describe(), 100)}) uses {step.subject!r} "
                                f"before any step creates it")
        steps.append(step)
    if kind == "divergence":
        div = _require(data, "divergence", dict, source)
        index = _require(div, "index", int, source, "divergence.index")
        if not 0 <= index < len(steps):
            raise _fail(source, f"divergence.index {index} is outside the {len(steps)} steps")
        for side in ("expected", "actual"):
            if side in div and not isinstance(div[side], dict):
                raise _fail(source, f"field 'divergence.{side}' must be an object")
        if "differences" in div and not (isinstance(div["differences"], list)
                                         and all(isinstance(d, str) for d in div["differences"])):
            raise _fail(source, "field 'divergence.differences' must be a list of strings")
    else:
        err = _require(data, "error", dict, source)
        _require(err, "type", str, source, "error.type")
    return Trace({**data, "kind": kind}, tuple(steps), source)


def recorded_outcome(trace: Trace, side: str) -> dict[str, Any]:
    """The recorded ``expected``/``actual`` outcome at the divergence (decoded leniently)."""
    raw = trace.data.get("divergence", {}).get(side) or {}
    out: dict[str, Any] = {}
    for key in ("value", "error", "message"):
        out[key] = _decode_lenient(raw.get(key))
    observed = raw.get("observed") if isinstance(raw.get("observed"), dict) else {}
    out["observed"] = {k: _decode_lenient(v) for k, v in observed.items()}
    return out


def _decode_lenient(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$repr"}:
        return _Repr(str(value["$repr"]))
    try:
        return codec.decode(value)
    except (codec.DecodeError, RecursionError, TypeError):
        return _Repr(json.dumps(value)[:200])


class _Repr(str):
    """A recorded value kvspec could not decode; shown as recorded."""

    def __repr__(self) -> str:
        return str(self)
