"""`-tls-cert-file` / `-tls-key-file`: the server's TLS context, or why it cannot be made.

Read once at start, as llama-swap does (restart to use a renewed certificate). Both
files are PEM, the key unencrypted (Go's tls.LoadX509KeyPair takes nothing else), and
the certificate file may hold the chain after the leaf. OpenSSL's own errors ("PEM
lib") do not say which file is wrong, so the files are checked first.
"""

from __future__ import annotations

import ssl
from pathlib import Path

CERT_FLAG, KEY_FLAG = "-tls-cert-file", "-tls-key-file"


class TLSProblem(Exception):
    """A TLS option that cannot be used; the message names the flag and the file."""


class _EncryptedKey(Exception):
    pass


def _no_passphrase() -> str:
    raise _EncryptedKey  # instead of OpenSSL prompting on the terminal


def _read(flag: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise TLSProblem(f"{flag} {path}: cannot read it: {exc.strerror or exc}") from None


def server_context(cert_file: str | None, key_file: str | None) -> ssl.SSLContext | None:
    """None for plain HTTP (neither file); TLSProblem when only one is given or either
    cannot be used."""
    if not cert_file and not key_file:
        return None
    if not cert_file or not key_file:
        given = CERT_FLAG if cert_file else KEY_FLAG
        raise TLSProblem(
            f"both {CERT_FLAG} and {KEY_FLAG} must be given for TLS (only {given} was)"
        )
    if "-----BEGIN CERTIFICATE-----" not in _read(CERT_FLAG, cert_file):
        raise TLSProblem(f"{CERT_FLAG} {cert_file}: no PEM certificate in it")
    if "PRIVATE KEY-----" not in _read(KEY_FLAG, key_file):
        raise TLSProblem(f"{KEY_FLAG} {key_file}: no PEM private key in it")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_passphrase)
    except _EncryptedKey:
        raise TLSProblem(
            f"{KEY_FLAG} {key_file}: the key is encrypted; give an unencrypted one"
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            reason = "the key does not belong to the certificate"
        else:
            reason = exc.reason or str(exc)
        raise TLSProblem(f"{CERT_FLAG} {cert_file} with {KEY_FLAG} {key_file}: {reason}") from None
    return context
