"""Readable failures: structural diffs of values, and each step marked in-contract or adversarial.

:func:`structural_diff` says *where* two values differ — which list element is missing or extra,
which field of a value type, which dictionary key — instead of a line diff of pretty-printed text;
when the two sides print alike it says that their *types* differ (an adapter returning its own
``OverlapScores`` instead of :class:`kvspec.scores.OverlapScores`).

:func:`step_contract` classifies a step.  The rule, one for every step kind: a step is
**in-contract** when the reference model accepts it (returns without a :mod:`kvspec.errors` error):
a conforming engine or caller can produce it, and the target must behave exactly as the model.  It
is **adversarial** when the model rejects it with a kvspec error (an unknown parent, a block not
held, a malformed argument): no conforming caller sends it; it checks robustness only — the target
must raise the same error class and change nothing (a partial-effect error such as the radix
index's ``BlockNotFound`` applies the rest of its event).

>>> structural_diff([1, 2, 3], [1, 3])
['element [1]: target lacks 2']
>>> structural_diff({"a": 1}, {"a": 1, "b": 2})
["key 'b': extra in target: 2"]
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import attrs

from kvspec import codec

__all__ = ["TYPE_NOTE", "step_contract", "structural_diff"]

TYPE_NOTE = ("the two sides print alike but their types differ: return kvspec's own types "
             "(docs/adapters.md lists them with their import paths)")


def _canon(value: Any) -> Any:
    try:
        return codec.canonical(value)
    except Exception:  # noqa: BLE001 - an odd value: compare by repr
        return ("<repr>", repr(value))


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value: Any) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def structural_diff(want: Any, got: Any, path: str = "", *, limit: int = 12) -> list[str]:
    """Where ``got`` (the target's) differs from ``want`` (the model's), one line per difference.

    Lists and tuples are aligned (a missing or extra element is named, not every later one);
    value types (attrs classes) are compared field by field; dictionaries key by key.  Values are
    compared as kvspec compares them (:func:`kvspec.codec.canonical`).
    """
    out: list[str] = []
    _diff(want, got, path, out)
    if len(out) > limit:
        out = out[:limit] + [f"... and {len(out) - limit} more differences"]
    return out


def _where(path: str) -> str:
    return path or "value"


def _diff(want: Any, got: Any, path: str, out: list[str]) -> None:
    if _canon(want) == _canon(got):
        if type(want) is not type(got) and repr(want) == repr(got) and not _builtin_pair(want, got):
            out.append(f"{_where(path)}: same value, different types: model {_type_name(want)}, "
                       f"target {_type_name(got)} ({TYPE_NOTE})")
        return
    if repr(want) == repr(got):
        out.append(f"{_where(path)}: prints alike, but model has {_type_name(want)}, target {_type_name(got)} "
                   f"({TYPE_NOTE})")
        return
    if isinstance(want, (list, tuple)) and isinstance(got, (list, tuple)):
        _diff_sequences(list(want), list(got), path, out)
        return
    if isinstance(want, Mapping) and isinstance(got, Mapping):
        for key in sorted(set(want) | set(got), key=repr):
            where = f"{path}[{key!r}]" if path else f"key {key!r}"
            if key not in got:
                out.append(f"{where}: missing in target (model: {_short(want[key])})")
            elif key not in want:
                out.append(f"{where}: extra in target: {_short(got[key])}")
            else:
                _diff(want[key], got[key], where, out)
        return
    if attrs.has(type(want)) and type(want) is type(got):
        for field in attrs.fields(type(want)):
            _diff(getattr(want, field.name), getattr(got, field.name), f"{path}.{field.name}" if path
                  else f"field {field.name}", out)
        return
    if type(want) is not type(got) and not _builtin_pair(want, got):
        out.append(f"{_where(path)}: model {_short(want)} ({_type_name(want)}), "
                   f"target {_short(got)} ({_type_name(got)})")
        return
    out.append(f"{_where(path)}: model {_short(want)}, target {_short(got)}")


def _builtin_pair(a: Any, b: Any) -> bool:
    """Types kvspec compares as equal on purpose (a tuple equals a list, a set a sorted list)."""
    plain = (list, tuple, set, frozenset, int, float, bool, str, type(None), dict)
    return isinstance(a, plain) and isinstance(b, plain)


def _diff_sequences(want: list, got: list, path: str, out: list[str]) -> None:
    a, b = [repr(_canon(x)) for x in want], [repr(_canon(x)) for x in got]
    if sorted(a) == sorted(b):  # a reordering: say which elements moved, not "lacks" and "extra"
        where = f"{path}: " if path else ""
        moved = [f"{_short(want[i], 80)} at [{i}] in the model, [{b.index(x)}] in the target"
                 for i, x in enumerate(a) if b[i] != x and a.count(x) == 1]
        out.append(f"{where}same elements in another order" + (": " + "; ".join(moved) if moved else ""))
        return
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        if op == "replace" and i2 - i1 == j2 - j1:
            for k in range(i2 - i1):
                _diff(want[i1 + k], got[j1 + k], f"{path}[{i1 + k}]" if path else f"element [{i1 + k}]", out)
            continue
        if op in ("delete", "replace"):
            for k in range(i1, i2):
                out.append(f"{path}[{k}]: target lacks {_short(want[k])}" if path
                           else f"element [{k}]: target lacks {_short(want[k])}")
        if op in ("insert", "replace"):
            for k in range(j1, j2):
                out.append(f"{path}[{k}]: extra in target: {_short(got[k])}" if path
                           else f"element [{k}]: extra in target: {_short(got[k])}")


def step_contract(expected_error: str | None, partial_errors: tuple[str, ...] | frozenset = ()) -> tuple[str, str]:
    """``("in-contract" | "adversarial", the reason)`` of a step whose model outcome is ``expected_error``.

    See the module docstring for the rule.

    >>> step_contract(None)
    ('in-contract', 'the model accepts it')
    >>> step_contract("ParentBlockNotFound")[0]
    'adversarial'
    """
    if expected_error is None:
        return "in-contract", "the model accepts it"
    if expected_error.startswith("crash:"):
        return "in-contract", "the model itself failed"
    effect = "the rest of it applies" if expected_error in partial_errors else "nothing changes"
    return "adversarial", f"the model rejects it with {expected_error}; {effect}"
