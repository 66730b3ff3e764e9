"""Property-based bad-input suite: every public method of every public class, model and impl.

For each (class, method): build the class on both sides, run a random valid prefix (both sides
must agree on every step), then make **one bad call** — a single bad argument drawn from the
families of :mod:`strategies` (wrong type, bool as int, negative, beyond u32/u64, None, NaN,
float, string, huge lists, a bad element third in a batch, unknown enums and ids, duplicates in
one batch, subclasses of value types).  Then:

* both sides raise a :class:`kvspec.errors.KvSpecError` subclass, the same class;
* every public observer is unchanged on both sides and nothing was published;
* the impl's ``_check()`` passes;
* a valid operation afterwards answers alike on both sides.

The rules being tested are stated once in :mod:`kvspec.checks`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import kvspec.impl
import kvspec.model
from kvspec.bench.bad_input_campaign import index_dump, observe_kv_manager, observe_legacy_manager, observe_native_pool
from kvspec.errors import KvSpecError
from kvspec.events import Cleared, KvCacheEvent, Removed, StorageTier, Stored, StoredBlock
from kvspec.hashing import Plh
from kvspec.impl.eviction import BACKENDS as IMPL_BACKENDS
from kvspec.model.eviction import BACKENDS
from kvspec.protocol import Deref, Destroy, FullBlock, PartialBlock, Promote, Use
from kvspec.tracker_events import EventSource

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from strategies import (  # noqa: E402
    FAMILIES,
    Bad,
    bad_enum,
    bad_flag,
    bad_hash_list,
    bad_int,
    bad_plh,
    bad_plh_list,
    hashes,
    plh_chain,
    subclass_of,
)

Call = tuple[str, tuple, dict]  # (method, args, kwargs); "__init__" for the constructor


@dataclass
class Spec:
    """How to drive one class: its constructor, valid steps, observers, bad calls per method."""

    ctor: st.SearchStrategy  # -> (args, kwargs)
    step: Callable[[Any, Any], Call]  # (data, model object) -> a valid-typed call
    observe: Callable[[Any], Any]
    follow: Call
    bad: dict[str, Callable[[Any, Any], tuple[Call, str]]]  # method -> (data, model) -> (call, family)


def _draw_bad(data, strategy) -> Bad:
    return data.draw(strategy, label="bad value")


# --- BlockPool ---------------------------------------------------------------------------------


def _pool_step(data, pool) -> Call:
    kind = data.draw(st.sampled_from(["allocate", "register", "release", "match", "release_mutable"]))
    if kind == "allocate":
        return "allocate_with_evictions", (data.draw(st.integers(0, 3)),), {}
    if kind == "register":
        return "register", (data.draw(st.integers(0, 5)), data.draw(plh_chain())[-1]), {}
    if kind == "match":
        return "match_blocks", (data.draw(plh_chain()),), {}
    return kind, (data.draw(st.integers(0, 5)),), {}


def _pool_observe(pool):
    return (pool.total_blocks(), pool.available_blocks(), pool.inactive_len(), pool.refcounts(),
            pool.eviction_order(), pool.free_blocks(), pool.check_presence([Plh(0, h) for h in range(1, 13)]))


def _unheld_id(pool) -> int:
    return next(i for i in range(-1, 100) if i not in pool.refcounts())


POOL = Spec(
    ctor=st.tuples(st.integers(1, 6), st.sampled_from(sorted(BACKENDS)), st.sampled_from(["allow", "reject"])).map(
        lambda t: ((t[0],), {"eviction": t[1], "duplication": t[2], "frequency": "exact"})),
    step=_pool_step,
    observe=_pool_observe,
    follow=("allocate_with_evictions", (1,), {}),
    bad={
        "__init__": lambda d, _: d.draw(st.one_of(
            bad_int("size").map(lambda b: (("__init__", (b.value,), {}), b.family)),
            bad_enum(sorted(BACKENDS)).map(lambda b: (("__init__", (4,), {"eviction": b.value}), b.family)),
            bad_enum(["allow", "reject"]).map(lambda b: (("__init__", (4,), {"duplication": b.value}), b.family)),
            st.sampled_from([(), (3, 8), (8, 3, 15), (1, 2, 16), (True, 8, 15)]).map(
                lambda t: (("__init__", (4,), {"frequency": "exact", "thresholds": t}), "empty list" if not t else "unknown enum")),
        )),
        "allocate": lambda d, _: (lambda b: (("allocate", (b.value,), {}), b.family))(_draw_bad(d, bad_int("count"))),
        "allocate_with_evictions": lambda d, _: (lambda b: (("allocate_with_evictions", (b.value,), {}), b.family))(
            _draw_bad(d, bad_int("count"))),
        "release_mutable": lambda d, pool: d.draw(st.one_of(
            bad_int("id").map(lambda b: (("release_mutable", (b.value,), {}), b.family)),
            st.just((("release_mutable", (pool.total_blocks() + 5,), {}), "unknown id")))),
        "release": lambda d, pool: d.draw(st.one_of(
            bad_int("id").map(lambda b: (("release", (b.value,), {}), b.family)),
            st.just((("release", (_unheld_id(pool),), {}), "unknown id")))),
        "register": lambda d, _: d.draw(st.one_of(
            bad_int("id").map(lambda b: (("register", (b.value, Plh(0, 1)), {}), b.family)),
            bad_plh().map(lambda b: (("register", (0, b.value), {}), b.family)))),
        "match_blocks": lambda d, _: (lambda b: (("match_blocks", (b.value,), {}), b.family))(
            _draw_bad(d, bad_plh_list(hashes.map(lambda h: Plh(0, h))))),
        "check_presence": lambda d, _: (lambda b: (("check_presence", (b.value,), {}), b.family))(
            _draw_bad(d, bad_plh_list(hashes.map(lambda h: Plh(0, h))))),
    },
)


# --- KvManager and LegacyKvManager --------------------------------------------------------------


def _use_of(chain: list[Plh], legacy: bool, partial: int | None = None) -> Use:
    blocks = [FullBlock(p.current) for p in chain] + ([PartialBlock(partial)] if partial else [])
    return Use(blocks, [p.current + 100 for p in chain], [] if legacy else chain)


def _manager_step(legacy: bool):
    def step(data, mgr) -> Call:
        kind = data.draw(st.sampled_from(["use", "deref", "promote"]))
        if kind == "use":
            return "process", (_use_of(data.draw(plh_chain()), legacy, data.draw(st.sampled_from([None, 50, 51]))),), {}
        if kind == "deref":
            return "process", (Deref(data.draw(st.lists(hashes.map(FullBlock) | st.sampled_from(
                [PartialBlock(50), PartialBlock(51)]), max_size=2))),), {}
        chain = data.draw(plh_chain())
        return "process", (Promote(data.draw(st.sampled_from([50, 51])), chain[-1].current, chain[-1].parent, None,
                                   chain[-1]),), {}
    return step


def _bad_use(legacy: bool) -> st.SearchStrategy[tuple[Callable[[], Any], str]]:
    """A ``process`` argument that is a bad Use (or not an operation at all), built lazily."""
    chain = [Plh(0, 500), Plh(1, 501, 500)]
    plhs = [] if legacy else chain
    u64 = bad_int("u64")
    return st.one_of(
        u64.map(lambda b: (lambda: Use([FullBlock(500), FullBlock(b.value)], [], plhs), b.family)),
        u64.map(lambda b: (lambda: Use([FullBlock(500), FullBlock(501)], [1, b.value], plhs), b.family)),
        u64.map(lambda b: (lambda: Use([PartialBlock(b.value)], [], []), b.family)),
        st.sampled_from([None, 5, "Use", (1,)]).map(lambda v: (lambda: v, "wrong type")),
        st.sampled_from([Use, Deref, Promote]).map(lambda k: (lambda: _subclassed(k, legacy), "subclass of a value type")),
        st.just((lambda: Use([FullBlock(500), FullBlock(501), 7], [], plhs + [Plh(2, 7, 501)]), "bad element third in a batch")),
        st.just((lambda: Use([FullBlock(500), FullBlock(501)], [1, 2, 3], plhs), "huge list")),
        st.just((lambda: Use([FullBlock(500)], [], plhs[:1], [[1, 2**32]]), "beyond u32")),
    )


def _subclassed(kind: type, legacy: bool):
    sub = subclass_of(kind)
    if kind is Use:
        return sub([FullBlock(500)], [], [] if legacy else [Plh(0, 500)])
    if kind is Promote:
        return sub(50, 500, None, None, Plh(0, 500))
    return sub([FullBlock(1)])


def _bad_deref(data, mgr, legacy: bool) -> tuple[Call, str]:
    if legacy:  # the legacy manager ignores Derefs of blocks it does not hold (upstream); Destroy refuses
        held = list(mgr.active_blocks())
        blocks = data.draw(st.sampled_from([[FullBlock(999)], held[:1] * 2 if held else [FullBlock(998)]]))
        return ("process", (Destroy(blocks),), {}), "duplicates in one batch" if len(blocks) == 2 else "unknown id"
    refs = mgr.active_refcounts()
    if refs and data.draw(st.booleans()):
        h, n = data.draw(st.sampled_from(sorted(refs.items())))
        return ("process", (Deref([FullBlock(h)] * (n + 1)),), {}), "duplicates in one batch"
    return ("process", (Deref([FullBlock(999)]),), {}), "unknown id"


def _manager_spec(cls_name: str, legacy: bool) -> Spec:
    def bad_init(data, _):
        kind = data.draw(st.sampled_from(["capacity", "block_size", "dp_rank"] + ([] if legacy else ["eviction"])))
        if kind == "eviction":
            b = data.draw(bad_enum(sorted(BACKENDS)))
            return ("__init__", (4, 2), {"eviction": b.value}), b.family
        b = data.draw(bad_int("u32" if kind == "dp_rank" else "size"))
        args = {"capacity": ((b.value, 2), {}), "block_size": ((4, b.value), {}), "dp_rank": ((4, 2), {"dp_rank": b.value})}
        return ("__init__", *args[kind]), b.family

    def bad_process(data, mgr):
        if data.draw(st.booleans()):
            return _bad_deref(data, mgr, legacy)
        build, family = data.draw(_bad_use(legacy))
        return ("process", (_Lazy(build),), {}), family

    bad = {
        "__init__": bad_init,
        "process": bad_process,
        "prefill_cost": lambda d, _: (("prefill_cost", (d.draw(st.sampled_from([None, 5, "seq", Deref([])])),), {}),
                                      "wrong type"),
    }
    if legacy:
        bad["probe_new_blocks"] = lambda d, _: (lambda b: (("probe_new_blocks", (b.value,), {}), b.family))(
            d.draw(st.one_of(st.just(Bad("None", None)), st.just(Bad("wrong type", 5)),
                             st.just(Bad("bad element third in a batch", [FullBlock(1), FullBlock(2), 3])))))
    return Spec(
        ctor=st.tuples(st.integers(1, 6), st.integers(1, 4)).flatmap(
            lambda t: st.sampled_from([{}] if legacy else [{"eviction": e} for e in sorted(BACKENDS)]).map(
                lambda kw: (t, kw))),
        step=_manager_step(legacy),
        observe=observe_legacy_manager if legacy else observe_kv_manager,
        follow=("process", (_use_of([Plh(0, 900), Plh(1, 901, 900)], legacy),), {}),
        bad=bad,
    )


class _Lazy:
    """An argument built at call time (building it may itself be the refused bad input)."""

    def __init__(self, build: Callable[[], Any]):
        self.build = build

    def __repr__(self) -> str:
        try:
            return repr(self.build())
        except Exception as exc:
            return f"<unbuildable: {type(exc).__name__}: {exc}>"


# --- RadixIndex and TieredIndex -----------------------------------------------------------------


def _stored(parent, blocks, dp_rank=0, event_id=0):
    return KvCacheEvent(event_id, Stored(parent, [StoredBlock(b, b + 100) for b in blocks]), dp_rank)


def _index_step(tiered: bool):
    def step(data, _idx) -> Call:
        worker, rank = data.draw(st.integers(0, 2)), data.draw(st.integers(0, 1))
        chain = data.draw(st.lists(hashes, min_size=1, max_size=4, unique=True))
        kind = data.draw(st.sampled_from(["stored", "removed", "cleared", "remove_worker"]))
        tier = (data.draw(st.sampled_from(list(StorageTier))),) if tiered else ()
        if kind == "stored":
            parent = data.draw(st.none() | hashes.filter(lambda h: h not in chain))
            return "apply_event", (worker, _stored(parent, chain, rank), *tier), {}
        if kind == "removed":
            return "apply_event", (worker, KvCacheEvent(0, Removed(chain), rank), *tier), {}
        if kind == "cleared":
            return "apply_event", (worker, KvCacheEvent(0, Cleared(), rank), *tier), {}
        return "remove_worker_dp_rank", (worker, rank), {}
    return step


def _index_spec(tiered: bool) -> Spec:
    def observe(idx):
        probe = [h + 100 for h in range(1, 6)]
        return index_dump(idx), (idx.find_matches_by_tier(probe) if tiered else idx.find_matches(probe))

    tier = ("device",) if tiered else ()
    ok = _stored(None, [40])
    u64, u32 = bad_int("u64"), bad_int("u32")
    bad = {
        "apply_event": lambda d, _: d.draw(st.one_of(
            u64.map(lambda b: (("apply_event", (b.value, ok, *tier), {}), b.family)),
            st.sampled_from([None, 5, "event", ok.to_json()]).map(lambda v: (("apply_event", (1, v, *tier), {}), "wrong type")),
            st.just((("apply_event", (1, subclass_of(KvCacheEvent)(0, Cleared()), *tier), {}), "subclass of a value type")),
            st.just((("apply_event", (1, _Lazy(lambda: _stored(None, [40, 41, 40])), *tier), {}), "duplicates in one batch")),
            st.just((("apply_event", (1, _Lazy(lambda: _stored(41, [40, 41])), *tier), {}), "duplicates in one batch")),
            u32.map(lambda b: (("apply_event", (1, _Lazy(lambda: _stored(None, [40], b.value)), *tier), {}), b.family)),
            u64.map(lambda b: (("apply_event", (1, _Lazy(lambda: KvCacheEvent(0, Removed([1, 2, b.value]))), *tier), {}),
                               b.family)),
            *([bad_enum([t.value for t in StorageTier]).map(lambda b: (("apply_event", (1, ok, b.value), {}), b.family))]
              if tiered else []),
        )),
        "find_matches": lambda d, _: d.draw(st.one_of(
            bad_hash_list().map(lambda b: (("find_matches", (b.value,), {}), b.family)),
            bad_flag().map(lambda b: (("find_matches", ([101], b.value), {}), b.family)))),
        "remove_worker": lambda d, _: (lambda b: (("remove_worker", (b.value,), {}), b.family))(d.draw(u64)),
        "clear_all_blocks": lambda d, _: (lambda b: (("clear_all_blocks", (b.value,), {}), b.family))(d.draw(u64)),
        "remove_worker_dp_rank": lambda d, _: d.draw(st.one_of(
            u64.map(lambda b: (("remove_worker_dp_rank", (b.value, 0), {}), b.family)),
            u32.map(lambda b: (("remove_worker_dp_rank", (1, b.value), {}), b.family)))),
    }
    query = "find_matches_by_tier" if tiered else "match_details"
    bad[query] = lambda d, _: (lambda b: ((query, (b.value,), {}), b.family))(d.draw(bad_hash_list()))
    return Spec(ctor=st.just(((), {})), step=_index_step(tiered), observe=observe,
                follow=("apply_event", (7, _stored(None, [900]), *tier), {}), bad=bad)


# --- trackers -------------------------------------------------------------------------------


def _tracker_step(data, _t) -> Call:
    block, parent = data.draw(st.sampled_from("abcd")), data.draw(st.sampled_from([None, "a", "b"]))
    source = data.draw(st.sampled_from(list(EventSource)))
    if data.draw(st.booleans()):
        tokens = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=2))
        return "handle_store", (block, source, tokens, parent, 2), {}
    return "handle_remove", (block, source), {}


def _tracker_spec(dedup: bool) -> Spec:
    def observe(t):
        out = [t.num_blocks(), t.drain_events()]
        if dedup:
            out += [t.get_block_sources(h) for h in "abcd"]
        return out

    good = dict(block_hash="x", source=EventSource.VLLM, token_ids=[1, 2], parent_hash=None, block_size=2)
    store_fields = {
        "block_hash": st.sampled_from([Bad("wrong type", 5), Bad("None", None), Bad("wrong type", b"x")]),
        "source": st.sampled_from([Bad("string", "vllm"), Bad("None", None), Bad("unknown enum", "sglang")]),
        "token_ids": st.one_of(st.just(Bad("None", None)), st.just(Bad("string", "ab")),
                               bad_int("u32").map(lambda b: Bad(b.family, [1, 2, b.value]))),
        "block_size": bad_int("count"),
        "tier": st.sampled_from([Bad("string", "device"), Bad("wrong type", 5)]),
        "data_parallel_rank": st.sampled_from([Bad("beyond u32", 2**31), Bad("bool as int", True), Bad("float", 1.5)]),
    }

    def bad_store(d, _):
        field = d.draw(st.sampled_from(sorted(store_fields)))
        b = d.draw(store_fields[field])
        return ("handle_store", (), {**good, field: b.value}), b.family

    def bad_remove(d, _):
        field = d.draw(st.sampled_from(["block_hash", "source", "tier"]))
        b = d.draw(store_fields[field])
        return ("handle_remove", (), {"block_hash": "a", "source": EventSource.VLLM, field: b.value}), b.family

    bad = {"handle_store": bad_store, "handle_remove": bad_remove}
    if dedup:
        for method in ("get_block_sources", "get_block_tiers"):
            bad[method] = lambda d, _, m=method: (lambda b: ((m, (b.value,), {}), b.family))(
                d.draw(store_fields["block_hash"]))
    return Spec(ctor=st.just(((), {})), step=_tracker_step, observe=observe,
                follow=("handle_store", ("z", EventSource.KVBM, [1], "a", 2), {}), bad=bad)


# --- NativeBlockPool ----------------------------------------------------------------------------


def _native_step(data, pool) -> Call:
    kind = data.draw(st.sampled_from(["acquire", "cache", "release"]))
    if kind == "acquire":
        prefix = data.draw(st.lists(hashes, max_size=2))
        return "acquire", (prefix, data.draw(st.integers(0, 2))), {}
    if kind == "cache":
        return "cache", (data.draw(st.integers(0, 6)), data.draw(hashes)), {}
    return "release", (data.draw(st.integers(0, 6)),), {}


NATIVE = Spec(
    ctor=st.integers(1, 6).map(lambda n: ((n,), {})),
    step=_native_step,
    observe=observe_native_pool,
    follow=("acquire", ([], 1), {}),
    bad={
        "__init__": lambda d, _: (lambda b: (("__init__", (b.value,), {}), b.family))(d.draw(bad_int("size"))),
        "longest_prefix": lambda d, _: (lambda b: (("longest_prefix", (b.value,), {}), b.family))(d.draw(bad_hash_list())),
        "acquire": lambda d, _: d.draw(st.one_of(
            bad_hash_list().map(lambda b: (("acquire", (b.value, 0), {}), b.family)),
            bad_int("count").map(lambda b: (("acquire", ([], b.value), {}), b.family)),
            st.just((("acquire", ([], 10**6), {}), "huge list")))),
        "cache": lambda d, pool: d.draw(st.one_of(
            bad_int("id").map(lambda b: (("cache", (b.value, 1), {}), b.family)),
            bad_int("u64").map(lambda b: (("cache", (0, b.value), {}), b.family)),
            st.just((("cache", (10**6, 1), {}), "unknown id")))),
        "release": lambda d, _: d.draw(st.one_of(
            bad_int("id").map(lambda b: (("release", (b.value,), {}), b.family)),
            st.just((("release", (10**6,), {}), "unknown id")))),
    },
)


SPECS = {
    "BlockPool": POOL,
    "KvManager": _manager_spec("KvManager", legacy=False),
    "LegacyKvManager": _manager_spec("LegacyKvManager", legacy=True),
    "RadixIndex": _index_spec(tiered=False),
    "TieredIndex": _index_spec(tiered=True),
    "DedupTracker": _tracker_spec(dedup=True),
    "PassthroughTracker": _tracker_spec(dedup=False),
    "NativeBlockPool": NATIVE,
}

PAIRS = [(cls, method) for cls, spec in SPECS.items() for method in spec.bad]


# --- the harness --------------------------------------------------------------------------------


def _outcome(obj, method: str, args: tuple, kwargs: dict):
    try:  # building a lazy argument may itself be refused: the value type's own check
        args = tuple(a.build() if isinstance(a, _Lazy) else a for a in args)
        return "returned", getattr(obj, method)(*args, **kwargs)
    except KvSpecError as exc:
        return "raised", type(exc)
    except Exception as exc:  # noqa: BLE001 - an untyped error is the failure we look for
        return "untyped", f"{type(exc).__name__}: {exc}"


def _build(cls_name: str, args: tuple, kwargs: dict):
    built = []
    for package in (kvspec.model, kvspec.impl):
        built.append(_outcome(getattr(package, cls_name), "__call__", args, kwargs))
    return built


@pytest.mark.parametrize("cls_name, method", PAIRS, ids=[f"{c}.{m}" for c, m in PAIRS])
@given(data=st.data())
def test_one_bad_call_is_typed_and_changes_nothing(cls_name, method, data):
    spec = SPECS[cls_name]
    ctor_args, ctor_kwargs = data.draw(spec.ctor, label="constructor")
    (kind_m, model), (kind_i, impl) = _build(cls_name, ctor_args, ctor_kwargs)
    assert kind_m == kind_i == "returned", (model, impl)
    for _ in range(data.draw(st.integers(0, 8), label="prefix length")):
        step = spec.step(data, model)
        got_m, got_i = _outcome(model, *step), _outcome(impl, *step)
        assert got_m == got_i, f"valid prefix step {step}: model {got_m}, impl {got_i}"
        assert got_m[0] != "untyped", f"valid-typed step {step} raised {got_m[1]}"
    spec.observe(model), spec.observe(impl)  # drain what the prefix published
    before = spec.observe(model), spec.observe(impl)

    (bad_method, args, kwargs), family = spec.bad[method](data, model)
    assert family in FAMILIES, family
    if bad_method == "__init__":
        results = _build(cls_name, args, kwargs)
    else:
        results = [_outcome(model, bad_method, args, kwargs), _outcome(impl, bad_method, args, kwargs)]
    for side, (kind, value) in zip(("model", "impl"), results):
        assert kind == "raised", f"[{family}] {side} {kind} {value!r} for {bad_method}{args}{kwargs}"
    assert results[0][1] is results[1][1], f"[{family}] model raised {results[0][1]}, impl {results[1][1]}"

    assert (spec.observe(model), spec.observe(impl)) == before, f"[{family}] state changed"
    impl._check()
    after_m, after_i = _outcome(model, *spec.follow), _outcome(impl, *spec.follow)
    assert after_m == after_i and spec.observe(model) == spec.observe(impl), "a valid call afterwards differs"


def test_every_public_method_is_covered():
    """Each public method of each class has a bad-call strategy (constructors where they take arguments)."""
    for cls_name, spec in SPECS.items():
        cls = getattr(kvspec.model, cls_name)
        mutators = {m for m in vars(cls) if not m.startswith("_") and callable(getattr(cls, m))}
        observers = {"total_blocks", "available_blocks", "inactive_len", "refcounts", "eviction_order", "free_blocks",
                     "drain_events", "num_active_blocks", "num_active_block_refs", "num_inactive_blocks",
                     "active_refcounts", "current_capacity", "active_blocks", "inactive_blocks", "dump_events",
                     "num_blocks", "handle_clear_all", "resident", "inactive_order", "copies", "num_free",
                     "num_active", "drain_removed"}
        assert mutators - observers <= set(spec.bad), (cls_name, sorted(mutators - observers - set(spec.bad)))


def test_strategies_span_at_least_ten_families():
    assert len(FAMILIES) >= 10


def test_both_sides_share_the_backend_table():
    assert list(BACKENDS) == list(IMPL_BACKENDS)
