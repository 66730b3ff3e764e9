"""Target ``vllm``: vLLM's real scheduler-side KV cache (``KVCacheManager`` over ``BlockPool``) on CPU.

* :mod:`.runtime` — the engine (imported on demand), the manager a scheduler builds, hash and
  event translation;
* :mod:`.prefix_cache` — ``VllmPrefixCache`` over ``KVCacheManager`` (requests, as the scheduler
  drives it), checked exactly against :class:`kvspec.model.VllmPrefixCache`;
* :mod:`.pool` — ``NativeBlockPool`` over ``BlockPool`` (copies, references, LRU), checked exactly
  against :class:`kvspec.model.NativeBlockPool`.

Importing this package registers the target and never imports vLLM; without vLLM every machine
is reported skipped with the install hint (``kvspec install-engine vllm``).
"""

from kvspec.adapters.vllm.runtime import ENGINE, load_target
from kvspec.targets import register_target

__all__ = ["ENGINE", "load_target"]

register_target("vllm", load_target)
