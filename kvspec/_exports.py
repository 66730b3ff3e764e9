"""Lazy class exports shared by :mod:`kvspec.model` and :mod:`kvspec.impl`.

Both packages expose the same class names (``BlockPool``, ``KvManager``, ...), each defined in a
module named for its concept.  Resolving a name imports only its module, so a target that provides
some classes is usable before the others exist, and a missing module reads as "not provided"
(``AttributeError``) while a *broken* module still raises its real error.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

#: class name -> module (relative to the package) that defines it
EXPORTS = {
    "BlockPool": "pool",
    "KvManager": "manager",
    "LegacyKvManager": "legacy",
    "RadixIndex": "radix",
    "TieredIndex": "tiered",
    "DedupTracker": "tracker",
    "PassthroughTracker": "tracker",
    "NativeBlockPool": "native_pool",
    "ApproxIndex": "approx",
    "RouterIndexer": "approx",
    "OffloadKvManager": "offload",
    "LanedIndex": "lanes",
    "VllmPrefixCache": "vllm_cache",
    "EventDedupFilter": "event_filter",
    "SglangRadixCache": "sglang_cache",
}


def lazy_getattr(package: str, name: str) -> Any:
    module_name = EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    qualified = f"{package}.{module_name}"
    if importlib.util.find_spec(qualified) is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r} ({qualified} does not exist yet)")
    return getattr(importlib.import_module(qualified), name)
