"""The API key, the secret and a live signature appear nowhere an error or a log can take them.

Each case makes a real request to a real socket server that fails in its own way (a response
aiohttp cannot parse, a reset, a truncated body, a timeout, a venue error with cookies), learns
the signature the server received, and then searches for the three strings in everything a user
or an error tracker could see: ``str``, ``repr``, ``vars()`` of the error and of every exception
it chains or keeps (``.cause``, ``__cause__``, ``__context__``), the traceback rendered with its
locals (the standard library's, and Sentry's way: containers walked, objects ``repr``'d), and
every log line. Limiter scopes must not hold the raw key either.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from aiohttp import web
from hostile import CREDS, HostileVenue, json_reply

from connex_async import APIError, ConnexAsyncError, ConnexClient, Credentials, RetryPolicy, SessionPool, ZoomexClient
from connex_async.testing import SimulatedVenue

RETRY = RetryPolicy(max_retries=1, backoff_base=0.01, backoff_max=0.01)
SIGNATURE_HEADERS = ("signature", "x-bapi-sign")


# ------------------------------------------------------------------------------------- where to look


def chained(err: BaseException) -> Iterator[BaseException]:
    """``err`` and every exception reachable from it: causes, contexts, and kept in attributes."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        exc = todo.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        yield exc
        todo += [e for e in (exc.__cause__, exc.__context__) if e is not None]
        todo += [v for v in getattr(exc, "__dict__", {}).values() if isinstance(v, BaseException)]


def sentry_like(value: Any, depth: int = 0) -> Iterator[str]:
    """What an error tracker serialises of a local: containers walked, anything else ``repr``'d."""
    if depth > 8:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield repr(key)
            yield from sentry_like(item, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from sentry_like(item, depth + 1)
    else:
        yield repr(value)


def everything_visible(err: BaseException, log: str) -> str:
    parts = [log]
    for exc in chained(err):
        parts += [str(exc), repr(exc), repr(getattr(exc, "__dict__", {})), repr(exc.args)]
        for frame, _ in traceback.walk_tb(exc.__traceback__):
            for value in frame.f_locals.values():
                parts.extend(sentry_like(value))
    parts += traceback.TracebackException.from_exception(err, capture_locals=True).format()
    return "\n".join(parts)


def assert_nothing_leaks(err: BaseException, log: str, creds: Credentials, signatures: list[str]) -> None:
    assert signatures, "the server saw no signature: the test proves nothing"
    visible = everything_visible(err, log)
    for needle in (creds.api_key, creds.secret, *signatures):
        assert needle not in visible, f"{needle[:12]}... visible through {type(err).__name__}"


# ------------------------------------------------------------------------------------- hostile servers


class RawServer:
    """A socket server speaking just enough HTTP to fail in ways ``aiohttp.web`` never would."""

    def __init__(self, answer: bytes | None, *, hang: float = 0.0) -> None:
        self.answer = answer  # None: close the connection without a word
        self.hang = hang
        self.signatures: list[str] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() in SIGNATURE_HEADERS:
                        self.signatures.append(value.strip())
                if b"/market/time" in head.split(b"\r\n", 1)[0]:
                    writer.write(time_answer())
                    await writer.drain()
                    continue
                if self.hang:
                    await asyncio.sleep(self.hang)
                if self.answer is not None:
                    writer.write(self.answer)
                    await writer.drain()
                break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def time_answer() -> bytes:
    ns = time.time_ns()
    body = f'{{"retCode":0,"retMsg":"OK","result":{{"timeSecond":"{ns // 10**9}","timeNano":"{ns}"}}}}'.encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


RAW_CASES = {
    "unparsable-response": b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nBad Header\x01: x\r\n\r\n{}",
    "bad-status-line": b"HTTP/1.1 two hundred OK\r\n\r\n",
    "reset": None,
    "truncated": b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"code":',
}


async def failing_call(client: ConnexClient | ZoomexClient) -> ConnexAsyncError:
    """The error of one call (caught here: this frame holds nothing secret)."""
    try:
        if isinstance(client, ZoomexClient):
            await client.get_wallet_balance()
        else:
            await client.get_assets()
    except ConnexAsyncError as exc:
        return exc
    raise AssertionError("the call succeeded")


@pytest.mark.parametrize("venue_name", ["connex", "zoomex"])
@pytest.mark.parametrize("case", [*RAW_CASES, "timeout", "deadline"])
async def test_transport_failures_carry_no_credentials(
    case: str, venue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # "deadline": cancelled inside aiohttp's frames while waiting for the answer, by the call's deadline.
    answer = RAW_CASES.get(case)
    slow = case in ("timeout", "deadline")
    async with (
        RawServer(answer, hang=1.0 if slow else 0.0) as server,
        SessionPool(
            retry=RETRY, timeout=5.0 if case == "deadline" else 0.3, deadline=0.5 if case == "deadline" else 60
        ) as pool,
    ):
        kind = ZoomexClient if venue_name == "zoomex" else ConnexClient
        with caplog.at_level(logging.DEBUG, logger="connex_async"):
            err = await failing_call(kind(CREDS, base_url=server.base_url, pool=pool))
        assert err.attempts == (1 if case == "deadline" else 2)  # every attempt signed and sent
        assert_nothing_leaks(err, caplog.text, CREDS, server.signatures)
        assert all(CREDS.api_key not in repr(scope) for scope in pool.limiter._limiters)


async def test_venue_errors_and_their_cookies_carry_no_credentials(caplog: pytest.LogCaptureFixture) -> None:
    signatures: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        signatures.append(request.headers["signature"])
        body = b'{"code":2000,"message":"signature check failed","data":null}'
        return json_reply(body, 401, {"Set-Cookie": "session=HOSTILE-COOKIE; Path=/", "X-Request-Id": "r-1"})

    async with HostileVenue(handler) as venue, SessionPool(retry=RETRY) as pool:
        with caplog.at_level(logging.DEBUG, logger="connex_async"):
            err = await failing_call(ConnexClient(CREDS, base_url=venue.base_url, pool=pool))
    assert isinstance(err, APIError) and err.request_id == "r-1"
    assert not any(name.lower() == "set-cookie" for name in err.headers)
    assert "HOSTILE-COOKIE" not in everything_visible(err, caplog.text)
    assert_nothing_leaks(err, caplog.text, CREDS, signatures)


async def test_limiter_scopes_hold_a_digest_of_the_key_never_the_key() -> None:
    async with SimulatedVenue(connex_portfolios=1, zoomex_accounts=1) as venue, SessionPool() as pool:
        cx = ConnexClient(venue.connex_credentials[0], base_url=venue.base_url, pool=pool)
        zx = ZoomexClient(venue.zoomex_credentials[0], base_url=venue.base_url, pool=pool)
        await cx.get_assets()
        await zx.get_wallet_balance()
        scopes = repr(list(pool.limiter._limiters))
    for creds in (*venue.connex_credentials, *venue.zoomex_credentials):
        assert creds.api_key not in scopes and creds.digest in scopes
    assert len(venue.connex_credentials[0].limit_group) == len("key:") + 32


def test_signed_request_repr_names_headers_without_values() -> None:
    from connex_async.signing import sign_connex

    signed = sign_connex({"page": 1}, CREDS, 1_700_000_000)
    text = repr(signed) + "".join(sentry_like(signed))
    assert "signature" in text and signed.headers["signature"] not in text and CREDS.api_key not in text


async def test_a_venue_that_quotes_the_key_back_does_not_put_it_in_our_errors(caplog: pytest.LogCaptureFixture) -> None:
    # Zoomex's signature error quotes the string it signed: timestamp, API key, recv window, query.
    # The simulator answers a bad signature the same way; whatever the venue wrote, the key is masked.
    async with SimulatedVenue(connex_portfolios=0, zoomex_accounts=1) as venue, SessionPool(retry=RETRY) as pool:
        real = venue.zoomex_credentials[0]
        wrong = Credentials(real.api_key, "not-the-secret-at-all", label="zx-wrong")
        with caplog.at_level(logging.DEBUG, logger="connex_async"):
            err = await failing_call(ZoomexClient(wrong, base_url=venue.base_url, pool=pool))
    assert isinstance(err, APIError) and err.code == 10004
    assert "origin_string[" in str(err) and "<api key>" in str(err)  # what the venue said, minus the key
    assert real.api_key not in everything_visible(err, caplog.text)
