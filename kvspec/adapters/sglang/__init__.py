"""Target ``sglang``: SGLang 0.5.23's real ``RadixCache`` (LRU) on CPU, as ``SglangRadixCache``.

* :mod:`.radix_cache` — the adapter (``create_simulated``, a counter clock, hash translation),
  checked exactly against :class:`kvspec.model.SglangRadixCache`;
* :mod:`.record` — records a real event stream as SGLang's ZMQ publisher encodes it.

Importing this package (``pyproject.toml`` registers its ``load_target``) never imports SGLang; without it every machine
is reported skipped with the install hint (``kvspec install-engine sglang``).
"""

from typing import Any

from kvspec.adapters._engine import Engine
from kvspec.targets import Target

__all__ = ["CLASSES", "ENGINE", "load_target"]

#: the classes the target provides once the engine is installed, known without importing it
#: (the regression corpus replays the traces of machines needing only these against the engine)
CLASSES = ("SglangRadixCache",)

ENGINE = Engine("sglang", ("torch", "msgspec", "sglang.srt.mem_cache.radix_cache",
                           "sglang.srt.mem_cache.base_prefix_cache"))


def load_target() -> Target:
    def build() -> dict[str, Any]:
        from kvspec.adapters.sglang.radix_cache import SglangRadixCache

        return {"SglangRadixCache": SglangRadixCache}

    return ENGINE.target("sglang", build)

