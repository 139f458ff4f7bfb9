"""Test-wide setup: an aioresponses shim for aiohttp >= 3.14."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import aioresponses.core
from aiohttp import ClientResponse


class _CompatClientResponse(ClientResponse):
    """aioresponses 0.7.9 builds responses without the `stream_writer` that aiohttp >= 3.14 requires
    (aioresponses issue #289, open upstream). A response it builds was never written, so an empty
    writer is the truth."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


if "stream_writer" in inspect.signature(ClientResponse.__init__).parameters:
    aioresponses.core.ClientResponse = _CompatClientResponse  # type: ignore[misc]


# -- a real redis-server for the Redis-backed limits and the fleet (never a mock) ----------------

import os  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from connex_async.testing.redis_server import RedisServer, RedisServerUnavailable  # noqa: E402


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server per test session (per xdist worker), on a unix socket.

    Locally without any server binary the Redis tests skip with the reason; under CI (``CI`` set)
    they fail instead, so a CI run can never pass by skipping them.
    """
    try:
        server = RedisServer()
    except RedisServerUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Redis tests: {exc}")
        pytest.skip(str(exc))
    with server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's server, running and emptied for this test."""
    import redis  # the test extra has it; only Redis tests pay the import

    redis_server.start()  # a test that stopped it leaves it stopped
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url
