"""Target ``vllm``: vLLM's real scheduler-side KV cache (``KVCacheManager`` over ``BlockPool``) on CPU.

* :mod:`.runtime` — the engine (imported on demand), the manager a scheduler builds, hash and
  event translation;
* :mod:`.prefix_cache` — ``VllmPrefixCache`` over ``KVCacheManager`` (requests, as the scheduler
  drives it), checked exactly against :class:`kvspec.model.VllmPrefixCache`;
* :mod:`.pool` — ``NativeBlockPool`` over ``BlockPool`` (copies, references, LRU), checked exactly
  against :class:`kvspec.model.NativeBlockPool`.

Importing this package (``pyproject.toml`` registers its ``load_target``) never imports vLLM; without vLLM every machine
is reported skipped with the install hint (``kvspec install-engine vllm``).
"""

from typing import Any

from kvspec.adapters.vllm.runtime import ENGINE
from kvspec.targets import Target

__all__ = ["CLASSES", "ENGINE", "load_target"]

#: the classes the target provides once the engine is installed, known without importing it
#: (the regression corpus replays the traces of machines needing only these against the engine)
CLASSES = ("VllmPrefixCache", "NativeBlockPool")


def load_target() -> Target:
    """The ``vllm`` target (exact mode); empty with the install hint when vLLM is absent."""

    def build() -> dict[str, Any]:
        from kvspec.adapters.vllm.pool import NativeBlockPool
        from kvspec.adapters.vllm.prefix_cache import VllmPrefixCache

        return {"VllmPrefixCache": VllmPrefixCache, "NativeBlockPool": NativeBlockPool}

    return ENGINE.target("vllm", build)
