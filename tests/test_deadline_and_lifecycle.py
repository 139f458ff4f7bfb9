"""A deadline for every call, a pool closed mid-call, cookies kept apart: against real sockets.

The deadline covers what a call can spend time on (queueing for a slot, the clock sync, every
attempt, every backoff) and ends in a ``RequestTimeoutError`` whose ``budget`` and message say
which budget ran out and what the call was doing. Closing the pool ends in-flight calls typed.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from hostile import ASSETS_PATH, CREDS, CREDS_B, TIME_PATH, WALLET_PATH, HostileVenue, json_reply, wallet_body

from connex_async import (
    ConnexAsyncError,
    ConnexClient,
    PoolClosedError,
    RateLimit,
    RequestTimeoutError,
    RetryPolicy,
    ServerError,
    SessionPool,
    TransportError,
    ZoomexClient,
)
from connex_async.deadlines import DEFAULT_HORIZON, loop_watch
from connex_async.testing import SimulatedVenue

FAST = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_max=0.02)
SLACK = 1.0  # how much later than its deadline a call may end on a loaded 2-core machine


async def hang(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(30)
    return json_reply(b"{}")


async def test_deadline_covers_the_clock_sync_of_a_zoomex_call() -> None:
    # The time endpoint never answers: before, a call spent 4 attempts x timeout on the clock,
    # then 4 attempts x timeout on the wallet (about 90 s with the defaults).
    async with (
        HostileVenue(hang, answer_time=False) as venue,
        SessionPool(retry=FAST, timeout=0.4, deadline=1.0) as pool,
    ):
        zx = ZoomexClient(CREDS, base_url=venue.base_url, pool=pool)
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError) as info:
            await zx.get_wallet_balance()
        took = time.monotonic() - started
    err = info.value
    assert err.budget == "deadline" and not err.retryable
    assert "deadline=1s ran out while measuring the venue's clock" in str(err), str(err)
    assert 0.9 <= took < 1.0 + SLACK, took
    assert venue.hits(TIME_PATH) and not venue.hits(WALLET_PATH)


async def test_per_call_deadline_and_the_backoff_it_covers() -> None:
    async def unavailable(request: web.Request) -> web.StreamResponse:
        return json_reply(b'{"code":500,"message":"busy","data":null}', 503)

    slow_retry = RetryPolicy(max_retries=5, backoff_base=2.0, backoff_max=2.0)  # waits 1-2 s
    async with HostileVenue(unavailable) as venue, SessionPool(retry=slow_retry, deadline=30.0) as pool:
        cx = ConnexClient(CREDS, base_url=venue.base_url, pool=pool)
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError) as info:
            await cx.get_assets(deadline=0.5)
        took = time.monotonic() - started
    err = info.value
    assert err.budget == "deadline" and err.attempts == 1
    assert "while backing off before a retry, after 1 attempt(s); last error: ServerError: HTTP 503" in str(err)
    assert isinstance(err.__cause__, ServerError) and err.cause is err.__cause__
    assert 0.4 <= took < 0.5 + SLACK, took
    assert len(venue.hits(ASSETS_PATH)) == 1


async def test_deadline_covers_the_wait_for_a_rate_limit_slot() -> None:
    async with SimulatedVenue(connex_portfolios=1, zoomex_accounts=0) as sim, SessionPool() as pool:
        cx = ConnexClient(
            sim.connex_credentials[0], base_url=sim.base_url, pool=pool, limits={"assets": RateLimit(1, 30.0)}
        )
        await cx.get_assets()  # the only slot for 30 s
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError, match="while waiting for a connection and a rate-limit slot") as info:
            await cx.get_assets(deadline=0.3)
        assert info.value.attempts == 0
        assert time.monotonic() - started < 0.3 + SLACK
        # The cancelled waiter held nothing: a call on another key goes straight through.
        other = ConnexClient(sim.add_portfolio("connex"), base_url=sim.base_url, pool=pool)
        async with asyncio.timeout(2):
            await other.get_assets()


async def test_deadline_of_a_listing_covers_all_its_pages() -> None:
    async with SimulatedVenue(connex_portfolios=0, zoomex_accounts=0, latency=0.15) as sim, SessionPool() as pool:
        cx = ConnexClient(sim.add_portfolio("connex", assets=10), base_url=sim.base_url, pool=pool)
        with pytest.raises(RequestTimeoutError, match=r"deadline=0\.4s ran out"):
            await cx.get_all_assets(page_size=1, deadline=0.4)  # 10 pages of >= 150 ms each
        assert len(await cx.get_all_assets(page_size=5, deadline=5.0)) == 10


async def test_a_deadline_beyond_the_watch_horizon_still_ends_the_call_on_time() -> None:
    # Deadlines further away than the watch's horizon get their timer from its tick, not at once
    # (connex_async.deadlines): a call hanging past it must still end at its deadline, typed.
    deadline = DEFAULT_HORIZON + 0.6
    async with HostileVenue(hang) as venue, SessionPool(retry=FAST, timeout=20.0) as pool:
        cx = ConnexClient(CREDS, base_url=venue.base_url, pool=pool)
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError) as info:
            async with asyncio.timeout(deadline + 4.0):  # a watch that never arms fails here instead
                await cx.get_assets(deadline=deadline)
        took = time.monotonic() - started
        assert loop_watch().watched() == 0  # forgotten when the call ended
    assert info.value.budget == "deadline"
    assert "while waiting for the venue's answer, after 1 attempt(s)" in str(info.value), str(info.value)
    assert deadline - 0.05 <= took < deadline + SLACK, took


def test_deadline_must_be_positive() -> None:
    with pytest.raises(ValueError, match="deadline"):
        SessionPool(deadline=0)


@pytest.mark.parametrize("venue_name", ["connex", "zoomex"])
async def test_closing_the_pool_mid_call_ends_every_call_typed(venue_name: str) -> None:
    async with SimulatedVenue(connex_portfolios=8, zoomex_accounts=8, latency=0.3) as sim:
        pool = SessionPool(retry=FAST)
        await pool.open()
        if venue_name == "zoomex":
            clients = [ZoomexClient(c, base_url=sim.base_url, pool=pool) for c in sim.zoomex_credentials]
            calls = [asyncio.create_task(c.get_wallet_balance()) for c in clients]
        else:
            clients = [ConnexClient(c, base_url=sim.base_url, pool=pool) for c in sim.connex_credentials]
            calls = [asyncio.create_task(c.get_assets()) for c in clients]
        await asyncio.sleep(0.1)  # every call is waiting for its answer (or, Zoomex, for the clock)
        await pool.close()
        async with asyncio.timeout(10):
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
        for outcome in outcomes:
            assert isinstance(outcome, ConnexAsyncError), f"{type(outcome).__name__}: {outcome}"
            assert isinstance(outcome, PoolClosedError | TransportError)
        assert any(isinstance(outcome, PoolClosedError) for outcome in outcomes)
        with pytest.raises(PoolClosedError, match="not open"):  # a call started after close()
            await (clients[0].get_wallet_balance() if venue_name == "zoomex" else clients[0].get_assets())


async def test_keys_never_share_cookies() -> None:
    async def sets_cookie(request: web.Request) -> web.StreamResponse:
        answer = json_reply(wallet_body())
        if request.headers.get("X-BAPI-API-KEY") == CREDS.api_key:
            answer.set_cookie("session", "for-key-a-only")
        return answer

    # "localhost", not 127.0.0.1: aiohttp's jar ignores cookies from bare IP addresses.
    async with HostileVenue(sets_cookie, host="localhost") as venue, SessionPool() as pool:
        a = ZoomexClient(CREDS, base_url=venue.base_url, pool=pool)
        b = ZoomexClient(CREDS_B, base_url=venue.base_url, pool=pool)
        await a.get_wallet_balance()
        await b.get_wallet_balance()
        await a.get_wallet_balance()
    wallet_requests = venue.hits(WALLET_PATH)
    assert len(wallet_requests) == 3
    assert [seen.headers.get("Cookie") for seen in wallet_requests] == [None, None, None]
