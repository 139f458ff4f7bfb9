"""Every documented venue code and HTTP status maps onto the right error class (one test per row)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from venue_checks import FAST_RETRY

from connex_async import (
    APIError,
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ConnexClient,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SessionPool,
    TimestampError,
)
from connex_async.testing import Fault, SimulatedVenue
from connex_async.venues.base import RawResponse
from connex_async.venues.connex.api import ASSETS, ConnexVenue
from connex_async.venues.zoomex.api import WALLET_BALANCE, ZoomexVenue

JSON = {"Content-Type": "application/json", "X-Request-Id": "req-42"}
CX, ZX = ConnexVenue(), ZoomexVenue()

# Written from shared/reference/connex-api.md, independently of connex_async's own table.
CONNEX_ROWS: list[tuple[int, type[APIError], bool]] = [
    (2000, AuthenticationError, False),
    (2001, PermissionDeniedError, False),
    (2002, AuthenticationError, False),
    (2003, PermissionDeniedError, False),
    (7000, TimestampError, False),
    (100018, AuthenticationError, False),
    (405001, AuthenticationError, False),
    (100041, AuthenticationError, False),
    (100429, RateLimitError, True),
    *[(c, BadRequestError, False) for c in range(400000, 400011)],
    (400011, BadRequestError, True),
    (400012, BadRequestError, True),
    (400013, BadRequestError, True),
    (500, ServerError, True),
    (501, ServerError, True),
    (40000, ServerError, True),
    (50001, ServerError, True),
]

ZOOMEX_ROWS: list[tuple[int, type[APIError], bool]] = [
    (10000, ServerError, True),
    (10016, ServerError, True),
    (10001, BadRequestError, False),
    (10002, TimestampError, False),
    (10003, AuthenticationError, False),
    (10004, AuthenticationError, False),
    (10007, AuthenticationError, False),
    (10005, PermissionDeniedError, False),
    (10010, PermissionDeniedError, False),
    (10006, RateLimitError, True),
    (10009, CircuitOpenError, False),
    (10018, CircuitOpenError, False),
]


def _raise(venue: Any, endpoint: Any, status: int, body: bytes, headers: dict[str, str]) -> APIError:
    with pytest.raises(APIError) as info:
        venue.parse(endpoint, RawResponse(status, headers, body), "desk-9")
    return info.value


@pytest.mark.parametrize(("code", "kind", "retryable"), CONNEX_ROWS, ids=[str(r[0]) for r in CONNEX_ROWS])
@pytest.mark.parametrize("as_string", [False, True], ids=["int", "str"])
def test_connex_code(code: int, kind: type[APIError], retryable: bool, as_string: bool) -> None:
    body = json.dumps({"code": str(code) if as_string else code, "message": "boom", "data": None}).encode()
    err = _raise(CX, ASSETS, 200, body, JSON)
    assert type(err) is kind
    assert err.retryable is retryable
    assert (err.venue, err.endpoint, err.portfolio, err.code, err.status) == ("connex", "assets", "desk-9", code, 200)
    assert err.request_id == "req-42"
    assert "boom" in str(err) and "connex/assets" in str(err)


@pytest.mark.parametrize(("code", "kind", "retryable"), ZOOMEX_ROWS, ids=[str(r[0]) for r in ZOOMEX_ROWS])
def test_zoomex_code(code: int, kind: type[APIError], retryable: bool) -> None:
    body = json.dumps({"retCode": code, "retMsg": "boom", "result": {}, "retExtInfo": {}, "time": 1}).encode()
    err = _raise(ZX, WALLET_BALANCE, 200, body, JSON)
    assert type(err) is kind
    assert err.retryable is retryable
    assert (err.venue, err.endpoint, err.code) == ("zoomex", "wallet", code)


def test_connex_error_envelope_with_odd_data_still_maps() -> None:
    err = _raise(CX, ASSETS, 200, b'{"code":2000,"message":"signature error","data":"n/a"}', JSON)
    assert isinstance(err, AuthenticationError)


def test_unknown_code_is_plain_api_error_not_retried() -> None:
    err = _raise(CX, ASSETS, 200, b'{"code":123456,"message":"new thing","data":null}', JSON)
    assert type(err) is APIError and not err.retryable


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, RateLimitError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, BadRequestError),
        (400, BadRequestError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
    ],
)
def test_connex_http_status_without_envelope(status: int, kind: type[APIError]) -> None:
    err = _raise(CX, ASSETS, status, b"<html>Bad Gateway</html>", {"Content-Type": "text/html"})
    assert type(err) is kind and err.status == status


def test_connex_429_reads_retry_after_seconds_and_date() -> None:
    err = _raise(CX, ASSETS, 429, b"", {"Retry-After": "3"})
    assert isinstance(err, RateLimitError) and err.retry_after == 3.0
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 10))
    err = _raise(CX, ASSETS, 429, b"", {"Retry-After": http_date})
    assert isinstance(err, RateLimitError) and err.retry_after is not None and 8 <= err.retry_after <= 10


def test_zoomex_403_opens_circuit() -> None:
    err = _raise(ZX, WALLET_BALANCE, 403, b"access too frequent", {"Content-Type": "text/plain"})
    assert isinstance(err, CircuitOpenError) and err.until >= time.time() + 599


def test_zoomex_400_text_plain_is_bad_request() -> None:
    err = _raise(ZX, WALLET_BALANCE, 400, b"bad request", {"Content-Type": "text/plain"})
    assert type(err) is BadRequestError


def test_zoomex_10006_uses_reset_header_clamped() -> None:
    body = b'{"retCode":10006,"retMsg":"Too many visits!","result":{}}'
    reset = int((time.time() + 0.5) * 1000)
    err = _raise(ZX, WALLET_BALANCE, 200, body, {"X-Bapi-Limit-Reset-Timestamp": str(reset), **JSON})
    assert isinstance(err, RateLimitError) and err.retry_after is not None and 0 <= err.retry_after <= 0.5
    far = int((time.time() + 3600) * 1000)
    err = _raise(ZX, WALLET_BALANCE, 200, body, {"X-Bapi-Limit-Reset-Timestamp": str(far), **JSON})
    assert isinstance(err, RateLimitError) and err.retry_after == 60.0
    err = _raise(ZX, WALLET_BALANCE, 200, body, JSON)
    assert isinstance(err, RateLimitError) and err.retry_after == 1.0


def test_secret_headers_never_kept_on_errors() -> None:
    headers = {**JSON, "X-MBX-APIKEY": "the-key", "X-BAPI-SIGN": "abc", "signature": "def"}
    err = _raise(CX, ASSETS, 200, b'{"code":2000,"message":"x"}', headers)
    assert not {"X-MBX-APIKEY", "X-BAPI-SIGN", "signature"} & set(err.headers)


# -- error text and the DEBUG line per attempt -------------------------------------------------


async def test_a_502_html_page_is_one_bounded_line_in_the_error_and_in_each_debug_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="connex_async")
    async with SimulatedVenue(connex_portfolios=1, zoomex_accounts=0) as venue, SessionPool(retry=FAST_RETRY) as pool:
        venue.inject(Fault("http_502_html"))
        client = ConnexClient(venue.connex_credentials[0], base_url=venue.base_url, pool=pool)
        with pytest.raises(ServerError) as caught:
            await client.get_positions()
    text = str(caught.value)
    assert text.startswith("[connex/positions portfolio=cx-0001] HTTP 502: <html> <head><title>502 Bad Gateway")
    assert "\n" not in text and "\r" not in text
    assert text.count("HTTP 502") == 1
    attempts = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and "attempt=" in r.getMessage()]
    assert len(attempts) == FAST_RETRY.max_retries + 1  # one line per attempt
    for line in attempts:
        assert "\n" not in line and "\r" not in line
        assert len(line) < 400
        assert "error=ServerError: HTTP 502: <html> <head>" in line
        assert line.count("HTTP 502") == 1
