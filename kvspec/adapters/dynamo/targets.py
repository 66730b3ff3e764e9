"""The Dynamo targets, one loader each: what ``pyproject.toml`` registers (entry points, group
``kvspec.targets``).  A loader imports the wheel only when called; without it the target provides
no class, so every machine is reported skipped with the install hint.

============================  =========================================  ==========  ===========================
target                        classes                                    mode        loader
============================  =========================================  ==========  ===========================
``dynamo``                    ``RadixIndex``, ``block_hashes``           contract    :func:`radix`
``dynamo-router``             ``TieredIndex``, ``LanedIndex``            contract    :func:`router`
``dynamo-router-threads4``    the same, concurrent tree (4 threads)      contract    :func:`router_threads4`
``dynamo-approx``             ``RouterIndexer`` (predict-on-route)       contract    :func:`approx`
``dynamo-mocker``             ``MockerReplay``                           exact       :func:`mocker`
============================  =========================================  ==========  ===========================
"""

from __future__ import annotations

import types

from kvspec.adapters.dynamo import runtime
from kvspec.targets import Target

__all__ = ["approx", "mocker", "radix", "router", "router_threads4"]


def _engine() -> str:
    return f"{runtime.DIST_NAME} {runtime.engine_version()}"


def radix() -> Target:
    """``dynamo``: the Rust ``RadixTree`` behind ``KvIndexer`` (one event thread)."""
    reason = runtime.unavailable_reason()
    if reason is not None:
        return runtime.unavailable_target("dynamo", reason)
    from kvspec.adapters.dynamo.radix import RadixIndex, block_hashes

    return Target("dynamo", types.SimpleNamespace(RadixIndex=RadixIndex, block_hashes=block_hashes), _engine(),
                  mode="contract")


def router(event_threads: int = 1) -> Target:
    """``dynamo-router``: a real ``KvRouter`` fed over ZMQ (``router_event_threads`` = ``event_threads``)."""
    name = "dynamo-router" if event_threads == 1 else f"dynamo-router-threads{event_threads}"
    reason = runtime.unavailable_reason("zmq", "msgpack")
    if reason is not None:
        return runtime.unavailable_target(name, reason)
    from kvspec.adapters.dynamo.lanes import laned_index_class
    from kvspec.adapters.dynamo.router import tiered_index_class

    namespace = types.SimpleNamespace(TieredIndex=tiered_index_class(event_threads),
                                      LanedIndex=laned_index_class(event_threads))
    return Target(name, namespace, f"{_engine()} router_event_threads={event_threads}", mode="contract")


def router_threads4() -> Target:
    """``dynamo-router-threads4``: Dynamo's default, the concurrent tree with four event threads."""
    return router(4)


def approx() -> Target:
    """``dynamo-approx``: a ``KvRouter`` without KV events, whose routing decisions write its index."""
    reason = runtime.unavailable_reason("zmq", "msgpack")
    if reason is not None:
        return runtime.unavailable_target("dynamo-approx", reason)
    from kvspec.adapters.dynamo.approx import TICK, RouterIndexer

    return Target("dynamo-approx", types.SimpleNamespace(RouterIndexer=RouterIndexer),
                  f"{_engine()} use_kv_events=False tick={TICK}s", mode="contract")


def mocker() -> Target:
    """``dynamo-mocker``: the 1.6.1 mocker's trace replay, one request at a time (exact mode)."""
    reason = runtime.unavailable_reason()
    if reason is not None:
        return runtime.unavailable_target("dynamo-mocker", reason, mode="exact")
    from kvspec.adapters.dynamo.mocker import MockerReplay

    return Target("dynamo-mocker", types.SimpleNamespace(MockerReplay=MockerReplay), _engine(), mode="exact")
