"""What the Redis limiter tests share: several limiters on one namespace, as several processes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from connex_async.limiter_backend import LimiterBackend
from connex_async.redis_limits import RedisLimiter


@contextlib.asynccontextmanager
async def shared_limiters(redis_url: str | None, n: int, namespace: str) -> AsyncIterator[list[LimiterBackend | None]]:
    """``n`` Redis limiters with their own connections on one namespace, declared cold (nothing was
    sent through it before: no start-up embargo); or, with ``redis_url=None``, ``n`` times local
    limits (``None``: each pool keeps its own)."""
    if redis_url is None:
        yield [None] * n
        return
    made = [RedisLimiter(redis_url, namespace=namespace) for _ in range(n)]
    try:
        for limiter in made:
            await limiter.open()
        await made[0].declare_cold_start()
        yield list(made)
    finally:
        for limiter in made:
            await limiter.aclose()


@contextlib.asynccontextmanager
async def redis_limiters(redis_url: str, n: int, namespace: str) -> AsyncIterator[list[RedisLimiter]]:
    """:func:`shared_limiters`, typed as Redis limiters."""
    async with shared_limiters(redis_url, n, namespace) as made:
        yield [limiter for limiter in made if isinstance(limiter, RedisLimiter)]
