"""Shared runtime helper of the engine adapters (``vllm``, ``sglang``): import on demand, say why not.

An engine is imported only when its target is resolved, once per process (vLLM's KV modules take
10-30 s to import on a loaded 2-core machine).  When it cannot be imported the target resolves to
an empty namespace whose version string carries the reason and the install hint, so ``kvspec
check --target vllm`` reports every machine as skipped instead of failing to start.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import types
from collections.abc import Callable, Sequence
from typing import Any

from kvspec.targets import Target

__all__ = ["Engine"]


class Engine:
    """One optional engine: its distribution name, the modules its adapter needs, the install hint."""

    def __init__(self, dist: str, modules: Sequence[str]) -> None:
        self.dist = dist
        self.modules = tuple(modules)
        self._loaded: dict[str, Any] | None = None
        self._error: str | None = None

    @property
    def hint(self) -> str:
        return f"kvspec install-engine {self.dist}"

    def load(self) -> dict[str, Any]:
        """The engine's modules by name; :class:`ImportError` (with the hint) when absent."""
        if self._loaded is None and self._error is None:
            try:
                self._loaded = {m: importlib.import_module(m) for m in self.modules}
            except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
                self._error = f"{self.dist} not importable ({type(exc).__name__}: {exc}); run: {self.hint}"
        if self._error is not None:
            raise ImportError(self._error)
        assert self._loaded is not None
        return self._loaded

    def unavailable_reason(self) -> str | None:
        try:
            self.load()
        except ImportError as exc:
            return str(exc)
        return None

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.dist)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    def target(self, name: str, build: Callable[[], dict[str, Any]], mode: str = "exact") -> Target:
        """``name`` over ``build()``'s classes, or an empty namespace when the engine is absent."""
        reason = self.unavailable_reason()
        if reason is not None:
            return Target(name, types.SimpleNamespace(), f"unavailable: {reason}", mode=mode)
        return Target(name, types.SimpleNamespace(**build()), f"{self.dist} {self.version()}", mode=mode)
