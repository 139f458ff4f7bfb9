"""Signature and clock checks for both venues, written from the API references.

This module deliberately shares no code with the client's signer: if both were built on one
helper, a bug in it would pass its own check.

ConneX (LiquidityTech "RapidX"): ``signature = hex(HMAC-SHA256(secret, msg))`` where ``msg`` is the
request parameters sorted by key, joined as ``k=v`` with ``&`` using the **decoded** values, then
``&`` and the nonce (Unix seconds; ``&<nonce>`` when there are no parameters). Nonce within
+-60 s of the server clock.

Zoomex (Bybit v5 header scheme): ``X-BAPI-SIGN = hex(HMAC-SHA256(secret, timestamp + api_key +
recv_window + payload))`` where ``payload`` is the query string **exactly as received** on the wire.
Timestamp rule: ``server_ms - recv_window <= timestamp < server_ms + 1000``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping

__all__ = [
    "CONNEX_NONCE_TOLERANCE",
    "ZOOMEX_DEFAULT_RECV_WINDOW",
    "AuthFailure",
    "check_connex",
    "check_zoomex",
    "connex_message",
    "connex_signature",
    "zoomex_message",
    "zoomex_signature",
]

CONNEX_NONCE_TOLERANCE = 60
"""Seconds of nonce skew ConneX accepts either way."""

ZOOMEX_DEFAULT_RECV_WINDOW = 5000
"""Zoomex recv window (ms) when the ``X-BAPI-RECV-WINDOW`` header is absent."""

_SHA256 = hashlib.sha256


class AuthFailure:
    """Why a request failed authentication: HTTP status, venue code and message."""

    __slots__ = ("code", "kind", "message", "status")

    code: int
    kind: str
    message: str
    status: int

    def __init__(self, kind: str, code: int, message: str, status: int = 200) -> None:
        self.kind = kind  # "key", "signature", "clock" or "headers"
        self.code = code
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"AuthFailure({self.kind!r}, {self.code}, {self.message!r}, status={self.status})"


def _hex_hmac(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), _SHA256).hexdigest()


def connex_message(params: Iterable[tuple[str, str]], nonce: str) -> str:
    """The ConneX string to sign: sorted decoded ``k=v`` pairs joined by ``&``, then ``&nonce``."""
    pairs = sorted(params, key=lambda kv: kv[0])
    return "&".join(f"{k}={v}" for k, v in pairs) + "&" + nonce


def connex_signature(secret: str, params: Iterable[tuple[str, str]], nonce: str) -> str:
    """Lowercase hex HMAC-SHA256 of :func:`connex_message`."""
    return _hex_hmac(secret, connex_message(params, nonce))


def zoomex_message(timestamp: str, api_key: str, recv_window: str, payload: str) -> str:
    """The Zoomex string to sign: ``timestamp + api_key + recv_window + payload``."""
    return timestamp + api_key + recv_window + payload


def zoomex_signature(secret: str, timestamp: str, api_key: str, recv_window: str, payload: str) -> str:
    """Lowercase hex HMAC-SHA256 of :func:`zoomex_message`."""
    return _hex_hmac(secret, zoomex_message(timestamp, api_key, recv_window, payload))


def _int_or_none(text: str | None) -> int | None:
    if text is None or not text.isascii() or not text.strip().lstrip("-").isdigit():
        return None
    return int(text)


def check_connex(
    headers: Mapping[str, str],
    params: Iterable[tuple[str, str]],
    secret_of: Callable[[str], str | None],
    now_seconds: float,
) -> AuthFailure | None:
    """Verify a ConneX request; ``None`` when it is authentic and fresh.

    Order: key known (100018), nonce present and within +-60 s (7000), signature (2000).
    """
    api_key = headers.get("X-MBX-APIKEY")
    if not api_key:
        return AuthFailure("headers", 100018, "API key not found")
    secret = secret_of(api_key)
    if secret is None:
        return AuthFailure("key", 100018, "API key not found")
    nonce = headers.get("nonce")
    nonce_value = _int_or_none(nonce)
    if nonce is None or nonce_value is None:
        return AuthFailure("clock", 7000, "nonce invalid")
    if abs(nonce_value - now_seconds) > CONNEX_NONCE_TOLERANCE:
        return AuthFailure("clock", 7000, "nonce invalid")
    given = headers.get("signature")
    if not given:
        return AuthFailure("signature", 2000, "signature check failed")
    expected = connex_signature(secret, params, nonce)
    if not given.isascii() or not hmac.compare_digest(expected, given):
        return AuthFailure("signature", 2000, "signature check failed")
    return None


def check_zoomex(
    headers: Mapping[str, str],
    raw_query: str,
    secret_of: Callable[[str], str | None],
    now_ms: int,
) -> AuthFailure | None:
    """Verify a Zoomex request; ``None`` when it is authentic and fresh.

    Missing auth headers -> HTTP 401 with retCode 10003; unknown key -> 10003; timestamp outside
    the recv window -> 10002; wrong signature -> 10004 (all HTTP 200 except the first).
    """
    api_key = headers.get("X-BAPI-API-KEY")
    sign = headers.get("X-BAPI-SIGN")
    timestamp = headers.get("X-BAPI-TIMESTAMP")
    if not api_key or not sign or not timestamp:
        return AuthFailure("headers", 10003, "Missing authentication headers", status=401)
    secret = secret_of(api_key)
    if secret is None:
        return AuthFailure("key", 10003, "API key is invalid.")
    recv_header = headers.get("X-BAPI-RECV-WINDOW")
    recv_window = ZOOMEX_DEFAULT_RECV_WINDOW if recv_header is None else _int_or_none(recv_header)
    ts = _int_or_none(timestamp)
    if ts is None or recv_window is None or recv_window <= 0:
        return AuthFailure("clock", 10002, "invalid request, please check your timestamp or recv_window param")
    if not (now_ms - recv_window <= ts < now_ms + 1000):
        return AuthFailure(
            "clock",
            10002,
            "invalid request, please check your server timestamp or recv_window param. "
            f"req_timestamp[{ts}],server_timestamp[{now_ms}],recv_window[{recv_window}]",
        )
    message = zoomex_message(timestamp, api_key, recv_header or "", raw_query)
    if not sign.isascii() or not hmac.compare_digest(_hex_hmac(secret, message), sign):
        return AuthFailure("signature", 10004, f"error sign! origin_string[{message}]")
    return None
