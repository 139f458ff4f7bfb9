"""What a venue supplies to the request loop: endpoints, a signer, an answer classifier, a clock.

The loop in :mod:`connex_async.pool` knows no venue. It asks the venue to sign a request and to
turn ``(status, headers, body)`` into data or a typed error; everything venue-specific (envelope
codes, header names, clock sources) stays behind this interface.
"""

from __future__ import annotations

import abc
import email.utils
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from connex_async.credentials import Credentials
from connex_async.decoding import PayloadDecoder, snippet, try_decode
from connex_async.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConnexAsyncError,
    DecodeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    one_line,
)
from connex_async.rate_limit import RateLimit
from connex_async.signing import ParamValue, SignedRequest

__all__ = [
    "CodeRule",
    "Endpoint",
    "RawResponse",
    "Requester",
    "Venue",
    "error_for_status",
    "parse_http_date",
    "retry_after_seconds",
]

T = TypeVar("T")

_REQUEST_ID_HEADERS = ("X-Request-Id", "Traceid", "X-Bapi-Trace-Id", "X-Trace-Id")
# The value of an envelope's code member, as a number or a numeric string (lax mode reads both).
_CODE_VALUE = re.compile(rb'[ \t\r\n]*:[ \t\r\n]*"?(-?[0-9]+)"?')


@dataclass(frozen=True, slots=True, repr=False)
class RawResponse:
    """An HTTP answer as read off the wire: nothing interpreted yet."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def __repr__(self) -> str:
        # Shown by tracebacks rendered with their locals: header names only (a venue's Set-Cookie
        # is not ours to log) and the start of the body (it may be 32 MiB).
        return f"RawResponse(status={self.status}, headers=<{', '.join(self.headers)}>, body={self.body[:80]!r}...)"

    @property
    def is_json(self) -> bool:
        """True if the Content-Type says JSON, or is missing and the body looks like JSON."""
        ctype = self.headers.get("Content-Type", "")
        if ctype:
            return "json" in ctype.lower()
        return self.body.lstrip()[:1] in (b"{", b"[")

    @property
    def request_id(self) -> str | None:
        """The venue's trace id for this answer, if it sent one."""
        for name in _REQUEST_ID_HEADERS:
            if value := self.headers.get(name):
                return value
        return None


class Requester(Protocol):
    """What a venue needs of the pool to measure its clock: one request through the pool's loop.

    A protocol, not :class:`~connex_async.pool.SessionPool` itself: the pool imports the venues'
    contract, and the contract must not import the pool back.
    """

    async def request(
        self,
        venue: Venue,
        endpoint: Endpoint[T],
        base_url: str,
        params: Mapping[str, ParamValue],
        credentials: Credentials | None,
    ) -> T:
        """Send one logical request and return its decoded data (or raise the typed error)."""
        ...


@dataclass(frozen=True, slots=True)
class Endpoint(Generic[T]):
    """One venue endpoint: how to call it, which limit bucket it spends, how to decode its answer.

    ``decoder`` decodes the whole envelope; the venue's ``parse`` unwraps the data from it.
    """

    venue: str
    name: str
    method: str
    path: str
    decoder: PayloadDecoder[Any]
    default_limit: RateLimit | None
    signed: bool = True
    result_type: type[T] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class CodeRule:
    """How one documented venue code maps onto the error tree."""

    error: type[APIError]
    retryable: bool | None = None
    host_wide: bool = False


class Venue(abc.ABC):
    """The per-venue half of every request: signing, classification, clock and limits."""

    #: "connex" or "zoomex": the first part of every limit scope and metric key.
    name: str
    #: Limits that apply to every request to the host, whatever the key (Zoomex: per IP).
    host_limit: RateLimit | None = None

    @abc.abstractmethod
    def sign(self, params: Mapping[str, ParamValue], credentials: Credentials, now: float) -> SignedRequest:
        """Sign a request at venue time ``now`` (seconds, already offset-corrected)."""

    #: Decodes only the code and message of any envelope (an error's payload may be anything).
    head_decoder: msgspec.json.Decoder[Any]
    #: The envelope attribute holding the payload ("data" on ConneX, "result" on Zoomex).
    payload_field: str
    #: The envelope's code member as it appears on the wire (``b'"code"'``, ``b'"retCode"'``).
    code_member: bytes

    def parse(self, endpoint: Endpoint[T], response: RawResponse, portfolio: str | None) -> T:
        """Return the endpoint's data, or raise the typed error the answer stands for."""
        self.check_http(endpoint, response, portfolio)
        if not response.is_json:
            if response.status < 300:
                ctype = response.headers.get("Content-Type", "no content type")
                raise self.decode_error(f"expected JSON, got {ctype}", endpoint, response, portfolio)
            raise error_for_status(self, endpoint, response, portfolio)
        try:
            envelope = endpoint.decoder.decode(response.body, status=response.status, portfolio=portfolio)
        except DecodeError as exc:
            raise self._error_from_head(endpoint, response, portfolio) or exc from None
        code, message = self.code_of(envelope)
        if not self.is_success(code):
            raise self.error_for_code(code, message, endpoint, response, portfolio)
        if response.status >= 300:
            # A success envelope does not overrule the HTTP status: a 500 or 429 whose body says
            # "success" (a gateway's cached page, a half-failed backend) is retried as what the
            # status says, never handed out as data.
            raise error_for_status(self, endpoint, response, portfolio)
        first = self._first_code(response.body)
        if first is not None and first != code:
            # msgspec keeps the last of duplicate members, so `{"code":2000,"code":200000}` would read
            # as success. Two codes that disagree make the answer ambiguous: neither is trusted.
            problem = f"the envelope holds two different codes ({first} first, {code} last)"
            raise self.decode_error(problem, endpoint, response, portfolio, "$")
        data: T | None = getattr(envelope, self.payload_field)
        if data is None:
            field = self.payload_field
            raise self.decode_error(f"`{field}` is null on success", endpoint, response, portfolio, f"$.{field}")
        return data

    def _first_code(self, body: bytes) -> int | None:
        """The value of the first code member in ``body`` (a cheap find: it is normally first)."""
        at = body.find(self.code_member)
        if at < 0:
            return None
        match = _CODE_VALUE.match(body, at + len(self.code_member))
        return None if match is None else int(match[1])

    def _error_from_head(
        self, endpoint: Endpoint[Any], response: RawResponse, portfolio: str | None
    ) -> APIError | None:
        """An error envelope whose payload does not fit the success schema, or a bare HTTP error."""
        head = try_decode(self.head_decoder, response.body)
        if head is None:
            return error_for_status(self, endpoint, response, portfolio) if response.status >= 400 else None
        code, message = self.code_of(head)
        if self.is_success(code):
            return None
        return self.error_for_code(code, message, endpoint, response, portfolio)

    def check_http(self, endpoint: Endpoint[Any], response: RawResponse, portfolio: str | None) -> None:
        """Raise for HTTP statuses whose body is not worth reading. Every venue: 429, with ``Retry-After``."""
        if response.status == 429:
            raise RateLimitError(
                "HTTP 429 too many requests",
                retry_after=retry_after_seconds(response.headers),
                **self.error_kwargs(endpoint, response, portfolio),
            )

    @abc.abstractmethod
    def code_of(self, envelope: Any) -> tuple[int, str | None]:
        """The venue code and message of a decoded envelope (full or head)."""

    @abc.abstractmethod
    def is_success(self, code: int) -> bool:
        """Whether ``code`` means success."""

    @abc.abstractmethod
    def error_for_code(
        self,
        code: int,
        message: str | None,
        endpoint: Endpoint[Any],
        response: RawResponse,
        portfolio: str | None,
    ) -> APIError:
        """Map a venue code (documented or not) onto the error tree."""

    def decode_error(
        self,
        message: str,
        endpoint: Endpoint[Any],
        response: RawResponse,
        portfolio: str | None,
        path: str | None = None,
    ) -> DecodeError:
        """A :class:`DecodeError` about this answer (built by the endpoint's decoder, as its own are)."""
        return endpoint.decoder.error(message, response.body, response.status, portfolio, path)

    @abc.abstractmethod
    async def measure_clock_offset(
        self, pool: Requester, base_url: str, error: ConnexAsyncError | None
    ) -> float | None:
        """Return ``venue_time - local_time`` in seconds, or ``None`` if it cannot be measured."""

    #: Whether the clock offset is measured before the first signed request (Zoomex) or only
    #: after the venue first rejects a nonce (ConneX, whose window is wide).
    sync_clock_first: bool = False

    def error_kwargs(self, endpoint: Endpoint[Any], response: RawResponse, portfolio: str | None) -> dict[str, Any]:
        """The context every error from this answer carries."""
        return {
            "venue": self.name,
            "endpoint": endpoint.name,
            "portfolio": portfolio,
            "status": response.status,
            "request_id": response.request_id,
            "headers": dict(response.headers),
        }


def error_for_status(venue: Venue, endpoint: Endpoint[Any], response: RawResponse, portfolio: str | None) -> APIError:
    """The error for a non-2xx answer that carries no venue envelope (HTML, text, empty)."""
    status = response.status
    kind: type[APIError]
    if status == 429:
        kind = RateLimitError
    elif status == 401:
        kind = AuthenticationError
    elif status == 403:
        kind = PermissionDeniedError
    elif status >= 500:
        kind = ServerError
    else:
        kind = BadRequestError
    # The error's text already starts "HTTP <status>": the message is the body, on one line.
    text = one_line(snippet(response.body, 200), 160) or "no body"
    kwargs = venue.error_kwargs(endpoint, response, portfolio)
    if kind is RateLimitError:
        return RateLimitError(text, retry_after=retry_after_seconds(response.headers), **kwargs)
    return kind(text, **kwargs)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now (delta-seconds or an HTTP date), if present."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        when = parse_http_date(value)
        return None if when is None else max(0.0, when - (time.time() if now is None else now))
    return seconds if seconds >= 0 else None  # NaN and negatives are no hint


def parse_http_date(value: str | None) -> float | None:
    """An HTTP ``Date`` / ``Retry-After`` date as a Unix timestamp, or ``None``."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.timestamp()
