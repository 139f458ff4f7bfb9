"""Server feedback, observed where it lands: on a real socket server's arrival times.

- a herd told ``Retry-After: 1`` comes back spread out, never earlier than told;
- a ban signal opens the host's circuit, and after a pause exactly one probe finds out it is over;
- a 429 on an endpoint with no limiter (Zoomex server time) is retried after a wait, not at once;
- the limiters of portfolios that are gone are freed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from connex_async import CircuitOpenError, ConnexClient, Credentials, Poller, SessionPool, ZoomexClient
from connex_async.retry import RetryPolicy

ASSETS = (Path(__file__).parent / "fixtures" / "connex_assets_doc.json").read_bytes()
WALLET = (Path(__file__).parent / "fixtures" / "zoomex_wallet_seed.json").read_bytes()


@pytest.fixture
async def server() -> AsyncIterator[Callable[[Callable[[web.Request], Awaitable[web.StreamResponse]]], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> str:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)  # 300 clients connect at once
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


def json(body: bytes, status: int = 200, **headers: str) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def time_body() -> bytes:
    now = time.time()
    return f'{{"retCode":0,"result":{{"timeSecond":"{int(now)}","timeNano":"{int(now * 1e9)}"}}}}'.encode()


async def test_a_herd_told_retry_after_1_comes_back_spread_and_never_early(
    server: Callable[..., Awaitable[str]],
) -> None:
    told: dict[str, float] = {}
    retried: dict[str, float] = {}

    async def handler(request: web.Request) -> web.Response:
        key = request.headers["X-MBX-APIKEY"]
        if key not in told:
            told[key] = time.monotonic()
            return json(b'{"code":100429,"message":"Too many requests"}', 429, **{"Retry-After": "1"})
        retried.setdefault(key, time.monotonic())
        return json(ASSETS)

    base = await server(handler)
    async with SessionPool(connector_limit=400) as pool:
        clients = [ConnexClient(Credentials(f"k{i}", "s", label=f"p{i}"), base_url=base, pool=pool) for i in range(300)]
        await asyncio.gather(*(c.get_assets() for c in clients))
    assert len(retried) == 300
    assert min(retried[k] - told[k] for k in told) >= 1.0  # never earlier than the venue asked
    arrivals = sorted(retried.values())
    crowd = max(sum(1 for t in arrivals if start <= t < start + 0.02) for start in arrivals)
    # Without jitter all 300 came back inside one 20 ms window (183 measured); spread over half a
    # second they average 12 per 20 ms.
    assert crowd <= 40, f"{crowd} retries in one 20 ms window"


async def test_a_ban_signal_opens_the_circuit_then_one_probe_closes_it(server: Callable[..., Awaitable[str]]) -> None:
    arrivals: list[float] = []
    banned = True

    async def handler(request: web.Request) -> web.Response:
        if request.path.endswith("/market/time"):
            return json(time_body())
        arrivals.append(time.monotonic())
        if banned:
            return web.Response(text="access too frequent", status=403)
        return json(WALLET)

    base = await server(handler)
    async with SessionPool(circuit_probe_after=0.4, retry=RetryPolicy(max_retries=0)) as pool:
        clients = [ZoomexClient(Credentials(f"z{i}", "s", label=f"z{i}"), base_url=base, pool=pool) for i in range(5)]
        with pytest.raises(CircuitOpenError):
            await clients[0].get_wallet_balance()
        assert len(arrivals) == 1
        for client in clients:  # the circuit is open: every key fails fast, nothing is sent
            with pytest.raises(CircuitOpenError, match="fail fast"):
                await client.get_wallet_balance()
        assert len(arrivals) == 1
        await asyncio.sleep(0.45)
        # Half-open: of five callers at once, one probes (still banned: refused) and four fail fast.
        outcomes = await asyncio.gather(*(c.get_wallet_balance() for c in clients), return_exceptions=True)
        assert all(isinstance(o, CircuitOpenError) for o in outcomes) and len(arrivals) == 2
        await asyncio.sleep(0.45)
        with pytest.raises(CircuitOpenError):  # the pause doubled after the refused probe: 0.8 s
            await clients[1].get_wallet_balance()
        assert len(arrivals) == 2
        banned = False
        await asyncio.sleep(0.4)
        await clients[2].get_wallet_balance()  # the probe is answered: the circuit closes
        await asyncio.gather(*(c.get_wallet_balance() for c in clients))
        assert len(arrivals) == 3 + 5
        assert pool.open_circuits() == {}


async def test_a_429_on_an_unlimited_endpoint_is_retried_after_a_wait(server: Callable[..., Awaitable[str]]) -> None:
    arrivals: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        arrivals.append(time.monotonic())
        if len(arrivals) == 1:
            return json(b'{"retCode":10006,"retMsg":"Too many visits!"}', 429, **{"Retry-After": "0.3"})
        return json(time_body())

    base = await server(handler)
    async with ZoomexClient(Credentials("z", "s"), base_url=base, host_limit=None) as client:  # no scope at all
        await client.get_server_time()
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= 0.3  # the hint, honoured although no limiter could cool down


async def test_the_limiters_of_removed_portfolios_are_freed(server: Callable[..., Awaitable[str]]) -> None:
    async def handler(request: web.Request) -> web.Response:
        return json(ASSETS)

    base = await server(handler)
    async with SessionPool() as pool:
        poller = Poller(assets_every=0.05, positions_every=None)
        async with poller:
            for wave in range(4):
                clients = [
                    ConnexClient(Credentials(f"w{wave}k{i}", "s", label=f"w{wave}p{i}"), base_url=base, pool=pool)
                    for i in range(200)
                ]
                for client in clients:
                    poller.add(client)
                await asyncio.sleep(0.3)
                for client in clients:
                    poller.remove(client)
                await asyncio.sleep(1.2)  # their scopes drain (one window) ...
        # ... and go at the next sweep: 800 portfolios came and went, at most ~one wave is kept.
        assert len(pool.limiter) <= 400  # type: ignore[arg-type]
