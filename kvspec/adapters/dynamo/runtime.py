"""What every Dynamo target shares: importing the wheel, and starting a runtime with one worker.

* :func:`import_core` / :func:`unavailable_reason` / :func:`engine_version` — the optional wheel
  ``ai-dynamo-runtime`` (extra ``dynamo``), imported only when a target is resolved; when it is
  absent a target resolves to an empty namespace (:func:`unavailable_target`) so every machine is
  reported as skipped with the reason, instead of the command failing.
* :func:`run` — one private event-loop thread for every binding call that needs a running loop;
  every wait is bounded (:data:`TIMEOUT`) and a hang becomes a :class:`~kvspec.errors.TargetError`.
* :func:`start_worker` — **the** start-up of a served worker: a ``DistributedRuntime`` (in-memory
  or file discovery, TCP request plane, ZMQ event plane, all on loopback: :data:`LOOPBACK_ENV`),
  an endpoint serving a no-op handler (routing only), ``register_model`` with the block size and
  data-parallel size.  The router harness, the approximate router and the multi-worker reproducers
  all start workers this way.
* :func:`track` — runtimes are shut down at interpreter exit, before Python finalizes (Dynamo's
  threads call back into Python; a callback during finalization can abort the process).
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import os
import socket
import threading
import time
import types
import weakref
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from kvspec.errors import TargetError
from kvspec.targets import Target

__all__ = ["DIST_NAME", "LOOPBACK_ENV", "QUIET_LOG", "TIMEOUT", "Worker", "endpoint_name", "engine_version",
           "free_port", "import_core", "run", "start_worker", "track", "unavailable_reason", "unavailable_target",
           "wait_until"]

DIST_NAME = "ai-dynamo-runtime"

#: Dynamo logs every rejected event at WARN and harness shutdown at ERROR; kvspec reports outcomes
#: itself, so the engine's log is quiet unless the user sets ``DYN_LOG``
QUIET_LOG = "error,dynamo_llm::kv_router::indexer::recovery=off,dynamo_runtime::storage::kv=off"

#: loopback-only networking for every Dynamo listener (request plane, event plane, system server)
LOOPBACK_ENV = {
    "DYN_TCP_RPC_HOST": "127.0.0.1",
    "DYN_EVENT_PLANE_HOST": "127.0.0.1",
    "DYN_SYSTEM_HOST": "127.0.0.1",
    "DYN_TCP_RESPONSE_STREAM_HOST": "127.0.0.1",
}

#: seconds any single wait on the engine may take
TIMEOUT = 20.0

_LOOP_THREAD = "kvspec-dynamo-loop"


def import_core() -> Any:
    """``dynamo._core``, or :class:`ImportError` with the reason."""
    os.environ.setdefault("DYN_LOG", QUIET_LOG)
    import dynamo._core as core  # noqa: PLC0415 - optional engine, imported on demand

    return core


def unavailable_reason(*extra_modules: str) -> str | None:
    """``None`` when the wheel (and ``extra_modules``) import, else a one-line reason with the install hint."""
    try:
        import_core()
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        return f"{DIST_NAME} not importable ({type(exc).__name__}: {exc}); pip install 'kvspec[dynamo]'"
    for name in extra_modules:
        try:
            __import__(name)
        except ImportError as exc:
            return f"{name} not importable ({exc}); pip install 'kvspec[dynamo]'"
    return None


def engine_version() -> str:
    try:
        return version(DIST_NAME)
    except PackageNotFoundError:
        return "unknown"


def unavailable_target(name: str, reason: str, mode: str = "contract") -> Target:
    """A target that provides no class: every machine is reported skipped, with ``reason``."""
    return Target(name, types.SimpleNamespace(), f"unavailable: {reason}", mode=mode)


# -- the event-loop thread ------------------------------------------------------------------------

_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def _loop() -> asyncio.AbstractEventLoop:
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name=_LOOP_THREAD, daemon=True).start()
            _LOOP = loop
        return _LOOP


def run(coro: Any, timeout: float = TIMEOUT) -> Any:
    """Run ``coro`` on the shared loop; a hang becomes a :class:`TargetError` after ``timeout``."""
    future = asyncio.run_coroutine_threadsafe(coro, _loop())
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        if os.environ.get("KVSPEC_DEBUG_HANG"):
            import faulthandler
            import sys

            faulthandler.dump_traceback(sys.stderr)
        raise TargetError(f"the Dynamo runtime did not answer within {timeout}s") from None


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- workers --------------------------------------------------------------------------------------

_NAMES = itertools.count()


class Worker:
    """A served worker endpoint: ``runtime``, ``endpoint`` and the task serving it."""

    def __init__(self, runtime: Any, endpoint: Any, serving: Any) -> None:
        self.runtime, self.endpoint, self.serving = runtime, endpoint, serving

    def shutdown(self) -> None:
        try:
            self.runtime.shutdown()
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass


def endpoint_name(prefix: str = "kvspec") -> str:
    """A fresh ``namespace.component.endpoint`` name, unique in this process."""
    return f"{prefix}{os.getpid()}x{next(_NAMES)}.worker.generate"


async def start_worker(core: Any, *, block_size: int, dp_ranks: int = 1, discovery: str = "mem",
                       name: str | None = None) -> Worker:
    """Start a runtime and register one served worker (must run on the shared loop, see :func:`run`).

    ``discovery`` is ``"mem"`` (one worker per process) or ``"file"`` (``DYN_FILE_KV`` names a
    directory shared by several runtimes of one process).
    """
    os.environ.update(LOOPBACK_ENV)
    runtime = core.DistributedRuntime(asyncio.get_running_loop(), discovery, "tcp", event_plane="zmq")
    endpoint = runtime.endpoint(name or endpoint_name())

    async def handler(request: Any, context: Any = None) -> Any:  # never called: routing only
        yield {}

    serving = asyncio.ensure_future(endpoint.serve_endpoint(handler))
    config = core.ModelRuntimeConfig()
    config.data_parallel_size = dp_ranks
    await core.register_model(core.ModelInput.Tokens, core.ModelType.Completions, endpoint, "kvspec", "kvspec",
                              worker_type=core.WorkerType.Aggregated, kv_cache_block_size=block_size,
                              skip_model_assets=True, runtime_config=config)
    return Worker(runtime, endpoint, serving)


async def wait_until(predicate: Any, what: str, timeout: float = TIMEOUT, poll: float = 0.005) -> None:
    """Await ``predicate()`` (a coroutine function returning bool) until true, or raise TargetError."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise TargetError(f"{what} within {timeout}s")
        await asyncio.sleep(poll)


# -- shutdown -------------------------------------------------------------------------------------

_TRACKED: weakref.WeakSet = weakref.WeakSet()


def track(closable: Any) -> None:
    """Close ``closable`` (anything with ``close()``) at interpreter exit, before finalization."""
    _TRACKED.add(closable)


@atexit.register
def _close_all() -> None:
    for item in list(_TRACKED):
        item.close()
    loop = _LOOP
    if loop is not None and loop.is_running():
        loop.call_soon_threadsafe(loop.stop)
        for thread in threading.enumerate():
            if thread.name == _LOOP_THREAD:
                thread.join(2.0)
        time.sleep(0.2)
