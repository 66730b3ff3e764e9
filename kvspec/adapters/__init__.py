"""Adapters that make third-party engines kvspec targets.

Importing this package registers every adapter's target name; an adapter imports its engine only
when the target is resolved, so registration never needs the engine installed.
"""

from kvspec.adapters import dynamo as _dynamo  # noqa: E402,F401 - registers target "dynamo"
from kvspec.adapters import dynamo_mocker as _dynamo_mocker  # noqa: E402,F401 - registers target "dynamo-mocker"
from kvspec.adapters import dynamo_router as _dynamo_router  # noqa: E402,F401 - registers "dynamo-router"
from kvspec.adapters import vllm as _vllm  # noqa: E402,F401 - registers "vllm" (imports vLLM only when resolved)
from kvspec.adapters import sglang as _sglang  # noqa: E402,F401 - registers "sglang" (imports SGLang only when resolved)
