"""The regression corpus: traces kept in ``tests/regressions/`` and replayed by pytest forever.

Every trace in the corpus is replayed (``tests/regressions/test_corpus.py``) against

* ``impl`` and ``model`` — they must agree with the model on every step (a corpus trace is a
  scenario that once broke something; it must never break the real implementation);
* its recorded target — a ``mutant:<name>`` must *still diverge* (otherwise the trace no longer
  demonstrates the planted bug and has gone stale); any other registered target (an adapter whose
  bug was fixed) must agree;
* every real engine (:data:`ENGINES`: ``vllm``, ``sglang``) that provides all the classes the
  machine needs — the engine must agree with the model on a scenario that once broke something,
  unless the machine lists a known finding against it (its reproducers live in ``tests/engines``).
  Without the engine installed that replay is skipped with the install hint (:func:`unavailable`).

:func:`regenerate` (``kvspec corpus --out tests/regressions``) seeds the corpus with one trace per
self-test mutant (:data:`kvspec.stateful.mutants.MUTANTS`): it runs the machines named in the
mutant's ``caught_by`` under the ``ci`` profile (derandomized, so regenerating is reproducible),
keeps the first shrunk divergence as ``mutant-<name>.json`` and checks it replays as described.
Users drop their own traces (from ``kvspec check``) next to them.  ``--missing`` writes only the
traces not in the corpus yet and says so when none is missing.
"""

from __future__ import annotations

import concurrent.futures
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from kvspec.errors import KvSpecError
from kvspec.stateful.engine.registry import find_machines, lookup_machine
from kvspec.stateful.runner import check_machine
from kvspec.stateful.traces.replay import replay_trace
from kvspec.stateful.traces.schema import Trace, validate_trace, write_trace
from kvspec.targets import registered_targets, resolve

__all__ = ["ENGINES", "corpus_files", "describe", "engine_targets", "expectations", "regenerate", "unavailable",
           "verify"]


def corpus_files(directory: str | Path) -> list[Path]:
    return sorted(Path(directory).glob("*.json"))


#: the real-engine targets: name -> the adapter package (its ``CLASSES``: what it provides)
ENGINES = {"vllm": "kvspec.adapters.vllm", "sglang": "kvspec.adapters.sglang"}


def engine_targets(machine: str) -> list[str]:
    """The engines that can run ``machine`` (they provide every class it needs) and are not known
    to fail it (``known_failures``); decided without importing any engine."""
    import importlib

    spec = lookup_machine(machine)
    names = []
    for name, package in ENGINES.items():
        provided = set(importlib.import_module(package).CLASSES)
        if set(spec.requires) <= provided and name not in spec.known_failures:
            names.append(name)
    return names


def expectations(trace: Trace) -> list[tuple[str, bool]]:
    """``(target, must_diverge)`` pairs a corpus trace is replayed against."""
    plan = [("impl", False), ("model", False)]
    recorded = trace.target
    if recorded.startswith("mutant:"):
        plan.append((recorded, True))
    elif recorded not in ("impl", "model") and recorded in registered_targets():
        plan.append((recorded, False))
    try:
        engines = engine_targets(trace.machine)
    except KvSpecError:  # a machine kvspec no longer has: replaying against impl says so
        engines = []
    plan += [(name, False) for name in engines if name != recorded]
    return plan


def unavailable(target: str, error: KvSpecError) -> str | None:
    """Why ``target`` cannot replay a trace (``error`` came from the replay), with the install hint
    of an absent engine; ``None`` when ``error`` is a real problem with the trace."""
    if "cannot run against" not in str(error):
        return None
    version = resolve(target).version
    return f"{error} ({version})" if version.startswith("unavailable") else str(error)


def verify(trace: Trace) -> list[str]:
    """Problems with a corpus trace (empty: it replays as :func:`expectations` demands).

    A target that lacks the machine's classes (an engine not installed) is skipped, not a problem.
    """
    problems = []
    for target, must_diverge in expectations(trace):
        try:
            result = replay_trace(trace, target)
        except KvSpecError as exc:
            if unavailable(target, exc) is not None:
                continue
            problems.append(f"{target}: {exc}")
            continue
        if result.reproduced != must_diverge:
            problems.append(f"{target}: expected {'a divergence' if must_diverge else 'agreement'}, got "
                            f"{'a divergence' if result.reproduced else 'agreement'}")
    return problems


def regenerate(out: str | Path, mutants: Sequence[str] | None = None, *, profile: str = "ci",
               missing_only: bool = False, jobs: int = 1, stream: TextIO = sys.stdout) -> int:
    """Write ``mutant-<name>.json`` for each mutant into ``out``; 0 if every one was caught and verifies.

    ``missing_only`` skips mutants that already have a trace in ``out``; ``jobs`` spreads mutants
    over worker processes.
    """
    from kvspec.stateful.mutants import MUTANTS

    out = Path(out)
    names = sorted(mutants or MUTANTS)
    unknown = [n for n in names if n not in MUTANTS]
    if unknown:
        print(f"unknown mutants: {', '.join(unknown)}", file=stream)
        return 2
    if missing_only:
        names = [n for n in names if not (out / f"mutant-{n}.json").exists()]
        if names:
            print(f"  missing: {', '.join(names)}", file=stream, flush=True)
        else:
            print(f"  none missing: every mutant{'' if mutants else f' ({len(MUTANTS)})'} has a trace in {out}",
                  file=stream)
    status = 0
    if jobs <= 1 or len(names) <= 1:
        outcomes = (_one(name, str(out), profile) for name in names)
        for ok, line in outcomes:
            status |= not ok
            print(line, file=stream, flush=True)
    else:
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_one, name, str(out), profile) for name in names]
            for future in concurrent.futures.as_completed(futures):
                try:
                    ok, line = future.result()
                except Exception as exc:  # noqa: BLE001 - a worker process died
                    ok, line = False, f"  ERROR  worker failed: {exc!r}"
                status |= not ok
                print(line, file=stream, flush=True)
    stale = [p for p in corpus_files(out) if p.name.startswith("mutant-")
             and p.name[len("mutant-"):-len(".json")] not in MUTANTS]
    for path in stale:
        print(f"  stale  {path}: no mutant of that name any more (delete it)", file=stream)
    return int(status)


def _one(name: str, out: str, profile: str) -> tuple[bool, str]:
    """Find, verify and write the corpus trace of mutant ``name``: ``(ok, report line)``."""
    try:
        return _find(name, out, profile)
    except Exception as exc:  # noqa: BLE001 - one broken mutant or machine must not stop the others
        return False, f"  ERROR  {name}: {type(exc).__name__}: {exc}".splitlines()[0]


def _find(name: str, out: str, profile: str) -> tuple[bool, str]:
    from kvspec.stateful.mutants import MUTANTS, mutant_target

    started = time.perf_counter()
    mutant = MUTANTS[name]
    target = mutant_target(name)
    found = None
    tried = []
    for spec in find_machines(list(mutant.caught_by)):
        result = check_machine(spec, target, profile=profile, database=None)
        tried.append(f"{spec.name}:{result.status}")
        if result.status == "failed" and result.trace is not None:
            found = dict(result.trace)
            found["created"] = "regenerated by kvspec corpus"  # stable file contents
            break
    elapsed = time.perf_counter() - started
    if found is None:
        return False, f"  NOT CAUGHT {name}: {', '.join(tried) or 'no machine'} ({elapsed:.0f}s)"
    path = Path(out) / f"mutant-{name}.json"
    loaded = validate_trace(found, source=str(path))
    problems = verify(loaded)
    if problems:  # not written: the corpus keeps only traces that replay (and --missing retries it)
        return False, f"  BAD    {path} (not written): {'; '.join(problems)}"
    write_trace(found, path=path)
    return True, (f"  ok     {path}  ({loaded.machine}, {len(loaded.steps)} steps, {elapsed:.0f}s: "
                  f"{loaded.summary[:80]})")


def describe(path: str | Path) -> str:
    """One line about a corpus file, for test ids and listings."""
    data = json.loads(Path(path).read_text())
    return f"{data.get('machine')} vs {data.get('target', {}).get('name')}"
