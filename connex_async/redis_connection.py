"""Redis connections for the shared limiter and the fleet: the one place that imports ``redis``.

``redis`` is an optional extra (``pip install 'connex-async[redis]'``): it is imported here, lazily,
when a connection is made, so that ``import connex_async`` and the fleet's argument parsing work
without it. Redis URLs may carry a password; :func:`redact` is the only form they are ever shown in.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "DEFAULT_NAMESPACE",
    "RedisUnavailableError",
    "bounded",
    "connect",
    "describe",
    "ensure_reachable",
    "redact",
    "redis_errors",
    "scrub",
    "validate_namespace",
    "validate_url",
]

T = TypeVar("T")
DEFAULT_NAMESPACE = "connex-async"
_SCHEMES = ("redis", "rediss", "unix")
_QUERY_PASSWORD = re.compile(r"((?:^|[?&])password=)([^&#]*)", re.IGNORECASE)


class RedisUnavailableError(RuntimeError):
    """Redis cannot be reached (or ``redis`` is not installed); the message never shows a password."""


def validate_namespace(namespace: str) -> str:
    """``namespace`` if usable as a key prefix, else ``ValueError`` (empty, whitespace, too long)."""
    if not namespace or len(namespace) > 100 or any(c.isspace() for c in namespace):
        raise ValueError(f"namespace must be 1-100 characters without spaces, got {namespace!r}")
    return namespace


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (in the user info and a ``password=`` query)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _QUERY_PASSWORD.sub(r"\1***", url)
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        if ":" in userinfo:
            authority = f"{userinfo.split(':', 1)[0]}:***@{host}"
    tail = _QUERY_PASSWORD.sub(r"\1***", tail)
    return f"{scheme}{sep}{authority}{slash}{tail}"


def scrub(text: str, url: str) -> str:
    """``text`` (an error message) with every password of ``url`` replaced by ``***``."""
    passwords = [m[2] for m in _QUERY_PASSWORD.finditer(url)]
    with contextlib.suppress(ValueError):  # an unparsable URL has no password to find
        passwords.append(urlsplit(url).password or "")
    for password in passwords:
        if password:
            text = text.replace(password, "***")
    return text


def describe(exc: BaseException, url: str) -> str:
    """The first line of ``exc`` (or its type), without any password of ``url``: safe to log."""
    text = str(exc).strip()
    return scrub(text.splitlines()[0] if text else type(exc).__name__, url)


def validate_url(url: str) -> str:
    """``url`` if it names a Redis server (``redis://``, ``rediss://``, ``unix://``), else ``ValueError``."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        raise ValueError(f"Redis URL must start with redis://, rediss:// or unix://, got {redact(url)!r}")
    return url


def redis_errors() -> tuple[type[BaseException], ...]:
    """What a call to an unreachable, slow or restarting Redis raises: ``RedisError`` and ``OSError``
    (``TimeoutError`` included)."""
    from redis.exceptions import RedisError  # noqa: PLC0415 - redis is an optional extra

    return (RedisError, OSError)


def connect(url: str, *, connect_timeout: float = 5.0) -> Redis:
    """A ``redis.asyncio.Redis`` for ``url`` that fails fast: one try per command.

    redis-py retries a failed command up to 10 times by default; the fleet has its own loops
    (heartbeat, stream flusher) that must see a failure promptly to keep their own schedule.

    No ``socket_timeout``: with one, redis-py sends through ``asyncio.wait_for``, which on Python
    3.11 swallows a cancellation that lands as the send completes (CPython gh-86296; measured here:
    most cancellations of a task looping on ``PING`` were lost), so a stopped heartbeat kept
    running. Callers bound each call with ``asyncio.timeout`` (:func:`bounded`) instead.
    """
    validate_url(url)
    try:
        from redis.asyncio import Redis  # noqa: PLC0415 - optional extra
        from redis.asyncio.retry import Retry  # noqa: PLC0415
        from redis.backoff import NoBackoff  # noqa: PLC0415
    except ImportError:
        raise RedisUnavailableError("Redis needs the redis package: pip install 'connex-async[redis]'") from None
    return Redis.from_url(
        url,
        socket_timeout=None,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
    )


async def bounded(call: Awaitable[T], seconds: float) -> T:
    """``await call``, raising ``TimeoutError`` (one of :func:`redis_errors`) after ``seconds``.

    A cancelled Redis call drops its connection (redis-py disconnects on any interruption), so the
    next call starts clean.
    """
    async with asyncio.timeout(seconds):
        return await call


async def ensure_reachable(redis: Redis, url: str, within: float = 5.0) -> None:
    """``PING`` ``redis``; :class:`RedisUnavailableError` (one line, no password) if it does not answer."""
    try:
        await bounded(redis.ping(), within)
    except redis_errors() as exc:
        raise RedisUnavailableError(f"cannot reach Redis at {redact(url)}: {describe(exc, url)}") from None
