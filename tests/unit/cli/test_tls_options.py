"""-tls-cert-file / -tls-key-file: both or neither, and a message naming the file at fault."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from llamaswap.cli import main
from llamaswap.commands.tls import TLSProblem, server_context


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    other = ca.issue_cert("localhost")
    paths = {
        "cert": tmp_path / "cert.pem",
        "key": tmp_path / "key.pem",
        "other-key": tmp_path / "other-key.pem",
        "junk": tmp_path / "junk.pem",
        "encrypted-key": tmp_path / "encrypted.pem",
    }
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    other.private_key_pem.write_to_path(str(paths["other-key"]))
    paths["junk"].write_text("not a certificate\n")
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), None)
    paths["encrypted-key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return {name: str(path) for name, path in paths.items()}


def test_neither_file_is_plain_http() -> None:
    assert server_context(None, None) is None
    assert server_context("", "") is None


def test_a_certificate_and_its_key_make_a_server_context(files: dict[str, str]) -> None:
    context = server_context(files["cert"], files["key"])
    assert isinstance(context, ssl.SSLContext)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize(
    ("cert", "key", "says"),
    [
        ("cert", None, "both -tls-cert-file and -tls-key-file must be given for TLS "
         "(only -tls-cert-file was)"),
        (None, "key", "(only -tls-key-file was)"),
        ("missing", "key", "-tls-cert-file {missing}: cannot read it: No such file"),
        ("cert", "missing", "-tls-key-file {missing}: cannot read it: No such file"),
        ("junk", "key", "-tls-cert-file {junk}: no PEM certificate in it"),
        ("cert", "junk", "-tls-key-file {junk}: no PEM private key in it"),
        ("cert", "other-key", "-tls-cert-file {cert} with -tls-key-file {other-key}: "
         "the key does not belong to the certificate"),
        ("cert", "encrypted-key", "-tls-key-file {encrypted-key}: the key is encrypted"),
    ],
)  # fmt: skip
def test_unusable_files_are_named(
    files: dict[str, str], tmp_path: Path, cert: str | None, key: str | None, says: str
) -> None:
    files = {**files, "missing": str(tmp_path / "nowhere.pem")}
    with pytest.raises(TLSProblem) as raised:
        server_context(cert and files[cert], key and files[key])
    expected = says
    for name, path in files.items():
        expected = expected.replace("{" + name + "}", path)
    assert expected in str(raised.value)


def test_a_directory_cannot_be_read(files: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(TLSProblem, match="cannot read it: Is a directory"):
        server_context(str(tmp_path), files["key"])


@pytest.mark.parametrize("argv", [["-tls-cert-file", "c.pem"], ["run", "--tls-key-file", "k.pem"]])
def test_the_command_exits_2_with_the_message(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert "both -tls-cert-file and -tls-key-file must be given" in capsys.readouterr().err


def test_an_unreadable_file_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["-tls-cert-file", "gone.pem", "-tls-key-file", "gone-key.pem"]) == 2
    assert "llamaswap: -tls-cert-file gone.pem: cannot read it" in capsys.readouterr().err
