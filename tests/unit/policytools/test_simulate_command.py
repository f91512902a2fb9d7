"""`llamaswap simulate`: the comparison table, JSON, CSV, plots and exit codes."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import pytest

from llamaswap.commands import simulate

from .helpers import THREE, run_command, write

FIT_TOO = THREE.replace("models:", "resources: {vram: 24}\nmodels:").replace(
    '"srv --port ${PORT}"}', '"srv --port ${PORT}", resources: {vram: 12}}'
)


def trace_file(tmp_path: Path, models: str, t: float = 0.0, duration: float = 2.0) -> Path:
    path = tmp_path / "trace.jsonl"
    path.write_text(
        "".join(json.dumps({"t": t, "model": m, "duration": duration}) + "\n" for m in models)
    )
    return path


def test_the_table_compares_policies_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--config",
        str(write(tmp_path, FIT_TOO)),
        "--trace",
        str(trace_file(tmp_path, "ABCABC")),
    ]
    argv += [
        "--policy",
        "group",
        "--policy",
        "fit",
        "--load-seconds",
        "8",
        "--load-seconds",
        "C=20",
    ]
    assert run_command(simulate, argv) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1] == f"  trace: {tmp_path / 'trace.jsonl'} (6 requests)"
    assert lines[2] == "  load: 8s (C 20); stop: 1s; maxWaitSeconds: 60s"
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines[4:]]
    rows = {cell[0]: cell[1:] for cell in cells[1:]}
    assert cells[0] == ["group", "fit"]
    assert rows["swaps"] == ["3", "3"]
    assert rows["evictions"] == ["2", "1"]
    # fit loads A and B together (0-8), then evicts A for C: 10 + 1 stop + 20 load
    assert rows["wait max (s)"] == ["42.0", "31.0"]
    assert rows["C"] == ["42.0/42.0/42.0", "31.0/31.0/31.0"]
    assert rows["B"] == ["19.0/19.0/19.0", "8.0/8.0/8.0"]


def test_a_policy_the_config_cannot_run_is_an_error_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--config", str(write(tmp_path, THREE)), "--trace", str(trace_file(tmp_path, "AB"))]
    assert run_command(simulate, [*argv, "--policy", "group", "--policy", "matrix"]) == 2
    out, err = capsys.readouterr()
    swaps = next(line for line in out.splitlines() if line.startswith("swaps"))
    assert swaps.split() == ["swaps", "2", "error"]
    assert "policy matrix: the matrix policy needs a matrix in the config" in err


def test_json_and_csv_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--config", str(write(tmp_path, THREE)), "--trace", str(trace_file(tmp_path, "ABCABC"))]
    assert run_command(simulate, [*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    group = data["policies"]["group"]
    assert group["swaps"] == 3 and group["served"] == 6 and group["starved"] == []
    assert group["models"]["B"]["wait"] == {"count": 2, "p50": 23.0, "p95": 23.0, "max": 23.0}
    assert data["load_seconds"] == {"default": 10.0, "per_model": {}}
    assert run_command(simulate, [*argv, "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["policy"], r["model"]) for r in rows] == [
        ("group", "(all)"),
        ("group", "A"),
        ("group", "B"),
        ("group", "C"),
    ]
    assert rows[0]["swaps"] == "3" and rows[0]["loading_seconds"] == "30.0"
    assert rows[3]["wait_max"] == "36.0" and rows[3]["swaps"] == ""


def test_synthetic_runs_are_reproducible_and_can_be_saved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write(tmp_path, THREE))
    saved = tmp_path / "saved.jsonl"
    base = ["--config", config, "--synthetic", "80", "--json"]
    synthetic = [*base, "--seed", "9"]
    assert run_command(simulate, [*synthetic, "--save-trace", str(saved)]) == 0
    first = json.loads(capsys.readouterr().out)["policies"]
    assert run_command(simulate, synthetic) == 0
    assert json.loads(capsys.readouterr().out)["policies"] == first
    assert run_command(simulate, ["--config", config, "--trace", str(saved), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["policies"] == first
    assert run_command(simulate, [*base, "--seed", "10"]) == 0
    assert json.loads(capsys.readouterr().out)["policies"] != first


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--load-seconds", "Z=3"], "--load-seconds Z=3: no model 'Z' in the config"),
        (["--stop-seconds", "A=-1"], "--stop-seconds A=-1: seconds must be >= 0"),
        (["--load-seconds", "soon"], "--load-seconds soon: 'soon' is not a number"),
        (["--models", "4"], "--models 4: the config has 3 models"),
    ],
)
def test_bad_options_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = ["--config", str(write(tmp_path, THREE)), "--synthetic", "5", *extra]
    assert run_command(simulate, argv) == 2
    assert message in capsys.readouterr().err


def test_a_bad_trace_or_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad_trace = tmp_path / "bad.jsonl"
    bad_trace.write_text('{"t": 0, "model": "A"}\n{"t": -1, "model": "A"}\n')
    config = str(write(tmp_path, THREE))
    assert run_command(simulate, ["--config", config, "--trace", str(bad_trace)]) == 2
    assert f"{bad_trace}:2: 't' must be >= 0" in capsys.readouterr().err
    broken = str(write(tmp_path, "globalTTL: -1\n", "broken.yaml"))
    assert run_command(simulate, ["--config", broken, "--synthetic", "5"]) == 2
    assert "invalid config (1 problem):" in capsys.readouterr().err


def test_unknown_models_in_a_trace_are_rejected_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--config", str(write(tmp_path, THREE)), "--trace", str(trace_file(tmp_path, "AZ"))]
    assert run_command(simulate, [*argv, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["policies"]["group"]["rejected_by_code"] == {"not_found": 1}
    assert "warning: the trace names unknown models: Z" in err


def test_the_plot_degrades_to_a_notice_without_matplotlib(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    plot = tmp_path / "timeline.png"
    argv = ["--config", str(write(tmp_path, THREE)), "--synthetic", "5", "--plot", str(plot)]
    assert run_command(simulate, argv) == 0
    out, err = capsys.readouterr()
    assert "swaps" in out
    assert (
        err.strip() == "notice: --plot needs matplotlib (pip install matplotlib); no plot written"
    )
    assert not plot.exists()


def test_the_plot_is_written_when_matplotlib_is_installed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    config = str(write(tmp_path, FIT_TOO))
    for name in ("timeline.png", "timeline.svg"):
        plot = tmp_path / name
        argv = ["--config", config, "--synthetic", "20", "--policy", "group", "--policy", "fit"]
        assert run_command(simulate, [*argv, "--plot", str(plot)]) == 0
        assert plot.stat().st_size > 1000
    assert capsys.readouterr().err == ""


def test_the_plot_format_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--config", str(write(tmp_path, THREE)), "--synthetic", "5"]
    assert run_command(simulate, [*argv, "--plot", str(tmp_path / "t.gif")]) == 0
    assert "notice: --plot writes .png or .svg files, not t.gif" in capsys.readouterr().err


def test_requests_refused_for_a_model_that_is_not_swappable_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pinned = THREE.replace(
        '  A: {cmd: "srv --port ${PORT}"', '  A: {cmd: "srv --port ${PORT}", swappable: false'
    )
    assert "swappable: false" in pinned
    argv = ["--config", str(write(tmp_path, pinned)), "--trace", str(trace_file(tmp_path, "AB"))]
    assert run_command(simulate, [*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["policies"]["group"]
    assert result["rejected_by_code"] == {"not_swappable": 1}


def test_probed_resources_are_judged_on_declared_figures_and_it_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    probed = FIT_TOO.replace(
        "resources: {vram: 24}", "resources: {vram: {capacity: 24, probe: nvidia}}"
    )
    assert "probe: nvidia" in probed
    argv = ["--config", str(write(tmp_path, probed)), "--trace", str(trace_file(tmp_path, "AB"))]
    assert run_command(simulate, [*argv, "--policy", "fit", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["policies"]["fit"]["served"] == 2
    assert "note: simulate judges vram on the declared figures" in err


def test_a_trace_may_name_keys_and_their_concurrency_limit_applies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keyed = "apiKeys:\n  - {key: sk-t, name: team, concurrencyLimit: 1}\n" + THREE
    trace = tmp_path / "keyed.jsonl"
    records = [
        {"t": 0, "model": "A", "duration": 5, "key": "team"},
        {"t": 1, "model": "A", "duration": 1, "key": "team"},  # over the key's limit
        {"t": 1, "model": "A", "duration": 1},  # no key: not limited by it
    ]
    trace.write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = ["--config", str(write(tmp_path, keyed)), "--trace", str(trace), "--json"]
    assert run_command(simulate, argv) == 0
    result = json.loads(capsys.readouterr().out)["policies"]["group"]
    assert result["rejected_by_code"] == {"key_concurrency_limit": 1}
    assert result["served"] == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"t": 0, "model": "A", "key": 7}) + "\n")
    assert (
        run_command(simulate, ["--config", str(write(tmp_path, keyed)), "--trace", str(bad)]) == 2
    )
    assert "'key' must be a string" in capsys.readouterr().err
