"""Reference model of SGLang 0.5.23's ``RadixCache`` with LRU eviction (node-granular leaf LRU).

Rules (each stated once):

* **Pages.**  Keys are cut to a multiple of ``page_size`` tokens; a node's key is one or more whole
  pages; children are keyed by their first page.
* **Clock.**  Every operation reads the clock once (``now``) and stamps every node it walks
  through; a node created (a new leaf, or the upper half of a split) is stamped with a later,
  fresh reading.  The clock strictly increases (the adapter makes SGLang's clock a counter).
* **Match** walks the longest cached prefix; when it ends inside a node, the node is **split**
  there (silently: no event).  ``match`` returns the matched length.
* **Insert** walks like match (splitting where the key diverges inside a node) and hangs the rest
  as one new leaf; it returns the length that was already cached.  One ``Stored`` per new leaf:
  a hash per page, parent = the last page of the parent node (``None`` under the root).
* **Lock** (``lock(tokens)``: match, then ``inc_lock_ref`` on the last node) pins that node and its
  ancestors; ``unlock(lock id)`` releases them.  A split copies the lock count to the new upper node.
* **Evict** (``evict(n)``): evictable leaves (unlocked, childless) leave oldest-stamp first, whole,
  until ``n`` tokens are freed; a parent that becomes an unlocked leaf competes at once with its
  own stamp.  One ``Removed`` per evicted node listing its pages, consecutive removals coalesced
  into one event (as SGLang's recorder does); consecutive chaining stores are coalesced too.
* **Cleared** is published once, at construction.
* **Hashes** are kvspec's chained hashes of the pages from the root (SGLang's own are signed int64
  SHA-256 prefixes; the adapter translates).

>>> cache = SglangRadixCache(2)
>>> [type(e.data).__name__ for e in cache.drain_events()]
['Cleared']
>>> cache.insert([1, 2, 3, 4]), cache.match([1, 2, 9, 9]), cache.nodes()
(0, 2, [((1, 2), 0), ((1, 2, 3, 4), 0)])
>>> cache.evict(2), cache.nodes()
(2, [((1, 2), 0)])
"""

from __future__ import annotations

from typing import Any

from kvspec import checks
from kvspec.errors import InvalidArgument
from kvspec.events import Cleared, KvCacheEvent, Removed, Stored, StoredBlock
from kvspec.hashing import block_hashes, sequence_hashes

__all__ = ["SglangRadixCache"]


_tokens = checks.sglang_tokens


class _Node:
    def __init__(self, key: tuple[int, ...], parent: _Node | None, stamp: int) -> None:
        self.key = key
        self.parent = parent
        self.children: dict[tuple[int, ...], _Node] = {}
        self.lock = 0
        self.stamp = stamp

    def path(self) -> tuple[int, ...]:
        return (self.parent.path() if self.parent is not None else ()) + self.key


class SglangRadixCache:
    """SGLang's ``RadixCache`` (LRU policy) as its scheduler drives it; see the module rules."""

    def __init__(self, page_size: int = 1) -> None:
        if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1:
            raise InvalidArgument(f"page_size must be a positive int, got {page_size!r}")
        self.page_size = page_size
        self._clock = 0
        self.root = _Node((), None, self._now())
        self.root.lock = 1
        self._locks: dict[int, _Node] = {}
        self._next_lock = 0
        #: kvspec event data, coalesced; ids assigned when drained (a new cache announces a clear)
        self._events: list[Any] = [Cleared()]
        self._event_id = 0

    def _now(self) -> int:
        self._clock += 1
        return self._clock

    def _aligned(self, tokens: list[int]) -> tuple[int, ...]:
        return tuple(tokens[: len(tokens) // self.page_size * self.page_size])

    def _child_key(self, key: tuple[int, ...]) -> tuple[int, ...]:
        return key[: self.page_size]

    def _common(self, a: tuple[int, ...], b: tuple[int, ...]) -> int:
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n // self.page_size * self.page_size

    def _split(self, child: _Node, at: int) -> _Node:
        upper = _Node(child.key[:at], child.parent, self._now())
        upper.lock = child.lock
        child.parent.children[self._child_key(child.key)] = upper
        child.key = child.key[at:]
        child.parent = upper
        upper.children[self._child_key(child.key)] = child
        return upper

    def _walk(self, key: tuple[int, ...], now: int) -> tuple[int, _Node]:
        """Match ``key`` from the root, stamping every node walked; split where it stops inside."""
        node, matched = self.root, 0
        node.stamp = now
        while key and self._child_key(key) in node.children:
            child = node.children[self._child_key(key)]
            child.stamp = now
            n = self._common(child.key, key)
            if n < len(child.key):
                node = self._split(child, n)
                matched += n
                key = key[n:]
                break
            node, matched, key = child, matched + n, key[n:]
        return matched, node

    # --- operations --------------------------------------------------------------------------------

    def match(self, tokens: list[int]) -> int:
        key = self._aligned(_tokens(tokens))
        if not key:
            return 0
        return self._walk(key, self._now())[0]

    def insert(self, tokens: list[int]) -> int:
        key = self._aligned(_tokens(tokens))
        now = self._now()
        if not key:
            return 0
        matched, node = self._walk(key, now)
        rest = key[matched:]
        if rest:
            leaf = _Node(rest, node, self._now())
            node.children[self._child_key(rest)] = leaf
            self._record_store(leaf)
        return matched

    def lock(self, tokens: list[int]) -> int:
        """Match ``tokens`` and pin the last matched node and its ancestors; returns a lock id."""
        key = self._aligned(_tokens(tokens))
        node = self._walk(key, self._now())[1] if key else self.root
        lock_id = self._next_lock
        self._next_lock += 1
        self._locks[lock_id] = node
        while node is not self.root:
            node.lock += 1
            node = node.parent
        return lock_id

    def unlock(self, lock_id: int) -> None:
        node = self._locks.pop(lock_id, None) if isinstance(lock_id, int) else None
        if node is None:
            raise InvalidArgument(f"no lock {lock_id!r}")
        while node is not self.root:
            node.lock -= 1
            node = node.parent

    def evict(self, num_tokens: int) -> int:
        if not isinstance(num_tokens, int) or isinstance(num_tokens, bool) or num_tokens < 0:
            raise InvalidArgument(f"num_tokens must be a non-negative int, got {num_tokens!r}")
        candidates = [n for n in self._all() if n.lock == 0 and not n.children]
        evicted = 0
        while evicted < num_tokens and candidates:
            victim = min(candidates, key=lambda n: n.stamp)
            candidates.remove(victim)
            evicted += len(victim.key)
            parent = victim.parent
            del parent.children[self._child_key(victim.key)]
            if not parent.children and parent.lock == 0:
                candidates.append(parent)
            self._record_remove(victim)
        return evicted

    # --- observers ---------------------------------------------------------------------------------

    def nodes(self) -> list[tuple[tuple[int, ...], int]]:
        """``(token path from the root, lock count)`` of every node, sorted."""
        return sorted((n.path(), n.lock) for n in self._all())

    def drain_events(self) -> list[KvCacheEvent]:
        out = []
        for data in self._events:
            out.append(KvCacheEvent(self._event_id, data))
            self._event_id += 1
        self._events = []
        return out

    def held_hashes(self) -> set[int]:
        return {h for n in self._all() for h in self._page_hashes(n)}

    # --- helpers -----------------------------------------------------------------------------------

    def _all(self) -> list[_Node]:
        out, stack = [], list(self.root.children.values())
        while stack:
            n = stack.pop()
            out.append(n)
            stack.extend(n.children.values())
        return out

    def _page_hashes(self, node: _Node) -> list[int]:
        path = node.path()
        chain = sequence_hashes(block_hashes(list(path), self.page_size))
        return chain[-(len(node.key) // self.page_size):]

    def _record_store(self, leaf: _Node) -> None:
        hashes = self._page_hashes(leaf)
        parent = self._page_hashes(leaf.parent)[-1] if leaf.parent is not self.root else None
        blocks = [StoredBlock(h, t) for h, t in zip(hashes, block_hashes(list(leaf.key), self.page_size))]
        tail = self._events[-1] if self._events else None
        if isinstance(tail, Stored) and tail.blocks and parent == tail.blocks[-1].block_hash:
            self._events[-1] = Stored(tail.parent_hash, [*tail.blocks, *blocks])
            return
        self._events.append(Stored(parent, blocks))

    def _record_remove(self, node: _Node) -> None:
        path = node.path()
        chain = sequence_hashes(block_hashes(list(path), self.page_size))
        hashes = chain[-(len(node.key) // self.page_size):]
        tail = self._events[-1] if self._events else None
        if isinstance(tail, Removed):
            self._events[-1] = Removed([*tail.block_hashes, *hashes])
            return
        self._events.append(Removed(hashes))
