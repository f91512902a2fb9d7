"""-tls-cert-file / -tls-key-file serve HTTPS: a real `llamaswap` process, a certificate
made by trustme for 127.0.0.1, and clients that verify it against trustme's CA."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from .server import config_yaml, fake_model, free_port_block
from .test_dropin_cli import llamaswap, stop
from .test_run_command import wait_for


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cert_files(ca: trustme.CA, tmp_path: Path) -> Iterator[tuple[str, str]]:
    issued = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    yield str(cert), str(key)


def client(ca: trustme.CA) -> urllib.request.OpenerDirector:
    context = ssl.create_default_context()  # verifies the certificate and the host name
    ca.configure_trust(context)
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )


def fetch(opener: urllib.request.OpenerDirector, url: str, body: object = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with opener.open(request, timeout=30) as response:
        assert response.status == 200
        return json.loads(response.read())


def https_up(opener: urllib.request.OpenerDirector, url: str) -> bool:
    try:
        with opener.open(url + "/health", timeout=5) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def test_https_with_a_certificate_the_client_verifies(
    ca: trustme.CA, cert_files: tuple[str, str], tmp_path: Path
) -> None:
    cert, key = cert_files
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(fake_model("a")))
    port = free_port_block(1)
    url = f"https://127.0.0.1:{port}"
    opener = client(ca)
    argv = ("-config", str(config), "-listen", f"127.0.0.1:{port}")
    with llamaswap(*argv, "-tls-cert-file", cert, "-tls-key-file", key) as process:
        wait_for(lambda: https_up(opener, url))
        models = fetch(opener, url + "/v1/models")
        assert [m["id"] for m in models["data"]] == ["a"]
        chat = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
        assert "choices" in fetch(opener, url + "/v1/chat/completions", chat)
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(urllib.request.build_opener(urllib.request.ProxyHandler({})), url + "/health")
        with pytest.raises((OSError, urllib.error.URLError)):  # no plain HTTP on that port
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://127.0.0.1:{port}/health", timeout=10
            ).read()
        output = stop(process)
    assert f"listen: {url}   (OpenAI base URL: {url}/v1)" in output


def test_one_file_without_the_other_is_refused(cert_files: tuple[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llamaswap", "-tls-cert-file", cert_files[0]],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(cert_files[0]).parent,  # no ./config.yaml there to be announced
    )
    assert result.returncode == 2
    assert result.stderr == (
        "llamaswap: both -tls-cert-file and -tls-key-file must be given for TLS "
        "(only -tls-cert-file was)\n"
    )
