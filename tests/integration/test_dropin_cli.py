"""llama-swap's command line, unchanged: `llamaswap -config F -listen :PORT -watch-config`
runs the server as `llamaswap run` does, so systemd units and docker lines keep working."""

from __future__ import annotations

import signal
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from .server import config_yaml, fake_model, free_port_block
from .test_run_command import llamaswap_cli, models_in, up, wait_for

# what the server, the UI and the config pull in; --version must need none of it
HEAVY_MODULES = (
    "aiohttp", "anyio", "hypothesis", "pydantic", "yaml", "uvloop",
    "llamaswap.server", "llamaswap.http", "llamaswap.config", "llamaswap.runtime",
)  # fmt: skip


def llamaswap(
    *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> AbstractContextManager[subprocess.Popen[str]]:
    """`llamaswap ARGV` with no sub-command (llama-swap's command line)."""
    return llamaswap_cli(*argv, cwd=cwd, env=env)


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    return output


def listening_addresses(port: int) -> set[tuple[str, str]]:
    """(IPv4 or IPv6, local address) of the sockets in LISTEN state on `port`, read from
    /proc (no traffic is sent)."""
    found = set()
    for family, table, width in (("IPv4", "/proc/net/tcp", 8), ("IPv6", "/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                named = {"0" * width: "every", "0100007F": "127.0.0.1"}.get(address, address)
                found.add((family, named))
    return found


def ipv6_enabled() -> bool:
    flag = Path("/proc/sys/net/ipv6/conf/all/disable_ipv6")
    return flag.is_file() and flag.read_text().strip() == "0"


def test_llama_swap_flags_listen_on_every_interface_and_watch_the_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(fake_model("a")))
    port = free_port_block(1)
    url = f"http://127.0.0.1:{port}"  # every interface includes loopback; nothing else is used
    with llamaswap("-config", str(config), "-listen", f":{port}", "-watch-config") as process:
        wait_for(lambda: up(url))
        assert models_in(url) == ["a"]
        expected = {("IPv4", "every"), ("IPv6", "every")} if ipv6_enabled() else {("IPv4", "every")}
        assert listening_addresses(port) == expected  # the wildcards, as Go's `:PORT`
        config.write_text(config_yaml(fake_model("a"), fake_model("b")))
        wait_for(lambda: models_in(url) == ["a", "b"], timeout=30)
        output = stop(process)
    assert output.splitlines()[0] == f"llamaswap is running {config}"
    assert "other hosts on the network can reach it (every interface)" in output


def test_gnu_spellings_and_a_loopback_address(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(fake_model("a")))
    port = free_port_block(1)
    url = f"http://127.0.0.1:{port}"
    with llamaswap(f"--config={config}", "--listen", f"127.0.0.1:{port}") as process:
        wait_for(lambda: up(url))
        assert listening_addresses(port) == {("IPv4", "127.0.0.1")}
        assert models_in(url) == ["a"]
        output = stop(process)
    assert "can reach it" not in output


def test_config_yaml_in_the_working_directory_is_the_config(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(config_yaml(fake_model("here")))
    port = free_port_block(1)
    url = f"http://127.0.0.1:{port}"
    with llamaswap(cwd=tmp_path, env={"LLAMASWAP_LISTEN": f"127.0.0.1:{port}"}) as process:
        wait_for(lambda: up(url))
        assert models_in(url) == ["here"]
        (tmp_path / "config.yaml").write_text(config_yaml(fake_model("here"), fake_model("also")))
        process.send_signal(signal.SIGHUP)  # the file found is the one reloaded
        wait_for(lambda: models_in(url) == ["also", "here"])
        output = stop(process)
    assert output.splitlines()[0] == (
        f"llamaswap: using {tmp_path / 'config.yaml'} "
        "(no -config given; found in the current directory)"
    )
    assert "llamaswap is running config.yaml" in output


def test_no_flags_and_no_config_yaml_is_the_demo(tmp_path: Path) -> None:
    port = free_port_block(1)
    url = f"http://127.0.0.1:{port}"
    with llamaswap("-listen", f"127.0.0.1:{port}", cwd=tmp_path) as process:
        wait_for(lambda: up(url))
        assert models_in(url) == ["embedder", "large-chat", "small-chat"]
        output = stop(process)
    assert output.splitlines()[0] == "llamaswap is running the built-in demo config"


@pytest.mark.parametrize("flag", ["--version", "-version"])
def test_version_imports_no_server_code(flag: str) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "llamaswap", flag],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("version: ") and "(llamaswap, Python " in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "llamaswap.cli" in imported  # the measurement saw our own imports
    heavy = {m for m in imported if any(m == h or m.startswith(h + ".") for h in HEAVY_MODULES)}
    assert heavy == set()


def test_a_typo_exits_2_from_the_real_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llamaswap", "run", "--confg", "x"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "did you mean --config?" in result.stderr
