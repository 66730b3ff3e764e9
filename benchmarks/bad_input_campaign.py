"""The hand-written bad-input campaign: every public class, one bad call after a valid prefix.

``kvspec bench bad_input_campaign`` runs every case on :mod:`kvspec.model` and :mod:`kvspec.impl`
and prints one table::

    | cases | typed + unchanged | wrong error type | state changed | model != impl | bad input accepted |

A case is a class, a valid constructor, a valid *prefix* of calls, and one *bad call* (a
constructor or a public method with one bad argument).  Each side builds the object, runs the
prefix, records every public observer, makes the bad call, and records the observers again.  The
case is then put in the first of these bins that applies (so the bins add up to the cases; a
second row counts, for each property, every case that fails it):

1. **bad input accepted** — a side returned normally;
2. **wrong error type** — a side raised something that is not a :class:`kvspec.errors.KvSpecError`;
3. **state changed** — an observer changed, an event was published, or the impl's ``_check()``
   failed on a side;
4. **model != impl** — the two sides raised different error classes, or the same *valid*
   follow-up operation afterwards gave different answers;
5. **typed + unchanged** — the contract holds.

Bad arguments are built lazily, inside the case, because the value types check their fields: a
``FullBlock(-1)`` that cannot be built at all is the contract working (``InvalidArgument`` from the
value type), and counts as raised by the call.  The bad-input families are named in each case id:
wrong type, bool as int, negative, beyond u32/u64, None, NaN/float, string, empty and huge lists,
duplicates in one batch, a bad element third in a batch, unknown enums and ids, subclasses of
value types.  ``tests/unit/test_bad_input_cases.py`` asserts that every case is in bin 5.

The script only uses the public API, so it also runs against an older checkout of kvspec
(``PYTHONPATH=<checkout> python benchmarks/bad_input_campaign.py``) to measure "before".
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BINS", "CASES", "Case", "classify", "index_dump", "main", "observe_kv_manager", "observe_legacy_manager",
           "observe_native_pool", "run_case"]

BINS = ("typed + unchanged", "wrong error type", "state changed", "model != impl", "bad input accepted")
OK = BINS[0]


@dataclass(frozen=True)
class Case:
    """One bad call.  ``bad`` returns ``(method, args, kwargs)``; ``method`` ``"__init__"`` makes
    the constructor itself the bad call.  ``ctor`` is the valid constructor's ``(args, kwargs)``."""

    id: str
    cls: str
    ctor: tuple[tuple, dict]
    prefix: Callable[[Any], None]
    bad: Callable[[], tuple[str, tuple, dict]]
    follow: Callable[[Any], Any]
    observe: Callable[[Any], Any]
    extra: dict = field(default_factory=dict)


# --- the vocabulary, imported lazily so a broken side is a case failure, not an import error ----


def _v():
    from kvspec import events, hashing, protocol, tracker_events

    return protocol, events, hashing, tracker_events


# --- bad values by family ----------------------------------------------------------------------


class _Opaque:
    def __repr__(self) -> str:
        return "<object>"


def int_families(kind: str) -> list[tuple[str, Any]]:
    """Bad values for an int argument of ``kind``: ``u64``, ``u32``, ``size``, ``count``, ``id``."""
    out = [("wrong-type-object", _Opaque()), ("wrong-type-list", [1]), ("bool-true", True),
           ("none", None), ("nan", math.nan), ("float", 1.5), ("string", "1")]
    if kind in ("u64", "u32", "size", "count"):
        out.append(("negative", -1))
    if kind == "u32":
        out.append(("beyond-u32", 2**32))
    if kind in ("u64", "u32"):
        out.append(("beyond-u64", 2**64))
    if kind == "size":
        out += [("zero", 0), ("beyond-capacity-limit", 2**40), ("bool-false", False)]
    return out


def hash_list_families() -> list[tuple[str, Callable[[], Any]]]:
    """Bad values for a list of u64 hashes (built lazily: the huge one is large)."""
    return [
        ("none", lambda: None), ("wrong-type-int", lambda: 5), ("string", lambda: "abc"),
        ("set", lambda: {1, 2}), ("generator", lambda: (h for h in (1, 2))),
        ("third-none", lambda: [11, 12, None]), ("third-negative", lambda: [11, 12, -1]),
        ("third-beyond-u64", lambda: [11, 12, 2**64]), ("third-bool", lambda: [11, 12, True]),
        ("third-float", lambda: [11, 12, 1.5]), ("third-string", lambda: [11, 12, "13"]),
        ("huge-then-bad", lambda: list(range(1, 100_001)) + [-1]),
    ]


def flag_families() -> list[tuple[str, Any]]:
    return [("int-one", 1), ("int-zero", 0), ("none", None), ("string", "yes")]


def enum_families() -> list[tuple[str, Any]]:
    return [("unknown", "bogus"), ("none", None), ("wrong-type-int", 1), ("wrong-case", "LRU"),
            ("bytes", b"lru"), ("list", ["lru"])]


# --- shared helpers ------------------------------------------------------------------------------


def _plh(position, current, parent=None):
    return _v()[2].Plh(position, current, parent)


def _chain(*currents):
    return _v()[2].lineage(list(currents))


def _sub(cls):
    """A subclass of ``cls`` with nothing changed (kvspec refuses subclasses of its value types)."""
    return type(f"My{cls.__name__}", (cls,), {})


def _safe(fn, obj):
    try:
        return ("ok", fn(obj))
    except Exception as exc:  # an observer failing is an observation too
        return ("raised", type(exc).__name__)


# --- BlockPool ---------------------------------------------------------------------------------


def _pool_prefix(pool):
    a, b, c = _chain(1, 2, 3)
    ids = pool.allocate(3)
    pool.register(ids[0], a)
    pool.register(ids[1], b)
    pool.release(ids[1])  # b inactive; ids[2] stays mutable


def _pool_observe(pool):
    a, b, c = _chain(1, 2, 3)
    return (pool.total_blocks(), pool.available_blocks(), pool.inactive_len(), pool.refcounts(),
            pool.eviction_order(), pool.free_blocks(), pool.check_presence([a, b, c]))


def _pool_follow(pool):
    got = pool.allocate_with_evictions(1)
    held = pool.register(got[0][0], _plh(0, 777)) if got else None
    return got, held, _pool_observe(pool), pool.match_blocks([_plh(0, 777)])


def _pool_cases(eviction: str) -> list[Case]:
    ctor = ((4,), {"eviction": eviction, "frequency": "exact"})
    Plh = _v()[2].Plh
    a, b = _chain(1, 2)
    cases: list[tuple[str, Callable]] = []
    for fam, v in int_families("size"):
        cases.append((f"init.total_blocks:{fam}", lambda v=v: ("__init__", (v,), {"eviction": eviction})))
    for name in ("eviction", "duplication"):
        for fam, v in enum_families():
            cases.append((f"init.{name}:{fam}", lambda n=name, v=v: ("__init__", (4,), {n: v})))
    for fam, v in [("unknown", "lfu"), ("zero-sample", "exact:0"), ("bad-sample", "exact:x"),
                   ("negative-sample", "exact:-1"), ("huge-sample", "exact:99999999999"),
                   ("wrong-type-int", 3), ("object-without-methods", _Opaque())]:
        cases.append((f"init.frequency:{fam}", lambda v=v: ("__init__", (4,), {"eviction": eviction, "frequency": v})))
    for fam, v in [("empty", ()), ("two", (3, 8)), ("unordered", (8, 3, 15)), ("beyond-15", (1, 2, 16)),
                   ("zero", (0, 1, 2)), ("bool", (True, 8, 15)), ("float", [3, 8, 15.0]),
                   ("string", "3,8,15"), ("none", None)]:
        cases.append((f"init.thresholds:{fam}",
                       lambda v=v: ("__init__", (4,), {"eviction": eviction, "frequency": "exact", "thresholds": v})))
    for method in ("allocate", "allocate_with_evictions"):
        for fam, v in int_families("count"):
            cases.append((f"{method}.n:{fam}", lambda m=method, v=v: (m, (v,), {})))
    id_bad = [(f, v) for f, v in int_families("id")]
    for method in ("release_mutable", "release"):
        for fam, v in id_bad:
            cases.append((f"{method}.block_id:{fam}", lambda m=method, v=v: (m, (v,), {})))
        state_bad = [("unknown-id", 99), ("negative-id", -1), ("inactive-id", 1), ("free-id", 3)]
        state_bad.append(("held-id", 0) if method == "release_mutable" else ("mutable-id", 2))
        for fam, v in state_bad:
            cases.append((f"{method}.block_id:{fam}", lambda m=method, v=v: (m, (v,), {})))
    for fam, v in id_bad:
        cases.append((f"register.block_id:{fam}", lambda v=v: ("register", (v, _plh(0, 50)), {})))
    for fam, v in [("none", lambda: None), ("int", lambda: 5), ("tuple", lambda: (0, 50)),
                   ("string", lambda: "plh"), ("subclass", lambda: _sub(Plh)(0, 50)),
                   ("position-beyond-2**24", lambda: Plh(2**24, 50)), ("position-negative", lambda: Plh(-1, 50)),
                   ("position-bool", lambda: Plh(True, 50)), ("current-beyond-u64", lambda: Plh(0, 2**64))]:
        cases.append((f"register.plh:{fam}", lambda v=v: ("register", (2, v()), {})))
    for fam, v in [("held-slot", 0), ("inactive-slot", 1), ("free-slot", 3), ("no-slot", 17)]:
        cases.append((f"register.state:{fam}", lambda v=v: ("register", (v, _plh(0, 50)), {})))
    cases.append(("register.lineage:impostor-of-live", lambda: ("register", (2, Plh(0, 1, 99)), {})))
    for method in ("match_blocks", "check_presence"):
        for fam, v in [("none", lambda: None), ("int", lambda: 5), ("plh-not-list", lambda: a),
                       ("string", lambda: "ab"), ("set", lambda: {a}), ("third-none", lambda: [a, b, None]),
                       ("third-int", lambda: [a, b, 5]), ("third-subclass", lambda: [a, b, _sub(Plh)(2, 3, 2)]),
                       ("huge-then-bad", lambda: [_plh(0, i) for i in range(20_000)] + [None])]:
            cases.append((f"{method}.plhs:{fam}", lambda m=method, v=v: (m, (v(),), {})))
    return [Case(f"BlockPool[{eviction}].{cid}", "BlockPool", ctor, _pool_prefix, bad, _pool_follow, _pool_observe)
            for cid, bad in cases]


# --- KvManager and LegacyKvManager --------------------------------------------------------------


def _mgr_prefix(mgr):
    P = _v()[0]
    mgr.process(P.Use([P.FullBlock(1), P.FullBlock(2), P.PartialBlock(7)], [101, 102], _chain(1, 2)))
    mgr.process(P.Use([P.FullBlock(3)], [103], [_plh(0, 3)]))
    mgr.process(P.Deref([P.FullBlock(3)]))  # 3 inactive
    mgr.drain_events()


def _legacy_prefix(mgr):
    P = _v()[0]
    mgr.process(P.Use([P.FullBlock(1), P.FullBlock(2), P.PartialBlock(7)], [101, 102], []))
    mgr.process(P.Use([P.FullBlock(3)], [103], []))
    mgr.process(P.Deref([P.FullBlock(3)]))
    mgr.drain_events()


def observe_kv_manager(mgr):
    return (mgr.num_active_blocks(), mgr.num_active_block_refs(), mgr.num_inactive_blocks(),
            mgr.active_refcounts(), mgr.eviction_order(), mgr.drain_events())


def observe_legacy_manager(mgr):
    return (mgr.current_capacity(), mgr.num_active_blocks(), mgr.num_active_block_refs(),
            mgr.num_inactive_blocks(), mgr.active_blocks(), mgr.eviction_order(), mgr.drain_events())


def _mgr_follow(mgr):
    P = _v()[0]
    done = mgr.process(P.Use([P.FullBlock(900), P.FullBlock(901)], [1, 2], _chain(900, 901)))
    return done, observe_kv_manager(mgr)


def _legacy_follow(mgr):
    P = _v()[0]
    done = mgr.process(P.Use([P.FullBlock(900), P.FullBlock(901)], [1, 2], []))
    return done, observe_legacy_manager(mgr)


def _use_field_cases(legacy: bool) -> list[tuple[str, Callable]]:
    """Bad ``Use`` values (fields, lengths, types) shared by both managers."""
    P = _v()[0]
    FB, PB, Use = P.FullBlock, P.PartialBlock, P.Use
    plhs = (lambda n: []) if legacy else (lambda n: _chain(*range(500, 500 + n)))
    out: list[tuple[str, Callable]] = []
    for fam, v in int_families("u64"):
        out.append((f"Use.blocks.FullBlock.hash:{fam}", lambda v=v: Use([FB(500), FB(v)], [], plhs(2))))
        out.append((f"Use.blocks.PartialBlock.uuid:{fam}", lambda v=v: Use([PB(v)], [], [])))
        out.append((f"Use.local_hashes:third-{fam}",
                    lambda v=v: Use([FB(500), FB(501), FB(502)], [1, 2, v], plhs(3))))
    for fam, v in [("int", 5), ("none", None), ("string", "b"), ("subclass", "sub"), ("third-int", "third")]:
        def build(v=v):
            if v == "sub":
                return Use([FB(500), _sub(FB)(501)], [], plhs(2))
            if v == "third":
                return Use([FB(500), FB(501), 5], [], plhs(3))
            return Use([FB(500), v], [], plhs(2))
        out.append((f"Use.blocks:{fam}", build))
    for fam, v in [("none", None), ("int", 5), ("string", "abc"), ("generator", "gen")]:
        out.append((f"Use.blocks-container:{fam}",
                    lambda v=v: Use((b for b in [FB(500)]) if v == "gen" else v, [], plhs(1))))
    for fam, v in [("negative", [[1, 2, -1]]), ("float", [[1.5]]), ("none", [None]), ("string", "abc"),
                   ("beyond-u32", [[2**32]]), ("bool", [[True]])]:
        out.append((f"Use.token_ids:{fam}", lambda v=v: Use([FB(500)], [], plhs(1), v)))
    for fam, v in [("int", 5), ("string", "p"), ("bad-hash", "bad"), ("subclass", "sub")]:
        def build_parent(v=v):
            parent = FB(-1) if v == "bad" else _sub(FB)(9) if v == "sub" else v
            return Use([FB(500)], [], plhs(1), None, parent)
        out.append((f"Use.parent:{fam}", build_parent))
    out += [
        ("Use.lengths:too-many-local-hashes", lambda: Use([FB(500)], [1, 2], plhs(1))),
        ("Use.lengths:token-lists", lambda: Use([FB(500)], [], plhs(1), [[1], [2]])),
        ("Use.huge:bad-last-block", lambda: Use([FB(h) for h in range(10_000, 30_000)] + [FB(-1)], [], [])),
    ]
    if legacy:
        out += [("Use.parent:not-allowed", lambda: Use([FB(500)], [], [], None, FB(1))),
                ("Use.lengths:plhs-given-wrong-count", lambda: Use([FB(500), FB(501)], [], [_plh(0, 500)]))]
    else:
        out += [
            ("Use.parent:partial", lambda: Use([FB(500)], [], plhs(1), None, PB(7))),
            ("Use.lengths:plhs-missing", lambda: Use([FB(500), FB(501)], [], [])),
            ("Use.lengths:plhs-short", lambda: Use([FB(500), FB(501)], [], plhs(1))),
            ("Use.plhs:third-none", lambda: Use([FB(500), FB(501), FB(502)], [], plhs(2) + [None])),
            ("Use.plhs:third-int", lambda: Use([FB(500), FB(501), FB(502)], [], plhs(2) + [5])),
            ("Use.plhs:subclass", lambda: Use([FB(500)], [], [_sub(_v()[2].Plh)(0, 500)])),
            ("Use.plhs:position-beyond-2**24", lambda: Use([FB(500)], [], [_plh(2**24, 500)])),
            ("Use.lineage:duplicate-key-in-batch", lambda: Use([FB(500), FB(501)], [], [_plh(0, 500), _plh(0, 500, 9)])),
            ("Use.lineage:impostor-of-live", lambda: Use([FB(500)], [], [_plh(0, 1, 77)])),
        ]
    return out


def _manager_cases(cls: str, legacy: bool) -> list[Case]:
    P = _v()[0]
    FB, PB = P.FullBlock, P.PartialBlock
    ctor = ((4, 2), {} if legacy else {"eviction": "lineage"})
    cases: list[tuple[str, Callable]] = []
    for arg in ("capacity", "block_size"):
        for fam, v in int_families("size"):
            cases.append((f"init.{arg}:{fam}",
                          lambda arg=arg, v=v: ("__init__", (v, 2) if arg == "capacity" else (4, v), {})))
    for fam, v in int_families("u32"):
        cases.append((f"init.dp_rank:{fam}", lambda v=v: ("__init__", (4, 2), {"dp_rank": v})))
    if not legacy:
        for fam, v in enum_families():
            cases.append((f"init.eviction:{fam}", lambda v=v: ("__init__", (4, 2), {"eviction": v})))
        for fam, v in [("unknown", "lfu"), ("zero-sample", "exact:0"), ("wrong-type", 3)]:
            cases.append((f"init.frequency:{fam}",
                          lambda v=v: ("__init__", (4, 2), {"eviction": "multi_lru", "frequency": v})))
    kinds = [P.Use, P.Deref, P.Promote] + ([P.Destroy] if legacy else [])
    for fam, v in [("none", None), ("int", 5), ("string", "Use"), ("tuple", ("Use", [])), ("dict", {"Use": []})]:
        cases.append((f"process.op:{fam}", lambda v=v: ("process", (v,), {})))
    for kind in kinds:
        def sub_op(kind=kind):
            Sub = _sub(kind)
            if kind is P.Use:
                return Sub([FB(500)], [], [] if legacy else [_plh(0, 500)])
            if kind is P.Promote:
                return Sub(7, 500, 2, None, _plh(2, 500, 2))
            return Sub([FB(1)])
        cases.append((f"process.op:subclass-of-{kind.__name__}", lambda f=sub_op: ("process", (f(),), {})))
    if not legacy:
        cases.append(("process.op:legacy-only-Destroy", lambda: ("process", (P.Destroy([FB(1)]),), {})))
    for cid, build in _use_field_cases(legacy):
        cases.append((f"process.{cid}", lambda b=build: ("process", (b(),), {})))
    derefs = [("unknown-full", [FB(99)]), ("unknown-partial", [PB(99)]), ("duplicates-beyond-refs", [FB(1), FB(1)]),
              ("third-unknown", [FB(1), FB(2), FB(99)]), ("inactive", [FB(3)]),
              ("huge-unknown", [FB(h) for h in range(10_000, 30_000)])]
    if legacy:
        derefs = []  # the legacy manager ignores unknown blocks in a Deref (upstream): not bad input
        for fam, blocks in [("unknown", [FB(99)]), ("duplicates", [FB(1), FB(1)]), ("third-unknown", [FB(1), FB(2), FB(99)]),
                            ("inactive", [FB(3)])]:
            cases.append((f"process.Destroy:{fam}", lambda b=blocks: ("process", (P.Destroy(b),), {})))
    for fam, blocks in derefs:
        cases.append((f"process.Deref:{fam}", lambda b=blocks: ("process", (P.Deref(b),), {})))
    for fam, v in [("none", None), ("int", 5), ("third-int", "third")]:
        cases.append((f"process.Deref.blocks:{fam}",
                      lambda v=v: ("process", (P.Deref([FB(1), FB(2), 5] if v == "third" else v),), {})))
    promote_plh = (lambda: _plh(2, 500, 2))
    for fam, v in int_families("u64"):
        for fld in ("uuid", "seq_hash", "parent_hash", "local_hash"):
            def build_promote(fld=fld, v=v):
                fields = dict(uuid=7, seq_hash=500, parent_hash=2, local_hash=None, plh=promote_plh())
                if fld in ("parent_hash", "local_hash") and v is None:
                    fields[fld] = "none-is-valid"  # None is a valid optional hash: use a string instead
                else:
                    fields[fld] = v
                return P.Promote(**fields)
            cases.append((f"process.Promote.{fld}:{fam}", lambda b=build_promote: ("process", (b(),), {})))
    cases += [
        ("process.Promote:unknown-uuid", lambda: ("process", (P.Promote(99, 500, 2, None, promote_plh()),), {})),
        ("process.Promote.plh:none", lambda: ("process", (P.Promote(7, 500, 2, None, None),), {})),
        ("process.Promote.plh:subclass", lambda: ("process", (P.Promote(7, 500, 2, None, _sub(_v()[2].Plh)(2, 500, 2)),), {})),
        ("process.Promote.token_ids:negative", lambda: ("process", (P.Promote(7, 500, 2, None, promote_plh(), [1, -1]),), {})),
        ("process.Promote.token_ids:string", lambda: ("process", (P.Promote(7, 500, 2, None, promote_plh(), "ab"),), {})),
    ]
    if not legacy:
        cases.append(("process.Promote.lineage:impostor-of-live",
                      lambda: ("process", (P.Promote(7, 500, 2, None, _plh(0, 1, 55)),), {})))
    for fam, v in [("none", None), ("int", 5), ("string", "seq"), ("op", "op")]:
        cases.append((f"prefill_cost.sequence:{fam}",
                      lambda v=v: ("prefill_cost", (P.Deref([]) if v == "op" else v,), {})))
    if legacy:
        for fam, v in [("none", lambda: None), ("int", lambda: 5), ("string", lambda: "ab"),
                       ("third-int", lambda: [FB(1), FB(2), 3]), ("third-none", lambda: [FB(1), PB(7), None])]:
            cases.append((f"probe_new_blocks.blocks:{fam}", lambda v=v: ("probe_new_blocks", (v(),), {})))
    prefix, follow, observe = ((_legacy_prefix, _legacy_follow, observe_legacy_manager) if legacy
                               else (_mgr_prefix, _mgr_follow, observe_kv_manager))
    return [Case(f"{cls}.{cid}", cls, ctor, prefix, bad, follow, observe) for cid, bad in cases]


# --- RadixIndex and TieredIndex -----------------------------------------------------------------


def _event(data, event_id=0, dp_rank=0):
    return _v()[1].KvCacheEvent(event_id, data, dp_rank)


def _stored(parent, pairs):
    E = _v()[1]
    return E.Stored(parent, [E.StoredBlock(b, t) for b, t in pairs])


def _index_prefix(idx, tiered: bool):
    idx.apply_event(1, _event(_stored(None, [(1, 11), (2, 12), (3, 13)])))
    idx.apply_event(2, _event(_stored(None, [(1, 11), (5, 15)]), dp_rank=1))
    if tiered:
        idx.apply_event(1, _event(_stored(3, [(4, 14)])), "host_pinned")


def index_dump(idx):
    """The dump as a sorted list of held blocks ``(worker, tier, rank, parent, block, tokens)``:
    how a dump groups blocks into events is free (the machines compare dumps the same way)."""
    blocks = []
    for e in idx.dump_events():
        parent = e.event.data.parent_hash
        for b in e.event.data.blocks:
            blocks.append((e.worker_id, e.storage_tier.value, e.event.dp_rank, parent, b.block_hash, b.tokens_hash))
            parent = b.block_hash
    return sorted(blocks, key=repr)


def _index_observe(idx, tiered: bool):
    probe = [11, 12, 13, 14]
    answer = idx.find_matches_by_tier(probe) if tiered else idx.find_matches(probe)
    return index_dump(idx), answer


def _index_follow(idx, tiered: bool):
    idx.apply_event(7, _event(_stored(None, [(900, 11)])))
    return _index_observe(idx, tiered), idx.find_matches([11], early_exit=True)


def _index_cases(cls: str, tiered: bool) -> list[Case]:
    E = _v()[1]
    cases: list[tuple[str, Callable]] = []
    ok_event = (lambda: _event(_stored(None, [(40, 41)])))
    extra = (lambda: ("device",)) if tiered else (lambda: ())
    for fam, v in int_families("u64"):
        cases.append((f"apply_event.worker_id:{fam}", lambda v=v: ("apply_event", (v, ok_event(), *extra()), {})))
    RouterEvent = E.RouterEvent
    for fam, v in [("none", lambda: None), ("int", lambda: 5), ("dict", lambda: ok_event().to_dict()),
                   ("json", lambda: ok_event().to_json()), ("router-event", lambda: RouterEvent(1, ok_event())),
                   ("subclass", lambda: _sub(E.KvCacheEvent)(0, _stored(None, [(40, 41)])))]:
        cases.append((f"apply_event.event:{fam}", lambda v=v: ("apply_event", (1, v(), *extra()), {})))
    for fam, v in int_families("u64"):
        cases.append((f"apply_event.KvCacheEvent.event_id:{fam}",
                      lambda v=v: ("apply_event", (1, E.KvCacheEvent(v, _stored(None, [(40, 41)])), *extra()), {})))
    for fam, v in int_families("u32"):
        cases.append((f"apply_event.KvCacheEvent.dp_rank:{fam}",
                      lambda v=v: ("apply_event", (1, E.KvCacheEvent(0, _stored(None, [(40, 41)]), v), *extra()), {})))
    for fam, build in [
        ("data-none", lambda: _event(None)), ("data-int", lambda: _event(5)),
        ("data-subclass", lambda: _event(_sub(E.Cleared)())),
        ("stored-parent-negative", lambda: _event(_stored(-1, [(40, 41)]))),
        ("stored-block-beyond-u64", lambda: _event(_stored(None, [(2**64, 41)]))),
        ("stored-tokens-bool", lambda: _event(_stored(None, [(40, True)]))),
        ("stored-blocks-third-int", lambda: _event(E.Stored(None, [E.StoredBlock(40, 1), E.StoredBlock(41, 2), 5]))),
        ("stored-blocks-string", lambda: _event(E.Stored(None, "ab"))),
        ("removed-negative", lambda: _event(E.Removed([-1]))),
        ("removed-third-none", lambda: _event(E.Removed([1, 2, None]))),
        ("removed-bool", lambda: _event(E.Removed([True]))),
        ("removed-string", lambda: _event(E.Removed("12"))),
        ("stored-parent-not-held", lambda: _event(_stored(77, [(40, 41)]))),
        ("stored-parent-of-other-rank", lambda: _event(_stored(5, [(40, 41)]))),
        ("stored-parent-is-own-block", lambda: _event(_stored(40, [(40, 41)]))),
        ("stored-duplicate-block", lambda: _event(_stored(None, [(40, 41), (42, 43), (40, 44)]))),
        ("removed-only-unknown", lambda: _event(E.Removed([77, 78]))),
    ]:
        if tiered and fam in ("stored-parent-not-held", "stored-parent-of-other-rank", "removed-only-unknown"):
            continue  # the host tier below is given such events on purpose: not bad input there
        cases.append((f"apply_event.event:{fam}", lambda b=build: ("apply_event", (1, b(), *extra()), {})))
    if tiered:
        for fam, v in [("unknown", "bogus"), ("wrong-case", "DEVICE"), ("none", None), ("int", 1),
                       ("bool", True), ("float", 1.5), ("bytes", b"disk")]:
            cases.append((f"apply_event.storage_tier:{fam}", lambda v=v: ("apply_event", (1, ok_event(), v), {})))
        for fam, build in [("stored-parent-is-own-block", lambda: _event(_stored(40, [(40, 41)]))),
                           ("stored-duplicate-block", lambda: _event(_stored(None, [(40, 41), (40, 42)])))]:
            cases.append((f"apply_event.host_pinned:{fam}", lambda b=build: ("apply_event", (1, b(), "host_pinned"), {})))
    queries = ["find_matches", "match_details"] if not tiered else ["find_matches", "find_matches_by_tier"]
    for method in queries:
        for fam, v in hash_list_families():
            cases.append((f"{method}.local_hashes:{fam}", lambda m=method, v=v: (m, (v(),), {})))
    for fam, v in flag_families():
        cases.append((f"find_matches.early_exit:{fam}", lambda v=v: ("find_matches", ([11, 12], v), {})))
    for method in ("remove_worker", "clear_all_blocks"):
        for fam, v in int_families("u64"):
            cases.append((f"{method}.worker_id:{fam}", lambda m=method, v=v: (m, (v,), {})))
        cases.append((f"{method}.worker_id:list", lambda m=method: (m, ([1],), {})))
    for fam, v in int_families("u64"):
        cases.append((f"remove_worker_dp_rank.worker_id:{fam}", lambda v=v: ("remove_worker_dp_rank", (v, 0), {})))
    for fam, v in int_families("u32"):
        cases.append((f"remove_worker_dp_rank.dp_rank:{fam}", lambda v=v: ("remove_worker_dp_rank", (1, v), {})))

    def prefix(idx):
        _index_prefix(idx, tiered)

    def observe(idx):
        return _index_observe(idx, tiered)

    def follow(idx):
        return _index_follow(idx, tiered)

    return [Case(f"{cls}.{cid}", cls, ((), {}), prefix, bad, follow, observe) for cid, bad in cases]


# --- trackers -----------------------------------------------------------------------------------


def _tracker_prefix(tracker):
    S = _v()[3].EventSource
    tracker.handle_store("a", S.VLLM, [1, 2], None, 2)
    tracker.handle_store("b", S.VLLM, [3, 4], "a", 2)
    tracker.handle_store("a2", S.KVBM, [1, 2], None, 2)
    tracker.drain_events()


def _tracker_observe(tracker):
    out = [tracker.num_blocks(), tracker.drain_events()]
    if hasattr(tracker, "get_block_sources"):
        out += [tracker.get_block_sources(h) for h in ("a", "b", "a2")]
    return out


def _tracker_follow(tracker):
    S = _v()[3].EventSource
    stored = tracker.handle_store("z", S.TRTLLM, [9, 9], "b", 2)
    removed = tracker.handle_remove("a", S.VLLM)
    return stored, removed, _tracker_observe(tracker)


def _tracker_cases(cls: str) -> list[Case]:
    S = _v()[3].EventSource
    good = dict(block_hash="x", source=S.VLLM, token_ids=[1, 2], parent_hash=None, block_size=2)
    cases: list[tuple[str, Callable]] = []
    bad_fields = {
        "block_hash": [("int", 5), ("none", None), ("bytes", b"x"), ("float", 1.5)],
        "source": [("string", "vllm"), ("none", None), ("int", 1), ("unknown", "sglang")],
        "token_ids": [("none", None), ("string", "ab"), ("third-negative", [1, 2, -1]), ("float", [1.5]),
                      ("beyond-u32", [2**32]), ("bool", [True]), ("int", 5), ("set", {1, 2})],
        "parent_hash": [("int", 5), ("bytes", b"x")],
        "block_size": [("negative", -1), ("bool", True), ("none", None), ("float", 1.5), ("string", "16")],
        "lora_name": [("int", 5), ("bytes", b"x")],
        "tier": [("string", "device"), ("int", 5), ("unknown", "bogus")],
        "data_parallel_rank": [("beyond-i32", 2**31), ("below-i32", -2**31 - 1), ("bool", True), ("float", 1.5),
                               ("string", "0")],
    }
    for fld, fams in bad_fields.items():
        for fam, v in fams:
            cases.append((f"handle_store.{fld}:{fam}", lambda f=fld, v=v: ("handle_store", (), {**good, f: v})))
    for fld, fams in [("block_hash", bad_fields["block_hash"]), ("source", bad_fields["source"]),
                      ("tier", bad_fields["tier"])]:
        for fam, v in fams:
            kwargs = {"block_hash": "a", "source": S.VLLM}
            cases.append((f"handle_remove.{fld}:{fam}", lambda f=fld, v=v, k=kwargs: ("handle_remove", (), {**k, f: v})))
    if cls == "DedupTracker":
        for method in ("get_block_sources", "get_block_tiers"):
            for fam, v in [("none", None), ("int", 5), ("bytes", b"a")]:
                cases.append((f"{method}.block_hash:{fam}", lambda m=method, v=v: (m, (v,), {})))
    return [Case(f"{cls}.{cid}", cls, ((), {}), _tracker_prefix, bad, _tracker_follow, _tracker_observe)
            for cid, bad in cases]


# --- NativeBlockPool ----------------------------------------------------------------------------


def _native_prefix(pool):
    ids = pool.acquire([], 3)
    pool.cache(ids[0], 11)
    pool.cache(ids[1], 12)
    pool.release(ids[1])  # 12 inactive; ids[2] private
    pool.drain_removed()


def observe_native_pool(pool):
    return pool.resident(), pool.inactive_order(), pool.copies(), pool.num_free(), pool.num_active(), pool.drain_removed()


def _native_follow(pool):
    got = pool.acquire([11], 1)
    return got, pool.longest_prefix([11, 12]), observe_native_pool(pool)


def _native_cases() -> list[Case]:
    cases: list[tuple[str, Callable]] = []
    for fam, v in int_families("size"):
        cases.append((f"init.capacity:{fam}", lambda v=v: ("__init__", (v,), {})))
    for fam, v in hash_list_families():
        cases.append((f"longest_prefix.hashes:{fam}", lambda v=v: ("longest_prefix", (v(),), {})))
        cases.append((f"acquire.prefix:{fam}", lambda v=v: ("acquire", (v(), 1), {})))
    for fam, v in int_families("count"):
        cases.append((f"acquire.fresh:{fam}", lambda v=v: ("acquire", ([11], v), {})))
    cases += [("acquire.prefix:not-resident", lambda: ("acquire", ([11, 99], 1), {})),
              ("acquire.fresh:exhausted", lambda: ("acquire", ([], 5), {})),
              ("acquire.fresh:beyond-u64", lambda: ("acquire", ([11], 2**64), {}))]
    for fam, v in int_families("id"):
        cases.append((f"cache.copy_id:{fam}", lambda v=v: ("cache", (v, 13), {})))
        cases.append((f"release.copy_id:{fam}", lambda v=v: ("release", (v,), {})))
    for fam, v in int_families("u64"):
        cases.append((f"cache.hash:{fam}", lambda v=v: ("cache", (2, v), {})))
    cases += [("cache.copy_id:not-held", lambda: ("cache", (99, 13), {})),
              ("cache.copy_id:already-cached", lambda: ("cache", (0, 13), {})),
              ("cache.copy_id:inactive", lambda: ("cache", (1, 13), {})),
              ("cache.both-bad:unknown-id-and-bad-hash", lambda: ("cache", (99, -1), {})),
              ("release.copy_id:not-held", lambda: ("release", (99,), {})),
              ("release.copy_id:inactive", lambda: ("release", (1,), {}))]
    return [Case(f"NativeBlockPool.{cid}", "NativeBlockPool", ((4,), {}), _native_prefix, bad, _native_follow,
                 observe_native_pool) for cid, bad in cases]


def build_cases() -> list[Case]:
    """Every case of the campaign, in a stable order."""
    out: list[Case] = []
    for eviction in ("lineage", "multi_lru"):
        out += _pool_cases(eviction)
    out += _manager_cases("KvManager", legacy=False)
    out += _manager_cases("LegacyKvManager", legacy=True)
    out += _index_cases("RadixIndex", tiered=False)
    out += _index_cases("TieredIndex", tiered=True)
    out += _tracker_cases("DedupTracker")
    out += _tracker_cases("PassthroughTracker")
    out += _native_cases()
    return out


CASES = build_cases()


# --- running a case -----------------------------------------------------------------------------


@dataclass
class SideResult:
    outcome: tuple  # ("raised", class name, is KvSpecError) or ("returned", repr)
    changed: bool
    check_failed: str | None
    follow: Any


def _run_side(package: str, case: Case) -> SideResult:
    import importlib

    from kvspec.errors import KvSpecError

    cls = getattr(importlib.import_module(package), case.cls)
    try:
        method, args, kwargs = case.bad()
    except Exception as exc:  # the bad value could not even be built: the value type refused it
        return SideResult(("raised", type(exc).__name__, isinstance(exc, KvSpecError)), False, None, None)
    if method == "__init__":
        try:
            cls(*args, **kwargs)
            outcome = ("returned", None)
        except Exception as exc:
            outcome = ("raised", type(exc).__name__, isinstance(exc, KvSpecError))
        return SideResult(outcome, False, None, None)
    obj = cls(*case.ctor[0], **case.ctor[1])
    case.prefix(obj)
    before = _safe(case.observe, obj)
    try:
        value = getattr(obj, method)(*args, **kwargs)
        outcome = ("returned", repr(value)[:80])
    except Exception as exc:
        outcome = ("raised", type(exc).__name__, isinstance(exc, KvSpecError))
    check_failed = None
    if hasattr(obj, "_check"):
        try:
            obj._check()
        except Exception as exc:
            check_failed = f"{type(exc).__name__}: {exc}"
    after = _safe(case.observe, obj)
    follow = _safe(case.follow, obj)
    return SideResult(outcome, before != after, check_failed, follow)


def run_case(case: Case) -> tuple[str, str, frozenset[str]]:
    """``(bin, detail, every failing property)`` for one case (bins and properties in :data:`BINS`)."""
    model, impl = _run_side("kvspec.model", case), _run_side("kvspec.impl", case)
    sides = (("model", model), ("impl", impl))
    found: dict[str, str] = {}
    accepted = [name for name, r in sides if r.outcome[0] == "returned"]
    if accepted:
        found[BINS[4]] = f"accepted by {'+'.join(accepted)}"
    untyped = [f"{name} {r.outcome[1]}" for name, r in sides if r.outcome[0] == "raised" and not r.outcome[2]]
    if untyped:
        found[BINS[1]] = ", ".join(untyped)
    changed = [f"{name}: {r.check_failed or 'observers changed'}" for name, r in sides if r.changed or r.check_failed]
    if changed:
        found[BINS[2]] = ", ".join(changed)
    if model.outcome[:2] != impl.outcome[:2]:
        found[BINS[3]] = f"model {model.outcome[1]}, impl {impl.outcome[1]}"
    elif model.follow != impl.follow:
        found[BINS[3]] = "the valid follow-up differs"
    for name in (BINS[4], BINS[1], BINS[2], BINS[3]):  # the first that applies is the case's bin
        if name in found:
            return name, found[name], frozenset(found)
    return OK, model.outcome[1], frozenset()


def classify(cases: Sequence[Case] = CASES) -> tuple[dict[str, list[tuple[str, str]]], Counter]:
    """Bin every case: ``(bin -> [(case id, detail)], property -> cases failing it)``."""
    out: dict[str, list[tuple[str, str]]] = {name: [] for name in BINS}
    failing: Counter = Counter()
    for case in cases:
        bin_, detail, flags = run_case(case)
        out[bin_].append((case.id, detail))
        failing.update(flags)
    return out, failing


def limit_memory(gigabytes: float) -> None:
    """Cap this process's address space, so a case that would allocate without bound (an old
    ``BlockPool(2**40)``) fails with ``MemoryError`` instead of exhausting the machine."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return
    cap = int(gigabytes * 2**30)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kvspec bench bad_input_campaign", description=__doc__.splitlines()[0])
    parser.add_argument("--show", type=int, default=5, help="list up to N failing cases per bin")
    parser.add_argument("--only", default="", help="run only cases whose id contains this text")
    parser.add_argument("--memory-limit-gb", type=float, default=2.0,
                        help="address-space cap for this process (a case that needs more gets MemoryError)")
    args = parser.parse_args(list(argv or []))
    limit_memory(args.memory_limit_gb)
    cases = [c for c in CASES if args.only in c.id]
    bins, failing = classify(cases)
    per_class = Counter(c.cls for c in cases)
    print(f"{len(cases)} hand-written bad-input cases over {len(per_class)} classes: "
          + ", ".join(f"{k} {v}" for k, v in sorted(per_class.items())))
    print("| | cases | " + " | ".join(BINS) + " |")
    print("|---|" + "---|" * (len(BINS) + 1))
    print(f"| hand-written (each case in its first failing bin) | {len(cases)} | "
          + " | ".join(str(len(bins[b])) for b in BINS) + " |")
    print(f"| hand-written (cases failing each property) | {len(cases)} | {len(bins[OK])} | "
          + " | ".join(str(failing[b]) for b in BINS[1:]) + " |")
    for name in BINS[1:]:
        for case_id, detail in bins[name][: args.show]:
            print(f"  {name}: {case_id}: {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
