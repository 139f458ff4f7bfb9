"""The one exception tree of connex-async.

Every failure a caller can see is a :class:`ConnexAsyncError`, and every one names the venue,
the endpoint and (when known) the portfolio label, never the key or the secret::

    ConnexAsyncError
    ├── APIError                 the venue answered, and the answer is an error
    │   ├── RateLimitError       HTTP 429, ConneX 100429, Zoomex 10006 / 10018
    │   │   └── CircuitOpenError the host is cooling off after a ban signal (Zoomex HTTP 403)
    │   ├── AuthenticationError  bad key or signature
    │   ├── PermissionDeniedError
    │   ├── TimestampError       nonce / timestamp outside the venue's window
    │   ├── BadRequestError      parameter errors, 4xx
    │   └── ServerError          5xx and the venue's "service unavailable" codes
    ├── TransportError           no usable HTTP answer: reset, refused, truncated body
    │   └── RequestTimeoutError  an attempt's ``timeout`` or the call's ``deadline`` ran out
    ├── DecodeError              the answer is not the documented shape
    │   └── PagingError          the venue's pages do not add up (ignored page number, repeats)
    ├── LimiterTimeoutError      waited longer than ``max_queue_wait`` for a rate-limit slot
    ├── LimiterUnavailableError  the shared limiter (Redis) cannot be reached: nothing is sent
    └── PoolClosedError          the pool was closed while the call was in flight
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "CircuitOpenError",
    "ConnexAsyncError",
    "DecodeError",
    "LimiterTimeoutError",
    "LimiterUnavailableError",
    "PagingError",
    "PermissionDeniedError",
    "PoolClosedError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServerError",
    "TimestampError",
    "TransportError",
]


def one_line(text: str, limit: int = 200) -> str:
    """``text`` with every run of whitespace (newlines too) made one space, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# Headers that could carry credentials are never kept on an error; nor are a venue's cookies
# (``Set-Cookie``): session material that is not ours to log.
SECRET_HEADERS = frozenset(
    {
        "x-mbx-apikey",
        "signature",
        "nonce",
        "x-bapi-api-key",
        "x-bapi-sign",
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
    }
)


class ConnexAsyncError(Exception):
    """Base of every error raised by connex-async.

    ``retryable`` says whether the request loop may try the same request again.
    """

    retryable: bool = False
    #: How many HTTP attempts were made before this error was raised.
    attempts: int = 0

    def __init__(
        self,
        message: str,
        *,
        venue: str | None = None,
        endpoint: str | None = None,
        portfolio: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.venue = venue
        self.endpoint = endpoint
        self.portfolio = portfolio

    def __str__(self) -> str:
        where = "/".join(p for p in (self.venue, self.endpoint) if p)
        who = f" portfolio={self.portfolio}" if self.portfolio else ""
        prefix = f"[{where}{who}] " if where or who else ""
        return f"{prefix}{self._detail()}"

    @property
    def detail(self) -> str:
        """The message without the ``[venue/endpoint portfolio=...]`` prefix (HTTP status and code kept)."""
        return self._detail()

    def _detail(self) -> str:
        return self.message


class APIError(ConnexAsyncError):
    """The venue answered with an error: HTTP status, venue code and message."""

    def __init__(
        self,
        message: str,
        *,
        venue: str | None = None,
        endpoint: str | None = None,
        portfolio: str | None = None,
        status: int | None = None,
        code: int | str | None = None,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message, venue=venue, endpoint=endpoint, portfolio=portfolio)
        self.status = status
        self.code = code
        self.request_id = request_id
        self.headers: dict[str, str] = {k: v for k, v in (headers or {}).items() if k.lower() not in SECRET_HEADERS}
        if retryable is not None:
            self.retryable = retryable

    def _detail(self) -> str:
        parts = [f"HTTP {self.status}" if self.status is not None else None]
        if self.code is not None:
            parts.append(f"code {self.code}")
        if self.request_id:
            parts.append(f"request {self.request_id}")
        head = ", ".join(p for p in parts if p)
        return f"{head}: {self.message}" if head else self.message


class RateLimitError(APIError):
    """The venue says we are over a limit. ``retry_after`` is the venue's hint in seconds, if any."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class CircuitOpenError(RateLimitError):
    """Calls to a host fail fast until ``until`` (``time.time()`` seconds) after a ban signal."""

    retryable = False

    def __init__(self, message: str, *, until: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.until = until


class AuthenticationError(APIError):
    """The key is unknown, frozen, or the signature does not verify. Never retried."""


class PermissionDeniedError(APIError):
    """The key may not do this (permission, IP whitelist, ban). Never retried."""


class TimestampError(APIError):
    """The nonce or timestamp is outside the venue's window.

    Not retried by backoff: the request loop re-syncs the clock and tries exactly once more.
    """


class BadRequestError(APIError):
    """The venue rejected the parameters. Retried only for the codes a venue marks retryable."""


class ServerError(APIError):
    """The venue failed (5xx or a service-unavailable code). Retried."""

    retryable = True


class TransportError(ConnexAsyncError):
    """No usable HTTP answer: connection refused or reset, truncated body. Retried."""

    retryable = True

    def __init__(self, message: str, cause: BaseException | None = None, **kwargs: str | None) -> None:
        super().__init__(message, **kwargs)
        self.cause = cause


class RequestTimeoutError(TransportError):
    """A time budget ran out; ``budget`` says which one.

    ``"timeout"``: one HTTP attempt took longer than ``SessionPool(timeout=...)``; retried.
    ``"deadline"``: the whole call (queueing, clock sync, every attempt and backoff) took longer
    than its ``deadline``; never retried, it is the end of the call.
    """

    def __init__(
        self,
        message: str,
        cause: BaseException | None = None,
        *,
        budget: str = "timeout",
        venue: str | None = None,
        endpoint: str | None = None,
        portfolio: str | None = None,
    ) -> None:
        super().__init__(message, cause, venue=venue, endpoint=endpoint, portfolio=portfolio)
        self.budget = budget
        if budget == "deadline":
            self.retryable = False


class DecodeError(ConnexAsyncError):
    """The response is not the documented shape: ``path`` names the bad value, ``snippet`` shows the body."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        snippet: str = "",
        status: int | None = None,
        **kwargs: str | None,
    ) -> None:
        super().__init__(message, **kwargs)
        self.path = path
        self.snippet = snippet
        self.status = status

    def _detail(self) -> str:
        at = f" at {self.path}" if self.path else ""
        return f"{self.message}{at}; body starts {self.snippet!r}"


class PagingError(DecodeError):
    """The venue's pages do not add up: a page other than the one asked for, a page that repeats
    the previous one, an empty page before ``totalSize`` rows came, or more pages than
    ``max_pages``. The listing ends here rather than loop forever or return a partial list as if
    it were complete."""

    def _detail(self) -> str:
        at = f" at {self.path}" if self.path else ""
        return f"{self.message}{at}"


class LimiterTimeoutError(ConnexAsyncError):
    """A rate-limit slot did not come within ``max_queue_wait`` seconds; nothing was sent."""

    def __init__(self, message: str, *, waited: float, **kwargs: str | None) -> None:
        super().__init__(message, **kwargs)
        self.waited = waited


class LimiterUnavailableError(ConnexAsyncError):
    """The shared rate limiter (Redis) could not decide: the request was **not** sent (fail closed).

    The limiter reconnects on its own, with backoff; until then every admission fails fast with
    this error, so a Poller keeps producing updates (carrying it) instead of hanging.
    """


class PoolClosedError(ConnexAsyncError, RuntimeError):
    """The :class:`~connex_async.pool.SessionPool` is closed (or was closed while this call ran).

    Also a ``RuntimeError``, which is what using a closed pool raised before this type existed.
    """
