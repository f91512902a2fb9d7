"""llama-swap's command line (`llamaswap -config F ...`, no sub-command) and `llamaswap run`
read the same flags, in Go's syntax, and a typo gets the option that was meant."""

from __future__ import annotations

import argparse
import re

import pytest

from llamaswap import __version__
from llamaswap.cli import main, parse
from llamaswap.commands import run as run_command

LLAMA_SWAP_LINE = [
    "-config", "c.yaml", "-config-dir", "conf.d", "-listen", ":8080", "-watch-config",
    "-tls-cert-file", "cert.pem", "-tls-key-file", "key.pem",
]  # fmt: skip
GNU_LINE = [
    "--config", "c.yaml", "--config-dir", "conf.d", "--listen", ":8080", "--watch-config",
    "--tls-cert-file", "cert.pem", "--tls-key-file", "key.pem",
]  # fmt: skip
EXPECTED = {
    "config": "c.yaml",
    "config_dir": "conf.d",
    "listen": ":8080",
    "watch_config": True,
    "tls_cert_file": "cert.pem",
    "tls_key_file": "key.pem",
}


def picked(args: argparse.Namespace) -> dict[str, object]:
    return {key: getattr(args, key) for key in EXPECTED}


@pytest.mark.parametrize(
    "argv",
    [
        LLAMA_SWAP_LINE,
        GNU_LINE,
        ["run", *LLAMA_SWAP_LINE],
        ["run", *GNU_LINE],
        [w.replace("-file", "-file=").replace("-dir", "-dir=") for w in LLAMA_SWAP_LINE],
    ],
    ids=["llama-swap", "gnu", "run-llama-swap", "run-gnu", "equals-signs"],
)
def test_llama_swaps_flags_run_the_server_as_run_does(argv: list[str]) -> None:
    argv = " ".join(argv).replace("= ", "=").split()  # `-config-dir=conf.d` as one word
    args = parse(argv)
    assert args._module is run_command
    assert picked(args) == EXPECTED


def test_value_after_equals_sign() -> None:
    args = parse(["-config=c.yaml", "--listen=127.0.0.1:9000"])
    assert (args.config, args.listen) == ("c.yaml", "127.0.0.1:9000")


@pytest.mark.parametrize(
    ("word", "expected"),
    [("-watch-config=true", True), ("--watch-config=1", True), ("-watch-config=false", False)],
)
def test_go_style_booleans(word: str, expected: bool) -> None:
    assert parse(["-config", "c.yaml", word]).watch_config is expected


def test_a_boolean_that_is_neither_true_nor_false_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(["-watch-config=maybe"])
    assert exited.value.code == 2
    assert "invalid boolean value 'maybe' for -watch-config" in capsys.readouterr().err


def test_no_flags_at_all_is_the_server_too() -> None:
    args = parse([])
    assert args._module is run_command and args.config is None and args.listen is None


@pytest.mark.parametrize("argv", [["-version"], ["--version"], ["run", "-version"]])
def test_version_is_llama_swaps_format_with_our_version(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"version: (\S+) \(llamaswap, Python [\d.]+\w*\)\n", out), out
    assert out.split()[1] == __version__


def test_a_typo_under_run_prints_runs_usage_and_the_option_meant(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--confg", "x"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: llamaswap run ")
    assert "unrecognized arguments: --confg x; did you mean --config?" in err


@pytest.mark.parametrize(
    ("typo", "meant"),
    [("-confg", "-config"), ("--confg", "--config"), ("-listn", "-listen"),
     ("-watch-confg", "-watch-config"), ("-tls-cert", "-tls-cert-file"),
     ("--max-body", "--max-body-size"), ("-validate", "--validate")],
)  # fmt: skip
def test_a_typo_in_llama_swap_style_gets_the_flag_in_the_same_dashes(
    typo: str, meant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([typo, "x"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: llamaswap ")
    assert err.rstrip().endswith(f"did you mean {meant}?")


def test_nothing_close_gets_no_guess(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--zzzzzz"])
    err = capsys.readouterr().err
    assert "unrecognized arguments: --zzzzzz" in err and "did you mean" not in err


def test_a_nested_command_reports_its_own_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["config", "check", "--confg", "x"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: llamaswap config check ")
    assert "did you mean --config?" in err


def test_a_command_after_flags_is_explained(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["-config", "c.yaml", "check"])
    assert exited.value.code == 2
    assert "a command comes first: llamaswap check [options]" in capsys.readouterr().err


def test_the_other_commands_stay(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse(["check", "-config", "c.yaml"]).config == "c.yaml"
    assert parse(["simulate", "--config", "c.yaml", "--synthetic", "3"]).synthetic == 3
    assert parse(["diagram", "--check"]).check is True
    assert parse(["config", "check", "--config", "c.yaml"]).config_action == "check"
