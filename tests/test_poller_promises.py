"""The Poller's promises (README, "Fan-out polling"), observed where a user sees them: when polls
arrive at a real server, and what the Update stream holds.

Each test fails when the promise it names breaks (``make mutate``: ``tools/breakages.toml``). Their
bounds leave room for a machine twice as slow: no `timing` mark (they may run beside any other).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from aiohttp import web
from poller_helpers import collect as consume
from venue_checks import FAST_RETRY
from wire_server import Arrival, RecordingServer, bounded

from connex_async import (
    AuthenticationError,
    ConnexClient,
    Credentials,
    PollCancelledError,
    Poller,
    RateLimit,
    SessionPool,
    ZoomexClient,
)
from connex_async.testing import Fault, SimulatedVenue

# Never paces these polls, nor widens after a slow one (adaptive margins): the Poller is under test.
FAST = RateLimit(1000, 1.0, adaptive=False)


def keys(n: int) -> list[Credentials]:
    return [Credentials(f"cx-key-{i:04d}", f"cx-secret-{i:04d}", label=f"cx-{i:04d}") for i in range(n)]


def densest(times: list[float], width: float) -> int:
    """The most of ``times`` inside any window ``[t, t + width)``."""
    ordered = sorted(times)
    return max((sum(1 for u in ordered[i:] if u < t + width) for i, t in enumerate(ordered)), default=0)


# -- phases --------------------------------------------------------------------------------------


async def test_first_polls_are_spread_over_the_interval_of_each_endpoint() -> None:
    server = RecordingServer()
    async with server, SessionPool() as pool:
        clients = [ConnexClient(c, base_url=server.base_url, pool=pool) for c in keys(40)]
        poller = Poller(clients, assets_every=1.0, positions_every=1.0)
        async with poller:
            await server.wait_for(80, within=20)
    for suffix in ("/assets", "/position"):
        first = [server.of(c.api_key, suffix)[0].t for c in keys(40)]
        # The n-th of 40 starts at n/40 of the interval: 0.975 s from the first to the last ...
        assert max(first) - min(first) >= 0.7, suffix
        # ... about 4 in any 0.1 s (a herd would put all 40 in one).
        assert densest(first, 0.1) <= 10, (suffix, densest(first, 0.1))


# -- overruns ------------------------------------------------------------------------------------


async def test_a_poll_that_overruns_its_interval_runs_once_more_not_once_per_missed_tick() -> None:
    async def answer(request: web.Request, arrival: Arrival) -> None:
        if arrival.index == 1:
            await asyncio.sleep(1.0)  # the second poll overruns five 0.2 s intervals

    (creds,) = keys(1)
    server = RecordingServer(answer)
    async with server, SessionPool() as pool:
        client = ConnexClient(creds, base_url=server.base_url, pool=pool, limits={"assets": FAST})
        poller = Poller([client], assets_every=0.2, positions_every=None)
        async with poller:
            await consume(poller, 2.2)
    times = server.times(creds.api_key)
    slow_end = times[1] + 1.0
    # Coalesced: once at the end of the slow poll, then 0.2 s and 0.4 s later. Queued behind itself,
    # it would first run the five missed ticks back to back (seven in the same half second).
    assert len([t for t in times if slow_end - 0.01 <= t < slow_end + 0.5]) <= 3, [t - slow_end for t in times]
    assert server.peak_in_flight == 1  # never a second poll of the same job while one runs


# -- polls in flight: each endpoint group's share, the bound -------------------------------------


async def test_an_endpoint_stuck_behind_its_limit_never_starves_the_others() -> None:
    async with (
        SimulatedVenue(connex_portfolios=10, zoomex_accounts=30, seed=12) as venue,
        SessionPool(connector_limit=12, timeout=60.0) as pool,  # 3 endpoint groups: 4 polls each guaranteed
    ):
        connex = [ConnexClient(c, base_url=venue.base_url, pool=pool) for c in venue.connex_credentials]
        # Every wallet behind a host limit that admits one request a minute, as behind an exhausted
        # 600 / 5 s limit: its polls wait in the limiter, holding poller slots but no connection.
        zoomex = [
            ZoomexClient(c, base_url=venue.base_url, pool=pool, host_limit=RateLimit(1, 60.0))
            for c in venue.zoomex_credentials
        ]
        poller = Poller([*connex, *zoomex], assets_every=0.25, positions_every=0.25, wallet_every=0.1, stop_timeout=0.2)
        async with poller:
            await consume(poller, 0.8)  # the wallets have taken every slot they could
            late = await consume(poller, 1.0)
    done = Counter(u.endpoint for u in late if u.ok)
    # Ten portfolios each poll both ConneX endpoints 4 times a second: about 40 of each.
    assert done["assets"] >= 20 and done["positions"] >= 20, done
    assert done["wallet"] == 0


async def test_requests_on_the_wire_never_exceed_connector_limit() -> None:
    async def answer(request: web.Request, arrival: Arrival) -> None:
        await asyncio.sleep(0.1)

    server = RecordingServer(answer)
    async with server, SessionPool(connector_limit=6) as pool:
        limits = {"assets": FAST, "positions": FAST}
        clients = [ConnexClient(c, base_url=server.base_url, pool=pool, limits=limits) for c in keys(30)]
        async with Poller(clients, assets_every=0.1, positions_every=0.1) as poller:
            await consume(poller, 1.0)
    assert 3 <= server.peak_in_flight <= 6


# -- quarantine ----------------------------------------------------------------------------------


async def test_a_key_failing_authentication_three_times_in_a_row_is_quarantined_by_default() -> None:
    async with (
        SimulatedVenue(connex_portfolios=3, zoomex_accounts=0, seed=5) as venue,
        SessionPool(retry=FAST_RETRY) as pool,
    ):
        bad, *good = venue.connex_credentials
        venue.inject(Fault("auth_error", api_key=bad.api_key))  # every request of this key, from now on
        clients = [ConnexClient(c, base_url=venue.base_url, pool=pool) for c in venue.connex_credentials]
        async with Poller(clients, assets_every=0.1, positions_every=None) as poller:  # the default quarantine
            updates = await consume(poller, 1.5)
        arrivals = venue.stats().get("connex", "assets", bad.api_key)
    of_bad = [u for u in updates if u.portfolio == bad.label]
    assert [u.quarantined for u in of_bad] == [False, False, True]
    assert all(isinstance(u.error, AuthenticationError) for u in of_bad)
    assert arrivals is not None and arrivals.requests == 3  # then left alone
    assert {label for label, _ in poller.quarantined} == {bad.label}
    assert {u.portfolio for u in updates if u.ok} == {c.label for c in good}


async def test_a_success_between_authentication_failures_starts_the_count_again() -> None:
    async with (
        SimulatedVenue(connex_portfolios=1, zoomex_accounts=0, seed=6) as venue,
        SessionPool(retry=FAST_RETRY) as pool,
    ):
        (creds,) = venue.connex_credentials
        venue.script(creds.api_key, ["auth_error", "auth_error", "ok"] * 3, endpoint="assets")
        client = ConnexClient(creds, base_url=venue.base_url, pool=pool)
        async with Poller([client], assets_every=0.1, positions_every=None) as poller:
            updates = await consume(poller, 1.6)
    assert [u.ok for u in updates[:9]] == [False, False, True] * 3
    assert not any(u.quarantined for u in updates)
    assert len(updates) >= 11 and updates[-1].ok  # still polled after the scripted failures
    assert poller.quarantined == {}


# -- one update per poll -------------------------------------------------------------------------


async def test_every_poll_that_starts_ends_in_exactly_one_update_even_when_stopped() -> None:
    async def answer(request: web.Request, arrival: Arrival) -> None:
        await asyncio.sleep(30)  # every poll is still in flight when the poller stops

    server = RecordingServer(answer)
    labels = [c.label for c in keys(20)]
    async with server, SessionPool(timeout=60.0) as pool:
        clients = [ConnexClient(c, base_url=server.base_url, pool=pool) for c in keys(20)]
        poller = Poller(clients, assets_every=0.5, positions_every=None, stop_timeout=0.2)
        await poller.start()
        await server.wait_for(20)  # one poll of each job on the wire (a job never runs two)
        started = time.monotonic()
        await bounded(poller.stop(), 5)
        stopped_in = time.monotonic() - started
        updates = [u async for u in poller]
    assert stopped_in < 0.2 + 1.5  # the grace (stop_timeout), then the rest is cancelled
    assert len(server.arrivals) == 20
    assert sorted(u.portfolio for u in updates) == labels
    assert all(isinstance(u.error, PollCancelledError) for u in updates)


async def test_every_finished_poll_is_one_update() -> None:
    server = RecordingServer()
    async with server, SessionPool() as pool:
        clients = [ConnexClient(c, base_url=server.base_url, pool=pool, limits={"assets": FAST}) for c in keys(10)]
        poller = Poller(clients, assets_every=0.1, positions_every=None)
        async with poller:
            updates = await consume(poller, 1.0)
        updates += [u async for u in poller]
        missed = poller.stats().superseded  # newest wins: what a slow reader missed is counted
    polls = Counter(a.key for a in server.arrivals)
    got = Counter(u.portfolio for u in updates)
    assert sum(polls.values()) >= 80
    assert all(u.ok for u in updates)
    for creds in keys(10):
        assert got[creds.label] <= polls[creds.api_key]
    assert sum(got.values()) + missed == sum(polls.values())
    assert missed <= sum(polls.values()) // 10
