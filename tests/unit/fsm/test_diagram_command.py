"""`llamaswap diagram` writes stable diagrams and `--check` catches stale ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llamaswap.cli import main
from llamaswap.fsm import load_spec, shipped_spec_paths
from llamaswap.fsm.diagram import to_dot, to_mermaid

REPO = Path(__file__).resolve().parents[3]


def test_committed_diagrams_are_up_to_date() -> None:
    assert main(["diagram", "--check", "--out", str(REPO / "docs" / "diagrams")]) == 0


def test_check_fails_on_a_stale_diagram(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path in (REPO / "docs" / "diagrams").glob("*.*"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "process.mmd").write_text("stateDiagram-v2\n")
    assert main(["diagram", "--check", "--out", str(tmp_path)]) == 1
    assert "process.mmd" in capsys.readouterr().err


def test_check_fails_when_a_diagram_is_missing(tmp_path: Path) -> None:
    assert main(["diagram", "--check", "--out", str(tmp_path)]) == 1


def test_output_is_byte_stable() -> None:
    for path in shipped_spec_paths():
        assert to_dot(load_spec(path)) == to_dot(load_spec(path))
        assert to_mermaid(load_spec(path)) == to_mermaid(load_spec(path))
        assert "0x" not in to_dot(load_spec(path))


def test_mermaid_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    spec = REPO / "spec" / "process.fsm.yaml"
    assert main(["diagram", "--spec", str(spec), "--format", "mermaid", "--out", "-"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[3] == "stateDiagram-v2"
    assert "    stopped --> launching : start / spawn" in out
    assert "    starting --> ready : healthy" in out
    assert "    launching --> ready : spawned [health_check_disabled]" in out
    assert "    stopping --> stopping : spawned / terminate" in out


def test_every_transition_is_drawn() -> None:
    for path in shipped_spec_paths():
        spec = load_spec(path)
        dot = to_dot(spec)
        for transition in spec.transitions:
            for source in transition.sources:
                target = transition.target_from(source)
                edge = f'{source} -> {target} [label="{transition.event}'
                assert edge in dot or f"{source} -> {target} [label={transition.event}]" in dot


def test_images_without_graphviz_give_a_notice_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["diagram", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "notice:" in err and "dot" in err
    assert (tmp_path / "process.dot").is_file()
    assert not (tmp_path / "process.svg").exists()
    assert main(["diagram", "--format", "svg", "--out", str(tmp_path)]) == 1


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
def test_svg_when_graphviz_is_installed(tmp_path: Path) -> None:
    assert main(["diagram", "--format", "svg", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "process.svg").read_text().lstrip().startswith("<?xml")


def test_bad_spec_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.fsm.yaml"
    bad.write_text("name: bad\ninitial: a\nstates: {a: {}}\ntransitions: []\n")
    assert main(["diagram", "--spec", str(bad), "--out", str(tmp_path)]) == 2
    assert str(bad) in capsys.readouterr().err
