"""The ``kvspec`` command line.

* ``kvspec check [--target T] [--machine M ...] [--profile P] [--max-examples N] [--seed S] [-j N]``
  runs state machines against a target (default ``impl``) and prints a summary table; exits 1 on
  any divergence or error, printing the shrunk steps and writing a trace file.
* ``kvspec list`` shows machines and registered targets.
* ``kvspec bench NAME`` runs a benchmark from ``benchmarks/``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kvspec.errors import KvSpecError


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    def fmt(row):
        return "  ".join(str(c).ljust(w) if i == 0 or i == len(row) - 1 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


def cmd_check(args: argparse.Namespace) -> int:
    from kvspec.stateful.check import MachineResult, check
    from kvspec.stateful.trace import write_trace
    from kvspec.targets import resolve

    target = resolve(args.target)
    print(f"kvspec check: target {target.name} ({target.version}), profile "
          f"{args.profile or __import__('kvspec.profiles').profiles.default_profile()}", flush=True)

    def progress(result: MachineResult) -> None:
        if result.status == "failed" and result.trace is not None:
            result.trace_path = str(write_trace(result.trace, args.trace_dir))
        rate = f"{result.steps_per_second:,.0f} steps/s" if result.steps else ""
        print(f"  {result.status:7} {result.machine}  {result.examples} examples  {result.steps} steps  "
              f"{result.seconds:.1f}s  {rate}", flush=True)

    results = check(
        args.target,
        args.machine or None,
        profile=args.profile,
        max_examples=args.max_examples,
        seed=args.seed,
        jobs=args.jobs,
        on_result=progress,
    )
    if not results:
        print("no machine matches", args.machine)
        return 2
    rows = [[r.machine, r.examples, r.steps, r.status + (f" ({r.reason})" if r.status == "skipped" else ""),
             f"{r.seconds:.1f}s"] for r in results]
    print()
    print(_table(rows, ["machine", "examples", "steps", "result", "time"]))
    failures = [r for r in results if r.status in ("failed", "error")]
    for r in failures:
        print(f"\n=== {r.machine} against {r.target}: {r.status}: {r.reason}")
        if r.trace is not None:
            for i, step in enumerate(r.trace["steps"]):
                from kvspec.stateful.differential import Step

                marker = ">>" if i == r.trace["divergence"]["index"] else "  "
                print(f"  {marker} {Step.from_json(step).describe()}")
            for d in r.trace["divergence"]["differences"]:
                print(f"  - {d}")
            print(f"trace written to {r.trace_path}")
            print(f"replay with: kvspec replay {r.trace_path}")
    skipped = sum(r.status == "skipped" for r in results)
    print(f"\n{len(results) - len(failures) - skipped} passed, {len(failures)} failed, {skipped} skipped")
    return 1 if failures else 0


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kvspec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="run state machines against a target")
    p.add_argument("--target", default="impl", help="registered name or import path (default: impl)")
    p.add_argument("--machine", action="append", help="machine name or prefix (repeatable)")
    p.add_argument("--profile", choices=["dev", "ci", "nightly"], help="Hypothesis profile")
    p.add_argument("--max-examples", type=int, help="override the profile's max_examples")
    p.add_argument("--seed", type=int, help="random seed (turns off derandomization)")
    p.add_argument("-j", "--jobs", type=int, default=1, help="machines to run in parallel processes")
    p.add_argument("--trace-dir", default="kvspec-traces", help="where failing traces are written")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("list", help="list machines and targets")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("bench", help="run a benchmark (lifecycle, indexing)")
    p.add_argument("name")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KvSpecError as exc:
        print(f"kvspec: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
