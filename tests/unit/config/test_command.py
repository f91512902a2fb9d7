"""`llamaswap config check`: normalised config on stdout (0) or every problem on stderr (2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llamaswap.cli import main


def test_check_prints_the_normalised_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("models:\n  m:\n    cmd: srv --port ${PORT}\n    ttl: 30\n    mystery: 1\n")
    assert main(["config", "check", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"# llamaswap normalised config from {path}\n")
    printed = yaml.safe_load(out)
    assert printed["models"]["m"]["cmd"] == "srv --port 5800"
    assert printed["models"]["m"]["proxy"] == "http://localhost:5800"
    assert printed["models"]["m"]["ttl"] == 30
    assert printed["routing"]["groups"]["(default)"]["members"] == ["m"]
    assert "warning:" in err and "models.m.mystery: unknown key 'mystery' ignored" in err


def test_check_reports_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("globalTTL: -1\nmodels:\n  m:\n    cmd: srv\n    ttl: -3\n")
    assert main(["config", "check", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "invalid config (3 problems):",
        f"{path}:1: globalTTL: globalTTL must be >= 0",
        f"{path}:3: models.m.proxy: proxy uses ${{PORT}} but cmd does not - ${{PORT}} is only "
        "available when used in cmd",
        f"{path}:5: models.m.ttl: invalid TTL value -3",
    ]


def test_check_with_a_config_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text("globalTTL: 9\n")
    assert main(["config", "check", "--config-dir", str(tmp_path)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["globalTTL"] == 9


def test_check_needs_a_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check"]) == 2
    assert "--config" in capsys.readouterr().err
