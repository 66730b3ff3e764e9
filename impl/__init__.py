"""The optimized implementation: same class names and interfaces as :mod:`kvspec.model`.

It must agree with the model on every observable (return values, errors, the exact event stream,
eviction order, match scores) while using the right data structures.  Every structure documents
its invariants and complexity next to the code and has a ``_check()``.  Never imports the model.
"""

from kvspec._exports import EXPORTS, lazy_getattr

__all__ = sorted(EXPORTS)


def __getattr__(name: str):
    return lazy_getattr(__name__, name)
