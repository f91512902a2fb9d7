"""`llamaswap check`: finds what the policy as written lets run over capacity, and more."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from llamaswap.cli import main
from llamaswap.commands import check
from llamaswap.policytools.checker import CheckReport, check_config
from llamaswap.policytools.report import render_text, to_json

from .helpers import MATRIX, NON_EXCLUSIVE, PERSISTENT, SAFE, config, run_command, write


def fast_check(text: str) -> CheckReport:
    """A short exploration with a 1 s shrink box: these configs fail within a few examples."""
    return check_config(config(text), examples=30, shrink_seconds=1)


def test_check_finds_the_capacity_violation_of_a_non_exclusive_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(check, "check_config", functools.partial(check_config, shrink_seconds=1))
    path = write(tmp_path, NON_EXCLUSIVE)
    assert run_command(check, ["--config", str(path), "--examples", "30"]) == 1
    out = capsys.readouterr().out
    assert "FAIL capacity: a + c run together needing vram 28 (vram 28 > 24)" in out
    assert "FAIL capacity: b + c run together needing vram 28 (vram 28 > 24)" in out
    assert "  needs:      vram 28 (machine: vram 24)" in out
    assert "  allowed by: groups.side.exclusive: false" in out
    assert "    1. a request for a is served: a loads" in out
    assert "    2. a request for c is served: c loads, beside a" in out
    assert out.rstrip().endswith("2 problems found")


def test_check_json_names_sets_sums_rules_and_the_shrunk_example() -> None:
    report = fast_check(NON_EXCLUSIVE)
    data = json.loads(json.dumps(to_json(report)))
    assert data["ok"] is False
    capacity = [f for f in data["findings"] if f["kind"] == "capacity"]
    assert [f["models"] for f in capacity] == [["a", "c"], ["b", "c"]]
    for finding in capacity:
        assert finding["needs"] == {"vram": 28.0}
        assert finding["capacity"] == {"vram": 24.0}
        assert finding["rules"] == ["groups.side.exclusive: false"]
        assert len(finding["sequence"]) == 2
    # Hypothesis found one of them too; its shrunk run ends on the violation
    [example] = [f["example"] for f in capacity if f["example"]]
    assert example[-1].startswith("=> capacity: ")
    assert any("request #" in line and "arrives" in line for line in example)
    explored = data["explored"]
    assert explored["examples"] > 0 and explored["steps"] > explored["examples"]
    assert explored["co_running_sets"] >= 1
    assert explored["reachable_co_running_sets"] == 2 and explored["reachable_complete"]


def test_check_passes_a_safe_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, SAFE)
    assert run_command(check, ["--config", str(path), "--examples", "30", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["findings"] == []
    assert data["explored"]["examples"] >= 30  # overrun examples are not counted by Hypothesis
    assert data["explored"]["servable_models"] == 3
    assert data["explored"]["reachable_co_running_sets"] == 0


def test_a_model_needing_more_than_the_machine_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, NON_EXCLUSIVE.replace("vram: 16}", "vram: 30}"))
    assert main(["check", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("invalid config (2 problems):")
    assert f"{path}:5: models.a.resources.vram:" in err
    assert f"{path}:6: models.b.resources.vram:" in err


def test_check_needs_a_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command(check, []) == 2
    assert "--config" in capsys.readouterr().err


def test_a_model_that_cannot_fit_beside_a_persistent_one_is_unservable() -> None:
    report = fast_check(PERSISTENT)
    [unservable] = [f for f in report.findings if f.kind == "unservable"]
    assert unservable.models == ("big", "embed")
    assert "big can never be served beside embed" in unservable.message
    assert unservable.rules == ("groups.keep.persistent: true",)
    assert unservable.sequence[0] == "1. a request for embed is served"
    assert unservable.sequence[1].startswith("2. a request for big fails: ")
    assert report.servable == 2
    # the policy as written also lets them run together (whichever loads first)
    [capacity] = [f for f in report.findings if f.kind == "capacity"]
    assert capacity.models == ("big", "embed")
    assert set(capacity.rules) == {"groups.keep.exclusive: false", "groups.keep.persistent: true"}


def test_check_names_the_matrix_set_that_allows_a_violation() -> None:
    report = fast_check(MATRIX)
    [capacity] = [f for f in report.findings if f.source == "reachability"]
    assert capacity.models == ("a", "c")
    assert capacity.rules == ("matrix.sets.wide",)
    assert "FAIL capacity: a + c" in render_text(report)


def test_check_is_deterministic_for_a_seed() -> None:
    def run(seed: int) -> dict[str, object]:
        data = to_json(check_config(config(SAFE), examples=10, seed=seed))
        del data["seconds"]
        return data

    assert run(3) == run(3)
    assert run(3)["explored"] != run(4)["explored"]


def test_a_config_without_models_is_trivially_safe() -> None:
    report = check_config(config("models: {}\n"))
    assert report.ok and report.examples == 0
    assert render_text(report).rstrip().endswith("OK: no problem found")


def test_examples_must_be_positive() -> None:
    with pytest.raises(SystemExit):
        run_command(check, ["--config", "x.yaml", "--examples", "0"])
