"""``kvspec install-engine vllm|sglang``: put a real engine into the current environment, CPU only.

Neither engine can be a pip extra of kvspec.  Both pin a CUDA build of torch (several GB) and
dozens of GPU-only packages; kvspec needs only their scheduler-side KV code, which runs on a CPU
with no model.  So each engine has a *recipe*: pip commands run in order in the current
interpreter's environment (``python -m pip``), with torch held at the CPU build by a constraints
file (``PIP_CONSTRAINT``) so that no later step can replace it:

1. ``torch==2.13.0`` — on this project's machines pip finds the CPU wheel on local disk (pip's
   ``find-links``); elsewhere pass ``--torch-index`` (e.g. PyTorch's CPU index), never a plain
   ``torch`` requirement, which resolves to a CUDA build.
2. the engine wheel itself with ``--no-deps`` (and, for vLLM, ``xgrammar`` which its imports need);
3. the pure-Python packages the engine's KV-cache modules import, pinned to versions that satisfy
   the engine's own requirements (found by importing those modules on a fresh environment).

Then the recipe's modules are imported in a fresh interpreter to prove the install works.
``--dry-run`` prints the commands and runs nothing.  Exit status: 0 installed (or dry run), 1 a
pip step or the import check failed.

>>> [r.engine for r in RECIPES.values()]
['vllm', 'sglang']
>>> RECIPES["vllm"].version
'0.33.0'
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import attrs

from kvspec.errors import InvalidArgument

__all__ = ["Recipe", "RECIPES", "TORCH", "commands", "install", "site_packages_bytes"]

#: the CPU torch every engine shares; pinned by a constraints file through every step
TORCH = "torch==2.13.0"


@attrs.frozen
class Recipe:
    """How to install one engine: pip argument lists run in order, then an import check."""

    engine: str
    version: str
    #: each element is the argument list of one ``python -m pip install`` (``install`` omitted)
    steps: tuple[tuple[str, ...], ...]
    #: modules the kvspec adapter imports; imported in a fresh interpreter after the install
    verify: tuple[str, ...]
    note: str = ""


VLLM = Recipe(
    engine="vllm",
    version="0.33.0",
    steps=(
        (TORCH,),
        ("--no-deps", "vllm==0.33.0", "xgrammar==0.2.8"),
        (
            # what vllm.v1.core / vllm.v1.request / vllm.distributed.kv_events import, at versions
            # inside vLLM 0.33.0's own requirements (transformers<5.21, fastapi<0.137, tvm-ffi 0.1.11)
            "transformers==5.20.2", "tokenizers==0.23.3", "pydantic==2.13.5", "msgspec==0.23.0",
            "pyzmq==27.3.0", "cbor2==6.3.0", "openai==3.57.0", "openai-harmony==0.0.8",
            "fastapi==0.136.3", "starlette==1.10.0", "aiohttp==3.14.5", "requests==2.34.2",
            "urllib3==2.8.0", "numpy==2.4.6", "regex==2026.11.19", "psutil==7.2.2",
            "cachetools==8.0.2", "cloudpickle==3.1.3", "py-cpuinfo==9.0.0",
            "prometheus_client==0.26.0", "pillow==13.0.0", "pybase64==1.5.1",
            "apache-tvm-ffi==0.1.11", "partial-json-parser==0.2.1.1.post7", "llguidance==1.7.6",
            "uvloop==0.23.0", "msgpack>=1.0",
        ),
    ),
    verify=("vllm.v1.core.kv_cache_manager", "vllm.v1.request", "vllm.distributed.kv_events"),
    note="vLLM's metadata asks for torch==2.14.0 (CUDA); pip reports the conflict and the CPU 2.13.0 build works",
)

SGLANG = Recipe(
    engine="sglang",
    version="0.5.23",
    steps=(
        (TORCH,),
        ("--no-deps", "sglang==0.5.23"),
        (
            # what sglang.srt.mem_cache.radix_cache imports, inside SGLang 0.5.23's requirements
            # (transformers==5.19.0, tokenizers==0.23.2); triton is imported by its kernels' modules
            # (also inside vLLM 0.33.0's ranges, so both engines share one environment)
            "transformers==5.19.0", "tokenizers==0.23.3", "numpy==2.4.6", "requests==2.34.2", "triton==3.9.0",
            "packaging==26.4", "pillow==13.0.0", "starlette==1.10.0", "msgspec==0.23.0", "pydantic==2.13.5",
            "pyzmq==27.3.0", "tqdm==4.70.1", "ipython==9.18.1", "aiohttp==3.14.5", "dill==0.4.1",
            "apache-tvm-ffi==0.1.11", "sentencepiece==0.2.1", "compressed-tensors==0.18.0", "gguf==0.19.0", "orjson==3.13.0",
            "pybase64==1.5.1",
            "msgpack>=1.0",
        ),
    ),
    verify=("sglang.srt.mem_cache.radix_cache",),
    note="PyPI's torchvision is built against CUDA torch and fails to load beside the CPU build "
    "('operator torchvision::nms does not exist'); SGLang imports torchvision.transforms at import time "
    "(multimodal configs), so a stub package that raises on use is installed when no torchvision imports",
)

RECIPES = {"vllm": VLLM, "sglang": SGLANG}


def _pip(python: str, args: Sequence[str]) -> list[str]:
    return [python, "-m", "pip", "install", "--quiet", *args]


def commands(engine: str, *, python: str | None = None, torch_index: str | None = None) -> list[list[str]]:
    """The pip command lines of ``engine``'s recipe, in order (empty steps left out)."""
    recipe = _recipe(engine)
    python = python or sys.executable
    out = []
    for i, step in enumerate(recipe.steps):
        if not step:
            continue
        args = list(step)
        if i == 0 and torch_index:
            args = ["--index-url", torch_index, *args]
        out.append(_pip(python, args))
    return out


def _recipe(engine: str) -> Recipe:
    recipe = RECIPES.get(engine)
    if recipe is None:
        raise InvalidArgument(f"unknown engine {engine!r}; choose one of {', '.join(RECIPES)}")
    return recipe


def site_packages_bytes(path: str | None = None) -> int:
    """Bytes under the environment's ``site-packages`` (the install's footprint, by difference)."""
    root = Path(path or sysconfig.get_paths()["purelib"])
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


#: files of the torchvision stub (see the SGLang recipe's note): importable, raises on any use
TORCHVISION_STUB = {
    "torchvision/__init__.py": (
        '"""Stub installed by kvspec install-engine: PyPI\'s torchvision cannot load beside CPU torch.\n\n'
        'SGLang imports torchvision.transforms at import time (multimodal configs); kvspec drives only\n'
        'its KV cache, which never uses it.  Any use raises ImportError."""\n'
        '__version__ = "0.0.0+kvspec.stub"\n'
    ),
    "torchvision/transforms/__init__.py": "from torchvision._unavailable import __getattr__  # noqa: F401\n",
    **{f"torchvision/{name}": "from torchvision._unavailable import __getattr__  # noqa: F401\n"
       for name in ("transforms/functional.py", "transforms/v2/__init__.py", "transforms/v2/functional.py",
                    "io.py", "ops.py", "utils.py", "models/__init__.py", "datasets.py")},
    "torchvision/_unavailable.py": (
        "class Unavailable:\n"
        "    def __init__(self, name):\n        self._name = name\n"
        "    def __getattr__(self, attr):\n        return Unavailable(f'{self._name}.{attr}')\n"
        "    def __call__(self, *args, **kwargs):\n"
        "        raise ImportError(f'torchvision stub (kvspec install-engine): {self._name} is not available')\n"
        "def __getattr__(name):\n"
        "    if name.startswith('__'):\n        raise AttributeError(name)\n"
        "    return Unavailable(name)\n"
    ),
}


def install_torchvision_stub(python: str | None = None) -> str | None:
    """Write the stub into site-packages unless a real torchvision imports; returns its path."""
    python = python or sys.executable
    if subprocess.run([python, "-c", "import torchvision.transforms"], capture_output=True, check=False).returncode == 0:
        return None
    subprocess.run([python, "-m", "pip", "uninstall", "--quiet", "--yes", "torchvision"], check=False,
                   capture_output=True)
    root = Path(sysconfig.get_paths()["purelib"])
    for rel, text in TORCHVISION_STUB.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root / "torchvision")


def install(engine: str, *, dry_run: bool = False, torch_index: str | None = None, stream=None) -> int:
    """Run ``engine``'s recipe in this environment; print what ran, the time and the size added."""
    stream = stream or sys.stdout
    recipe = _recipe(engine)
    cmds = commands(engine, torch_index=torch_index)
    with tempfile.TemporaryDirectory(prefix="kvspec-install-") as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text(TORCH + "\n")
        env = {**os.environ, "PIP_CONSTRAINT": str(constraints)}
        print(f"kvspec install-engine {engine} {recipe.version} (CPU only) into {sys.prefix}", file=stream)
        if recipe.note:
            print(f"note: {recipe.note}", file=stream)
        for cmd in cmds:
            print(f"PIP_CONSTRAINT={TORCH!r} {shlex.join(cmd)}", file=stream, flush=True)
        if dry_run:
            if engine == "sglang":
                print("then, unless a real torchvision imports: the torchvision stub (kvspec.install.TORCHVISION_STUB)",
                      file=stream)
            return 0
        before = site_packages_bytes()
        start = time.monotonic()
        for cmd in cmds:
            result = subprocess.run(cmd, env=env, check=False)
            if result.returncode != 0:
                print(f"kvspec install-engine: step failed (exit {result.returncode}): {shlex.join(cmd)}", file=stream)
                return 1
        if engine == "sglang":
            stub = install_torchvision_stub()
            if stub:
                print(f"installed the torchvision stub at {stub} (see the note above)", file=stream)
        seconds = time.monotonic() - start
        added = site_packages_bytes() - before
    verify = [sys.executable, "-c", "import " + ", ".join(recipe.verify)]
    start = time.monotonic()
    check = subprocess.run(verify, capture_output=True, text=True, check=False)
    import_seconds = time.monotonic() - start
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"kvspec install-engine: {engine} installed but does not import: {last}", file=stream)
        return 1
    print(f"installed {engine} {recipe.version} in {seconds:.0f}s, {added / 1e9:.2f} GB added to site-packages; "
          f"import check {import_seconds:.1f}s", file=stream)
    return 0
