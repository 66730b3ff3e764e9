"""Planted bugs in vLLM's prefix cache and the refcount event filter.

``vllm-prefix-cache`` must catch the cache mutants, ``event-filter`` the filter's.  Two are real
design alternatives a reimplementation gets wrong: releasing cached blocks to the *front* of the
free queue (MRU eviction), and deduplicating a recomputed block instead of caching a second copy.
"""

from __future__ import annotations

from kvspec.stateful.mutants import Mutant


def _release_cached_to_front():
    from kvspec.impl.vllm_cache import HEAD, VllmPrefixCache

    class ReleaseCachedToFront(VllmPrefixCache):
        """Cached blocks go back to the front of the free queue: the newest is evicted first."""

        def _insert_after(self, anchor, b):
            super()._insert_after(HEAD if self._hash[b] is not None else anchor, b)

    return ReleaseCachedToFront


def _dedupe_copies():
    from kvspec.impl.vllm_cache import VllmPrefixCache

    class DedupeCopies(VllmPrefixCache):
        """A block whose hash is already cached is not cached again (and not announced)."""

        def _cache_full(self, req):
            full = min(req.computed, len(req.tokens)) // self.block_size
            for i in range(req.num_cached, full):
                if req.hashes[i] in self._cached:  # leave it unhashed: a private block
                    req.num_cached = full
                    return
            super()._cache_full(req)

    return DedupeCopies


def _filter_drops_untracked():
    from kvspec.impl.event_filter import EventDedupFilter

    class DropsUntracked(EventDedupFilter):
        """A remove of a hash never stored is dropped instead of passed through."""

        def apply(self, event, tier=None):
            from kvspec.events import Removed, StorageTier

            tier = StorageTier.DEVICE if tier is None else tier
            data = getattr(event, "data", None)
            if isinstance(data, Removed):
                tracked = [h for h in data.block_hashes if self.count(h, event.dp_rank, tier)]
                if not tracked:
                    return None
            return super().apply(event, tier)

    return DropsUntracked


MUTANTS = [
    Mutant("vllm-release-cached-to-front", "freed cached blocks join the front of the free queue (MRU)",
           {"VllmPrefixCache": _release_cached_to_front}, ("vllm-prefix-cache",)),
    Mutant("vllm-dedupe-copies", "a recomputed block whose hash is cached is not cached as a second copy",
           {"VllmPrefixCache": _dedupe_copies}, ("vllm-prefix-cache",)),
    Mutant("filter-drops-untracked-remove", "the refcount filter drops removes of hashes it never counted",
           {"EventDedupFilter": _filter_drops_untracked}, ("event-filter",)),
]
