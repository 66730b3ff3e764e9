"""Lossless JSON encoding of the values kvspec passes around (steps, outcomes, traces).

Plain JSON covers ``None``, booleans, integers, floats, strings and lists.  Everything else is a
JSON object with exactly one ``$``-tag, so decoding is unambiguous and can only ever build the
types registered here (no pickle, no ``eval``, no import by name).  Which types those are is
one explicit list, :data:`kvspec.vocabulary.TYPES`, registered when ``kvspec`` is imported:

* ``{"$tuple": [...]}`` — a tuple;
* ``{"$dict": [[key, value], ...]}`` — a dict (keys may be any encodable value);
* ``{"$set": [...]}`` — a set or frozenset (decoded as frozenset, items sorted when possible);
* ``{"$type": "Name", "fields": {...}}`` — a registered attrs value class;
* ``{"$enum": "Name", "value": ...}`` — a registered enum member.

:func:`canonical` is the comparison form: tuples become lists, sets sorted lists, attrs values
stay as they are.  Two observations are "the same" when their canonical forms are equal, so an
adapter that returns a tuple where the model returns a list is not a divergence.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

_TYPES: dict[str, type] = {}


def register(cls: type) -> type:
    """Make ``cls`` (an attrs class or an Enum) encodable; usable as a class decorator."""
    if not (attrs.has(cls) or (isinstance(cls, type) and issubclass(cls, enum.Enum))):
        raise TypeError(f"{cls!r} is neither an attrs class nor an Enum")
    existing = _TYPES.get(cls.__name__)
    if existing is not None and existing is not cls:
        raise TypeError(f"two encodable types named {cls.__name__}")
    _TYPES[cls.__name__] = cls
    return cls


def registered_types() -> dict[str, type]:
    return dict(_TYPES)


def _sort_key(item: Any) -> Any:
    return repr(item)


def encode(value: Any) -> Any:
    """The JSON-compatible form of ``value``; raises TypeError for an unregistered type."""
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, enum.Enum):
            return _encode_enum(value)
        return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, dict):
        return {"$dict": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, (set, frozenset)):
        return {"$set": [encode(v) for v in sorted(value, key=_sort_key)]}
    if isinstance(value, enum.Enum):
        return _encode_enum(value)
    cls = type(value)
    if attrs.has(cls) and _TYPES.get(cls.__name__) is cls:
        return {
            "$type": cls.__name__,
            "fields": {a.name: encode(getattr(value, a.name)) for a in attrs.fields(cls) if a.init},
        }
    raise TypeError(f"cannot encode {value!r} of type {cls.__name__}")


def _encode_enum(value: enum.Enum) -> Any:
    if _TYPES.get(type(value).__name__) is not type(value):
        raise TypeError(f"enum {type(value).__name__} is not registered")
    return {"$enum": type(value).__name__, "value": value.value}


class DecodeError(ValueError):
    """The JSON does not describe an encodable value."""


def decode(obj: Any) -> Any:
    """Inverse of :func:`encode`; raises :class:`DecodeError` on anything it did not produce."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict) or len(obj) not in (1, 2):
        raise DecodeError(f"unexpected JSON value {str(obj)[:80]}")
    if "$tuple" in obj and len(obj) == 1 and isinstance(obj["$tuple"], list):
        return tuple(decode(v) for v in obj["$tuple"])
    if "$dict" in obj and len(obj) == 1 and isinstance(obj["$dict"], list):
        out = {}
        for pair in obj["$dict"]:
            if not isinstance(pair, list) or len(pair) != 2:
                raise DecodeError("a $dict entry must be a [key, value] pair")
            key = decode(pair[0])
            try:
                out[key] = decode(pair[1])
            except TypeError:
                raise DecodeError(f"unhashable dict key {pair[0]!r}") from None
        return out
    if "$set" in obj and len(obj) == 1 and isinstance(obj["$set"], list):
        try:
            return frozenset(decode(v) for v in obj["$set"])
        except TypeError:
            raise DecodeError("unhashable set member") from None
    if "$type" in obj and isinstance(obj.get("fields"), dict):
        cls = _TYPES.get(obj["$type"])
        if cls is None or not attrs.has(cls):
            raise DecodeError(f"unknown type {obj['$type']!r}")
        fields = {k: decode(v) for k, v in obj["fields"].items()}
        try:
            return cls(**fields)
        except Exception as exc:  # validators reject impossible values; report, never crash
            raise DecodeError(f"invalid {cls.__name__}: {exc}") from None
    if "$enum" in obj and "value" in obj:
        cls = _TYPES.get(obj["$enum"])
        if cls is None or not issubclass(cls, enum.Enum):
            raise DecodeError(f"unknown enum {obj['$enum']!r}")
        try:
            return cls(obj["value"])
        except ValueError:
            raise DecodeError(f"{obj['value']!r} is not a {cls.__name__}") from None
    raise DecodeError(f"unexpected JSON object with keys {sorted(obj)[:4]}")


def canonical(value: Any) -> Any:
    """The comparison form of a value: tuples as lists, sets as sorted lists, dicts recursed."""
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(v) for v in value), key=_sort_key)
    if isinstance(value, dict):
        return {_hashable(canonical(k)): canonical(v) for k, v in value.items()}
    return value


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value
