"""The ``kvspec`` command line.

* ``kvspec check [--target T] [--machine M ...] [--profile P] [--max-examples N] [--seed S] [-j N]
  [--database DIR|none|redis://...] [--progress SECONDS] [--trace-dir DIR]`` runs state machines
  against a target (default ``impl``) and prints a summary table; exits 1 on any divergence or
  error, printing the shrunk steps and writing a trace file.

Every failure of the command line itself (bad trace, unknown target or machine) is one line on
stderr and exit status 2 — never a traceback.
* ``kvspec replay TRACE [--target T]`` re-runs a trace on the model and a target, prints the first
  divergence as a diff; exits 1 while the target diverges, 0 once it agrees, 2 on a bad trace.
* ``kvspec report TRACE [-o FILE] [--pytest FILE]`` writes a Markdown bug report with a standalone
  pytest file.
* ``kvspec minimize TRACE... [-o FILE | --in-place]`` deletes steps a divergence does not need.
* ``kvspec corpus [--out DIR]`` regenerates the regression corpus (one trace per self-test mutant).
* ``kvspec list`` shows machines and registered targets.
* ``kvspec bench NAME`` runs a benchmark from ``benchmarks/``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
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


def cmd_check(args: argparse.Namespace) -> int:
    from kvspec.stateful.check import MachineResult, check, cpu_count, make_database
    from kvspec.stateful.differential import Step
    from kvspec.stateful.trace import slug, write_trace
    from kvspec.targets import registered_targets, resolve

    target = resolve(args.target)
    if args.database is not None:
        make_database(args.database)  # fail early (e.g. redis extra missing), not in every worker
    jobs = cpu_count() if args.jobs == 0 else args.jobs
    if jobs < 0:
        raise InvalidArgument("-j must be 0 (all CPUs) or positive")
    print(f"kvspec check: target {target.name} ({target.version}), profile {_profile_name(args.profile)}"
          + (f", {jobs} processes" if jobs > 1 else ""), flush=True)
    counts = {"done": 0, "failed": 0}

    def on_result(result: MachineResult) -> None:
        counts["done"] += 1
        if result.status in ("failed", "error"):
            counts["failed"] += 1
        if result.trace is not None:
            try:
                result.trace_path = str(write_trace(result.trace, args.trace_dir))
            except OSError as exc:
                print(f"kvspec check: cannot write a trace under {args.trace_dir}: {exc}", file=sys.stderr)
        rate = f"{result.steps_per_second:,.0f} steps/s" if result.steps else ""
        detail = f"  ({result.reason})" if result.status == "skipped" else ""
        print(f"  {result.status:7} {result.machine}  {result.examples} examples  {result.steps} steps  "
              f"{result.seconds:.1f}s  {rate}{detail}  [{counts['done']} done, {counts['failed']} failed]",
              flush=True)
        if result.trace_path:
            print(f"          trace written to {result.trace_path}", flush=True)

    results = check(
        args.target,
        args.machine or None,
        profile=args.profile,
        max_examples=args.max_examples,
        seed=args.seed,
        jobs=jobs,
        database=args.database if args.database is not None else "default",
        progress_every=args.progress or None,
        minimize=args.minimize,
        on_result=on_result,
    )
    if not results:
        print(f"kvspec check: no machine matches {args.machine}", file=sys.stderr)
        return 2
    rows = [[r.machine, r.examples, r.steps, r.status + (f" ({r.reason})" if r.status == "skipped" else ""),
             f"{r.seconds:.1f}s", f"{r.steps_per_second:,.0f}" if r.steps else "-"] for r in results]
    print()
    print(_table(rows, ["machine", "examples", "steps", "result", "time", "steps/s"]))
    failures = [r for r in results if r.status in ("failed", "error")]
    for r in failures:
        print(f"\n=== {r.machine} against {r.target}: {r.status}: {r.reason}")
        if r.trace is not None:
            mark = r.trace["divergence"]["index"] if "divergence" in r.trace else len(r.trace["steps"]) - 1
            for i, step in enumerate(r.trace["steps"]):
                print(f"  {'>>' if i == mark else '  '} {Step.from_json(step).describe()}")
            for d in r.trace.get("divergence", {}).get("differences", []):
                print(f"  - {d}")
            if r.trace_path is None:
                continue
            quoted = shlex.quote(r.trace_path)
            if target.name not in registered_targets() and not target.name.startswith("mutant:"):
                quoted += f" --target {shlex.quote(target.name)}"  # replay never imports a path on its own
            print(f"trace written to {r.trace_path}")
            print(f"replay with: kvspec replay {quoted}")
            print(f"report with: kvspec report {quoted} -o {slug(r.machine)}-bug.md")
    known = [r for r in results if r.status == "known"]
    for r in known:
        print(f"\n--- {r.machine} against {r.target}: {r.reason}")
        if r.trace_path:
            print(f"trace written to {r.trace_path}")
    skipped = sum(r.status == "skipped" for r in results)
    passed = len(results) - len(failures) - len(known) - skipped
    print(f"\n{passed} passed, {len(failures)} failed, {skipped} skipped"
          + (f", {len(known)} known findings" if known else ""))
    return 1 if failures else 0


def cmd_replay(args: argparse.Namespace) -> int:
    from kvspec.stateful.replay import render_result, replay_trace
    from kvspec.stateful.trace import load_trace

    result = replay_trace(load_trace(args.trace), args.target)
    print(render_result(result))
    return 1 if result.reproduced else 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kvspec.stateful.report import build_report

    from kvspec.stateful.trace import atomic_write

    report = build_report(args.trace, args.target)
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
    from kvspec.stateful.minimize import minimize_trace
    from kvspec.stateful.trace import load_trace, write_trace

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
    from kvspec.stateful.base import all_machines
    from kvspec.targets import registered_targets

    print("machines:")
    for spec in all_machines():
        print(f"  {spec.name:40} needs {', '.join(spec.requires)}  {spec.description}")
    print("targets:")
    for name in registered_targets():
        print(f"  {name}")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kvspec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="run state machines against a target")
    p.add_argument("--target", default="impl", help="registered name or import path (default: impl)")
    p.add_argument("--machine", action="append", help="machine name or prefix (repeatable)")
    p.add_argument("--profile", choices=["dev", "ci", "nightly"],
                   help="Hypothesis profile (default: $KVSPEC_PROFILE, else ci when $CI is set, else dev)")
    p.add_argument("--max-examples", type=int, help="override the profile's max_examples")
    p.add_argument("--seed", type=int, help="random seed (turns off derandomization)")
    p.add_argument("-j", "--jobs", type=int, default=1, help="machines to run in parallel processes (0: all CPUs)")
    p.add_argument("--trace-dir", default="kvspec-traces", help="where failing traces are written")
    p.add_argument("--database", metavar="DIR|none|redis://HOST:PORT",
                   help="Hypothesis example database (default: .hypothesis/examples)")
    p.add_argument("--progress", type=float, default=5.0, metavar="SECONDS",
                   help="progress line per running machine every SECONDS (0: off; default 5)")
    p.add_argument("--no-minimize", dest="minimize", action="store_false",
                   help="keep Hypothesis's shrunk steps as they are (default: delete unneeded steps by replay)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("replay", help="re-run a trace on the model and a target; exit 1 while it diverges")
    p.add_argument("trace", help="trace file written by kvspec check")
    p.add_argument("--target", help="target to replay against (default: the recorded one)")
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

    p = sub.add_parser("bench", help="run a benchmark (lifecycle, indexing)")
    p.add_argument("name")
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
        return args.func(args)
    except KvSpecError as exc:
        print(f"kvspec {args.command}: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kvspec {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    raise SystemExit(main())
