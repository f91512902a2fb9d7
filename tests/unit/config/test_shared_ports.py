"""Two models on one proxy address that the routing policy lets run together: a warning
(issue 13: at run time the second start fails on its taken port)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from llamaswap.commands.config import check
from llamaswap.config.ports import address_key

from .helpers import load


def models(*entries: tuple[str, str]) -> str:
    """YAML for models given as (name, "host:port"), each proxied to its address."""
    lines = ["models:"]
    for name, address in entries:
        port = address.rsplit(":", 1)[1]
        lines += [f"  {name}:", f"    cmd: server --port {port}", f"    proxy: http://{address}"]
    return "\n".join(lines) + "\n"


def port_warnings(text: str) -> list[str]:
    return [w for w in load(text).warnings if "is also the proxy port" in w]


SAME = models(("a", "127.0.0.1:9999"), ("b", "localhost:9999"))


@pytest.mark.parametrize(
    ("routing", "rule"),
    [
        ("groups: {g: {swap: false, members: [a, b]}}", "groups.g.swap: false"),
        (
            "groups: {g1: {exclusive: false, members: [a]}, g2: {members: [b]}}",
            "groups.g1.exclusive: false",
        ),
        (
            "groups: {g1: {persistent: true, members: [a]}, g2: {members: [b]}}",
            "groups.g1.persistent: true",
        ),
        ("matrix: {sets: {both: 'a & b'}}", "matrix.sets.both"),
    ],
)
def test_models_that_can_run_together_on_one_port_are_warned(routing: str, rule: str) -> None:
    (warning,) = port_warnings(SAME + routing + "\n")
    assert 'models.b.proxy: port 9999 is also the proxy port of model "a"' in warning
    assert f"({rule})" in warning


@pytest.mark.parametrize(
    "routing",
    [
        "",  # both in the (default) group: one at a time
        "groups: {g: {members: [a, b]}}",  # a swap group
        "matrix: {sets: {one: 'a | b'}}",
    ],
)
def test_models_that_never_run_together_may_share_a_port(routing: str) -> None:
    assert port_warnings(SAME + routing + "\n") == []


def test_a_port_from_port_allocation_counts_too() -> None:
    text = (
        "startPort: 9999\n"
        "groups: {g: {swap: false, members: [a, b]}}\n"
        "models:\n"
        "  a:\n    cmd: server --port ${PORT}\n"  # proxy: http://localhost:9999
        "  b:\n    cmd: server\n    proxy: http://127.0.0.1:9999\n"
    )
    assert len(port_warnings(text)) == 1


def test_different_hosts_or_ports_do_not_clash() -> None:
    text = models(("a", "127.0.0.1:9999"), ("b", "127.0.0.2:9999"), ("c", "localhost:9998"))
    assert port_warnings(text + "groups: {g: {swap: false, members: [a, b, c]}}\n") == []


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://127.0.0.1:9999/v1", ("localhost", 9999)),
        ("http://[::1]:9999", ("localhost", 9999)),
        ("http://0.0.0.0:9999", ("localhost", 9999)),
        ("https://GPU-box", ("gpu-box", 443)),
        ("http://gpu-box", ("gpu-box", 80)),
        ("http://h:bad", None),
    ],
)
def test_address_keys(url: str, key: tuple[str, int] | None) -> None:
    assert address_key(url) == key


def test_config_check_prints_the_warning(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(SAME + "groups: {g: {swap: false, members: [a, b]}}\n")
    out, err = io.StringIO(), io.StringIO()
    assert check(str(path), out=out, err=err) == 0
    assert f"warning: {path}:7: models.b.proxy: port 9999 is also the proxy port" in err.getvalue()
