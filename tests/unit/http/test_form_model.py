"""Finding `model` in a multipart form (http/extract.py) and renaming it in place
(http/filters.py): what aiohttp's client encodes is read back exactly, odd but valid
forms work, malformed or oversized ones are a 400, and a rename changes nothing but
the value's bytes."""

from __future__ import annotations

import string

import anyio
import pytest
from aiohttp import FormData
from hypothesis import given, settings
from hypothesis import strategies as st

from llamaswap.http.extract import (
    MAX_FORM_PARTS,
    BadRequest,
    Inbound,
    find_form_model,
    from_form,
)
from llamaswap.http.filters import rewrite_multipart

TYPE = "multipart/form-data; boundary=BB"


class _Sink:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.parts.append(bytes(data))


async def encoded(form: FormData) -> tuple[bytes, str]:
    """The bytes and Content-Type aiohttp's client would send for `form`."""
    payload = form()
    sink = _Sink()
    await payload.write(sink)  # type: ignore[arg-type]
    return b"".join(sink.parts), payload.content_type


def by_hand(content_type: str, body: bytes) -> list[tuple[bytes, bytes]]:
    """(header block, value) per part, split strictly on the delimiter."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    pieces = body.split(b"\r\n--" + boundary)
    first = pieces[0].split(b"--" + boundary + b"\r\n", 1)[1]
    parts = []
    for piece in [first, *pieces[1:]]:
        if piece.startswith(b"--"):
            break
        head, _, value = piece.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        parts.append((head, value))
    return parts


names = st.text(string.ascii_letters + string.digits + "-_.[] ", max_size=12)
values = st.binary(max_size=300)


@settings(max_examples=60, deadline=None)
@given(
    before=st.lists(st.tuples(names, values, st.booleans()), max_size=8),
    after=st.lists(st.tuples(names, values, st.booleans()), max_size=4),
    model=st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), min_size=1, max_size=40),
    renamed=st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=40),
)
@pytest.mark.anyio
async def test_the_model_field_is_found_and_renamed_in_place(
    before: list[tuple[str, bytes, bool]],
    after: list[tuple[str, bytes, bool]],
    model: str,
    renamed: str,
) -> None:
    form = FormData(default_to_multipart=True)
    fields = [*before, ("", model.encode(), False), *after]
    for name, value, is_file in fields:
        if not name and value == model.encode() and not is_file:
            form.add_field("model", model)  # the real one (other names get a prefix)
        elif is_file:
            form.add_field("x" + name, value, filename="f.bin")
        else:
            form.add_field("x" + name, value.decode("utf-8", "replace"))
    body, content_type = await encoded(form)
    found = await find_form_model(content_type, body)
    assert found is not None
    assert found.value == model.encode()
    inbound = Inbound(model, body, None, False, found)
    rewritten = rewrite_multipart(inbound, found, renamed)
    original_parts = by_hand(content_type, body)
    new_parts = by_hand(content_type, rewritten)
    index = next(i for i, (head, _) in enumerate(original_parts) if b'name="model"' in head)
    assert new_parts[index] == (original_parts[index][0], renamed.encode())
    assert new_parts[:index] == original_parts[:index]
    assert new_parts[index + 1 :] == original_parts[index + 1 :]


def part(name: str, value: bytes, *headers: str) -> bytes:
    lines = [f'Content-Disposition: form-data; name="{name}"', *headers]
    return b"--BB\r\n" + "\r\n".join(lines).encode() + b"\r\n\r\n" + value + b"\r\n"


END = b"--BB--\r\n"


@pytest.mark.anyio
async def test_odd_but_valid_forms() -> None:
    # a preamble, a file that is called "model", stream before model, an epilogue
    body = (
        b"preamble\r\n"
        + part("stream", b"true")
        + part("model", b"not this one", 'Content-Type: text/plain; filename="x"').replace(
            b'name="model"', b'name="model"; filename="model.txt"'
        )
        + part("model", b"m1")
        + part("model", b"m2")
        + END
        + b"epilogue"
    )
    found = await find_form_model(TYPE, body)
    assert found is not None and found.value == b"m1" and found.streaming
    assert body[found.start : found.end] == b"m1"
    # an empty model and no model at all
    empty = await find_form_model(TYPE, part("model", b"") + END)
    assert empty is not None and empty.value == b""
    assert await find_form_model(TYPE, part("x", b"1") + END) is None
    # 7bit/8bit/binary are no transfer encoding
    found = await find_form_model(
        TYPE, part("model", b"m", "Content-Transfer-Encoding: 8bit") + END
    )
    assert found is not None and found.value == b"m"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"no boundary here", "boundary"),
        (part("model", b"m", "Content-Transfer-Encoding: base64") + END, "transfer-encoded"),
        (part("model", b"m" * 5000) + END, "longer than"),
        (b"".join(part(f"f{i}", b"x") for i in range(MAX_FORM_PARTS)) + END, "model field"),
        (
            b"--BB\r\nContent-Type: multipart/mixed; boundary=CC\r\n\r\n--CC--\r\n\r\n" + END,
            "nested",
        ),
        (b"--BB\r\nContent-Disposition: form-data; name=" + b"x" * 9000 + b"\r\n\r\n\r\n", ""),
    ],
)
async def test_bad_forms_are_bad_requests(body: bytes, message: str) -> None:
    with pytest.raises((BadRequest, ValueError)) as raised:
        await find_form_model(TYPE, body)
    assert message in str(raised.value)


SAMPLE = (
    b"pre\r\n"
    + part("stream", b"true")
    + part("file", b"\r\n--B \r\n--BB-x\r\n\r\n", "Content-Type: application/octet-stream")
    + part("model", b"the-model", "Content-Type: text/plain")
    + END
)


@settings(max_examples=300, deadline=None)
@given(
    cut=st.integers(min_value=0, max_value=len(SAMPLE)),
    noise=st.binary(max_size=40),
    at=st.integers(min_value=0, max_value=len(SAMPLE)),
)
@pytest.mark.anyio
async def test_truncated_or_corrupted_forms_end_in_an_answer(
    cut: int, noise: bytes, at: int
) -> None:
    """Whatever the bytes, parsing ends (quickly) with a model, no model, or a 400."""
    for body in (SAMPLE[:cut], SAMPLE[:at] + noise + SAMPLE[at:]):
        with anyio.fail_after(5):
            try:
                inbound = await from_form(TYPE, body)
            except BadRequest:
                continue
        assert inbound.model in ("", "the-model") or inbound.multipart is not None
