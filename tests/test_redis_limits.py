"""The Redis limiter backend against a real redis-server: the script's bound, cooldowns, batch
order, circuits, the epoch embargo and failing closed.

Several :class:`RedisLimiter` instances with their own connections stand for several processes:
they share nothing but Redis. Times read here are this process's, so the assertions leave room
for a loop that is late by tens of milliseconds; the bound itself is checked on arrival at a
strict-window server in ``test_redis_fleet.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis
from redis_helpers import redis_limiters

from connex_async.errors import LimiterUnavailableError
from connex_async.limiter_backend import Verdict
from connex_async.rate_limit import RateLimit
from connex_async.redis_limits import RedisLimiter, RedisScope
from connex_async.testing.redis_server import RedisServer

KEY = ("connex", "key:a", "assets")
HOST = ("zoomex", "host", "api.zoomex.test")


@pytest.fixture
async def limiters(redis_url: str) -> AsyncIterator[list[RedisLimiter]]:
    """Two "processes" on one namespace; the namespace starts cold (no embargo)."""
    async with redis_limiters(redis_url, 2, "t") as made:
        yield made


async def admit_until_admitted(limiter: RedisLimiter, scopes: tuple[RedisScope, ...]) -> float:
    """Try, wait as told, try again; return the local time of the admission."""
    while True:
        verdict = await limiter.try_admit(scopes, None)
        if verdict.admitted:
            return time.monotonic()
        await limiter.wait_ready(scopes, verdict, None)


@pytest.mark.timing
async def test_any_n_plus_1_admissions_across_processes_are_a_window_apart(limiters: list[RedisLimiter]) -> None:
    limit = RateLimit(5, 0.4, margin=0.05)
    times: list[float] = []

    async def caller(limiter: RedisLimiter) -> None:
        scope = (limiter.scope(KEY, limit),)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            times.append(await admit_until_admitted(limiter, scope))

    await asyncio.gather(*(caller(limiters[i % 2]) for i in range(8)))
    times.sort()
    gaps = [later - earlier for earlier, later in zip(times, times[limit.count :], strict=False)]
    assert len(times) >= 20
    # T + m = 0.45 s between any N + 1 admissions, less the lateness of reading the replies here.
    assert min(gaps) >= limit.window - 0.03, f"N+1 admissions only {min(gaps):.3f}s apart"
    # ... and no slower than the bucket's rate (utilization), whatever the number of callers.
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert rate >= 0.9 * limit.refill_rate


async def test_all_scopes_of_a_request_are_taken_in_one_instant_or_none(limiters: list[RedisLimiter]) -> None:
    a, b = limiters
    host = a.scope(HOST, RateLimit(1, 10.0, margin=0.0, slack=0.0))
    key1 = a.scope(("zoomex", "key:1", "wallet"), RateLimit(1, 10.0, margin=0.0, slack=0.0))
    key2 = a.scope(("zoomex", "key:2", "wallet"), RateLimit(1, 10.0, margin=0.0, slack=0.0))
    assert (await a.try_admit((key1, host), None)).admitted
    refused = await a.try_admit((key2, host), None)  # host full: key2's slot must stay untouched
    # e = 10 s, plus the first admission's random phase of up to one interval
    assert not refused.admitted and refused.blocking is host and 9.0 < refused.wait <= 20.0
    alone = await b.try_admit((b.scope(("zoomex", "key:2", "wallet"), key2.limit),), None)
    assert alone.admitted


async def test_a_cooldown_from_one_process_holds_the_scope_in_another(limiters: list[RedisLimiter]) -> None:
    a, b = limiters
    limit = RateLimit(100, 1.0)
    a.cool_down(a.scope(KEY, limit), 0.5)
    verdict = await b.try_admit((b.scope(KEY, limit),), None)
    assert not verdict.admitted and 0.4 < verdict.wait <= 0.5


async def test_a_batch_is_decided_in_the_order_it_was_asked(limiters: list[RedisLimiter]) -> None:
    a, _ = limiters
    scope = a.scope(KEY, RateLimit(1, 5.0, margin=0.0, slack=0.0))
    calls = a.calls
    # Queued in one loop tick: a cooldown, then three admissions. One script call decides all;
    # the cooldown comes first, so none is admitted.
    a.cool_down(scope, 0.3)
    verdicts = await asyncio.gather(*(a.try_admit((scope,), None) for _ in range(3)))
    assert a.calls == calls + 1
    assert [v.admitted for v in verdicts] == [False, False, False]
    await asyncio.sleep(0.35)
    verdicts = await asyncio.gather(*(a.try_admit((scope,), None) for _ in range(3)))
    assert [v.admitted for v in verdicts] == [True, False, False]  # the first asked is the first served


async def test_one_loop_tick_of_admissions_is_one_script_call(limiters: list[RedisLimiter]) -> None:
    a, _ = limiters
    scopes = [(a.scope(("connex", f"key:{i}", "assets"), RateLimit(20, 1.0)),) for i in range(200)]
    calls = a.calls
    verdicts = await asyncio.gather(*(a.try_admit(s, None) for s in scopes))
    assert all(v.admitted for v in verdicts)
    assert a.calls - calls == 1  # 200 admissions of one tick, one EVALSHA (max_batch 256)


async def test_waiters_of_one_scope_wait_behind_one_timer(limiters: list[RedisLimiter]) -> None:
    a, _ = limiters
    limit = RateLimit(10, 1.0, margin=0.0, slack=0.0)  # one admission every 0.1 s
    scope = (a.scope(KEY, limit),)
    calls = a.calls
    started = time.monotonic()
    await asyncio.gather(*(admit_until_admitted(a, scope) for _ in range(10)))
    elapsed = time.monotonic() - started
    # 10 admissions need ~0.9 s (plus the first one's random phase); asking Redis again per waiter
    # per wake-up would cost dozens of calls per admission. One timer: about two per admission.
    assert 0.8 < elapsed < 2.5
    assert a.calls - calls <= 30, f"{a.calls - calls} script calls for 10 admissions"


async def test_a_circuit_opened_by_one_process_fails_fast_in_another_then_one_probe_goes(
    limiters: list[RedisLimiter],
) -> None:
    a, b = limiters
    circuit = ("zoomex", "api.zoomex.test")
    a.open_circuit(circuit, 600.0, probe_after=0.3)
    shut = await b.try_admit((), circuit)
    assert not shut.admitted and shut.circuit_remaining is not None and shut.circuit_remaining > 590
    await asyncio.sleep(0.35)
    first, second = await asyncio.gather(a.try_admit((), circuit), b.try_admit((), circuit))
    assert [first.probe, second.admitted] == [True, False]  # exactly one probe, fleet-wide
    a.close_circuit(circuit)  # the probe was answered
    assert (await b.try_admit((), circuit)) is not None and (await b.try_admit((), circuit)).admitted


async def test_a_refused_probe_doubles_the_pause(limiters: list[RedisLimiter]) -> None:
    a, _ = limiters
    circuit = ("zoomex", "api.zoomex.test")
    a.open_circuit(circuit, 600.0, probe_after=0.2)
    await asyncio.sleep(0.25)
    assert (await a.try_admit((), circuit)).probe
    a.open_circuit(circuit, 600.0, probe_after=0.2)  # the probe got a ban signal again
    await asyncio.sleep(0.25)
    assert not (await a.try_admit((), circuit)).admitted  # 0.4 s now
    await asyncio.sleep(0.2)
    assert (await a.try_admit((), circuit)).probe


async def test_a_new_redis_holds_every_scope_for_one_window(redis_server: RedisServer, redis_url: str) -> None:
    limit = RateLimit(5, 0.5, margin=0.05)
    async with RedisLimiter(redis_url, namespace="e") as limiter:
        scope = (limiter.scope(KEY, limit),)
        first = await limiter.try_admit(scope, None)  # an empty Redis: it cannot know what was sent
        assert not first.admitted and limit.window - 0.05 < first.wait <= limit.window
        assert limiter.epochs_seen == 1
        await asyncio.sleep(first.wait)
        assert (await limiter.try_admit(scope, None)).admitted
        redis_server.restart()  # in-memory state lost, as after a crash or a failover
        verdict = await _try_while_reconnecting(limiter, scope)
        assert not verdict.admitted and verdict.wait > limit.window - 0.1
        assert limiter.epochs_seen == 2


async def test_redis_down_fails_closed_at_once_and_comes_back(redis_server: RedisServer, redis_url: str) -> None:
    async with RedisLimiter(redis_url, namespace="d", reconnect_backoff=(0.05, 0.2)) as limiter:
        await limiter.declare_cold_start()
        scope = (limiter.scope(KEY, RateLimit(100, 1.0)),)
        assert (await limiter.try_admit(scope, None)).admitted
        redis_server.stop()
        started = time.monotonic()
        for _ in range(5):
            with pytest.raises(LimiterUnavailableError, match="Redis"):
                await limiter.try_admit(scope, None)
        assert time.monotonic() - started < 2.0  # fast, never a hang
        redis_server.start()
        verdict = await _try_while_reconnecting(limiter, scope)
        assert not verdict.admitted  # a restarted Redis: the embargo, not a free-for-all
        await asyncio.sleep(verdict.wait)
        assert (await limiter.try_admit(scope, None)).admitted


async def _try_while_reconnecting(limiter: RedisLimiter, scope: tuple[RedisScope, ...]) -> Verdict:
    deadline = time.monotonic() + 5.0
    while True:
        try:
            return await limiter.try_admit(scope, None)
        except LimiterUnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_unreachable_redis_at_open_is_one_clear_error(tmp_path: object) -> None:
    limiter = RedisLimiter("unix:///nonexistent/redis.sock", socket_timeout=0.5)
    with pytest.raises(LimiterUnavailableError, match="cannot reach Redis"):
        await limiter.open()
    await limiter.aclose()


async def test_keys_carry_the_namespace_and_expire_once_drained(limiters: list[RedisLimiter], redis_url: str) -> None:
    a, _ = limiters
    scope = a.scope(KEY, RateLimit(20, 1.0))
    assert (await a.try_admit((scope,), None)).admitted
    client = redis.Redis.from_url(redis_url)
    try:
        keys = sorted(k.decode() for k in client.keys("*"))
        assert keys == ["{t}:epoch", "{t}:s:connex:key:a:assets"]
        ttl_ms = client.pttl("{t}:s:connex:key:a:assets")
        assert 0 < ttl_ms <= 1200  # gone one window after its last booking: a drained scope is a new one
    finally:
        client.close()


async def test_a_flushed_script_cache_is_reloaded_on_noscript(limiters: list[RedisLimiter], redis_url: str) -> None:
    # A failover target or a restarted server knows no script: EVALSHA answers NOSCRIPT, and the
    # registered script (redis-py's Script) loads itself again; the admission goes through.
    a, _ = limiters
    scope = (a.scope(KEY, RateLimit(20, 1.0)),)
    assert (await a.try_admit(scope, None)).admitted
    client = redis.Redis.from_url(redis_url)
    try:
        client.script_flush()
        assert client.script_exists(a._script.sha if a._script else "") == [False]
        verdict = await a.try_admit(scope, None)
        assert verdict.admitted or verdict.wait > 0  # decided by the script, not an error
        assert client.script_exists(a._script.sha if a._script else "") == [True]
    finally:
        client.close()
