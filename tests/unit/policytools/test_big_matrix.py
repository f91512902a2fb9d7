"""`llamaswap check` and `simulate` on a matrix of 24,576 combinations (llama-swap #960)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from llamaswap.cli import main
from llamaswap.commands import check
from llamaswap.policytools.checker import check_config
from tests.unit.matrix.configs import big_matrix

from .helpers import write

DESK = "routing.router.settings.matrix.sets.desk"


def test_check_finds_the_one_pair_over_capacity_in_a_big_matrix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(check, "check_config", functools.partial(check_config, shrink_seconds=1))
    path = write(tmp_path, big_matrix())
    assert main(["check", "--config", str(path), "--examples", "30"]) == 1
    out = capsys.readouterr().out
    assert "  policy:    matrix router as written (capacity guard off); 31 models;" in out
    # 2**31 running sets exist; the search stops at its bound and says so
    assert re.search(r"  reachable: \d+ co-running sets by requests \(search bounded;", out)
    assert "  servable:  31 of 31 models" in out
    assert "FAIL capacity: chat-30b + vision-xl run together needing vram 50 (vram 50 > 48)" in out
    assert f"  allowed by: {DESK}" in out
    assert "    2. a request for vision-xl is served: vision-xl loads, beside chat-30b" in out
    assert out.rstrip().endswith("1 problem found")


def test_check_passes_the_big_matrix_once_the_pair_fits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(check, "check_config", functools.partial(check_config, shrink_seconds=1))
    path = write(tmp_path, big_matrix().replace("resources: {vram: 48}", "resources: {vram: 80}"))
    assert main(["check", "--config", str(path), "--examples", "30"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("OK: no problem found")


def test_simulate_replays_a_synthetic_trace_on_a_big_matrix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, big_matrix())
    argv = ["simulate", "--config", str(path), "--synthetic", "50"]
    assert main([*argv, "--policy", "matrix", "--policy", "group"]) == 0
    out = capsys.readouterr().out
    assert "  trace: synthetic over 31 models, zipf 1.1, seed 0 (50 requests)" in out
    rows = {
        cells[0]: cells[1:]
        for cells in (re.split(r"\s{2,}", line.strip()) for line in out.splitlines())
        if len(cells) == 3
    }
    assert re.search(r"^ +matrix +group$", out, re.MULTILINE)
    assert rows["requests served"] == ["50", "50"]
    assert rows["requests never resolved"] == ["0", "0"]
    # the desk keeps models of other slots loaded, the default group one model at a time
    matrix_swaps, group_swaps = (int(cell) for cell in rows["swaps"])
    assert matrix_swaps < group_swaps
