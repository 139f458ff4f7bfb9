"""Adaptive margins against the simulator a WAN away: counted on arrival, in strict windows.

The simulator delays each request 0-120 ms (uniform) on its way in, plus 250 ms for one request in
200, and each answer 0-10 ms on its way back (``connex_async.testing.network``). A fixed 25 ms margin
must show violations there, or the harness could not see what the adaptive margin prevents.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis_helpers import shared_limiters
from test_margins import widest_wins_disabled

import connex_async.redis_limits
from connex_async import ConnexAsyncError, ConnexClient, Credentials, RateLimit, SessionPool, ZoomexClient
from connex_async.client import BaseClient
from connex_async.limiter_backend import LimiterBackend
from connex_async.testing import SimulatedVenue
from connex_async.testing.network import Delay, Route
from connex_async.testing.window import Limit, SlidingWindow

WAN = Route(request=Delay.parse("0-120ms,250ms@0.5%"), response=Delay.parse("0-10ms"))


@dataclass
class Run:
    """What the simulator counted, and the widest margin the pools reported meanwhile."""

    arrivals: dict[str, list[float]] = field(default_factory=dict)  # scope -> accepted arrival times
    violations: int = 0
    requests: int = 0
    margin: float = 0.0

    def utilization(self, scope: str, nominal: float, after: float) -> float:
        """Accepted arrivals per second of ``scope`` from ``after`` on, over its nominal rate."""
        times = [t for t in self.arrivals.get(scope, []) if t >= after]
        return (len(times) - 1) / (times[-1] - times[0]) / nominal


class RecordingVenue(SimulatedVenue):
    """Records each accepted arrival per scope (a key, or ``ip`` for the Zoomex host-wide window)."""

    __slots__ = ("record",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.record: dict[str, list[float]] = {}

    def _hit(self, scope: tuple[str, str, str], limit: Limit, now: float) -> tuple[SlidingWindow, int]:
        window, n = super()._hit(scope, limit, now)
        if n <= limit.count:
            self.record.setdefault("ip" if scope[1] == "ip" else scope[2], []).append(now)
        return window, n


async def hammer(
    venue: RecordingVenue,
    pools: Sequence[SessionPool],
    clients: Sequence[BaseClient],
    callers: int | Sequence[int],
    seconds: float,
    pause: Sequence[float] | None = None,
) -> Run:
    """``callers`` loops per client (each ``pause`` s apart) for ``seconds``; the widest margin any pool showed."""
    deadline = time.monotonic() + seconds
    run = Run()
    per_client = [callers] * len(clients) if isinstance(callers, int) else list(callers)
    pauses = pause or [0.0] * len(clients)

    async def loop(client: BaseClient, pause: float) -> None:
        fetch = next(iter(client.poll_jobs().values()))
        while time.monotonic() < deadline:
            try:
                await fetch()
            except ConnexAsyncError:
                await asyncio.sleep(0.01)
            if pause:
                await asyncio.sleep(pause)

    async def watch() -> None:
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            for pool in pools:
                for path in pool.metrics.snapshot().paths.values():
                    run.margin = max([run.margin, *(m.margin for m in path.margins)])

    loops = [loop(c, p) for c, n, p in zip(clients, per_client, pauses, strict=True) for _ in range(n)]
    await asyncio.gather(watch(), *loops)
    stats = venue.stats()
    run.arrivals, run.violations, run.requests = venue.record, stats.violations, stats.requests
    return run


@contextlib.asynccontextmanager
async def pools_of(limiters: Sequence[LimiterBackend | None]) -> AsyncIterator[list[SessionPool]]:
    pools = [SessionPool(limiter=limiter, connector_limit=50) for limiter in limiters]
    for pool in pools:
        await pool.open()
    try:
        yield pools
    finally:
        for pool in pools:
            await pool.close()


@pytest.mark.parametrize("adaptive", [False, True], ids=["fixed-25ms", "adaptive"])
async def test_one_key_at_20_per_second_over_a_wan(adaptive: bool) -> None:
    limit = RateLimit(20, 1.0, adaptive=adaptive)
    async with (
        RecordingVenue(
            connex_portfolios=1, zoomex_accounts=0, seed=21, request_delay=WAN.request, response_delay=WAN.response
        ) as venue,
        pools_of([None]) as pools,
    ):
        creds = venue.connex_credentials[0]
        client = ConnexClient(creds, base_url=venue.base_url, pool=pools[0], limits={"assets": limit})
        started = time.monotonic()
        run = await hammer(venue, pools, [client], callers=20, seconds=9.0)
    utilization = run.utilization(creds.api_key, 20.0, started + 1.0)
    print(
        f"\n{limit}: {run.requests} requests, {run.violations} violations, {utilization:.1%}, margin {run.margin:.3f}"
    )
    if not adaptive:
        assert run.violations > 0  # 0-120 ms of jitter against 25 ms: the harness sees it
        return
    assert run.violations == 0
    assert run.margin > 0.1  # followed the network (0-120 ms), not the floor
    # 89% without a spike in sight, 84.6% at the straggler margin (179 ms), 86.3% measured alone; a
    # margin sized for the worst spike (250 + 120 ms) would allow 73%: that is what the bound catches,
    # with room for a loaded machine.
    assert utilization >= 0.8


@pytest.mark.parametrize("adaptive", [False, True], ids=["fixed-25ms", "adaptive"])
async def test_a_shared_host_limit_over_a_wan(adaptive: bool) -> None:
    # Zoomex's per-IP limit (600 / 5 s) scaled to 60 / 1 s: 12 accounts that could send 10/s each.
    limits = {"zoomex.ip": (60, 1.0), "zoomex.wallet": (10, 1.0)}
    host_limit = RateLimit(60, 1.0, adaptive=adaptive)
    async with (
        RecordingVenue(
            connex_portfolios=0,
            zoomex_accounts=12,
            seed=22,
            limits=limits,
            request_delay=WAN.request,
            response_delay=WAN.response,
        ) as venue,
        pools_of([None]) as pools,
    ):
        clients = [
            ZoomexClient(
                c,
                base_url=venue.base_url,
                pool=pools[0],
                host_limit=host_limit,
                limits={"wallet": RateLimit(10, 1.0, adaptive=adaptive)},
            )
            for c in venue.zoomex_credentials
        ]
        started = time.monotonic()
        run = await hammer(venue, pools, clients, callers=2, seconds=8.0)
    utilization = run.utilization("ip", 60.0, started + 1.0)
    print(f"\nhost {host_limit}: {run.requests} requests, {run.violations} violations, {utilization:.1%}")
    if not adaptive:
        assert run.violations > 0  # the venue answers the first with a ban: the circuit stops the rest
        return
    assert run.violations == 0
    # The straggler margin of 60 / 1 s is only J + 17 ms: about 87% (86.4% alone, 84.997% once in the
    # full suite on 4 busy workers). What this guards is a margin that follows the network, not the
    # worst spike: one covering 250 + 120 ms would allow 73%.
    assert utilization >= 0.83


async def test_on_loopback_the_adaptive_margin_stays_at_its_floor() -> None:
    # What adapting costs where the network is quiet: nothing, the margin never leaves 25 ms. Both
    # variants in one run, one after the other, for the utilization figures.
    figures = {}
    for adaptive in (True, False):
        limit = RateLimit(20, 1.0, adaptive=adaptive)
        async with (
            RecordingVenue(connex_portfolios=1, zoomex_accounts=0, seed=23) as venue,
            pools_of([None]) as pools,
        ):
            creds = venue.connex_credentials[0]
            client = ConnexClient(creds, base_url=venue.base_url, pool=pools[0], limits={"assets": limit})
            started = time.monotonic()
            run = await hammer(venue, pools, [client], callers=20, seconds=4.0)
            path = next(iter(pools[0].metrics.snapshot().paths.values()))
        figures[adaptive] = run.utilization(creds.api_key, 20.0, started + 1.0)
        assert run.violations == 0
        assert run.margin == limit.margin == 0.025
        assert path.spread_max < 0.025 and path.samples > 20  # measured, and under the floor
    print(f"\nloopback: adaptive {figures[True]:.1%}, fixed {figures[False]:.1%}")
    assert figures[True] >= 0.95


# -- two processes sharing a key through Redis, one of them a WAN away ------------------------------


async def two_routes_one_key(redis_url: str, namespace: str) -> tuple[Run, list[float]]:
    """Process A polls one key over the WAN route (2 loops, 0.3 s apart), process B flat out on loopback.

    B's requests arrive at once, A's up to 120 ms later (370 ms with a spike): booked with B's 25 ms
    margin, an A request followed by B's into the next window shares it with them.
    """
    async with (
        RecordingVenue(connex_portfolios=1, zoomex_accounts=0, seed=24, routes={"wan": WAN}) as venue,
        shared_limiters(redis_url, 2, namespace) as limiters,
        pools_of(limiters) as pools,
    ):
        creds: Credentials = venue.connex_credentials[0]
        make: Callable[[str, SessionPool], ConnexClient] = lambda url, pool: ConnexClient(  # noqa: E731
            creds, base_url=url, pool=pool
        )
        clients = [make(venue.route_url("wan"), pools[0]), make(venue.base_url, pools[1])]
        run = await hammer(venue, pools, clients, callers=[2, 10], seconds=9.0, pause=[0.3, 0.0])
        margins = [max(m.margin for p in pool.metrics.snapshot().paths.values() for m in p.margins) for pool in pools]
    return run, margins


async def test_two_processes_on_one_key_one_over_a_wan_the_widest_margin_wins(redis_url: str) -> None:
    run, (wan, loopback) = await two_routes_one_key(redis_url, "wan")
    print(f"\nwidest wins: {run.requests} requests, {run.violations} violations; margins {wan:.3f} / {loopback:.3f}")
    assert wan > 0.1 and loopback == 0.025  # each process measured its own route
    assert run.violations == 0


async def test_two_processes_on_one_key_without_the_widest_margin_break_the_window(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connex_async.redis_limits, "load_script", widest_wins_disabled)
    run, _ = await two_routes_one_key(redis_url, "own-margins")
    print(f"\neach its own margin: {run.requests} requests, {run.violations} violations")
    assert run.violations > 0
