"""What `llamaswap run` (and plain `llamaswap`) decides before serving: which config, the
summary's URL and its warning about other hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaswap.cli import parse
from llamaswap.commands.listen import Listen, parse_listen
from llamaswap.commands.run import default_config, describe_source
from llamaswap.commands.summary import summary
from llamaswap.demo import demo_config


def test_config_yaml_in_the_current_directory_is_used_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config.yaml").write_text("models: {}\n")
    monkeypatch.chdir(tmp_path)
    args = parse([])
    default_config(args)
    assert args.config == "config.yaml"
    assert capsys.readouterr().err == (
        f"llamaswap: using {tmp_path / 'config.yaml'} "
        "(no -config given; found in the current directory)\n"
    )


@pytest.mark.parametrize("argv", [[], ["-config-dir", "conf.d"], ["-config", "other.yaml"]])
def test_otherwise_nothing_is_picked(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    if argv:  # a config.yaml is there, but the command line names its own sources
        (tmp_path / "config.yaml").write_text("models: {}\n")
    args = parse(argv)
    before = (args.config, args.config_dir)
    default_config(args)
    assert (args.config, args.config_dir) == before
    assert capsys.readouterr().err == ""


def test_the_summary_names_what_runs() -> None:
    assert describe_source(parse([])) is None
    assert describe_source(parse(["-config", "c.yaml", "-config-dir", "d"])) == "c.yaml + d/"
    text = summary(demo_config(), Listen("127.0.0.1", 1), source="c.yaml", example="x")
    assert text.splitlines()[0] == "llamaswap is running c.yaml"


def test_the_summary_of_an_https_server_on_every_interface() -> None:
    text = summary(demo_config(), parse_listen(":8443"), tls=True, source=None, example="x")
    assert "listen: https://127.0.0.1:8443   (OpenAI base URL: https://127.0.0.1:8443/v1)" in text
    assert (
        "note:   other hosts on the network can reach it (every interface); "
        "-listen 127.0.0.1:8443 keeps it on this machine"
    ) in text


def test_no_warning_on_loopback() -> None:
    text = summary(demo_config(), parse_listen("localhost:8080"), source=None, example="x")
    assert "listen: http://localhost:8080" in text and "note:" not in text


def test_the_caller_may_tell_whether_only_this_machine_connects() -> None:
    listen = parse_listen("llm.internal:8080")  # a host name: no DNS lookup when told
    assert "note:" in summary(demo_config(), listen, source=None, example="x", local_only=False)
    assert "note:" not in summary(demo_config(), listen, source=None, example="x", local_only=True)
