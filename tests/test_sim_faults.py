"""Every fault kind as a raw aiohttp client sees it, and the probability / times / script semantics."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from yarl import URL

from connex_async.credentials import Credentials
from connex_async.testing import FAULT_KINDS, Fault, SimulatedVenue

ASSETS = "/api/v1/trading/portfolio/assets"
POSITIONS = "/api/v1/trading/position"
WALLET = "/cloud/trade/v3/account/wallet-balance"
TIME = "/cloud/trade/v3/market/time"


class Reply:
    __slots__ = ("body", "elapsed", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes, elapsed: float) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed

    def json(self) -> Any:
        return json.loads(self.body)


async def cx(session: aiohttp.ClientSession, venue: SimulatedVenue, creds: Credentials, path: str = ASSETS) -> Reply:
    nonce = str(int(time.time()))
    sig = hmac.new(creds.secret.encode(), f"&{nonce}".encode(), hashlib.sha256).hexdigest()
    headers = {"X-MBX-APIKEY": creds.api_key, "nonce": nonce, "signature": sig}
    start = time.perf_counter()
    async with session.get(venue.base_url + path, headers=headers) as resp:
        body = await resp.read()
        return Reply(resp.status, resp.headers, body, time.perf_counter() - start)


async def zx(session: aiohttp.ClientSession, venue: SimulatedVenue, creds: Credentials) -> Reply:
    query = "accountType=UNIFIED"
    ts = str(int(time.time() * 1000))
    sig = hmac.new(creds.secret.encode(), f"{ts}{creds.api_key}5000{query}".encode(), hashlib.sha256).hexdigest()
    headers = {
        "X-BAPI-API-KEY": creds.api_key,
        "X-BAPI-SIGN": sig,
        "X-BAPI-TIMESTAMP": ts,
        "X-BAPI-RECV-WINDOW": "5000",
    }
    start = time.perf_counter()
    async with session.get(URL(f"{venue.base_url}{WALLET}?{query}", encoded=True), headers=headers) as resp:
        body = await resp.read()
        return Reply(resp.status, resp.headers, body, time.perf_counter() - start)


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


@pytest_asyncio.fixture
async def venue() -> AsyncIterator[SimulatedVenue]:
    async with SimulatedVenue(
        connex_portfolios=3,
        zoomex_accounts=2,
        seed=11,
        limits={"connex.assets": None, "zoomex.wallet": None, "zoomex.ip": None},
    ) as v:
        yield v


def ok_cx(reply: Reply) -> bool:
    return reply.status == 200 and int(reply.json()["code"]) in (200, 200000)


def ok_zx(reply: Reply) -> bool:
    return reply.status == 200 and reply.json()["retCode"] == 0


# ----------------------------------------------------------------- each kind


async def test_http_5xx(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    c, z = venue.connex_credentials[0], venue.zoomex_credentials[0]
    for kind, status in (("http_500", 500), ("http_503", 503)):
        venue.inject(Fault(kind, times=2))
        r = await cx(session, venue, c)
        assert r.status == status and r.json()["code"] == 500
        r = await zx(session, venue, z)
        assert r.status == status and r.json()["retCode"] == 10016
        assert ok_cx(await cx(session, venue, c))
    assert venue.stats().faults_injected == 4


async def test_http_502_html(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    venue.inject(Fault("http_502_html", times=1))
    r = await cx(session, venue, venue.connex_credentials[0])
    assert r.status == 502 and r.headers["Content-Type"].startswith("text/html") and b"<html>" in r.body


async def test_reset(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    # aiohttp silently retries an idempotent request once after a disconnect, so one failing
    # call costs two resets (and two arrivals at the server).
    fault = venue.inject(Fault("reset", times=4))
    with pytest.raises(aiohttp.ClientConnectionError):
        await cx(session, venue, venue.connex_credentials[0])
    with pytest.raises(aiohttp.ClientConnectionError):
        await zx(session, venue, venue.zoomex_credentials[0])
    assert fault.fired == 4
    assert ok_cx(await cx(session, venue, venue.connex_credentials[0]))
    stats = venue.stats()
    assert (stats.requests, stats.faults_injected, stats.accepted) == (5, 4, 1)


async def test_single_reset_is_hidden_by_aiohttp_retry(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    venue.inject(Fault("reset", times=1))
    assert ok_cx(await cx(session, venue, venue.connex_credentials[0]))
    assert venue.stats().requests == 2


async def test_truncated(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    venue.inject(Fault("truncated", times=2))
    with pytest.raises(aiohttp.ClientPayloadError):
        await cx(session, venue, venue.connex_credentials[0])
    with pytest.raises(aiohttp.ClientPayloadError):
        await zx(session, venue, venue.zoomex_credentials[0])
    assert ok_zx(await zx(session, venue, venue.zoomex_credentials[0]))


async def test_text_400(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    venue.inject(Fault("text_400", times=1))
    r = await zx(session, venue, venue.zoomex_credentials[0])
    assert r.status == 400 and r.headers["Content-Type"].startswith("text/plain")


async def test_rate_limit_storm(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    venue.inject(Fault("rate_limit", times=1, venue="connex"))
    venue.inject(Fault("rate_limit", times=1, venue="connex", retry_after=2))
    venue.inject(Fault("rate_limit", times=1, venue="zoomex", retry_after=0.5))
    c = venue.connex_credentials[0]
    r = await cx(session, venue, c)
    assert r.status == 429 and r.json()["code"] == 100429 and "Retry-After" not in r.headers
    r = await cx(session, venue, c)
    assert r.status == 429 and r.headers["Retry-After"] == "2"
    r = await zx(session, venue, venue.zoomex_credentials[0])
    assert r.status == 200 and r.json()["retCode"] == 10006
    reset = int(r.headers["X-Bapi-Limit-Reset-Timestamp"])
    assert 0 < reset - time.time() * 1000 <= 600
    assert r.headers["X-Bapi-Limit-Status"] == "0"
    stats = venue.stats()
    assert stats.faults_injected == 3 and stats.violations == 0 and stats.rejected_rate_limit == 0


async def test_ip_limit_fault(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    venue.inject(Fault("ip_limit", times=1))
    r = await zx(session, venue, venue.zoomex_credentials[0])
    assert r.status == 403 and r.body == b"access too frequent"


async def test_slow_body(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    venue.inject(Fault("slow_body", times=1, seconds=0.3, chunks=5))
    r = await cx(session, venue, venue.connex_credentials[0])
    assert ok_cx(r) and r.elapsed >= 0.25
    data = r.json()["data"]
    assert data["list"] and data["totalSize"] == len(data["list"]) and data["pageNum"] == 1
    venue.inject(Fault("slow_body", times=1, seconds=0.1, endpoint="positions"))
    r = await cx(session, venue, venue.connex_credentials[0], POSITIONS)
    assert ok_cx(r) and isinstance(r.json()["data"], list)
    # A client with a short read timeout gives up.
    venue.inject(Fault("slow_body", times=1, seconds=2.0))
    with pytest.raises(asyncio.TimeoutError):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_read=0.2)) as short:
            await cx(short, venue, venue.connex_credentials[0])


async def test_malformed_json(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    venue.inject(Fault("malformed_json", times=2))
    for reply in (
        await cx(session, venue, venue.connex_credentials[0]),
        await zx(session, venue, venue.zoomex_credentials[0]),
    ):
        assert reply.status == 200 and reply.headers["Content-Type"].startswith("application/json")
        with pytest.raises(json.JSONDecodeError):
            reply.json()


async def test_auth_and_clock_errors(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    c, z = venue.connex_credentials[0], venue.zoomex_credentials[0]
    venue.inject(Fault("auth_error", times=2))
    assert (await cx(session, venue, c)).json()["code"] == 2000
    assert (await zx(session, venue, z)).json()["retCode"] == 10004
    venue.inject(Fault("clock_error", times=2))
    assert (await cx(session, venue, c)).json()["code"] == 7000
    assert (await zx(session, venue, z)).json()["retCode"] == 10002
    stats = venue.stats()
    assert stats.faults_injected == 4 and stats.rejected_auth == 0


async def test_latency_fault(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    venue.inject(Fault("latency", times=1, seconds=0.2))
    r = await cx(session, venue, venue.connex_credentials[0])
    assert ok_cx(r) and r.elapsed >= 0.2
    r = await cx(session, venue, venue.connex_credentials[0])
    assert ok_cx(r) and r.elapsed < 0.2
    row = venue.stats().get("connex", "assets", venue.connex_credentials[0].api_key)
    assert row is not None and (row.faults_injected, row.accepted) == (1, 2)


def test_fault_validation() -> None:
    assert "reset" in FAULT_KINDS
    with pytest.raises(ValueError):
        Fault("boom")
    with pytest.raises(ValueError):
        Fault("reset", probability=1.5)
    with pytest.raises(ValueError):
        Fault("reset", venue="kraken")
    with pytest.raises(ValueError):
        SimulatedVenue().script("k", ["nope"])


# ----------------------------------------------------------------- selection semantics


async def test_times_and_fired(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    fault = venue.inject(Fault("http_503", times=2))
    statuses = [(await cx(session, venue, venue.connex_credentials[0])).status for _ in range(4)]
    assert statuses == [503, 503, 200, 200]
    assert fault.fired == 2 and fault.exhausted


async def test_scope_by_key_endpoint_and_venue(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    a, b = venue.connex_credentials[:2]
    z = venue.zoomex_credentials[0]
    venue.inject(Fault("http_500", api_key=a.api_key, endpoint="positions"))
    venue.inject(Fault("text_400", venue="zoomex"))
    assert (await cx(session, venue, a, POSITIONS)).status == 500
    assert ok_cx(await cx(session, venue, a, ASSETS))
    assert ok_cx(await cx(session, venue, b, POSITIONS))
    assert (await zx(session, venue, z)).status == 400
    async with session.get(venue.base_url + TIME) as resp:
        assert resp.status == 400
    venue.clear_faults()
    assert ok_cx(await cx(session, venue, a, POSITIONS))
    assert ok_zx(await zx(session, venue, z))


async def test_probability_is_seeded(session: aiohttp.ClientSession) -> None:
    patterns = []
    for _ in range(2):
        async with SimulatedVenue(connex_portfolios=1, zoomex_accounts=0, seed=5, limits={"connex.assets": None}) as v:
            v.inject(Fault("http_503", probability=0.3))
            c = v.connex_credentials[0]
            patterns.append([(await cx(session, v, c)).status for _ in range(60)])
    assert patterns[0] == patterns[1]
    failures = patterns[0].count(503)
    assert 8 <= failures <= 30 and set(patterns[0]) == {200, 503}


async def test_script(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    a, b = venue.connex_credentials[:2]
    venue.inject(Fault("http_500", api_key=a.api_key))  # a rule, overridden while the script runs
    venue.script(a.api_key, ["http_502_html", "ok", "reset", "reset", Fault("latency", seconds=0.1)])
    r = await cx(session, venue, a)
    assert r.status == 502
    assert ok_cx(await cx(session, venue, b))  # other keys do not consume the script
    assert ok_cx(await cx(session, venue, a))
    with pytest.raises(aiohttp.ClientConnectionError):
        await cx(session, venue, a)
    r = await cx(session, venue, a)
    assert ok_cx(r) and r.elapsed >= 0.1
    assert (await cx(session, venue, a)).status == 500  # script done: the rule applies again
    row = venue.stats().get("connex", "assets", a.api_key)
    assert row is not None and row.faults_injected == 5 and row.requests == 6


async def test_script_per_endpoint(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    a = venue.connex_credentials[0]
    venue.script(a.api_key, ["http_503"], endpoint="positions")
    assert ok_cx(await cx(session, venue, a, ASSETS))
    assert (await cx(session, venue, a, POSITIONS)).status == 503
    assert ok_cx(await cx(session, venue, a, POSITIONS))


async def test_faults_count_as_arrivals(session: aiohttp.ClientSession) -> None:
    async with SimulatedVenue(connex_portfolios=1, zoomex_accounts=0, limits={"connex.assets": (2, 5.0)}) as v:
        c = v.connex_credentials[0]
        v.inject(Fault("http_503", times=2))
        assert [(await cx(session, v, c)).status for _ in range(3)] == [503, 503, 429]
        assert v.violations == 1
