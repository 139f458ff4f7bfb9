"""The Redis stream sink on a real redis-server: entries, the latest hash, trimming, Redis outages."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from fleet_helpers import read_stream, wait_for

from connex_async.cli import update_to_json
from connex_async.errors import AuthenticationError
from connex_async.fleet.keys import FleetKeys
from connex_async.fleet.stream import RedisStreamSink
from connex_async.poller import Update
from connex_async.redis_connection import RedisUnavailableError
from connex_async.testing.redis_server import RedisServer

EXACT = "33.9674801811745561683687"


def update(portfolio: str, n: int = 0, endpoint: str = "assets") -> Update:
    return Update(
        portfolio=portfolio,
        venue="connex",
        endpoint=endpoint,
        data=[{"coin": "BTC", "balance": Decimal(EXACT), "n": n}],
        error=None,
        fetched_at=1_700_000_000.0 + n,
        latency=0.01,
        attempts=1,
    )


async def test_every_update_becomes_one_entry_with_exact_amounts_and_the_newest_per_key(redis_url: str) -> None:
    sink = RedisStreamSink(redis_url, worker="w-1", namespace="ns1")
    await sink.start()
    updates = [update(f"p{i % 3}", i) for i in range(10)]
    failed = Update("p9", "connex", "positions", None, AuthenticationError("bad key"), 1.0, 0.1, 1)
    for u in [*updates, failed]:
        sink.write(u)
    await sink.close()
    assert (sink.written, sink.dropped, sink.pending) == (11, 0, 0)
    client = aioredis.Redis.from_url(redis_url)
    try:
        entries = await read_stream(client, "ns1")
        assert [e.update for e in entries] == [json.loads(update_to_json(u)) for u in [*updates, failed]]
        assert {e.worker for e in entries} == {"w-1"}
        assert entries[0].update["data"][0]["balance"] == EXACT  # a string, every digit kept
        assert entries[-1].update["error"] == {"type": "AuthenticationError", "message": "bad key"}
        latest = await client.hgetall(FleetKeys("ns1").latest)
        assert set(latest) == {b"p0|assets", b"p1|assets", b"p2|assets", b"p9|positions"}
        assert json.loads(latest[b"p0|assets"])["data"][0]["n"] == 9  # the newest of p0: n = 9
        assert json.loads(latest[b"p2|assets"])["data"][0]["n"] == 8
    finally:
        await client.aclose()


async def test_the_stream_is_trimmed_to_about_maxlen(redis_url: str) -> None:
    sink = RedisStreamSink(redis_url, worker="w", maxlen=100, batch=50)
    await sink.start()
    for i in range(2000):
        sink.write(update(f"p{i}", i))
    await sink.close()
    client = aioredis.Redis.from_url(redis_url)
    try:
        length = await client.xlen(FleetKeys("connex-async").updates)
        assert 100 <= length < 300, length  # "~": whole macro nodes are trimmed, never below maxlen
        assert await client.hlen(FleetKeys("connex-async").latest) == 2000
    finally:
        await client.aclose()


async def test_while_redis_is_down_the_oldest_are_dropped_and_counted_then_the_rest_delivered(
    redis_url: str, redis_server: RedisServer
) -> None:
    sink = RedisStreamSink(redis_url, worker="w", buffer=20, batch=8)
    await sink.start()
    redis_server.stop()
    for i in range(50):  # no await in between: the flusher has not run yet, so this is exact
        sink.write(update(f"p{i:02d}", i))
    expected = [f"p{i:02d}|assets" for i in range(30, 50)]  # the newest 20, oldest first
    # Between a failed batch and its retry (backoff 50, 100, 200 ms, ...) the batch is back in front,
    # in order. After an odd number of failures, so that a requeue that reversed the batch shows.
    await wait_for(
        lambda: sink._in_flight == 0 and sink.failures % 2 == 1 and [key for key, _ in sink._buffer] == expected,
        3.0,
        "the failed batch is requeued in front, in order",
    )
    await wait_for(lambda: sink.failures >= 3, 3.0, "the flusher keeps retrying against the stopped server")
    assert sink.pending == 20  # bounded by the buffer; nothing new was written
    redis_server.start()
    await wait_for(lambda: sink.pending == 0, 5.0, "the flusher delivers after Redis returns")
    await sink.close()
    assert (sink.written, sink.dropped) == (20, 30)
    client = aioredis.Redis.from_url(redis_url)
    try:
        entries = await read_stream(client)
        # The 30 oldest were dropped; the newest 20 arrived, in order, though their first batch failed.
        assert [e.update["portfolio"] for e in entries] == [f"p{i:02d}" for i in range(30, 50)]
    finally:
        await client.aclose()


async def test_close_delivers_what_is_pending_and_an_unreachable_redis_fails_at_start(redis_url: str) -> None:
    sink = RedisStreamSink(redis_url, worker="w")
    await sink.start()
    for i in range(1000):
        sink.write(update(f"p{i}", i))
    await sink.close()  # no wait before close: close itself delivers
    assert sink.written == 1000
    with pytest.raises(RedisUnavailableError, match=r"^cannot reach Redis at redis://:\*\*\*@127.0.0.1:1/0: "):
        await RedisStreamSink("redis://:pw@127.0.0.1:1/0", worker="w").start()
    with pytest.raises(ValueError, match="maxlen, buffer and batch must be >= 1"):
        RedisStreamSink(redis_url, worker="w", maxlen=0)
