"""What every venue client shares: pool ownership, limits per endpoint, the call into the pool."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypedDict, TypeVar, Unpack

from connex_async.credentials import Credentials
from connex_async.pool import SessionPool
from connex_async.rate_limit import RateLimit
from connex_async.retry import RetryPolicy
from connex_async.signing import ParamValue
from connex_async.venues.base import Endpoint, Venue

__all__ = ["BaseClient", "PoolOptions"]

T = TypeVar("T")


class PoolOptions(TypedDict, total=False):
    """The options of a client's private :class:`SessionPool` (leave one out, or pass ``None``, for
    the pool's default). Spelled out once here; a client takes them as ``**pool_options``, so a
    misspelt one is a type error for mypy and a ``TypeError`` naming the client at run time."""

    connector_limit: int | None
    limit_per_host: int | None
    timeout: float | None
    max_queue_wait: float | None
    retry: RetryPolicy | None
    max_body_bytes: int | None
    user_agent: str | None
    deadline: float | None


_POOL_OPTIONS = frozenset(PoolOptions.__annotations__)


class BaseClient:
    """A client for one API key on one venue; the common type of :class:`ConnexClient` and :class:`ZoomexClient`.

    With ``pool=None`` the client owns a private :class:`SessionPool`, built from the pool options
    (``connector_limit``, ``timeout``, ``max_queue_wait``, ``retry``, ...; ``None`` keeps the pool's
    default), opened by ``async with client`` (or :meth:`open`) and closed on exit. With a shared
    ``pool`` it opens and closes nothing, and the pool options must be left out.
    """

    venue: Venue
    endpoints: Mapping[str, Endpoint[Any]]

    def __init__(
        self,
        credentials: Credentials,
        *,
        base_url: str,
        pool: SessionPool | None = None,
        limits: Mapping[str, RateLimit] | None = None,
        **pool_options: Unpack[PoolOptions],
    ) -> None:
        if not isinstance(credentials, Credentials):
            raise TypeError("credentials must be a connex_async.Credentials")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        unknown = set(limits or {}) - set(self.endpoints)
        if unknown:
            raise ValueError(f"unknown endpoint(s) in limits: {sorted(unknown)}; known: {sorted(self.endpoints)}")
        for name in pool_options.keys() - _POOL_OPTIONS:  # what mypy catches, caught at run time too
            raise TypeError(f"{type(self).__name__}.__init__() got an unexpected keyword argument {name!r}")
        given: dict[str, Any] = {name: value for name, value in pool_options.items() if value is not None}
        if pool is not None and given:
            raise ValueError(
                f"{', '.join(sorted(given))}: pool options apply only to a client's private pool; "
                "set them on the shared SessionPool instead"
            )
        self.credentials = credentials
        self.base_url = base_url.rstrip("/")
        self._owns_pool = pool is None
        self.pool = pool if pool is not None else SessionPool(**given)
        self.limits: dict[str, RateLimit] = {}
        for name, endpoint in self.endpoints.items():
            chosen = (limits or {}).get(name) or endpoint.default_limit
            if chosen is not None:
                self.limits[name] = chosen

    @property
    def label(self) -> str:
        """The portfolio label (never the key)."""
        return self.credentials.label

    def __repr__(self) -> str:
        return f"{type(self).__name__}(label={self.label!r}, base_url={self.base_url!r})"

    async def open(self) -> Self:
        """Open the private pool, if this client owns one (``async with client`` does it for you)."""
        if self._owns_pool:
            await self.pool.open()
        return self

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the private pool, if this client owns one."""
        if self._owns_pool:
            await self.pool.close()

    async def _call(self, endpoint: Endpoint[T], params: Mapping[str, ParamValue], deadline: float | None = None) -> T:
        if self._owns_pool and self.pool.closed:
            # Opening it here would leave an aiohttp session nobody closes (a ResourceWarning later).
            name = type(self).__name__
            raise RuntimeError(
                f"{name}(label={self.label!r}) is not open: use `async with {name}(...) as client:`, "
                f"or `await client.open()` and later `await client.close()`, or pass a shared pool="
            )
        return await self.pool.request(
            self.venue,
            endpoint,
            self.base_url,
            params,
            self.credentials,
            limit=self.limits.get(endpoint.name),
            deadline=deadline,
        )

    def poll_jobs(self) -> dict[str, Callable[[], Awaitable[Any]]]:
        """What a :class:`~connex_async.poller.Poller` fetches for this client, by endpoint name."""
        raise NotImplementedError
