"""Issue 11's "done when", end to end: an engine of one's own, in its own directory outside kvspec's
repository, checked by following docs/adapters.md — with ``kvspec check`` and from its own pytest
file — plus the command line's exit statuses, CI output and Ctrl-C.

Everything runs as a user would: ``kvspec`` and ``pytest`` in subprocesses, ``PYTHONPATH=.`` in a
temporary project holding a copy of ``example_engine/`` (tinyradix, its adapter and the adapter
over the planted-bug engine).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent / "example_engine"


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "myengine"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _env(project, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KVSPEC_") and k != "CI"}
    env.update(PYTHONPATH=".", KVSPEC_PLAIN_PROGRESS="1", **extra)
    return env


def kvspec(project, *args, timeout=600, **env):
    return subprocess.run([sys.executable, "-m", "kvspec", *args], cwd=project, env=_env(project, **env),
                          capture_output=True, text=True, timeout=timeout)


def test_engine_passes_on_the_first_try_with_ci_output(project):
    done = kvspec(project, "check", "--target", "tinyradix_kvspec.adapter", "--machine", "radix",
                  "--max-examples", "15", "--json", "out.json", "--junit-xml", "out.xml", "--progress", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    header = done.stdout.splitlines()[0]
    assert "target tinyradix_kvspec.adapter (0.3.0, exact mode)" in header and ", seed " in header
    report = json.loads((project / "out.json").read_text())
    assert report["exit_status"] == 0 and isinstance(report["seed"], int)
    [machine] = report["machines"]
    assert machine["machine"] == "radix" and machine["result"] == "passed" and machine["seed"] == report["seed"]
    assert machine["examples"] >= 15 and machine["steps"] > 0 and machine["trace"] is None
    suite = ET.parse(project / "out.xml").getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "1" and suite.get("failures") == "0"
    assert [case.get("name") for case in suite.iter("testcase")] == ["radix"]


def test_planted_bug_is_found_reported_and_drawn(project):
    done = kvspec(project, "check", "--target", "tinyradix_kvspec.buggy", "--machine", "radix", "--seed", "3",
                  "--max-examples", "400",
                  "--max-shrink-seconds", "30", "--junit-xml", "out.xml", "--progress", "0")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "=== radix against tinyradix_kvspec.buggy: failed: " in done.stdout
    assert "DIVERGENCE at step" in done.stdout and "replay with: kvspec replay" in done.stdout
    [trace] = list((project / "kvspec-traces").glob("radix-*.json"))
    assert json.loads(trace.read_text())["seed"] == 3
    failure = ET.parse(project / "out.xml").getroot().find("testcase/failure")
    assert failure is not None and str(trace.relative_to(project)) in failure.text
    report = kvspec(project, "report", str(trace), "--target", "tinyradix_kvspec.buggy", "-o", "bug.md",
                    "--pytest", "test_bug.py")
    assert report.returncode == 0, report.stderr
    markdown = (project / "bug.md").read_text()
    assert "## State at the divergence" in markdown and "```mermaid\nflowchart TD" in markdown
    assert "Written to `test_bug.py`" in markdown and "— *in-contract*" in markdown
    replayed = kvspec(project, "replay", str(trace), "--target", "tinyradix_kvspec.buggy", "--draw")
    assert replayed.returncode == 1 and "```mermaid" in replayed.stdout


def test_incomplete_adapter_is_an_adapter_error_not_a_divergence(project):
    (project / "half_adapter.py").write_text(
        "from tinyradix_kvspec.adapter import RadixIndex as Full\n\n\n"
        "class RadixIndex(Full):\n    dump_events = None\n")
    done = kvspec(project, "check", "--target", "half_adapter", "--machine", "radix", "--progress", "0")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "adapter lacks `RadixIndex.dump_events`" in done.stdout
    assert not (project / "kvspec-traces").exists() and "DIVERGENCE" not in done.stdout


def test_unknown_import_path_hints_at_pythonpath(project):
    # the console script, as a user types it (`python -m` would put the current directory on the path)
    script = Path(sys.executable).parent / "kvspec"
    done = subprocess.run([str(script), "check", "--target", "tinyradix_kvspec.adapter"],
                          cwd=project, env={**_env(project), "PYTHONPATH": ""}, capture_output=True, text=True)
    assert done.returncode == 2 and "PYTHONPATH=." in done.stderr


def test_every_machine_skipped_is_its_own_status(project):
    (project / "nothing.py").write_text("class Unrelated:\n    pass\n")
    done = kvspec(project, "check", "--target", "nothing", "--progress", "0")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "every machine skipped: exit 4" in done.stdout


def test_engine_from_its_own_pytest_file(project):
    (project / "test_engine.py").write_text(
        "from hypothesis import settings\n"
        "import kvspec.testing\n\n"
        "TestRadix = kvspec.testing.machine_test_case('radix', 'tinyradix_kvspec.adapter')\n"
        "# a planted bug needs a longer search than the profile's quick budget\n"
        "TestRadixBuggy = kvspec.testing.machine_test_case('radix', 'tinyradix_kvspec.buggy',\n"
        "                                                  settings=settings(max_examples=400, deadline=None))\n"
        "TestPool = kvspec.testing.machine_test_case('pool[lru,allow]', 'tinyradix_kvspec.adapter')\n")
    (project / "conftest.py").write_text(
        "from hypothesis import settings\n"
        "settings.register_profile('quick', max_examples=20, stateful_step_count=30)\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-profile",
                           "quick", "--hypothesis-seed", "3", "--hypothesis-show-statistics", "--junitxml", "j.xml",
                           "test_engine.py"], cwd=project, env=_env(project, KVSPEC_MAX_SHRINK_SECONDS="20"),
                          capture_output=True, text=True, timeout=900)
    out = done.stdout
    assert done.returncode == 1, out
    assert "1 failed, 1 passed, 1 skipped" in out
    assert "rule: store" in out and "error: ParentBlockNotFound" in out  # kvspec's events in Hypothesis's statistics
    assert "kvspec: trace written to kvspec-traces/radix-tinyradix_kvspec_buggy" in out
    assert "kvspec: replay with: kvspec replay" in out
    cases = {c.get("name") + c.get("classname"): [x.tag for x in c] for c in ET.parse(project / "j.xml").iter("testcase")}
    assert sorted(map(tuple, cases.values())) == [(), ("failure",), ("skipped",)]


def test_ctrl_c_stops_a_nightly_run_every_time(project):
    """Ten tries: SIGINT while a nightly run generates examples; exit 130 with the partial table."""
    latencies = []
    for attempt in range(10):
        process = subprocess.Popen([sys.executable, "-m", "kvspec", "check", "--profile", "nightly", "--machine",
                                    "radix", "--target", "tinyradix_kvspec.adapter", "--progress", "0.2"],
                                   cwd=project, env=_env(project), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        while "..." not in (line := process.stderr.readline()):  # the first progress line: examples are running
            assert line, "the run ended before any progress"
        time.sleep(0.1 * attempt)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
        latencies.append(time.monotonic() - sent)
        assert process.returncode == 130, out
        assert "interrupted" in out and "radix" in out.split("machine", 1)[-1]
    assert max(latencies) < 2.0, latencies
