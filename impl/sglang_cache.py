"""SGLang's ``RadixCache`` (LRU): evictable leaves kept incrementally, eviction by a heap.

Same observables as the reference model (``kvspec.model.SglangRadixCache``, where the rules are
stated).  Costs: ``insert`` / ``match`` / ``lock`` O(path length); ``evict`` O(k log L) for k
evicted nodes among L evictable leaves (a heap of ``(stamp, node id)``; stamps never tie);
``_check()`` O(nodes): the leaf set is exactly the unlocked childless nodes, lock counts equal the
live locks through each node.
"""

from __future__ import annotations

import heapq
from typing import Any

from kvspec import checks
from kvspec.errors import InvalidArgument
from kvspec.events import Cleared, KvCacheEvent, Removed, Stored, StoredBlock
from kvspec.hashing import block_hashes, sequence_hashes

__all__ = ["SglangRadixCache"]


_tokens = checks.sglang_tokens


class _Node:
    __slots__ = ("key", "parent", "children", "lock", "stamp", "hashes", "id")

    def __init__(self, key, parent, stamp, node_id):
        self.key, self.parent, self.children, self.lock, self.stamp = key, parent, {}, 0, stamp
        self.hashes: list[int] = []  # chained hashes of this node's pages
        self.id = node_id


class SglangRadixCache:
    def __init__(self, page_size: int = 1) -> None:
        if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1:
            raise InvalidArgument(f"page_size must be a positive int, got {page_size!r}")
        self.page_size = page_size
        self._clock = 0
        self._ids = 0
        self.root = self._node((), None)
        self.root.lock = 1
        self._leaves: set[_Node] = set()
        self._locks: dict[int, _Node] = {}
        self._next_lock = 0
        self._events: list[Any] = [Cleared()]
        self._event_id = 0

    def _now(self) -> int:
        self._clock += 1
        return self._clock

    def _node(self, key, parent) -> _Node:
        self._ids += 1
        return _Node(key, parent, self._now(), self._ids)

    def _status(self, node: _Node) -> None:
        if node is not self.root and node.lock == 0 and not node.children:
            self._leaves.add(node)
        else:
            self._leaves.discard(node)

    def _ck(self, key):
        return key[: self.page_size]

    def _split(self, child: _Node, at: int) -> _Node:
        upper = self._node(child.key[:at], child.parent)
        upper.lock = child.lock
        pages = at // self.page_size
        upper.hashes, child.hashes = child.hashes[:pages], child.hashes[pages:]
        child.parent.children[self._ck(child.key)] = upper
        child.key = child.key[at:]
        child.parent = upper
        upper.children[self._ck(child.key)] = child
        return upper

    def _walk(self, key, now):
        node, matched = self.root, 0
        node.stamp = now
        while key and self._ck(key) in node.children:
            child = node.children[self._ck(key)]
            child.stamp = now
            n = 0
            limit = min(len(child.key), len(key))
            while n < limit and child.key[n] == key[n]:
                n += 1
            n = n // self.page_size * self.page_size
            if n < len(child.key):
                return matched + n, self._split(child, n)
            node, matched, key = child, matched + n, key[n:]
        return matched, node

    def _aligned(self, tokens):
        return tuple(tokens[: len(tokens) // self.page_size * self.page_size])

    def match(self, tokens: list[int]) -> int:
        key = self._aligned(_tokens(tokens))
        return self._walk(key, self._now())[0] if key else 0

    def insert(self, tokens: list[int]) -> int:
        key = self._aligned(_tokens(tokens))
        now = self._now()
        if not key:
            return 0
        matched, node = self._walk(key, now)
        rest = key[matched:]
        if rest:
            leaf = self._node(rest, node)
            parent_hash = node.hashes[-1] if node.hashes else None
            locals_ = block_hashes(list(rest), self.page_size)
            leaf.hashes = sequence_hashes(locals_, parent_hash)
            node.children[self._ck(rest)] = leaf
            self._status(node)
            self._status(leaf)
            blocks = [StoredBlock(h, t) for h, t in zip(leaf.hashes, locals_)]
            tail = self._events[-1] if self._events else None
            if isinstance(tail, Stored) and tail.blocks and parent_hash == tail.blocks[-1].block_hash:
                self._events[-1] = Stored(tail.parent_hash, [*tail.blocks, *blocks])
            else:
                self._events.append(Stored(parent_hash, blocks))
        return matched

    def lock(self, tokens: list[int]) -> int:
        key = self._aligned(_tokens(tokens))
        node = self._walk(key, self._now())[1] if key else self.root
        lock_id = self._next_lock
        self._next_lock += 1
        self._locks[lock_id] = node
        while node is not self.root:
            node.lock += 1
            self._status(node)
            node = node.parent
        return lock_id

    def unlock(self, lock_id: int) -> None:
        node = self._locks.pop(lock_id, None) if isinstance(lock_id, int) else None
        if node is None:
            raise InvalidArgument(f"no lock {lock_id!r}")
        while node is not self.root:
            node.lock -= 1
            self._status(node)
            node = node.parent

    def evict(self, num_tokens: int) -> int:
        if not isinstance(num_tokens, int) or isinstance(num_tokens, bool) or num_tokens < 0:
            raise InvalidArgument(f"num_tokens must be a non-negative int, got {num_tokens!r}")
        heap = [(n.stamp, n.id, n) for n in self._leaves]
        heapq.heapify(heap)
        evicted = 0
        while evicted < num_tokens and heap:
            _, _, victim = heapq.heappop(heap)
            evicted += len(victim.key)
            parent = victim.parent
            del parent.children[self._ck(victim.key)]
            self._leaves.discard(victim)
            self._status(parent)
            if not parent.children and parent.lock == 0:
                heapq.heappush(heap, (parent.stamp, parent.id, parent))
            tail = self._events[-1] if self._events else None
            if isinstance(tail, Removed):
                self._events[-1] = Removed([*tail.block_hashes, *victim.hashes])
            else:
                self._events.append(Removed(victim.hashes))
        return evicted

    def _all(self):
        out, stack = [], [(c, ()) for c in self.root.children.values()]
        while stack:
            n, prefix = stack.pop()
            path = prefix + n.key
            out.append((n, path))
            stack.extend((c, path) for c in n.children.values())
        return out

    def nodes(self):
        return sorted((path, n.lock) for n, path in self._all())

    def drain_events(self):
        out = []
        for data in self._events:
            out.append(KvCacheEvent(self._event_id, data))
            self._event_id += 1
        self._events = []
        return out

    def held_hashes(self):
        return {h for n, _ in self._all() for h in n.hashes}

    def _check(self) -> None:
        nodes = [n for n, _ in self._all()]
        assert self._leaves == {n for n in nodes if n.lock == 0 and not n.children}, "leaf set is stale"
        through = {id(n): 0 for n in nodes}
        for node in self._locks.values():
            while node is not self.root:
                through[id(node)] += 1
                node = node.parent
        assert all(n.lock == through[id(n)] for n in nodes), "lock counts differ from the live locks"
