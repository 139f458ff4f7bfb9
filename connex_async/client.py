"""What every venue client shares: pool ownership, limits per endpoint, the call into the pool."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

from connex_async.credentials import Credentials
from connex_async.limits import RateLimit
from connex_async.pool import SessionPool
from connex_async.signing import ParamValue
from connex_async.venues.base import Endpoint, Venue

__all__ = ["BaseClient"]

T = TypeVar("T")


class BaseClient:
    """A client for one API key on one venue.

    With ``pool=None`` the client owns a private :class:`SessionPool` (made with
    ``pool_options``) and closes it on exit; with a shared pool it closes nothing.
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
        **pool_options: Any,
    ) -> None:
        if not isinstance(credentials, Credentials):
            raise TypeError("credentials must be a connex_async.Credentials")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        unknown = set(limits or {}) - set(self.endpoints)
        if unknown:
            raise ValueError(f"unknown endpoint(s) in limits: {sorted(unknown)}; known: {sorted(self.endpoints)}")
        if pool is not None and pool_options:
            raise ValueError("pool options apply only to a client's private pool")
        self.credentials = credentials
        self.base_url = base_url.rstrip("/")
        self._owns_pool = pool is None
        self.pool = pool if pool is not None else SessionPool(**pool_options)
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

    async def __aenter__(self) -> Self:
        if self._owns_pool:
            await self.pool.open()
        return self

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
            await self.pool.open()
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
