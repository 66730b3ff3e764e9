"""`kvspec check` for CI: exit statuses, JSON and JUnit output, budgets, seeds, statistics, Ctrl-C."""

import json
import threading
import xml.etree.ElementTree as ET

import pytest
import toy_machine

from kvspec.cli import main
from kvspec.stateful import runner


@pytest.fixture(autouse=True)
def toy(monkeypatch):
    toy_machine.install(monkeypatch)


def check(tmp_path, target, *extra):
    return main(["check", "--target", target, "--machine", "toy-shelf", "--trace-dir", str(tmp_path / "traces"),
                 "--progress", "0", "--json", str(tmp_path / "r.json"), "--junit-xml", str(tmp_path / "r.xml"), *extra])


def test_a_crashing_target_exits_3_not_1(tmp_path, capsys):
    code = check(tmp_path, "toy-crashy", "--profile", "ci", "--max-examples", "60")
    out = capsys.readouterr().out
    assert code == 3, out
    assert "crashed" in out and "crash:KeyError" in out
    [machine] = json.loads((tmp_path / "r.json").read_text())["machines"]
    assert machine["crashed"] is True and machine["trace"]
    error = ET.parse(tmp_path / "r.xml").getroot().find("testcase/error")
    assert error is not None and "crash:KeyError" in error.get("message")


def test_a_divergence_exits_1_with_a_junit_failure_and_a_json_trace_path(tmp_path, capsys):
    code = check(tmp_path, "toy-broken", "--profile", "ci", "--max-examples", "100")
    assert code == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["exit_status"] == 1 and report["seed"] is None and report["profile"] == "ci"
    [machine] = report["machines"]
    assert machine["result"] == "failed" and machine["trace"].endswith(".json")
    suite = ET.parse(tmp_path / "r.xml").getroot()
    assert suite.get("failures") == "1" and suite.find("testcase/failure") is not None
    assert "derandomized" in capsys.readouterr().out.splitlines()[0]


def test_random_runs_print_and_record_their_seed(tmp_path, capsys):
    code = check(tmp_path, "toy-broken", "--profile", "dev", "--max-examples", "300", "--max-shrink-seconds", "5")
    header = capsys.readouterr().out.splitlines()[0]
    assert code == 1
    seed = json.loads((tmp_path / "r.json").read_text())["seed"]
    assert isinstance(seed, int) and f"seed {seed}" in header
    [trace] = (tmp_path / "traces").glob("*.json")
    recorded = json.loads(trace.read_text())
    assert recorded["seed"] == seed and f"--seed {seed}" in recorded["command"]


def test_duration_ends_generation_and_says_so(tmp_path, capsys):
    code = check(tmp_path, "toy-good", "--profile", "dev", "--duration", "2")
    out = capsys.readouterr().out
    assert code == 0 and "passed (time budget of 2.0s used)" in out
    [machine] = json.loads((tmp_path / "r.json").read_text())["machines"]
    assert machine["examples"] > 0 and machine["seconds"] < 30  # generous: the budget ends it, not the examples


def test_no_shrink_and_max_steps(tmp_path, capsys):
    code = check(tmp_path, "toy-broken", "--profile", "dev", "--no-shrink", "--max-steps", "5", "--max-examples", "200")
    out = capsys.readouterr().out
    assert code == 1 and "no shrinking" in out.splitlines()[0] and "at most 5 steps" in out.splitlines()[0]


def test_stats_counts_rules_and_errors(tmp_path, capsys):
    code = check(tmp_path, "toy-good", "--profile", "ci", "--max-examples", "20", "--stats")
    out = capsys.readouterr().out
    assert code == 0 and "statistics of toy-shelf: model " in out
    assert "  rule   put" in out and "  rule   take" in out and "  error  InvalidArgument" in out
    stats = json.loads((tmp_path / "r.json").read_text())["machines"][0]["stats"]
    assert stats["rules"]["make"] == stats["generated_examples"] or stats["rules"]["make"] >= 20


def test_interrupt_stops_at_the_next_step_with_the_partial_table(tmp_path, capsys, monkeypatch):
    timer = threading.Timer(1.0, runner.INTERRUPT.set)  # what the SIGINT handler does
    real_clear = runner.INTERRUPT.clear
    monkeypatch.setattr(runner.INTERRUPT, "clear",
                        lambda: (real_clear(), timer.is_alive() or timer.ident or timer.start()))
    code = check(tmp_path, "toy-good", "--profile", "nightly", "--max-examples", "100000")
    out = capsys.readouterr().out
    runner.INTERRUPT.clear()
    assert code == 130
    assert "interrupted" in out.split("machine", 1)[1] and ", interrupted after " in out
    assert json.loads((tmp_path / "r.json").read_text())["interrupted"] is True


def test_env_equivalents(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KVSPEC_MAX_EXAMPLES", "7")
    monkeypatch.setenv("KVSPEC_SEED", "99")
    code = check(tmp_path, "toy-good", "--profile", "dev")
    assert code == 0 and "seed 99" in capsys.readouterr().out.splitlines()[0]
    assert json.loads((tmp_path / "r.json").read_text())["seed"] == 99
    monkeypatch.setenv("KVSPEC_DURATION", "soon")
    with pytest.raises(SystemExit):
        main(["check", "--target", "toy-good"])


def test_rules_are_chosen_without_retried_draws(tmp_path, capsys):
    """A machine full of preconditions (manager: request rules need a live request) wastes no draw.

    Hypothesis's own rule choice filtered a drawn rule by precondition and swarm flag and retried:
    87% of ``manager[lru]`` examples retried a draw and 2% were thrown away as invalid.
    """
    code = main(["check", "--target", "impl", "--machine", "manager[lru]", "--profile", "ci", "--max-examples", "30",
                 "--stats", "--progress", "0", "--json", str(tmp_path / "r.json"), "--trace-dir", str(tmp_path)])
    assert code == 0
    stats = json.loads((tmp_path / "r.json").read_text())["machines"][0]["stats"]
    assert stats["rule_draws"] > 30 * 5
    assert stats["examples_with_retried_draws"] == 0 and stats["invalid_examples"] == 0
    assert "rules chosen at the first draw" in capsys.readouterr().out
