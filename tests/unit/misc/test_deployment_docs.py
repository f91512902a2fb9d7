"""The command lines, unit file, Dockerfile and proxy configs in the deployment docs are
ones llamaswap (and systemd, nginx, Caddy where installed) accept, so the docs cannot
drift from the CLI. The container itself cannot be built here."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llamaswap.cli import parse
from llamaswap.commands import run as run_command
from llamaswap.commands.listen import parse_listen

DOCS = Path(__file__).resolve().parents[3] / "docs"
README = DOCS.parent / "README.md"
PAGES = [DOCS / "deployment.md", DOCS / "migrating-from-llama-swap.md", README]
HARDENING = (
    "DynamicUser=yes",
    "ProtectSystem=strict",
    "ProtectHome=",
    "PrivateTmp=yes",
    "NoNewPrivileges=yes",
    "StateDirectory=",
    "ExecReload=/bin/kill -HUP $MAINPID",  # SIGHUP reloads the config
)


def blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(), re.S)


def shell_commands(page: Path) -> list[list[str]]:
    """Every `llamaswap ...` command in the page's sh blocks, as argv after the program."""
    found = []
    for block in blocks(page, "sh"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "llamaswap":
                found.append(words[1:])
    return found


def exec_starts() -> list[list[str]]:
    lines = [
        line.removeprefix("ExecStart=")
        for page in PAGES
        for block in blocks(page, "ini")
        for line in block.splitlines()
        if line.startswith("ExecStart=")
    ]
    return [shlex.split(line) for line in lines]


def test_every_documented_command_line_parses() -> None:
    commands = [argv for page in PAGES for argv in shell_commands(page)]
    assert len(commands) >= 6
    for argv in commands:
        try:
            parse(argv)
        except SystemExit as exited:  # -version prints and exits 0; a mistake exits 2
            assert exited.code == 0, argv


def test_every_exec_start_runs_the_server_with_its_config() -> None:
    commands = exec_starts()
    assert len(commands) >= 3  # the hardened unit and the before/after of the migration
    for argv in commands:
        if Path(argv[0]).name == "llama-swap":
            continue  # the "before" line
        assert Path(argv[0]).name == "llamaswap"
        args = parse(argv[1:])
        assert args._module is run_command and args.config and args.watch_config


def dockerfile() -> str:
    (text,) = blocks(DOCS / "deployment.md", "dockerfile")
    return text


def test_the_dockerfile_entrypoint_serves_every_interface_from_the_copied_config() -> None:
    entrypoint = next(
        json.loads(line.removeprefix("ENTRYPOINT "))
        for line in dockerfile().splitlines()
        if line.startswith("ENTRYPOINT ")
    )
    assert entrypoint[0] == "/usr/local/bin/llamaswap"  # where UV_TOOL_BIN_DIR puts it
    args = parse(entrypoint[1:])
    assert f"COPY config.yaml {args.config}" in dockerfile()
    assert parse_listen(args.listen).every_interface  # reachable through `docker run -p`
    # flags after the image name are appended, and the last one wins, as in Go
    assert parse([*entrypoint[1:], "-listen", ":9000"]).listen == ":9000"


def unit_file(tmp_path: Path) -> Path:
    (text,) = [b for b in blocks(DOCS / "deployment.md", "ini") if "[Service]" in b]
    program = Path(sys.executable).with_name("llamaswap")
    unit = tmp_path / "llamaswap.service"
    unit.write_text(text.replace("/usr/local/bin/llamaswap", str(program)))
    return unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_hardened_unit(tmp_path: Path) -> None:
    unit = unit_file(tmp_path)
    for directive in HARDENING:
        assert directive in unit.read_text()
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert str(unit) not in result.stderr  # no "Unknown key", "Invalid ..." about our lines


@pytest.mark.skipif(shutil.which("nginx") is None, reason="no nginx")
def test_nginx_accepts_the_proxy_config(tmp_path: Path) -> None:
    (server,) = blocks(DOCS / "deployment.md", "nginx")
    server = server.replace("listen 443 ssl;", "listen 127.0.0.1:1;")
    server = re.sub(r"\n\s*ssl_certificate\S* .*?;", "", server)
    temp = " ".join(f"{kind}_temp_path {tmp_path}/{kind};" for kind in
                    ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))  # fmt: skip
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\naccess_log off;\n{temp}\n{server}\n}}\n"
    )
    result = subprocess.run(
        ["nginx", "-t", "-q", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("caddy") is None, reason="no caddy")
def test_caddy_accepts_the_proxy_config(tmp_path: Path) -> None:
    (site,) = blocks(DOCS / "deployment.md", "caddy")
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text("{\n\tadmin off\n}\n" + site)
    result = subprocess.run(
        ["caddy", "validate", "--adapter", "caddyfile", "--config", str(caddyfile)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
