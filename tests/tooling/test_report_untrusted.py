"""A trace is untrusted input: nothing in it may become code, steer a terminal or follow a symlink.

Every string field of a real trace is replaced, one at a time, by each hostile payload (quotes,
newlines, triple quotes, backslash continuations, NUL, form feed, terminal escapes, bidirectional
overrides, line separators).  ``kvspec report --pytest`` then either refuses the trace (one line,
exit 2, nothing written) or writes a file that is imported and whose test is run — and the payload's
side effect (a marker attribute on :mod:`builtins`, a file) must not have happened.
"""

from __future__ import annotations

import builtins
import copy
import json
import os
from pathlib import Path

import pytest
import toy_machine
from toy_machine import divergence_trace

from kvspec.cli import main
from kvspec.stateful.traces.schema import write_trace

MARK = "KVSPEC_PWNED"


def _payloads(sentinel: Path) -> list[str]:
    code = f"import builtins; builtins.{MARK} = 1; open({str(sentinel)!r}, 'w')"
    return [
        f'0"""\n{code}\n"""',
        f"0'''\n{code}\n'''",
        f"\n{code}\n#",
        f"\r{code}\r",
        f"\r\n{code}\r\n",
        f"\\\n{code}",
        f"\x0c{code}",
        f"\x00\n{code}",
        f"\u2028{code}\u2029",
        f"{code} \x1b]0;title\x07\x1b[2J\x1b[31m",
        f"\u202e{code}\u2066",
        f"')\n{code}\n('",
        f"{{}}\n{code}",
    ]


def _string_paths(value, path=()):
    """Every path to a string leaf of a JSON value."""
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _string_paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _string_paths(item, (*path, i))


def _replaced(trace: dict, path: tuple, payload: str) -> dict:
    out = copy.deepcopy(trace)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = payload
    return out


@pytest.fixture(autouse=True)
def toy(monkeypatch):
    toy_machine.install(monkeypatch)


@pytest.fixture
def no_marker():
    if hasattr(builtins, MARK):
        delattr(builtins, MARK)
    yield
    ran = hasattr(builtins, MARK)
    if ran:
        delattr(builtins, MARK)
    assert not ran, "trace content was executed"


def _run_generated(source: str, path: Path) -> None:
    """Import the generated module and run its test function, as pytest would."""
    namespace: dict = {"__name__": "generated_kvspec_test", "__file__": str(path)}
    exec(compile(source, str(path), "exec"), namespace)  # noqa: S102 - the point of the test
    for name, function in list(namespace.items()):
        if name.startswith("test_") and callable(function):
            try:
                function()
            except AssertionError:
                pass  # the toy target is broken on purpose: the test fails, which is fine


def test_hostile_strings_in_every_field_never_run(tmp_path, capsys, no_marker):
    trace = divergence_trace("toy-broken")
    sentinel = tmp_path / "pwned"
    paths = list(_string_paths(trace))
    assert len(paths) > 30  # every string field of a real trace, not a hand-picked few
    refused = written = 0
    for n, path in enumerate(paths):
        for k, payload in enumerate(_payloads(sentinel)):
            trace_file = write_trace(_replaced(trace, path, payload), path=tmp_path / f"t{n}-{k}.json")
            md, py = tmp_path / f"r{n}-{k}.md", tmp_path / f"test_r{n}_{k}.py"
            status = main(["report", str(trace_file), "--target", "toy-broken", "-o", str(md), "--pytest", str(py)])
            out, err = capsys.readouterr()
            assert "\x1b" not in out + err and "Traceback" not in err
            if status == 2:
                refused += 1
                assert len(err.strip().splitlines()) == 1 and not py.exists(), (path, payload, err)
                continue
            assert status == 0, (path, payload, err)
            written += 1
            source = py.read_text()
            assert "\x1b" not in md.read_text() and "\x1b" not in source
            _run_generated(source, py)
            assert not sentinel.exists(), (path, payload)
            assert not hasattr(builtins, MARK), (path, payload)
    assert written > refused > 0  # both paths were exercised


def test_generated_test_resolves_the_reports_target_not_the_traces(tmp_path):
    trace = divergence_trace("toy-broken")
    trace["target"]["name"] = "builtins:eval"  # a module the trace names; never imported
    path = write_trace(trace, path=tmp_path / "t.json")
    py = tmp_path / "test_gen.py"
    assert main(["report", str(path), "--target", "toy-good", "--pytest", str(py), "-o", str(tmp_path / "r.md")]) == 0
    source = py.read_text()
    assert "TARGET = os.environ.get('KVSPEC_TARGET', 'toy-good')" in source
    mentions = [line for line in source.splitlines() if "builtins:eval" in line]
    assert mentions and all(line.lstrip().startswith("#") for line in mentions)  # only as information


def test_unregistered_trace_target_is_refused_without_override(tmp_path, capsys):
    trace = divergence_trace("toy-broken")
    trace["target"]["name"] = "os"
    path = write_trace(trace, path=tmp_path / "t.json")
    assert main(["report", str(path), "--pytest", str(tmp_path / "test_x.py")]) == 2
    assert "not a registered target" in capsys.readouterr().err
    assert not (tmp_path / "test_x.py").exists()


def test_replay_escapes_terminal_sequences(tmp_path, capsys):
    trace = divergence_trace("toy-broken")
    trace["steps"][0]["subject"] = "shelf"
    trace["summary"] = "\x1b[2J\x1b]0;owned\x07"
    trace["command"] = "\x1b[31mred"
    for step in trace["steps"]:
        step["subject"] = "sh\x1b[1melf"
    path = write_trace(trace, path=tmp_path / "t.json")
    main(["replay", str(path)])
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err
    assert "\\x1b[1m" in out  # shown, escaped


def test_temporary_file_never_follows_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    destination = tmp_path / "out.json"
    os.symlink(victim, tmp_path / "out.json.tmp")
    write_trace(divergence_trace("toy-broken"), path=destination)
    assert victim.read_text() == "precious"
    assert json.loads(destination.read_text())["machine"] == "toy-shelf"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]


@pytest.mark.parametrize("flag", ["-o", "--pytest"])
def test_unwritable_output_is_one_line_and_exit_2(tmp_path, capsys, flag):
    path = write_trace(divergence_trace("toy-broken"), path=tmp_path / "t.json")
    status = main(["report", str(path), flag, str(tmp_path / "missing-dir" / "x")])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and "cannot write" in err
