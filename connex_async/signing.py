"""Request signing for both venue schemes: pure functions, no I/O, no clock.

Each signer returns a :class:`SignedRequest` holding the exact query string to put on the wire
beside the headers, so what is signed and what is sent cannot drift apart. The caller supplies
the nonce / timestamp (already corrected by the measured clock offset).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Mapping
from decimal import Decimal
from urllib.parse import quote

from connex_async.credentials import Credentials

__all__ = [
    "ParamValue",
    "SignedRequest",
    "connex_message",
    "encode_query",
    "normalize_params",
    "sign_connex",
    "sign_zoomex",
    "zoomex_message",
]

ParamValue = str | int | bool | Decimal | None

# Commas stay raw: Zoomex (like Bybit) expects `coin=BTC,USDT`, and the signature covers the
# query exactly as sent. Everything outside the RFC 3986 unreserved set is percent-encoded.
_QUERY_SAFE = ","


class SignedRequest:
    """The query string to send (no leading ``?``, already encoded) and the auth headers.

    Deliberately not a tuple or a mapping: a traceback rendered with its locals walks those and
    would print the key and the signature; it prints this object's ``repr``, which names the
    headers but never their values.
    """

    __slots__ = ("headers", "query")

    def __init__(self, query: str, headers: dict[str, str]) -> None:
        self.query = query
        self.headers = headers

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SignedRequest):
            return NotImplemented
        return (self.query, self.headers) == (other.query, other.headers)

    __hash__ = None  # type: ignore[assignment]  # mutable headers, like the tuple it replaced

    def __repr__(self) -> str:
        return f"SignedRequest(query={self.query!r}, headers=<{', '.join(self.headers)}: values hidden>)"


def normalize_params(params: Mapping[str, ParamValue]) -> list[tuple[str, str]]:
    """Drop ``None`` values, render booleans as ``true``/``false``, sort by key."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | Decimal):
            text = str(value)
        else:
            raise TypeError(f"parameter {key!r} has unsupported type {type(value).__name__}")
        pairs.append((key, text))
    pairs.sort()
    return pairs


def encode_query(pairs: list[tuple[str, str]]) -> str:
    """Percent-encode ``pairs`` into a query string, in the given order."""
    return "&".join(f"{_quoted(k)}={_quoted(v)}" for k, v in pairs)


@functools.lru_cache(maxsize=4096)
def _quoted(text: str) -> str:
    # Pollers send the same few names and values millions of times: quote each once.
    return quote(text, safe=_QUERY_SAFE)


def _hmac_hex(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def connex_message(pairs: list[tuple[str, str]], nonce: int) -> str:
    """ConneX string to sign: sorted raw ``k=v`` joined by ``&``, then ``&<nonce seconds>``."""
    return "&".join(f"{k}={v}" for k, v in pairs) + f"&{nonce}"


def sign_connex(params: Mapping[str, ParamValue], credentials: Credentials, nonce: int) -> SignedRequest:
    """Sign a ConneX / LiquidityTech request.

    The message holds the raw (unencoded) values; the query sent holds the same pairs,
    percent-encoded, in the same sorted order, so the server's decoded view equals what was signed.
    """
    pairs = normalize_params(params)
    signature = _hmac_hex(credentials.secret, connex_message(pairs, nonce))
    headers = {
        "X-MBX-APIKEY": credentials.api_key,
        "nonce": str(nonce),
        "signature": signature,
        "Content-Type": "application/json",
    }
    return SignedRequest(encode_query(pairs), headers)


def zoomex_message(api_key: str, query: str, timestamp_ms: int, recv_window: int) -> str:
    """Zoomex v3 string to sign: ``timestamp + api_key + recv_window + query as sent``."""
    return f"{timestamp_ms}{api_key}{recv_window}{query}"


def sign_zoomex(
    params: Mapping[str, ParamValue],
    credentials: Credentials,
    timestamp_ms: int,
    recv_window: int = 5000,
) -> SignedRequest:
    """Sign a Zoomex v3 (Bybit v5 style) GET request; the query is signed byte-for-byte as sent."""
    query = encode_query(normalize_params(params))
    message = zoomex_message(credentials.api_key, query, timestamp_ms, recv_window)
    headers = {
        "X-BAPI-API-KEY": credentials.api_key,
        "X-BAPI-SIGN": _hmac_hex(credentials.secret, message),
        "X-BAPI-SIGN-TYPE": "2",
        "X-BAPI-TIMESTAMP": str(timestamp_ms),
        "X-BAPI-RECV-WINDOW": str(recv_window),
    }
    return SignedRequest(query, headers)
