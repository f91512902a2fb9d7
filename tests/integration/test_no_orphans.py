"""`kill -9` of a running `llamaswap run` leaves nothing it started (issue 13).

The kernel's parent-death signal reaches a direct child only. These upstreams put the
real server one level down (bash without exec, a wrapper script) or outside the tree
(a daemon that double-forks and calls setsid); the keeper llamaswap puts between itself
and each upstream must still take all of them down.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import time
from pathlib import Path

from llamaswap.testing import upstream_command
from llamaswap.testing.ports import free_port_block

from .helpers import kill_quietly
from .test_run_command import llamaswap, post_json, up, wait_for

GONE_WITHIN_SECONDS = 5.0
RUN_VARIABLE = "LLAMASWAP_TEST_NO_ORPHANS"


def started_by(token: str) -> list[int]:
    """Live processes that inherited this test's variable: whatever the llamaswap started
    with it started (keepers, the spare keeper, upstreams and all their children)."""
    needle = f"\0{RUN_VARIABLE}={token}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in b"\0" + (entry / "environ").read_bytes() + b"\0":
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def config_for(tmp_path: Path, ports: list[int]) -> Path:
    bash_port, script_port, daemon_port = ports
    fake = {port: shlex.join(upstream_command(port, "--silent")) for port in ports}
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text(f"#!/bin/sh\n{fake[script_port]}\necho 'wrapper: server exited'\n")
    wrapper.chmod(0o755)
    daemon = f"( setsid {fake[daemon_port]} & ); exec sleep 1000"
    models = {
        "bash-wrapped": (f"bash -c {shlex.quote(fake[bash_port] + '; true')}", bash_port),
        "script": (str(wrapper), script_port),
        "daemon": (f"sh -c {shlex.quote(daemon)}", daemon_port),
    }
    lines = ["healthCheckTimeout: 20", "models:"]
    for name, (cmd, port) in models.items():
        lines += [f"  {name}:", f"    cmd: {cmd}", f"    proxy: http://127.0.0.1:{port}"]
    lines.append(f"groups: {{all: {{swap: false, members: [{', '.join(models)}]}}}}")
    config = tmp_path / "config.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


def test_sigkill_of_llamaswap_leaves_no_process_it_started(tmp_path: Path) -> None:
    ports = [free_port_block(1) for _ in range(3)]
    config = config_for(tmp_path, ports)
    listen = free_port_block(1)
    url = f"http://127.0.0.1:{listen}"
    token = f"{os.getpid()}-{time.monotonic_ns()}"
    listen_at = ("--listen", f"127.0.0.1:{listen}")
    try:
        with llamaswap("--config", str(config), *listen_at, env={RUN_VARIABLE: token}) as server:
            wait_for(lambda: up(url))
            for model in ("bash-wrapped", "script", "daemon"):
                assert post_json(url + f"/api/models/load/{model}", {})[0] == 200, model
            assert all(listening(port) for port in ports)
            assert len(started_by(token)) >= 1 + 3 * 2  # llamaswap, 3 keepers and servers
            os.kill(server.pid, signal.SIGKILL)
            server.wait(5)
            deadline = time.monotonic() + GONE_WITHIN_SECONDS
            while time.monotonic() < deadline and (
                started_by(token) or any(listening(port) for port in ports)
            ):
                time.sleep(0.05)  # other processes: no event to await
            assert started_by(token) == []
            assert not any(listening(port) for port in ports)
    finally:
        for pid in started_by(token):
            kill_quietly(pid)
