"""Zoomex v3 wire knowledge: endpoints, signing binding, retCodes, limit headers, clock source."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from connex_async.credentials import Credentials
from connex_async.decoding import PayloadDecoder
from connex_async.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ConnexAsyncError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TimestampError,
)
from connex_async.rate_limit import RateLimit
from connex_async.signing import ParamValue, SignedRequest, sign_zoomex
from connex_async.venues.base import CodeRule, Endpoint, RawResponse, Requester, Venue, retry_after_seconds
from connex_async.venues.zoomex.models import ServerTime, WalletBalance, ZoomexEnvelope, ZoomexHead, check_wallet

__all__ = ["SERVER_TIME", "WALLET_BALANCE", "ZOOMEX_CODES", "ZoomexVenue", "limit_reset_seconds"]

T = TypeVar("T")

VENUE = "zoomex"
DEFAULT_CIRCUIT_SECONDS = 600.0
DEFAULT_RECV_WINDOW = 5000
#: Without a reset header, a 10006 waits about one window of the per-account limit.
DEFAULT_RESET_SECONDS = 1.0
MAX_RESET_SECONDS = 60.0
#: All Zoomex endpoints together, per IP (over it: HTTP 403 and a ban of at least 10 minutes).
ZOOMEX_IP_LIMIT = RateLimit(600, 5.0)

#: Documented retCodes (reference: zoomex-api.md, "Errors").
ZOOMEX_CODES: dict[int, CodeRule] = {
    10000: CodeRule(ServerError),  # server timeout
    10016: CodeRule(ServerError),  # server error
    10001: CodeRule(BadRequestError),  # parameter error
    10002: CodeRule(TimestampError),  # timestamp outside recv window
    10003: CodeRule(AuthenticationError),  # invalid key
    10004: CodeRule(AuthenticationError),  # bad signature
    10007: CodeRule(AuthenticationError),  # auth failed
    10005: CodeRule(PermissionDeniedError),  # permission denied
    10010: CodeRule(PermissionDeniedError),  # IP not bound to key
    10006: CodeRule(RateLimitError),  # per-account rate limit
    10009: CodeRule(CircuitOpenError, host_wide=True),  # IP banned
    10018: CodeRule(CircuitOpenError, host_wide=True),  # IP rate limit exceeded
}

WALLET_BALANCE: Endpoint[WalletBalance] = Endpoint(
    venue=VENUE,
    name="wallet",
    method="GET",
    path="/cloud/trade/v3/account/wallet-balance",
    decoder=PayloadDecoder(
        ZoomexEnvelope[WalletBalance], venue=VENUE, endpoint="wallet", empty_is_null="always", check=check_wallet
    ),
    default_limit=RateLimit(10, 1.0),
)
SERVER_TIME: Endpoint[ServerTime] = Endpoint(
    venue=VENUE,
    name="time",
    method="GET",
    path="/cloud/trade/v3/market/time",
    decoder=PayloadDecoder(ZoomexEnvelope[ServerTime], venue=VENUE, endpoint="time"),
    default_limit=None,
    signed=False,
)

_HEAD = msgspec.json.Decoder(ZoomexHead, strict=False)


def limit_reset_seconds(headers: Mapping[str, str], now: float | None = None) -> float:
    """Seconds until ``X-Bapi-Limit-Reset-Timestamp`` (ms), clamped to [0, 60]; 1 s without it."""
    value = headers.get("X-Bapi-Limit-Reset-Timestamp")
    try:
        reset_ms = int(value) if value else None
    except ValueError:
        reset_ms = None
    if reset_ms is None:
        return DEFAULT_RESET_SECONDS
    delta = reset_ms / 1000 - (time.time() if now is None else now)
    return min(max(delta, 0.0), MAX_RESET_SECONDS)


class ZoomexVenue(Venue):
    """Zoomex v3 (Bybit v5 scheme): ms timestamps within a recv window, retCode envelope."""

    name = VENUE
    host_limit: RateLimit | None = ZOOMEX_IP_LIMIT
    sync_clock_first = True

    def __init__(
        self,
        *,
        recv_window: int = DEFAULT_RECV_WINDOW,
        circuit_seconds: float = DEFAULT_CIRCUIT_SECONDS,
        host_limit: RateLimit | None = ZOOMEX_IP_LIMIT,
    ) -> None:
        if not 0 < recv_window <= 60_000:
            raise ValueError("recv_window must be in 1..60000 ms")
        self.recv_window = recv_window
        self.circuit_seconds = circuit_seconds
        self.host_limit = host_limit

    def sign(self, params: Mapping[str, ParamValue], credentials: Credentials, now: float) -> SignedRequest:
        """Sign with a millisecond timestamp of venue time."""
        return sign_zoomex(params, credentials, int(now * 1000), self.recv_window)

    head_decoder = _HEAD
    payload_field = "result"
    code_member = b'"retCode"'

    def check_http(self, endpoint: Endpoint[Any], response: RawResponse, portfolio: str | None) -> None:
        """HTTP 403 is the IP limit ("access too frequent"): more traffic would extend a ban.

        HTTP 429, like on every venue, is a rate limit honouring ``Retry-After``.
        """
        if response.status == 403:
            text = response.body[:80].decode("utf-8", "replace").strip()
            raise self._circuit_error(f"HTTP 403 from the host: {text}", None, endpoint, response, portfolio)
        super().check_http(endpoint, response, portfolio)

    def code_of(self, envelope: ZoomexEnvelope[Any] | ZoomexHead) -> tuple[int, str | None]:
        """``retCode`` and ``retMsg``."""
        return envelope.ret_code, envelope.ret_msg

    def is_success(self, code: int) -> bool:
        """retCode 0 means success."""
        return code == 0

    def error_for_code(
        self,
        code: int,
        message: str | None,
        endpoint: Endpoint[Any],
        response: RawResponse,
        portfolio: str | None,
    ) -> APIError:
        """Map a documented retCode (or an unknown one) onto the error tree."""
        rule = ZOOMEX_CODES.get(code)
        text = message or "no message"
        kwargs = self.error_kwargs(endpoint, response, portfolio)
        if rule is None:
            kind: type[APIError] = ServerError if response.status >= 500 else APIError
            return kind(text, code=code, **kwargs)
        if rule.error is CircuitOpenError:
            return self._circuit_error(text, code, endpoint, response, portfolio)
        if rule.error is RateLimitError:
            # Both hints, if both came: the later one (waiting less than either would be refused).
            hint = max(limit_reset_seconds(response.headers), retry_after_seconds(response.headers) or 0.0)
            return RateLimitError(text, code=code, retry_after=hint, **kwargs)
        return rule.error(text, code=code, retryable=rule.retryable, **kwargs)

    def _circuit_error(
        self,
        text: str,
        code: int | None,
        endpoint: Endpoint[Any],
        response: RawResponse,
        portfolio: str | None,
    ) -> CircuitOpenError:
        until = time.time() + self.circuit_seconds
        return CircuitOpenError(
            f"{text}; host paused for {self.circuit_seconds:.0f}s",
            until=until,
            retry_after=self.circuit_seconds,
            code=code,
            **self.error_kwargs(endpoint, response, portfolio),
        )

    async def measure_clock_offset(
        self, pool: Requester, base_url: str, error: ConnexAsyncError | None
    ) -> float | None:
        """Ask ``/market/time`` and compare with the local clock at the request's midpoint."""
        before = time.time()
        server = await pool.request(self, SERVER_TIME, base_url, {}, None)
        after = time.time()
        return server.time_nano / 1e9 - (before + after) / 2
