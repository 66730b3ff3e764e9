"""Bug reports from traces: Markdown for the issue tracker plus a standalone pytest file.

``kvspec report TRACE [-o FILE] [--pytest FILE]`` replays the trace (so the report shows what the
target does *now*, and the model's outcome of every step) and writes:

* a Markdown report: title, environment, the minimal steps, expected vs actual at the divergence,
  the standalone test, and how to replay;
* a pytest file a maintainer runs without Hypothesis and without reading kvspec's machines.  It
  builds the subjects from the target namespace (``kvspec.targets.resolve(TARGET)``; ``TARGET`` is
  the recorded target, overridable with the ``KVSPEC_TARGET`` environment variable) and calls the
  methods with literal arguments.  After every step it asserts, literally, what the reference model
  did: the return value or the exact error class, then every observer the machine compared, in the
  machine's order (``drain_*`` observers consume state, so the order and the calls matter).  Values
  are compared the way the machine compares them (:func:`kvspec.codec.canonical`: a tuple equals a
  list).  So the file fails on the bug and passes on any target that agrees with the model.

Why literal asserts rather than calling kvspec's replay: a maintainer reads the expected behaviour
in the file itself, and can cut it down or port it.  Machines whose comparator is not exact (the
``contract`` mode for external engines) cannot be expressed as literal equalities; for them the
file embeds the trace and calls :func:`kvspec.stateful.replay.assert_replays_clean`.

Literals: kvspec's value types are frozen attrs classes and registered enums; they are written as
constructor calls with keyword arguments and imported from their defining ``kvspec`` module.  Every
literal is evaluated back at generation time and must equal the value; one that does not (an
unusual type) is embedded as kvspec JSON and decoded with :func:`kvspec.codec.decode` instead.
"""

from __future__ import annotations

import enum
import json
import math
import platform
import re
from typing import Any

import attrs

import kvspec.errors
from kvspec import codec, escape
from kvspec.errors import TraceError
from kvspec.stateful.engine.differential import Outcome, exact_compare
from kvspec.stateful.traces.replay import (ReplayResult, comparator_of, flagged_fields, outcome_diff, outcome_text,
                                    prepare, render_steps, replay_trace)
from kvspec.stateful.traces.render import step_contract
from kvspec.stateful.traces.schema import Trace, load_trace, recorded_outcome

__all__ = ["Literals", "Report", "build_report", "pytest_source"]


class _NoLiteral(Exception):
    pass


class Literals:
    """Renders values as Python source and remembers the imports they need."""

    def __init__(self) -> None:
        self.imports: dict[str, str] = {}  # name -> module
        self.needs_json = False

    def render(self, value: Any) -> str:
        """Python source for ``value``, checked by evaluating it back."""
        try:
            source = self._render(value)
        except _NoLiteral:
            return self._json(value)
        if self._roundtrips(source, value):
            return source
        return self._json(value)

    def _json(self, value: Any) -> str:
        try:
            text = json.dumps(codec.encode(value), separators=(",", ":"))
        except TypeError:
            raise _NoLiteral(repr(value)) from None
        self.needs_json = True
        return f"recorded({text!r})"

    def _roundtrips(self, source: str, value: Any) -> bool:
        namespace: dict[str, Any] = {"frozenset": frozenset, "float": float}
        for name, module in self.imports.items():
            namespace[name] = getattr(__import__(module, fromlist=[name]), name)
        try:
            back = eval(source, {"__builtins__": {}}, namespace)  # noqa: S307 - our own generated source
            return _same_encoding(back, value)
        except Exception:  # noqa: BLE001
            return False

    def _render(self, value: Any) -> str:
        if isinstance(value, enum.Enum):
            cls = type(value)
            if codec.registered_types().get(cls.__name__) is not cls:
                raise _NoLiteral
            self._import(cls)
            return f"{cls.__name__}.{value.name}"
        if value is None or isinstance(value, (bool, int, str)):
            return repr(value)
        if isinstance(value, float):
            return repr(value) if math.isfinite(value) else f"float({str(value)!r})"
        if isinstance(value, list):
            return "[" + ", ".join(self._render(v) for v in value) + "]"
        if isinstance(value, tuple):
            items = [self._render(v) for v in value]
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{self._render(k)}: {self._render(v)}" for k, v in value.items()) + "}"
        if isinstance(value, (set, frozenset)):
            items = sorted((self._render(v) for v in value))
            return "frozenset({" + ", ".join(items) + "})" if items else "frozenset()"
        cls = type(value)
        if attrs.has(cls) and codec.registered_types().get(cls.__name__) is cls:
            self._import(cls)
            args = []
            for field in attrs.fields(cls):
                if not field.init:
                    continue
                current = getattr(value, field.name)
                default = field.default
                if (default is not attrs.NOTHING and not isinstance(default, attrs.Factory)
                        and type(current) is type(default) and current == default):
                    continue  # a default argument: leave it out, as a person would
                name = getattr(field, "alias", None) or field.name.lstrip("_")
                args.append(f"{name}={self._render(current)}")
            return f"{cls.__name__}({', '.join(args)})"
        raise _NoLiteral

    def _import(self, cls: type) -> None:
        self.imports[cls.__name__] = cls.__module__


def _same_encoding(a: Any, b: Any) -> bool:
    """Equal kvspec encodings (as JSON text, so that a NaN equals itself)."""
    return json.dumps(codec.encode(a)) == json.dumps(codec.encode(b))


def _error_import(name: str) -> tuple[str, str] | None:
    """(module, name) of the kvspec error class called ``name``."""
    found = getattr(kvspec.errors, name, None)
    if isinstance(found, type) and issubclass(found, BaseException):
        return "kvspec.errors", name
    todo = [kvspec.errors.KvSpecError]
    while todo:
        cls = todo.pop()
        if cls.__name__ == name:
            return cls.__module__, name
        todo.extend(cls.__subclasses__())
    return None


_RESERVED = {"ns", "same", "actual", "expected", "raises_exactly", "recorded", "TARGET", "pytest", "os", "json", "contextlib",
             "resolve", "canonical", "decode", "test", "frozenset", "float"}


def _test_name(trace: Trace, target: str) -> str:
    """``test_<machine>_<target>``: only ``[a-z0-9_]`` survives, so it is always a safe identifier."""
    return "test_" + (re.sub(r"[^a-z0-9]+", "_", f"{trace.machine} {target}".lower()).strip("_") or "trace")


def _code_name(name: str, what: str) -> str:
    """A class, method or keyword name from the trace, written into code only if it is a plain identifier.

    :func:`~kvspec.stateful.traces.replay.prepare` already proved each exists on the model's class; this
    is the last line of defence of the generated source (rule: trace text never becomes code).
    """
    if not escape.is_identifier(name) and name != "__init__":
        raise TraceError(f"{what} {escape.comment(repr(name), 60)} is not a plain identifier")
    return name


def _steps_source(trace: Trace, result: ReplayResult, literals: Literals, errors: dict[str, str]) -> list[str]:
    """The body of the literal test: each step, then the model's outcome as asserts."""
    observers = result.prepared.machine.observers
    taken = set(_RESERVED)
    names: dict[str, str] = {}
    classes: dict[str, str] = {}
    body: list[str] = []
    records = result.records
    last = len(records) - 1
    mark = result.divergence.index if result.divergence is not None else result.failure_index
    for i, record in enumerate(records):
        step, expected = record.step, record.expected
        if step.subject not in names:
            names[step.subject] = escape.identifier(step.subject, taken)
            taken.add(names[step.subject])
        var = names[step.subject]
        if body:
            body.append("")
        args = [literals.render(a) for a in step.args]
        args += [f"{_code_name(k, 'keyword')}={literals.render(v)}" for k, v in step.kwargs.items()]
        if step.is_create:
            classes[step.subject] = step.cls
            call = f"ns.{_code_name(step.cls, 'class')}({', '.join(args)})"
        else:
            call = f"{var}.{_code_name(step.method, 'method')}({', '.join(args)})"
        if i == mark:
            body.append(f"# step {i + 1}: {_comment(trace.target)} diverged here ({_comment(trace.summary)})"
                        if result.divergence is not None or trace.kind == "divergence"
                        else f"# step {i + 1}: the failure was raised after this step")
        if expected.error is not None:
            found = _error_import(expected.error)
            if found is None:
                raise ValueError(f"unknown error class {expected.error}")
            errors[found[1]] = found[0]
            body.append(f"with raises_exactly({found[1]}):")
            body.append(f"    {var} = {call}" if step.is_create else f"    {call}")
        elif step.is_create:
            body.append(f"{var} = {call}")
        elif expected.value is None:
            body.append(f"assert {call} is None")
        else:
            _assert_equal(body, call, _render_or_skip(literals, expected.value))
        cls = classes.get(step.subject)
        if cls is not None and not (step.is_create and expected.error is not None):
            for observer in observers.get(cls, ()):
                if observer not in expected.observed:
                    continue
                _assert_equal(body, f"{var}.{observer}()", _render_or_skip(literals, expected.observed[observer]))
        if trace.kind == "error" and i == last and result.failure is not None:
            body.append(f"# the target's own invariants failed here: {_comment(result.failure)}")
            body.append(f"if hasattr({var}, '_check'):  # kvspec's structures have one; other targets skip it")
            body.append(f"    {var}._check()")
    return body


def _render_or_skip(literals: Literals, value: Any) -> str:
    try:
        return literals.render(value)
    except _NoLiteral:
        return f"# not comparable as a literal: {_comment(repr(value))}"


def _assert_equal(body: list[str], call: str, want: str) -> None:
    """Lines asserting that ``call`` returns ``want`` (split so pytest can diff the two), or, when
    ``want`` is a not-comparable comment, the call alone with that comment."""
    if want.startswith("#"):
        body.append(f"{call}  {want}")
    else:
        body += [f"actual = {call}", f"expected = {want}", "assert canonical(actual) == canonical(expected)"]


def _comment(text: str, limit: int = 110) -> str:
    """Trace text for a comment line: one line, ASCII, control characters escaped."""
    return escape.comment(text, limit)


def pytest_source(trace: Trace, result: ReplayResult) -> str:
    """A standalone pytest file reproducing the trace (see the module docstring).

    Safe by construction (the trace is untrusted): the docstring is fixed text; every value read
    from the trace reaches the source as a ``repr`` literal, a checked identifier or an escaped
    comment line (:mod:`kvspec.escape`); the file resolves the target the report was made for
    (``result.target``), never a name that only the trace gives.
    """
    compare = comparator_of(result.prepared)
    literal = getattr(compare, "__func__", compare) is exact_compare and result.target.mode == "exact"
    target = result.target.name
    header = [
        '"""kvspec regression test, generated by `kvspec report` from a trace.',
        "",
        ("Every assert states what kvspec's reference model does at that step." if literal else
         "The test replays the steps on kvspec's reference model and the target and compares them."),
        "",
        "    python -m pytest THIS_FILE                       # against TARGET: fails while the bug is there",
        "    KVSPEC_TARGET=impl python -m pytest THIS_FILE    # any other target: set KVSPEC_TARGET",
        '"""',
        "",
        f"# summary: {_comment(trace.summary, 200)}",
        f"# found by kvspec machine {_comment(trace.machine, 80)} against target {_comment(trace.target, 80)}"
        f" (kvspec {_comment(trace.data.get('kvspec_version', '?'), 40)})",
        "",
    ]
    if not literal:
        trace_literal = repr(json.dumps(trace.data, indent=1))
        mark = result.divergence.index if result.divergence is not None else result.failure_index
        listing = [f"#  {_comment(line[2:], 300)}" for line in render_steps(trace.steps, result.records, mark)]
        return "\n".join(header + [
            "import os",
            "",
            "from kvspec.stateful.replay import assert_replays_clean",
            "",
            f"TARGET = os.environ.get('KVSPEC_TARGET', {target!r})",
            "",
            f"# Machine {_comment(trace.machine, 80)} does not compare by plain equality (its comparator tolerates",
            "# documented differences, e.g. index dumps as multisets), so the steps cannot be written as",
            "# literal asserts: the test replays them with kvspec (`kvspec replay` prints the same diff).",
            "# The steps, with the reference model's outcome after each (>> marks the divergence):",
            *listing,
            "",
            f"TRACE = {trace_literal}",
            "",
            "",
            f"def {_test_name(trace, target)}():",
            "    assert_replays_clean(TRACE, TARGET)",
            "",
        ])
    literals = Literals()
    errors: dict[str, str] = {}
    body = _steps_source(trace, result, literals, errors)
    imports: dict[str, set[str]] = {}
    for name, module in {**literals.imports, **errors}.items():
        imports.setdefault(module, set()).add(name)
    lines = header + ["import contextlib"]
    if literals.needs_json:
        lines.append("import json")
    lines += ["import os", "", "import pytest", ""]
    imports.setdefault("kvspec.codec", set()).update({"canonical", *(["decode"] if literals.needs_json else [])})
    imports.setdefault("kvspec.targets", set()).add("resolve")
    for module in sorted(imports):
        lines.append(f"from {module} import {', '.join(sorted(imports[module]))}")
    lines += [
        "",
        f"TARGET = os.environ.get('KVSPEC_TARGET', {target!r})",
        "",
        "",
        "# kvspec compares values canonically (kvspec.codec.canonical): a tuple equals a list, a set a",
        "# sorted list; each assert compares `actual` (the target) with `expected` (the reference model),",
        "# so pytest shows which element or field differs.",
        "",
        "",
        "@contextlib.contextmanager",
        "def raises_exactly(error_class):",
        '    """The call must raise exactly ``error_class`` (kvspec compares error classes)."""',
        "    with pytest.raises(Exception) as info:",
        "        yield",
        "    assert type(info.value) is error_class, f\"raised {type(info.value).__name__}: {info.value}\"",
        "",
    ]
    if literals.needs_json:
        lines += [
            "",
            "def recorded(text):",
            '    """A value without a literal form, as kvspec recorded it (kvspec.codec JSON)."""',
            "    return decode(json.loads(text))",
            "",
        ]
    lines += ["", f"def {_test_name(trace, target)}():", "    ns = resolve(TARGET).namespace"]
    lines += [f"    {line}" if line else "" for line in body]
    return "\n".join(lines) + "\n"


@attrs.frozen
class Report:
    markdown: str
    test_source: str
    reproduced: bool
    result: ReplayResult


def _title(trace: Trace, result: ReplayResult) -> str:
    steps = trace.steps
    index = trace.index
    step = steps[index]
    cls = next((s.cls for s in steps if s.is_create and s.subject == step.subject), step.subject)
    call = f"{cls}()" if step.is_create else f"{cls}.{step.method}"
    if trace.kind == "error":
        return f"[kvspec] {trace.target}: {trace.data['error']['type']} after `{call}` (machine {trace.machine})"
    d = result.divergence
    if d is not None:
        only, _ = flagged_fields(d.differences)
        labels = [line.strip() for line in outcome_diff(d.expected, d.actual, only) if not line.startswith("    ")]
    else:
        labels = [x.split(":", 1)[0] for x in trace.data["divergence"].get("differences", [])]
    if not labels and d is not None:  # the machine's own check in its comparator (a router over-claim...)
        kinds = list(dict.fromkeys(x.split(":", 1)[0].strip() for x in flagged_fields(d.differences)[1]))
        if kinds:
            return f"[kvspec] {trace.target}: {', '.join(kinds)} after `{call}` (machine {trace.machine})"
    names = {"returns": "return value", "raises": "error", "return value": "return value", "error": "error"}
    labels = list(dict.fromkeys(names.get(label, label) for label in labels)) or ["outcome"]
    verb = "differs" if len(labels) == 1 else "differ"
    return f"[kvspec] {trace.target}: `{call}` {', '.join(labels)} {verb} from the model (machine {trace.machine})"


def build_report(trace: Trace | str, target: str | None = None, *, trace_path: str | None = None,
                 pytest_path: str | None = None) -> Report:
    """Replay ``trace`` and build the Markdown report and the pytest file."""
    if not isinstance(trace, Trace):
        trace_path = trace_path or str(trace)
        trace = load_trace(trace)
    prepare(trace, target)  # validates before anything runs
    result = replay_trace(trace, target)
    source = pytest_source(trace, result)
    env = trace.data.get("environment", {}) if isinstance(trace.data.get("environment"), dict) else {}
    t = trace.data["target"]
    file_name = f"{_test_name(trace, result.target.name)}.py"
    md = [f"# {_md_escape(_title(trace, result))}", ""]
    md += [f"**Summary.** {_md_escape(trace.summary)}", ""]
    if not result.reproduced:
        md += [f"> Note: replaying this trace against `{result.target.name}` today shows **no** divergence; "
               "the expected/actual below are as recorded.", ""]
    md += ["## Environment", "", "| | |", "|---|---|"]
    rows = [
        ("kvspec", trace.data.get("kvspec_version", "?")),
        ("target", f"`{t['name']}` version {t.get('version', '?')} ({t.get('mode', 'exact')} mode)"),
        ("machine", f"`{trace.machine}`" + (f" params {trace.data.get('machine_params')}"
                                             if trace.data.get("machine_params") else "")),
        ("found by", f"`{trace.data.get('command', '?')}`"),
        ("python / hypothesis", f"{env.get('python', '?')} / {env.get('hypothesis', '?')}"),
        ("platform", env.get("platform", "?")),
        ("report generated on", f"python {platform.python_version()}"),
    ]
    md += [f"| {k} | {_md_escape(str(v))} |" for k, v in rows] + [""]
    minimized = trace.data.get("minimized")
    how = "shrunk by Hypothesis" + (f", then from {minimized['from_steps']} steps by kvspec"
                                    if isinstance(minimized, dict) and "from_steps" in minimized else "")
    md += [f"## Steps to reproduce ({len(trace.steps)} steps, {how})", ""]
    records = result.records
    for i, step in enumerate(trace.steps):
        outcome = outcome_text(records[i].expected) if i < len(records) else ""
        arrow = f" → model: `{_cell(outcome)}`" if outcome else ""
        mark = " **← diverges here**" if i == trace.index and trace.kind == "divergence" else ""
        kind = ""
        if i < len(records):
            contract, why = step_contract(records[i].expected.error, tuple(result.prepared.machine.partial_errors))
            kind = f" — *{contract}*" + (f" ({_md_escape(why)})" if contract == "adversarial" else "")
        md.append(f"{i + 1}. `{_cell(step.describe(), 2000)}`{arrow}{kind}{mark}")
    md += ["", "*in-contract*: the reference model accepts the step, so a conforming engine or caller can produce it "
           "and the target must agree exactly; *adversarial*: the model rejects it with a kvspec error — no "
           "conforming caller sends it, and the target must raise the same error and change nothing.", ""]
    md += _expected_actual(trace, result)
    md += _pictures(result)
    if pytest_path:
        file_name = pytest_path
        where = f"Written to `{_cell(pytest_path)}` (`kvspec report --pytest`); it needs only `kvspec` and the target (no Hypothesis)."
    else:
        where = f"Save as `{file_name}`; it needs only `kvspec` and the target (no Hypothesis)."
    md += ["## Standalone test", "",
           where,
           f"`python -m pytest {file_name}` fails against `{_cell(result.target.name)}` while the bug is present; "
           f"`KVSPEC_TARGET=impl python -m pytest {file_name}` passes against kvspec's implementation.", "",
           *escape.fence(source.rstrip("\n"), "python"), ""]
    md += ["## Replay", "",
           f"`kvspec replay {trace_path or 'TRACE.json'}` re-runs these steps on the model and the target and "
           "prints the first divergence; it exits 1 while the bug is present and 0 once it is fixed "
           "(`--target` replays against another target).", ""]
    return Report("\n".join(md), source, result.reproduced, result)


def _expected_actual(trace: Trace, result: ReplayResult) -> list[str]:
    if trace.kind == "error":
        err = trace.data["error"]
        lines = [f"## Failure (after step {trace.index + 1})", "",
                 f"The run failed outside the compared steps: `{err['type']}: {_md_escape(err.get('message', ''))}`."]
        if result.failure:
            lines.append(f"Replay reproduces it with the target's `_check()`: `{_md_escape(result.failure)}`.")
        return lines + [""]
    d = result.divergence
    only, extra = flagged_fields(d.differences if d is not None else trace.data["divergence"].get("differences", []))
    if d is not None:
        expected, actual = d.expected, d.actual
    else:
        rec_e, rec_a = recorded_outcome(trace, "expected"), recorded_outcome(trace, "actual")
        expected = Outcome(rec_e["value"], rec_e["error"], rec_e["message"] or "", rec_e["observed"])
        actual = Outcome(rec_a["value"], rec_a["error"], rec_a["message"] or "", rec_a["observed"])
    step = trace.steps[trace.index]
    lines = [f"## Expected vs actual at step {trace.index + 1}: `{_cell(step.describe(), 2000)}`", "",
             f"| | model (expected) | {_md_escape(trace.target)} (actual) |", "|---|---|---|"]
    lines.append(f"| outcome | `{_cell(_plain(expected))}` | `{_cell(_plain(actual))}` |")
    for name in sorted(set(expected.observed) | set(actual.observed)):
        want, got = expected.observed.get(name), actual.observed.get(name)
        flagged = f"{name}()" in only if only is not None else codec.canonical(want) != codec.canonical(got)
        flag = " **differs**" if flagged else ""
        lines.append(f"| `{name}()`{flag} | `{_cell(repr(want))}` | `{_cell(repr(got))}` |")
    where = _where_they_differ(expected, actual, only) + [f"  - {x}" for x in extra]
    lines += ["", "Where they differ (model = expected, target = actual):", "",
              *escape.fence(escape.terminal("\n".join(where)), "text"), ""]
    if only is not None and any(line.strip() not in only for line in outcome_diff(expected, actual)
                                if not line.startswith("    ")):
        lines += [f"Machine `{trace.machine}` tolerates the other differences in the table (see its docstring).", ""]
    return lines


def _where_they_differ(expected: Outcome, actual: Outcome, only: set[str] | None) -> list[str]:
    """Per differing field, the structural differences only (the values are in the table above)."""
    out = []
    for line in outcome_diff(expected, actual, only):
        if not line.startswith("    "):
            out.append(line.strip())
        elif line.lstrip().startswith("where :"):
            out.append("  " + line.split("where :", 1)[1].strip())
    if not any(line.startswith("  ") for line in out):  # plain values (errors): say them once
        out = [line.strip() for line in outcome_diff(expected, actual, only)]
    return out


def _pictures(result: ReplayResult) -> list[str]:
    """The state around the divergence as Mermaid diagrams (index machines; see :mod:`draw`)."""
    from kvspec.stateful.traces import draw

    drawn = draw.pictures(result)
    if not drawn:
        return []
    lines = ["## State at the divergence", "",
             "The prefix index per storage tier, worker and rank: the reference model's blocks, each marked by "
             "what the target's `dump_events()` says (`kvspec replay TRACE --draw-to state.png` draws it locally).", ""]
    for caption, graph in drawn:
        lines += [f"**{caption.capitalize()}**", "", "```mermaid", draw.mermaid(graph), "```", ""]
        lines += draw.legend(graph) + [""]
    return lines


def _plain(outcome: Outcome) -> str:
    if outcome.error is not None:
        return f"raises {outcome.error}" + (f": {outcome.message}" if outcome.message else "")
    return f"returns {outcome.value!r}"


def _cell(text: str, limit: int = 300) -> str:
    text = escape.terminal(" ".join(text.split())).replace("|", "\\|").replace("`", "'")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _md_escape(text: str) -> str:
    """Trace text inside a Markdown line: one line, control characters escaped, no table breaks."""
    return escape.terminal(" ".join(str(text).split())).replace("|", "\\|")


