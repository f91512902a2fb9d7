"""The rename of `model` in a GET's query and in an urlencoded form (filters.py): only
that parameter changes, as Go's `url.Values.Set` would set it, and every other byte of
the query or form stays as the client sent it."""

from __future__ import annotations

import pytest

from llamaswap.http.filters import rewrite_query, rewrite_urlencoded


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/props?model=a", "/props?model=b%2Fc+d"),
        ("/props?x=%41&model=a&y=1+2", "/props?x=%41&model=b%2Fc+d&y=1+2"),
        ("/props?model=a&model=z", "/props?model=b%2Fc+d"),  # Set: one value left
        ("/props?mod%65l=a", "/props?model=b%2Fc+d"),  # the key as the parser reads it
        ("/props?models=a&x", "/props?models=a&x"),  # no `model` parameter: unchanged
        ("/props", "/props"),
        ("/props?", "/props?"),
    ],
)
def test_rewrite_query(path: str, expected: str) -> None:
    assert rewrite_query(path, "b/c d") == expected


def test_rewrite_urlencoded_keeps_every_other_byte() -> None:
    body = b"prompt=%C3%A9t%C3%A9+x&model=a&stream=true\n"
    assert rewrite_urlencoded(body, "v") == b"prompt=%C3%A9t%C3%A9+x&model=v&stream=true\n"
    raw = b"model=a&blob=\xff\xfe"  # bytes that are not UTF-8 survive
    assert rewrite_urlencoded(raw, "v") == b"model=v&blob=\xff\xfe"
