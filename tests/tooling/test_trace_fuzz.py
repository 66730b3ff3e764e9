"""Corrupted traces: whatever a trace file holds, ``replay``, ``report`` and ``minimize`` answer with
exit 0, 1 or 2 — a bad trace is one line on stderr and exit 2, never a traceback, never a hang,
never an import of a module the file names, and nothing is written.

Real traces (the regression corpus) are corrupted by Hypothesis: truncations, type swaps, deep
nesting, huge numbers and lists, unknown schema versions, import-path targets, dunder and private
method names, oversized constructors; and special files stand in for the trace.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvspec.cli import main
from kvspec.stateful.traces.schema import MAX_CONSTRUCTOR_SIZE, MAX_TRACE_BYTES, SIZE_PARAMETERS

CORPUS = sorted((Path(__file__).resolve().parents[1] / "regressions").glob("*.json"))
PROBE = "kvspec_fuzz_probe_module"


def _nodes(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _nodes(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _nodes(item, (*path, i))


def _set(data, path, new):
    if not path:
        return new
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = new
    return data


NASTY_VALUES = [None, True, -1, 0, 2**64, 2**200, -(2**130), 1.5, "", "x" * 50, [], {}, [[[[]]]],
                {"$type": "Use", "fields": {}}, {"$enum": "StorageTier", "value": "bogus"}, {"$tuple": 5},
                {"$repr": "object()"}, list(range(20_000)), "\x1b[2J", "__import__('os')"]
TARGETS = ["os", "builtins:eval", "subprocess:run", f"{PROBE}:x", PROBE, "impl; rm -rf /", ""]
METHODS = ["__class__", "__reduce__", "__init_subclass__", "__del__", "_check", "__getattribute__", "mro",
           "", "process\n", "x" * 300]


def _size_positions(cls_name):
    """Positions of the size parameters (``SIZE_PARAMETERS``) of the model's class ``cls_name``."""
    import inspect

    import kvspec.model

    cls = getattr(kvspec.model, cls_name, None)
    if cls is None:
        return []
    names = list(inspect.signature(cls).parameters)
    return [at for at, name in enumerate(names) if name in SIZE_PARAMETERS]


@st.composite
def corrupted(draw):
    """(text of a corrupted trace, what was done)."""
    source = draw(st.sampled_from(CORPUS))
    text = source.read_text()
    data = json.loads(text)
    kind = draw(st.sampled_from(["truncate", "swap", "nest", "version", "target", "method", "cls", "size",
                                 "steps", "bytes"]))
    if kind == "truncate":
        return text[: draw(st.integers(0, len(text) - 1))], kind
    if kind == "bytes":
        cut = draw(st.integers(0, len(text)))
        return text[:cut] + draw(st.sampled_from(["\x00", "\udcff", "\ufeff", "}", "]", "\"", "NaN", "1e999"])) + \
            text[cut:], kind
    paths = list(_nodes(data))
    if kind == "swap":
        path = draw(st.sampled_from(paths))
        data = _set(data, path, draw(st.sampled_from(NASTY_VALUES)))
    elif kind == "nest":  # written as text: json.dumps itself cannot nest that deep
        path = draw(st.sampled_from(paths))
        depth = draw(st.sampled_from([50, 2_000, 100_000]))
        data = _set(data, path, "@NEST@")
        return json.dumps(data).replace('"@NEST@"', "[" * depth + "0" + "]" * depth), kind
    elif kind == "version":
        data["schema_version"] = draw(st.sampled_from([0, 2, 99, "1", None, True, 1.0]))
    elif kind == "target":
        data["target"]["name"] = draw(st.sampled_from(TARGETS))
    elif kind in ("method", "cls"):
        steps = [s for s in data["steps"] if (s["method"] == "__init__") == (kind == "cls")] or data["steps"]
        step = draw(st.sampled_from(steps))
        step["cls" if kind == "cls" else "method"] = draw(st.sampled_from(METHODS + ["os", "Differential"]))
    elif kind == "size":  # a size parameter of a constructor (by position), beyond the limit
        sized = [(step, at) for step in data["steps"] if step["method"] == "__init__"
                 for at in _size_positions(step["cls"]) if at < len(step["args"])]
        if not sized:  # this machine's constructors take no size: ask for a bad schema instead
            data["schema_version"] = 2
            return json.dumps(data), "version"
        step, at = draw(st.sampled_from(sized))
        step["args"][at] = draw(st.sampled_from([10**9, MAX_CONSTRUCTOR_SIZE + 1, 2**63]))
    elif kind == "steps":
        data["steps"] = data["steps"] * draw(st.sampled_from([2, 5_000]))
    return json.dumps(data), kind


@pytest.fixture(autouse=True)
def probe_module(tmp_path, monkeypatch):
    """A module that records its own import: kvspec must never import it because a trace says so."""
    (tmp_path / f"{PROBE}.py").write_text("import builtins\nbuiltins.KVSPEC_PROBE_IMPORTED = True\nx = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop(PROBE, None)
    import builtins

    assert not getattr(builtins, "KVSPEC_PROBE_IMPORTED", False), "a module named in a trace was imported"


def _run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "\x1b" not in out + err
    assert code in (0, 1, 2), code
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
    return code, err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(case=corrupted())
def test_corrupted_traces_are_refused_cleanly(tmp_path, capsys, case):
    text, kind = case
    trace = tmp_path / "t.json"
    trace.write_text(text, errors="surrogatepass") if "\udcff" not in text else trace.write_bytes(
        text.encode("utf-8", "surrogateescape"))
    md, py, small = tmp_path / "r.md", tmp_path / "test_r.py", tmp_path / "small.json"
    for f in (md, py, small):
        f.unlink(missing_ok=True)
    replay, _ = _run(capsys, "replay", str(trace))
    report, _ = _run(capsys, "report", str(trace), "-o", str(md), "--pytest", str(py))
    minimized, _ = _run(capsys, "minimize", str(trace), "-o", str(small))
    if report == 2:
        assert not md.exists() and not py.exists()
    if minimized == 2:
        assert not small.exists()
    if kind in ("version", "size") or kind == "steps" and text.count('"method"') > 10_000:
        assert replay == report == minimized == 2, kind


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null", "fifo", "directory", "link-to-zero", "huge"])
def test_special_files_are_refused_without_blocking(tmp_path, capsys, special):
    path = tmp_path / "t.json"
    if special == "fifo":
        os.mkfifo(path)
    elif special == "directory":
        path.mkdir()
    elif special == "link-to-zero":
        path.symlink_to("/dev/zero")
    elif special == "huge":
        path.write_text(json.dumps({"schema_version": 1, "pad": "x" * MAX_TRACE_BYTES}))
    else:
        path = Path(special)
    code, err = _run(capsys, "replay", str(path))
    assert code == 2 and err.startswith("kvspec replay: ")


def test_unregistered_targets_are_never_imported(tmp_path, capsys):
    data = json.loads(CORPUS[0].read_text())
    for name in TARGETS:
        mutated = copy.deepcopy(data)
        mutated["target"]["name"] = name
        trace = tmp_path / "t.json"
        trace.write_text(json.dumps(mutated))
        code, err = _run(capsys, "replay", str(trace))
        assert code == 2, (name, err)
