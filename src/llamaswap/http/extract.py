"""Reading the requested model (and whether the client wants a stream) from a request.

JSON bodies give `model` and `stream`; multipart forms (audio, image edits) give the
`model` field, read by a streaming parser that stops there and examines a bounded
number of parts; GET requests give `?model=` and `?stream=true`. The body is read once,
bounded by the application's `client_max_size` (a larger one is a 413).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import anyio.lowlevel
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BadContentDispositionHeader, BadContentDispositionParam

# aiohttp warns (RuntimeWarning) about each malformed Content-Disposition it meets; from
# client bytes that is one stderr line per distinct header, so a bad form could flood it.
# Such a part simply has no name here.
warnings.filterwarnings("ignore", category=BadContentDispositionHeader)
warnings.filterwarnings("ignore", category=BadContentDispositionParam)

MAX_FORM_PARTS = 256  # parts examined looking for `model` (real forms have a dozen)
MAX_FIELD_BYTES = 4096  # a `model` or `stream` value longer than this is no name
CHECKPOINT_EVERY = 16  # parts (or skipped chunks) between yields to the event loop
SKIP_CHUNK = 256 * 1024
PLAIN_TRANSFER = frozenset({"binary", "7bit", "8bit"})
MAX_URLENCODED_FIELDS = 1000  # parse_qs is linear, but a 64 MiB form still takes long


NO_MODEL = "no model id could be identified"


class BadRequest(Exception):
    """The request cannot be routed as sent (400)."""


class NoModel(Exception):
    """The request, as parsed, names no model: llama-swap's 404 `no model id could be
    identified` (the message may say more after a colon)."""


@dataclass(frozen=True)
class FormModel:
    """The `model` field of a multipart form: its raw value and where it sits in the
    body, so a rename can replace just those bytes (every other byte is forwarded
    as sent)."""

    value: bytes
    start: int
    end: int
    streaming: bool  # a `stream=true` field came before `model`


@dataclass
class Inbound:
    """A model-routed request, read once."""

    model: str
    body: bytes
    json: dict[str, Any] | None  # the parsed body when it is a JSON object
    streaming: bool
    multipart: FormModel | None = None
    content_type: str = ""  # forward with this Content-Type (a relabelled JSON body)
    urlencoded: bool = False  # the model came from an application/x-www-form-urlencoded body


def is_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Content-Type", "")


def is_multipart(request: web.Request) -> bool:
    return request.headers.get("Content-Type", "").startswith("multipart/form-data")


async def read_inbound(request: web.Request, *, form_route: bool = False) -> Inbound:
    """Read the body and find the model; raises BadRequest, NoModel (or 413 via aiohttp).
    A GET, JSON or multipart request without a model gives an Inbound whose model is "".

    `form_route`: the endpoint takes multipart/form-data (transcriptions, image edits).
    """
    body = await request.read()
    if request.method == "GET":
        return Inbound(
            request.query.get("model", ""),
            body,
            None,
            request.query.get("stream", "") == "true",
        )
    if is_json(request):
        return _from_json(body)
    if is_multipart(request):
        return await from_form(request.headers["Content-Type"], body)
    return _unlabelled(request, body, form_route)


def _unlabelled(request: web.Request, body: bytes, form_route: bool) -> Inbound:
    """A body whose Content-Type is neither JSON nor multipart, read as llama-swap does:
    clients often send JSON without saying so (`curl -d` labels it a form), so on a JSON
    endpoint a body starting with `{` or `[` is JSON, and is forwarded relabelled
    `application/json`. Otherwise it must be a urlencoded form with a `model` field."""
    shown = request.headers.get("Content-Type") or "not set"
    trimmed = body.strip()
    if not trimmed:
        raise NoModel(f"{NO_MODEL}: the request body is empty")
    if not form_route and trimmed[:1] in (b"{", b"["):
        inbound = _from_json(body)
        inbound.content_type = "application/json"
        return inbound
    try:
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=MAX_URLENCODED_FIELDS)
    except ValueError:
        raise BadRequest(f"form has more than {MAX_URLENCODED_FIELDS} fields") from None
    if form.get("model", [""])[0]:
        fields = {**dict(request.query), **{k: v[0] for k, v in form.items()}}
        stream = fields.get("stream", "") == "true"
        return Inbound(fields["model"], body, None, stream, urlencoded=True)
    if form_route:
        raise NoModel(
            f"{NO_MODEL}: this endpoint expects multipart/form-data but Content-Type is {shown}"
        )
    raise NoModel(
        f"{NO_MODEL}: Content-Type is {shown} and the body is neither a JSON object nor a "
        'form with a "model" field; send JSON with Content-Type: application/json'
    )


def _from_json(body: bytes) -> Inbound:
    if not body.strip():
        raise NoModel(f"{NO_MODEL}: the request body is empty")
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    if not isinstance(document, dict):
        raise BadRequest("request body must be a JSON object")
    model = document.get("model")
    if model is None:  # absent or null: no model (llama-swap's 404)
        model = ""
    if not isinstance(model, str):
        raise BadRequest(f"'model' must be a string, not {type(model).__name__}")
    return Inbound(model, body, document, bool(document.get("stream", False)))


async def from_form(content_type: str, body: bytes) -> Inbound:
    """The model of a multipart/form-data body; anything the parser refuses is a 400."""
    try:
        found = await find_form_model(content_type, body)
    except (ValueError, AssertionError, RuntimeError, HttpProcessingError) as exc:
        raise BadRequest(f"malformed multipart/form-data body: {exc}") from None
    if found is None:
        return Inbound("", body, None, False)
    model = found.value.decode("utf-8", "replace")
    return Inbound(model, body, None, found.streaming, found)


async def find_form_model(content_type: str, body: bytes) -> FormModel | None:
    """The first `model` field of a multipart form, read with aiohttp's streaming parser
    over the bytes already in memory. Parsing stops at that field, and at most
    `MAX_FORM_PARTS` parts are examined, yielding to the event loop as it goes, so a
    form of a million tiny parts costs no more than a short one."""
    content = _BytesContent(body)
    reader = MultipartReader({"Content-Type": content_type}, content)  # type: ignore[arg-type]
    streaming = False
    for examined in range(MAX_FORM_PARTS):
        if examined % CHECKPOINT_EVERY == 0:
            await anyio.lowlevel.checkpoint()
        part = await reader.next()
        if part is None:
            return None
        if not isinstance(part, BodyPartReader):
            raise BadRequest("nested multipart parts are not supported in a form")
        if part.name == "model" and part.filename is None:
            return await _model_field(part, content, streaming)
        if part.name == "stream" and part.filename is None:
            streaming = bytes(await _field_value(part)) == b"true"
        else:
            await _skip(part)
    raise BadRequest(f"no model field within the first {MAX_FORM_PARTS} parts of the form")


async def _model_field(part: BodyPartReader, content: _BytesContent, streaming: bool) -> FormModel:
    if part.headers.get("Content-Transfer-Encoding", "binary").lower() not in PLAIN_TRANSFER:
        raise BadRequest("the model field of the form must not be transfer-encoded")
    start = content.position
    value = bytes(await _field_value(part))
    return FormModel(value, start, start + len(value), streaming)


async def _field_value(part: BodyPartReader) -> bytearray:
    """A short text field's raw bytes (a longer one is no model name: 400)."""
    value = bytearray()
    while not part.at_eof():
        value += await part.read_chunk(SKIP_CHUNK)
        if len(value) > MAX_FIELD_BYTES:
            raise BadRequest(f"form field {part.name!r} is longer than {MAX_FIELD_BYTES} bytes")
    return value


async def _skip(part: BodyPartReader) -> None:
    """Read past a part (a file, say) in large steps, yielding now and then."""
    chunks = 0
    while not part.at_eof():
        await part.read_chunk(SKIP_CHUNK)
        chunks += 1
        if chunks % CHECKPOINT_EVERY == 0:
            await anyio.lowlevel.checkpoint()


class _BytesContent:
    """The part of aiohttp's StreamReader that MultipartReader uses, over bytes in
    memory, and which knows where in the body the parser is (for in-place rewrites)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0
        self._pending = b""  # data the parser handed back (unread_data)

    @property
    def position(self) -> int:
        """The offset in the body of the next byte the parser will read."""
        return self._at - len(self._pending)

    def at_eof(self) -> bool:
        return not self._pending and self._at >= len(self._data)

    async def read(self, n: int = -1) -> bytes:
        if self._pending:
            out = self._pending if n < 0 else self._pending[:n]
            self._pending = self._pending[len(out) :]
            return out
        end = len(self._data) if n < 0 else min(len(self._data), self._at + n)
        out = self._data[self._at : end]
        self._at = end
        return out

    async def readline(self, *, max_line_length: int | None = None) -> bytes:
        head = b""
        if self._pending:
            newline = self._pending.find(b"\n")
            if newline >= 0:
                out = self._pending[: newline + 1]
                self._pending = self._pending[newline + 1 :]
                return out
            head, self._pending = self._pending, b""
        newline = self._data.find(b"\n", self._at)
        end = len(self._data) if newline < 0 else newline + 1
        line = head + self._data[self._at : end]
        if max_line_length is not None and len(line) > max_line_length:
            raise BadRequest(f"a header line in the form is longer than {max_line_length} bytes")
        self._at = end
        return line

    def unread_data(self, data: bytes) -> None:
        self._pending = data + self._pending
