"""The guarded connection handler: what it relies on in aiohttp, how it words parse
errors, and that real server errors still reach the log with their traceback."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, InvalidHeader, LineTooLong
from aiohttp.test_utils import make_mocked_request
from aiohttp.web_protocol import RequestHandler

from llamaswap.http.connections import (
    ConnectionGuard,
    GuardedRequestHandler,
    clients_log,
    describe,
    server_log,
)
from llamaswap.http.policy import Policy


def test_the_aiohttp_internals_the_handler_reads_exist() -> None:
    """GuardedRequestHandler reads these RequestHandler slots; an aiohttp upgrade that
    renames them must fail here rather than silently drop the head deadline."""
    slots = {name for cls in RequestHandler.__mro__ for name in getattr(cls, "__slots__", ())}
    assert {"_request_count", "_waiter", "_loop", "transport"} <= slots
    for name in ("handle_error", "log_exception", "data_received", "force_close"):
        assert callable(getattr(RequestHandler, name))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (LineTooLong(b"/aaaa...", 8190), "line too long (limit 8190 bytes)"),
        (BadHttpMethod("BREW"), "bad method"),
        (
            BadHttpMethod(error="Received HTTPS traffic on an HTTP port"),
            "HTTPS sent to the HTTP port",
        ),
        (InvalidHeader(b"X-Evil\x00"), "invalid header"),
        (BadHttpMessage("Too many headers received"), "Too many headers received"),
        (BadHttpMessage("Invalid header value char:\n\n  b'x'\n  ^"), "Invalid header value char"),
        (BadHttpMessage("odd \x1b[31m"), "odd \\x1b[31m"),
        (BadHttpMessage("x" * 500), "x" * 100),
    ],
)
def test_parse_errors_are_described_in_a_few_words(error: BadHttpMessage, expected: str) -> None:
    assert describe(error) == expected


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[Records]:
    collect = Records()
    limits = list(clients_log.filters)  # another test's rate limit may be spent already
    for limit in limits:
        clients_log.removeFilter(limit)
    for logger in (clients_log, server_log):
        logger.addHandler(collect)
        logger.setLevel(logging.DEBUG)
    try:
        yield collect
    finally:
        for logger in (clients_log, server_log):
            logger.removeHandler(collect)
            logger.setLevel(logging.NOTSET)
        for limit in limits:
            clients_log.addFilter(limit)


def _handler() -> GuardedRequestHandler:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response()

    loop = asyncio.get_running_loop()
    server = web.Server(handle, loop=loop)
    guard = ConnectionGuard(lambda: Policy())
    return GuardedRequestHandler(server, guard=guard, loop=loop, logger=server_log)


def _request() -> web.BaseRequest:
    writer = mock.Mock(output_size=0)
    return make_mocked_request("GET", "/", writer=writer)


@pytest.mark.anyio
async def test_a_parse_error_is_one_line_and_a_json_400(records: Records) -> None:
    response = _handler().handle_error(_request(), 400, LineTooLong(b"/aaa...", 8190))
    assert isinstance(response, web.Response) and response.status == 400
    assert response.content_type == "application/json"
    assert isinstance(response.body, bytes)
    body = json.loads(response.body)
    assert body["error"]["message"] == "bad request: line too long (limit 8190 bytes)"
    [record] = records.records
    assert record.name == "llamaswap.clients" and record.exc_info is None
    assert record.getMessage().startswith("bad request from ")


@pytest.mark.anyio
async def test_real_errors_keep_their_traceback(records: Records) -> None:
    try:
        raise RuntimeError("a bug")
    except RuntimeError as exc:
        response = _handler().handle_error(_request(), 500, exc)
    assert response.status == 500
    [record] = records.records
    assert record.name == "llamaswap.http.server" and record.levelno == logging.ERROR
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
