"""The ``kvspec`` command line.

* ``kvspec check [--target T] [--machine M ...] [--profile P] [--max-examples N] [--seed S] [-j N]
  [--duration S] [--max-shrink-seconds S] [--no-shrink] [--max-steps N] [--stats] [--json PATH]
  [--junit-xml PATH] [--database DIR|none|redis://...] [--progress SECONDS] [--trace-dir DIR]``
  runs state machines against a target (default ``impl``) and prints a summary table.  Before
  anything runs, each machine's calls are checked against the target's classes (an incomplete
  adapter is exit 3, not a divergence).  Exit status: 0 passed, 1 divergence (a trace is written),
  2 usage or bad input, 3 adapter incomplete or target crashed, 4 every selected machine skipped,
  130 interrupted by Ctrl-C (the partial table is printed).
* ``kvspec replay TRACE [--target T] [--draw]`` re-runs a trace on the model and a target, prints the
  first divergence as a structural diff (``--draw``: the state there as a Mermaid diagram); exits 1
  while the target diverges, 0 once it agrees, 2 on a bad trace.
* ``kvspec report TRACE [-o FILE] [--pytest FILE]`` writes a Markdown bug report (with a diagram of
  the state at the divergence) and a standalone pytest file.
* ``kvspec minimize TRACE... [-o FILE | --in-place]`` deletes steps a divergence does not need.
* ``kvspec corpus [--out DIR]`` regenerates the regression corpus (one trace per self-test mutant).
* ``kvspec list`` shows machines and registered targets.
* ``kvspec docs [NAME]`` lists the guides shipped with kvspec, or prints one.
* ``kvspec bench NAME`` runs a benchmark from ``benchmarks/``.

Every failure of the command line itself (bad trace, unknown target or machine) is one line on
stderr and exit status 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import time
from collections.abc import Sequence

from kvspec.errors import InvalidArgument, KvSpecError


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    def fmt(row):
        return "  ".join(str(c).ljust(w) if i == 0 or i == len(row) - 1 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


def _profile_name(profile: str | None) -> str:
    from kvspec import profiles

    return profile or profiles.default_profile()


#: Exit statuses of ``kvspec check`` (documented in ``docs/adapters.md``).
EXIT_PASSED, EXIT_DIVERGED, EXIT_USAGE, EXIT_CRASHED, EXIT_ALL_SKIPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


def exit_status(results, interrupted: bool = False) -> int:
    """0 every machine passed (or is a known finding); 1 a divergence or a broken invariant; 3 an
    adapter lacks a method or the target crashed (a non-kvspec exception) and nothing diverged;
    4 every selected machine was skipped; 130 interrupted (Ctrl-C)."""
    if interrupted:
        return EXIT_INTERRUPTED
    if any(r.status in ("failed", "error") and not r.crashed for r in results):
        return EXIT_DIVERGED
    if any(r.crashed or r.status == "adapter" for r in results):
        return EXIT_CRASHED
    if results and all(r.status == "skipped" for r in results):
        return EXIT_ALL_SKIPPED
    return EXIT_PASSED


def _result_label(r) -> str:
    if r.status == "skipped":
        return f"skipped ({r.reason})"
    if r.status == "adapter":
        return "adapter error"
    if r.crashed and r.status in ("failed", "error"):
        return "crashed"
    if r.status == "passed" and r.reason:
        return f"passed ({r.reason})"
    return r.status


def cmd_check(args: argparse.Namespace) -> int:
    if getattr(args, "fuzz", False):
        return cmd_fuzz(args)
    from kvspec.stateful.runner import INTERRUPT, interrupt_handler

    INTERRUPT.clear()
    with interrupt_handler():  # from here on Ctrl-C stops at the next step (see runner.interrupt_handler)
        return _check(args)


def _check(args: argparse.Namespace) -> int:
    from kvspec.stateful.runner import INTERRUPT, check, cpu_count, make_database, new_seed
    from kvspec.stateful.traces.replay import render_failure
    from kvspec.stateful.traces.schema import slug, write_trace
    from kvspec.targets import is_registered, resolve
    from kvspec import profiles

    target = resolve(args.target)
    if args.database is not None:
        make_database(args.database)  # fail early (e.g. redis extra missing), not in every worker
    jobs = cpu_count() if args.jobs == 0 else args.jobs
    if jobs < 0:
        raise InvalidArgument("-j must be 0 (all CPUs) or positive")
    for name in ("duration", "max_shrink_seconds"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise InvalidArgument(f"--{name.replace('_', '-')} must be positive")
    if args.max_steps is not None and args.max_steps < 1:
        raise InvalidArgument("--max-steps must be at least 1")
    profile = _profile_name(args.profile)
    if profile not in profiles.PROFILES:
        raise InvalidArgument(f"unknown profile {profile!r} (KVSPEC_PROFILE); choose one of {', '.join(profiles.PROFILES)}")
    derandomized = profiles.get(profile).derandomize
    seed = args.seed if args.seed is not None else (None if derandomized else new_seed())
    max_examples = args.max_examples
    if args.duration is not None and max_examples is None:
        max_examples = 10**9  # the time budget decides
    seed_text = f"seed {seed}" if seed is not None else f"seed: derandomized (profile {profile}; --seed N randomizes)"
    budget = [f"{args.duration:g}s budget" if args.duration else "",
              "no shrinking" if not args.shrink else
              (f"shrinking at most {args.max_shrink_seconds:g}s" if args.max_shrink_seconds else ""),
              f"at most {args.max_steps} steps per example" if args.max_steps else ""]
    print(f"kvspec check: target {target.name} ({target.version}, {target.mode} mode), profile {profile}, {seed_text}"
          + (f", {jobs} processes" if jobs > 1 else "") + "".join(f", {b}" for b in budget if b), flush=True)
    counts = {"done": 0, "failed": 0}
    display = _ProgressDisplay.create(args.progress)

    def on_result(result) -> None:
        counts["done"] += 1
        if result.status in ("failed", "error", "adapter"):
            counts["failed"] += 1
        if result.trace is not None:
            try:
                result.trace_path = str(write_trace(result.trace, args.trace_dir))
            except OSError as exc:
                print(f"kvspec check: cannot write a trace under {args.trace_dir}: {exc}", file=sys.stderr)
        rate = f"{result.steps_per_second:,.0f} steps/s" if result.steps else ""
        detail = f"  ({result.reason})" if result.status in ("skipped", "adapter") else ""
        display.print(f"  {_result_label(result) if result.status != 'skipped' else 'skipped':7} {result.machine}  "
                      f"{result.examples} examples  {result.steps} steps  {result.seconds:.1f}s  {rate}{detail}  "
                      f"[{counts['done']} done, {counts['failed']} failed]")
        if result.trace_path:
            display.print(f"          trace written to {result.trace_path}")

    started = time.monotonic()
    with display:
        results = check(
            args.target,
            args.machine or None,
            profile=args.profile,
            max_examples=max_examples,
            seed=seed,
            jobs=jobs,
            database=args.database if args.database is not None else "default",
            progress_every=display.every if jobs <= 1 else (args.progress or None),
            on_progress=display.update if jobs <= 1 else None,
            minimize=args.minimize,
            on_result=on_result,
            duration=args.duration,
            max_steps=args.max_steps,
            max_shrink_seconds=args.max_shrink_seconds if args.shrink else None,
            shrink=args.shrink,
            stats=args.stats,
        )
    interrupted = INTERRUPT.is_set()
    elapsed = time.monotonic() - started
    if not results and not interrupted:
        print(f"kvspec check: no machine matches {args.machine}", file=sys.stderr)
        return EXIT_USAGE
    rows = [[r.machine, r.examples, r.steps, _result_label(r), f"{r.seconds:.1f}s",
             f"{r.steps_per_second:,.0f}" if r.steps else "-"] for r in results]
    print()
    print(_table(rows, ["machine", "examples", "steps", "result", "time", "steps/s"]))
    if args.stats:
        for r in results:
            if r.stats:
                print(_render_stats(r))
    failures = [r for r in results if r.status in ("failed", "error", "adapter")]
    for r in failures:
        headline = r.trace.get("summary", r.reason) if r.trace is not None else r.reason
        print(f"\n=== {r.machine} against {r.target}: {_result_label(r)}: {headline}")
        if r.status == "adapter":
            print("  the adapter does not offer what the machine calls (docs/adapters.md lists it):")
            for problem in r.reason.split("; "):
                print(f"  - {problem}")
            continue
        if r.trace is not None:
            print(render_failure(r.trace, target))
            if r.trace_path is None:
                continue
            quoted = shlex.quote(r.trace_path)
            if not is_registered(target.name):
                quoted += f" --target {shlex.quote(target.name)}"  # replay never imports a path on its own
            print(f"trace written to {r.trace_path}")
            print(f"replay with: kvspec replay {quoted} --draw")
            print(f"report with: kvspec report {quoted} -o {slug(r.machine)}-bug.md --pytest test_{slug(r.machine)}_bug.py")
    known = [r for r in results if r.status == "known"]
    for r in known:
        print(f"\n--- {r.machine} against {r.target}: {r.reason}")
        if r.trace_path:
            print(f"trace written to {r.trace_path}")
    skipped = sum(r.status == "skipped" for r in results)
    passed = sum(r.status == "passed" for r in results)
    status = exit_status(results, interrupted)
    print(f"\n{passed} passed, {len(failures)} failed, {skipped} skipped"
          + (f", {len(known)} known findings" if known else "")
          + (f", interrupted after {elapsed:.1f}s" if interrupted else f" in {elapsed:.1f}s")
          + (f" (every machine skipped: exit {status})" if status == EXIT_ALL_SKIPPED else ""))
    summary = dict(target=target.name, target_version=str(target.version), mode=target.mode, profile=profile,
                   seed=seed, seconds=round(elapsed, 3), exit_status=status, interrupted=interrupted)
    if args.json:
        _write_output(_atomic, args.json, json.dumps({**summary, "machines": [r.to_json() for r in results]},
                                                     indent=1) + "\n")
    if args.junit_xml:
        _write_output(_atomic, args.junit_xml, junit_xml(results, summary))
    return status


def _atomic(path: str, text: str) -> None:
    from kvspec.stateful.traces.schema import atomic_write

    atomic_write(path, text)


def junit_xml(results, summary: dict) -> str:
    """JUnit XML of a check: one ``testcase`` per machine (failure, error or skipped), for CI dashboards."""
    from xml.etree import ElementTree as ET

    failures = sum(r.status in ("failed", "error") and not r.crashed for r in results)
    errors = sum(r.crashed or r.status in ("adapter", "interrupted") for r in results)
    suite = ET.Element("testsuite", name=f"kvspec check {summary['target']}", tests=str(len(results)),
                       failures=str(failures), errors=str(errors),
                       skipped=str(sum(r.status == "skipped" for r in results)), time=f"{summary['seconds']:.3f}")
    props = ET.SubElement(suite, "properties")
    for key in ("target", "target_version", "mode", "profile", "seed", "exit_status"):
        ET.SubElement(props, "property", name=key, value=str(summary[key]))
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"kvspec.{r.target}", name=r.machine, time=f"{r.seconds:.3f}")
        message = r.trace.get("summary", r.reason) if r.trace is not None else r.reason
        body = (f"{r.examples} examples, {r.steps} steps, seed {r.seed}"
                + (f"\ntrace: {r.trace_path}\nreplay: kvspec replay {r.trace_path}" if r.trace_path else ""))
        if r.status == "skipped":
            ET.SubElement(case, "skipped", message=r.reason)
        elif r.crashed or r.status in ("adapter", "interrupted"):
            ET.SubElement(case, "error", message=message, type=r.status).text = body
        elif r.status in ("failed", "error"):
            ET.SubElement(case, "failure", message=message, type=r.status).text = body
        else:
            ET.SubElement(case, "system-out").text = body
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _render_stats(r) -> str:
    s = r.stats
    total = max(1, s["generated_examples"])
    other = max(0.0, r.seconds - s["model_seconds"] - s["target_seconds"])
    lines = [f"\nstatistics of {r.machine}: model {s['model_seconds']:.2f}s, target {s['target_seconds']:.2f}s, "
             f"generation and comparison {other:.2f}s; "
             f"{s['invalid_examples']} of {s['generated_examples']} generated examples invalid "
             f"({100 * s['invalid_examples'] / total:.0f}%), {s['examples_with_retried_draws']} "
             f"({100 * s['examples_with_retried_draws'] / total:.0f}%) retried a filtered draw; "
             f"{s['rule_draws']:,} rules chosen at the first draw, {s['swarm_fallbacks']:,} of them "
             f"among all valid rules because the swarm had disabled every valid one"]
    rules = s["rules"]
    width = max((len(k) for k in [*rules, *s["errors"]]), default=10)
    lines += [f"  rule   {name:{width}}  {count:>8,}" for name, count in sorted(rules.items(), key=lambda x: -x[1])]
    lines += [f"  error  {name:{width}}  {count:>8,}" for name, count in sorted(s["errors"].items(), key=lambda x: -x[1])]
    if not s["errors"]:
        lines.append("  (no kvspec error was exercised)")
    return "\n".join(lines)


class _ProgressDisplay:
    """Live progress on stderr: an in-place display per machine on a terminal (``rich``), a plain
    line every ``--progress`` seconds otherwise (a CI log), nothing with ``--progress 0``."""

    every: float | None = None

    @staticmethod
    def create(seconds: float):
        if not seconds:
            return _ProgressDisplay()
        if sys.stderr.isatty() and not os.environ.get("KVSPEC_PLAIN_PROGRESS"):
            try:
                return _RichProgress()
            except ImportError:  # pragma: no cover - rich is a dependency
                pass
        plain = _ProgressDisplay()
        plain.every = seconds
        plain.update = None  # the runner's own plain printer
        return plain

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def print(self, text: str) -> None:
        print(text, flush=True)

    update = None


class _RichProgress(_ProgressDisplay):
    every = 0.25

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[eta]}"),
                                  TimeElapsedColumn(), console=Console(stderr=True), transient=True)
        self._tasks: dict[str, int] = {}

    def __enter__(self):
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def print(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def update(self, p) -> None:
        task = self._tasks.get(p.machine)
        total = p.max_examples if p.max_examples and p.max_examples < 10**8 else None
        if task is None:
            task = self._tasks[p.machine] = self._progress.add_task(p.machine, total=total, rate="", eta="")
        if p.done:
            self._progress.remove_task(task)
            return
        description = f"{p.machine}" + (f" [red]shrinking {p.failing_examples} failing[/red]" if p.shrinking else "")
        eta = p.eta
        self._progress.update(task, completed=min(p.examples, total) if total else p.examples, total=total,
                              description=description, rate=f"{p.steps_per_second:,.0f} steps/s",
                              eta=f"ETA {eta:.0f}s" if eta is not None else "")


def cmd_fuzz(args: argparse.Namespace) -> int:
    """``kvspec check --fuzz``: the machines' rules from a seeded PRNG (:mod:`kvspec.stateful.fuzz`)."""
    from kvspec.stateful.engine.differential import Step
    from kvspec.stateful.fuzz import fuzz
    from kvspec.stateful.runner import cpu_count
    from kvspec.stateful.traces.schema import write_trace
    from kvspec.targets import resolve

    target = resolve(args.target)
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(63)
    jobs = cpu_count() if args.jobs == 0 else args.jobs
    budget = " or ".join(([f"{args.fuzz_steps:,} steps"] if args.fuzz_steps is not None else [])
                         + ([f"{args.duration:g}s in all"] if args.duration is not None else [])) or "20,000 steps"
    print(f"kvspec check --fuzz: target {target.name} ({target.version}), seed {seed}, {budget} per machine, "
          f"{args.fuzz_run_length} rules per run", flush=True)

    def on_result(result) -> None:
        if result.trace is not None:
            result.trace_path = str(write_trace(result.trace, args.trace_dir))
        print(f"  {result.status:7} {result.machine}  {result.examples} runs  {result.steps} steps  "
              f"{result.seconds:.1f}s  {result.steps_per_second:,.0f} steps/s", flush=True)

    per_machine = None
    if args.duration is not None:  # --duration is the whole run's budget, spread over the machines
        from kvspec.stateful.engine.registry import find_machines

        per_machine = args.duration / max(1, len(find_machines(args.machine or None)))
    results = fuzz(args.target, args.machine or None, steps=args.fuzz_steps, seconds=per_machine, seed=seed,
                   run_length=args.fuzz_run_length, jobs=jobs, minimize=args.minimize,
                   progress_every=args.progress or None, on_result=on_result)
    if not results:
        print(f"kvspec check: no machine matches {args.machine}", file=sys.stderr)
        return 2
    rows = [[r.machine, r.examples, r.steps, r.status + (f" ({r.reason})" if r.status == "skipped" else ""),
             f"{r.seconds:.1f}s", f"{r.steps_per_second:,.0f}" if r.steps else "-"] for r in results]
    print()
    print(_table(rows, ["machine", "runs", "steps", "result", "time", "steps/s"]))
    failures = [r for r in results if r.status in ("failed", "error")]
    for r in failures:
        print(f"\n=== {r.machine} against {r.target}: {r.status}: {r.reason}")
        if r.trace is not None:
            mark = r.trace["divergence"]["index"] if "divergence" in r.trace else len(r.trace["steps"]) - 1
            for i, step in enumerate(r.trace["steps"]):
                print(f"  {'>>' if i == mark else '  '} {Step.from_json(step).describe()}")
            print(f"trace written to {r.trace_path}\nreproduce with: {r.trace['command']}")
    print(f"\n{sum(r.status == 'passed' for r in results)} passed, {len(failures)} failed (seed {seed})")
    return 1 if failures else 0


def cmd_replay(args: argparse.Namespace) -> int:
    from kvspec.stateful.traces.replay import render_result, replay_trace
    from kvspec.stateful.traces.schema import load_trace

    result = replay_trace(load_trace(args.trace), args.target)
    print(render_result(result))
    if args.draw or args.draw_to:
        _draw(result, args)
    return 1 if result.reproduced else 0


def _draw(result, args: argparse.Namespace) -> None:
    """``--draw``: the state at the divergence as Mermaid; ``--draw-to FILE``: .mmd, .dot, or .png/.svg via Graphviz."""
    import shutil
    import subprocess

    from kvspec.stateful.traces import draw

    drawn = draw.pictures(result)
    if not drawn:
        print("kvspec replay: nothing to draw (no divergence, or the machine has no index dump)", file=sys.stderr)
        return
    if args.draw:
        for caption, graph in drawn:
            print(f"\nstate {caption} (Mermaid; GitHub and most Markdown viewers render it):")
            print("```mermaid")
            print(draw.mermaid(graph))
            print("```")
            print("\n".join(line.replace("**", "") for line in draw.legend(graph)))
    if args.draw_to:
        caption, graph = drawn[-1]
        path = args.draw_to
        suffix = path.rsplit(".", 1)[-1].lower()
        if suffix == "mmd":
            _write_output(_atomic, path, draw.mermaid(graph) + "\n")
        elif suffix == "dot":
            _write_output(_atomic, path, draw.dot(graph, f"state {caption}"))
        elif suffix in ("png", "svg"):
            if shutil.which("dot") is None:
                raise InvalidArgument("--draw-to .png/.svg needs Graphviz's `dot` (apt-get install graphviz); "
                                      "write .dot or .mmd instead")
            done = subprocess.run(["dot", f"-T{suffix}", "-o", path], input=draw.dot(graph, f"state {caption}"),
                                  text=True, capture_output=True)
            if done.returncode:
                raise InvalidArgument(f"dot failed: {done.stderr.strip()[:200]}")
        else:
            raise InvalidArgument("--draw-to FILE must end in .mmd, .dot, .png or .svg")
        print(f"picture ({caption}) written to {path}", file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kvspec.stateful.traces.report import build_report

    from kvspec.stateful.traces.schema import atomic_write

    report = build_report(args.trace, args.target, pytest_path=args.pytest)
    if args.output:
        _write_output(atomic_write, args.output, report.markdown + "\n")
        print(f"report written to {args.output}", file=sys.stderr)
    else:
        print(report.markdown)
    if args.pytest:
        _write_output(atomic_write, args.pytest, report.test_source)
        print(f"pytest file written to {args.pytest}", file=sys.stderr)
    if not report.reproduced:
        print(f"kvspec report: note: the trace no longer diverges against {report.result.target.name}",
              file=sys.stderr)
    return 0


def _write_output(write, path: str, text: str) -> None:
    """Write a file the user named; a problem with the path is one line and exit 2, not a traceback."""
    try:
        write(path, text)
    except OSError as exc:
        raise InvalidArgument(f"cannot write {path}: {exc.strerror or exc}") from None


def cmd_minimize(args: argparse.Namespace) -> int:
    from kvspec.stateful.traces.minimize import minimize_trace
    from kvspec.stateful.traces.schema import load_trace, write_trace

    if args.output and len(args.trace) > 1:
        raise InvalidArgument("-o takes one trace; use --in-place for several")
    for path in args.trace:
        trace = load_trace(path)
        smaller = minimize_trace(trace, args.target)
        destination = path if args.in_place else args.output
        if destination:
            _write_output(lambda p, _: write_trace(dict(smaller.data), path=p), destination, "")
        print(f"{path}: {len(trace.steps)} -> {len(smaller.steps)} steps"
              + (f", written to {destination}" if destination else " (use -o FILE or --in-place to keep it)"))
    return 0


def cmd_corpus(args: argparse.Namespace) -> int:
    from kvspec.stateful.corpus import regenerate

    return regenerate(args.out, args.mutant or None, profile=args.profile, missing_only=args.missing,
                      jobs=args.jobs, stream=sys.stdout)


def cmd_list(args: argparse.Namespace) -> int:
    from kvspec.stateful.engine.registry import all_machines
    from kvspec.targets import registered_targets

    print("machines:")
    for spec in all_machines():
        print(f"  {spec.name:40} needs {', '.join(spec.requires)}  {spec.description}")
    print("targets:")
    for name in registered_targets():
        print(f"  {name}")
    return 0


def _docs_dir():
    """Where the guides are: the installed ``kvspec.docs`` package data, else the source tree's ``docs/``."""
    from importlib import resources
    from pathlib import Path

    try:
        found = resources.files("kvspec.docs")
        if any(p.name.endswith(".md") for p in found.iterdir()):
            return found
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "docs"


def cmd_docs(args: argparse.Namespace) -> int:
    docs = _docs_dir()
    pages = sorted(p.name[:-3] for p in docs.iterdir() if p.name.endswith(".md"))
    if not args.name:
        print("guides shipped with kvspec (kvspec docs NAME prints one):")
        for page in pages:
            first = next((line.lstrip("# ").strip() for line in (docs / f"{page}.md").read_text().splitlines()
                          if line.startswith("#")), "")
            print(f"  {page:12} {first}")
        return 0
    name = args.name[:-3] if args.name.endswith(".md") else args.name
    if name not in pages:
        raise InvalidArgument(f"no guide {args.name!r}; one of: {', '.join(pages)}")
    print((docs / f"{name}.md").read_text(), end="")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import importlib

    try:
        module = importlib.import_module(f"kvspec.bench.{args.name}")
    except ImportError as exc:
        print(f"kvspec bench: unknown benchmark {args.name!r} ({exc})", file=sys.stderr)
        return 2
    return int(module.main(args.rest) or 0)


def cmd_install_engine(args: argparse.Namespace) -> int:
    from kvspec.install import install

    return install(args.engine, dry_run=args.dry_run, torch_index=args.torch_index)


def cmd_validate(args: argparse.Namespace) -> int:
    from kvspec.validate import main as validate

    return validate(args.files, mode=args.mode, fmt=args.format, worker=args.worker)


def _env(name: str, kind: type):
    """The default of an option from the environment (``KVSPEC_DURATION=20``); a bad value is exit 2."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return kind(raw)
    except ValueError:
        raise SystemExit(f"kvspec: {name}={raw!r} is not {'a number' if kind is float else 'an integer'}") from None


DESCRIPTION = "kvspec: check a KV-cache manager or KV-aware router against an executable specification."


def _benchmarks() -> list[str]:
    from pathlib import Path

    import kvspec.bench

    return sorted(p.stem for p in Path(kvspec.bench.__file__).parent.glob("*.py")
                  if not p.stem.startswith("_") and "\ndef main(" in p.read_text())


def build_parser() -> argparse.ArgumentParser:
    from kvspec import __version__

    parser = argparse.ArgumentParser(prog="kvspec", description=DESCRIPTION,
                                     epilog="The guides ship with kvspec: `kvspec docs` lists them, `kvspec docs "
                                            "adapters` prints the guide to checking your own engine.")
    parser.add_argument("--version", action="version", version=f"kvspec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="run state machines against a target",
                       description="Run state machines against a target. Exit status: 0 passed, 1 divergence, "
                                   "2 usage or bad input, 3 adapter incomplete or target crashed, 4 every machine "
                                   "skipped, 130 interrupted. Options marked [env] default to the named variable.")
    p.add_argument("--target", default=os.environ.get("KVSPEC_TARGET", "impl"),
                   help="registered name or import path module[:attribute] (default: impl) [env KVSPEC_TARGET]")
    p.add_argument("--machine", action="append", help="machine name or prefix (repeatable)")
    p.add_argument("--profile", choices=["dev", "ci", "nightly"],
                   help="Hypothesis profile (default: $KVSPEC_PROFILE, else ci when $CI is set, else dev)")
    p.add_argument("--max-examples", type=int, default=_env("KVSPEC_MAX_EXAMPLES", int),
                   help="override the profile's max_examples [env KVSPEC_MAX_EXAMPLES]")
    p.add_argument("--seed", type=int, default=_env("KVSPEC_SEED", int),
                   help="random seed; a randomized profile draws one when not given and prints it [env KVSPEC_SEED]")
    p.add_argument("--duration", type=float, default=_env("KVSPEC_DURATION", float), metavar="SECONDS",
                   help="wall-time budget of the whole run, spread over the machines, shrinking included "
                        "(examples are then unlimited unless --max-examples) [env KVSPEC_DURATION]")
    p.add_argument("--max-shrink-seconds", type=float, default=_env("KVSPEC_MAX_SHRINK_SECONDS", float) or 60.0,
                   metavar="SECONDS", help="stop shrinking a failure after this long and report the smallest "
                                           "seen (default 60) [env KVSPEC_MAX_SHRINK_SECONDS]")
    p.add_argument("--no-shrink", dest="shrink", action="store_false",
                   default=not os.environ.get("KVSPEC_NO_SHRINK"),
                   help="report the first failing example as found [env KVSPEC_NO_SHRINK=1]")
    p.add_argument("--max-steps", type=int, default=_env("KVSPEC_MAX_STEPS", int),
                   help="steps per example (the profile's stateful_step_count) [env KVSPEC_MAX_STEPS]")
    p.add_argument("--stats", action="store_true", default=bool(os.environ.get("KVSPEC_STATS")),
                   help="print per-rule and per-error counts, model vs target time, invalid draws [env KVSPEC_STATS=1]")
    p.add_argument("--json", metavar="PATH", default=os.environ.get("KVSPEC_JSON"),
                   help="write a JSON summary: per machine result, examples, steps, seconds, seed, trace [env KVSPEC_JSON]")
    p.add_argument("--junit-xml", metavar="PATH", default=os.environ.get("KVSPEC_JUNIT_XML"),
                   help="write JUnit XML, one testcase per machine [env KVSPEC_JUNIT_XML]")
    p.add_argument("-j", "--jobs", type=int, default=1, help="machines to run in parallel processes (0: all CPUs)")
    p.add_argument("--trace-dir", default=os.environ.get("KVSPEC_TRACE_DIR", "kvspec-traces"),
                   help="where failing traces are written [env KVSPEC_TRACE_DIR]")
    p.add_argument("--database", metavar="DIR|none|redis://HOST:PORT",
                   help="Hypothesis example database (default: .hypothesis/examples)")
    p.add_argument("--progress", type=float, default=5.0, metavar="SECONDS",
                   help="progress on stderr: live on a terminal, else a line per running machine every SECONDS "
                        "(0: off; default 5)")
    p.add_argument("--no-minimize", dest="minimize", action="store_false",
                   help="keep Hypothesis's shrunk steps as they are (default: delete unneeded steps by replay)")
    p.add_argument("--fuzz", action="store_true",
                   help="drive the rules from a seeded PRNG instead of Hypothesis's engine (no shrinking)")
    p.add_argument("--fuzz-steps", type=int, metavar="N", help="with --fuzz: steps per machine (default 20,000)")
    p.add_argument("--fuzz-run-length", type=int, default=100, metavar="RULES", help="with --fuzz: rules per run")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("replay", help="re-run a trace on the model and a target; exit 1 while it diverges")
    p.add_argument("trace", help="trace file written by kvspec check")
    p.add_argument("--target", help="target to replay against (default: the recorded one)")
    p.add_argument("--draw", action="store_true", help="print the state at the divergence as a Mermaid diagram")
    p.add_argument("--draw-to", metavar="FILE", help="write that picture to FILE (.mmd, .dot, or .png/.svg with Graphviz)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("report", help="write a Markdown bug report with a standalone pytest file")
    p.add_argument("trace", help="trace file written by kvspec check")
    p.add_argument("--target", help="target to replay against (default: the recorded one)")
    p.add_argument("-o", "--output", help="Markdown file (default: stdout)")
    p.add_argument("--pytest", metavar="FILE", help="also write the standalone pytest file here")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("minimize", help="delete steps a trace's divergence does not need (replay-checked)")
    p.add_argument("trace", nargs="+", help="trace files")
    p.add_argument("--target", help="target to replay against (default: the recorded one)")
    p.add_argument("-o", "--output", help="write the smaller trace here")
    p.add_argument("--in-place", action="store_true", help="overwrite each trace with its smaller version")
    p.set_defaults(func=cmd_minimize)

    p = sub.add_parser("corpus", help="(re)generate the regression corpus: one trace per self-test mutant")
    p.add_argument("--out", default="tests/regressions", help="corpus directory (default: tests/regressions)")
    p.add_argument("--mutant", action="append", help="only these mutants (repeatable)")
    p.add_argument("--profile", default="ci", choices=["dev", "ci", "nightly"], help="profile (default: ci)")
    p.add_argument("--missing", action="store_true", help="only mutants without a trace in the corpus yet")
    p.add_argument("-j", "--jobs", type=int, default=1, help="mutants to search in parallel processes")
    p.set_defaults(func=cmd_corpus)

    p = sub.add_parser("install-engine", help="install a real engine (vllm, sglang) into this environment, CPU only")
    p.add_argument("engine", choices=["vllm", "sglang"])
    p.add_argument("--dry-run", action="store_true", help="print the pip commands, run nothing")
    p.add_argument("--torch-index", metavar="URL", help="index for the CPU torch wheel (default: pip's configuration)")
    p.set_defaults(func=cmd_install_engine)

    p = sub.add_parser("validate", help="check recorded KV-event streams against the router contract (exit 1 on a violation)")
    p.add_argument("files", nargs="+", help="Dynamo RouterEvent JSON lines, or vLLM/SGLang KVEventBatch msgpack")
    p.add_argument("--mode", choices=["exact", "copies"], default="exact",
                   help="exact: a block is announced once; copies: per-copy streams (vLLM), held until as many removes")
    p.add_argument("--format", choices=["auto", "dynamo", "zmq"], default="auto", help="stream format (default: auto)")
    p.add_argument("--worker", type=int, default=0, help="worker id of a ZMQ (vLLM/SGLang) stream (default 0)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("list", help="list machines and targets")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("docs", help="list the guides shipped with kvspec, or print one (e.g. adapters)")
    p.add_argument("name", nargs="?", help="guide name, e.g. adapters")
    p.set_defaults(func=cmd_docs)

    benchmarks = _benchmarks()
    p = sub.add_parser("bench", help=f"run a benchmark ({', '.join(benchmarks)})",
                       description=f"Run a benchmark: {', '.join(benchmarks)}. "
                                   "`kvspec bench NAME --help` shows its options.")
    p.add_argument("name", choices=benchmarks, metavar="NAME", help=f"one of: {', '.join(benchmarks)}")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_bench)
    return parser


#: Commands that print text read from trace files: their output is escaped for the terminal.
_READS_TRACES = ("replay", "report", "minimize")


class _TerminalSafe:
    """A text stream that escapes control characters (:func:`kvspec.escape.terminal`) before writing.

    Trace files are untrusted: an error type or a subject holding ``ESC [ ...`` must not recolour,
    move or retitle the user's terminal when kvspec prints it.
    """

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        from kvspec.escape import terminal

        return self._stream.write(terminal(text))

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in _READS_TRACES and not isinstance(sys.stdout, _TerminalSafe):
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _TerminalSafe(sys.stdout), _TerminalSafe(sys.stderr)
        try:
            return main(argv)
        finally:
            sys.stdout, sys.stderr = saved
    try:
        status = args.func(args)
    except KvSpecError as exc:
        print(f"kvspec {args.command}: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kvspec {args.command}: interrupted", file=sys.stderr)
        status = 130
    if status == 130 and argv is None:
        # Ctrl-C: everything is printed and every trace written; skip the interpreter's teardown of
        # Hypothesis's data (seconds on a loaded machine) so that the command stops at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    return status


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    raise SystemExit(main())
