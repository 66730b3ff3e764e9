"""The reference model: small, literal, obviously correct — the spec of how KV blocks live and die.

Each concept has its own module (``pool``, ``eviction``, ``manager``, ``legacy``, ``radix``,
``tiered``, ``tracker``); this package exposes their classes under the names every target shares.
Clarity beats speed here: a reader checks the model by reading it.
"""

from kvspec._exports import EXPORTS, lazy_getattr

__all__ = sorted(EXPORTS)


def __getattr__(name: str):
    return lazy_getattr(__name__, name)
