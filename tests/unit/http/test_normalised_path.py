"""The path `upstream.ignorePaths` is also matched against: decoded and normalised."""

from __future__ import annotations

import pytest

from llamaswap.http.routes.admin import normalised_path


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("/app.json", "/app.json"),
        ("/app%2ejson", "/app.json"),
        ("//app.json", "/app.json"),
        ("/./a/.//b/", "/a/b/"),
        ("/a/%2E%2E/b", "/b"),
        ("/../../b", "/b"),
        ("/a%2Fb%2f", "/a/b/"),
        ("/", "/"),
        ("", "/"),
        ("/x%20y", "/x y"),
    ],
)
def test_normalised_path(raw: str, normal: str) -> None:
    assert normalised_path(raw) == normal
