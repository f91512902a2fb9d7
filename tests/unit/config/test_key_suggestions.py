"""A misspelt key falls back to a default without a word unless it is named: unknown keys
near a known one get "did you mean", and an error about the known key points at them."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaswap.cli import main
from tests.unit.config.helpers import MODEL, load, problems


def test_a_top_level_typo_is_named_with_the_key_meant() -> None:
    config = load(f"healthCheckTimout: 30\nmodels:\n  m:\n    {MODEL}\n")
    assert config.health_check_timeout == 120  # still ignored, as llama-swap ignores it
    assert config.warnings == [
        "test.yaml:1: healthCheckTimout: unknown key 'healthCheckTimout' ignored; "
        "did you mean healthCheckTimeout?"
    ]


@pytest.mark.parametrize("key", ["x-anchors", "x-models", "somethingNew", "myNotes"])
def test_other_top_level_keys_stay_silent(key: str) -> None:
    assert load(f"{key}: {{a: 1}}\n").warnings == []


def test_a_model_key_typo_names_the_key_meant_and_others_do_not() -> None:
    config = load(f"models:\n  m:\n    {MODEL}\n    aliass: [mm]\n    notes: hello\n")
    assert config.warnings == [
        "test.yaml:5: models.m.aliass: unknown key 'aliass' ignored; did you mean aliases?",
        "test.yaml:6: models.m.notes: unknown key 'notes' ignored",
    ]


def test_a_nested_section_typo() -> None:
    config = load(f"models:\n  m:\n    {MODEL}\n    filters: {{setParams: {{}}, stripParam: a}}\n")
    assert config.warnings == [
        "test.yaml:5: models.m.filters.stripParam: unknown key 'stripParam' ignored; "
        "did you mean stripParams?"
    ]


def test_an_error_about_a_key_points_at_its_misspelling() -> None:
    found = problems("models:\n  m:\n    cmdd: srv --port ${PORT}\n")
    assert [str(p) for p in found] == [
        "test.yaml:2: models.m.cmd: cmd is required (empty command); "
        "'cmdd' on line 3 may be a misspelling of it"
    ]


def test_config_check_prints_the_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("healthCheckTimout: 30\nmodels:\n  m:\n    cmdd: srv --port ${PORT}\n")
    assert main(["config", "check", "--config", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {path}:1: healthCheckTimout: unknown key 'healthCheckTimout' ignored; "
        "did you mean healthCheckTimeout?",
        f"warning: {path}:4: models.m.cmdd: unknown key 'cmdd' ignored; did you mean cmd?",
        "invalid config (1 problem):",
        f"{path}:3: models.m.cmd: cmd is required (empty command); "
        "'cmdd' on line 4 may be a misspelling of it",
    ]
