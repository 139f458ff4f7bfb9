"""The fan-out poller against the simulator: coverage, staleness, backpressure, lifecycle."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import Any

import msgspec
import pytest
from poller_helpers import collect
from venue_checks import FAST_RETRY

from connex_async import ConnexClient, Credentials, SessionPool, ZoomexClient
from connex_async.client import BaseClient
from connex_async.errors import AuthenticationError
from connex_async.poller import Poller, PollerStats
from connex_async.testing import Fault, SimulatedVenue


def clients_for(venue: SimulatedVenue, pool: SessionPool) -> list[BaseClient]:
    out: list[BaseClient] = [ConnexClient(c, base_url=venue.base_url, pool=pool) for c in venue.connex_credentials]
    out += [ZoomexClient(c, base_url=venue.base_url, pool=pool) for c in venue.zoomex_credentials]
    return out


def staleness_quantile(stats: PollerStats, endpoint: str, q: float) -> float:
    values = sorted(v for (_, ep), v in stats.staleness.items() if ep == endpoint)
    return values[min(len(values) - 1, int(q * len(values)))]


@pytest.mark.timing
async def test_a_thousand_portfolios_every_endpoint_fresh_no_violations() -> None:
    async with (
        SimulatedVenue(connex_portfolios=900, zoomex_accounts=100, seed=3) as venue,
        SessionPool(connector_limit=100, retry=FAST_RETRY) as pool,
    ):
        clients = clients_for(venue, pool)
        intervals = {"assets": 2.0, "positions": 4.0, "wallet": 2.0}
        poller = Poller(clients, assets_every=2.0, positions_every=4.0, wallet_every=2.0)
        async with poller:
            await collect(poller, 3.0)  # warm-up: every phase has fired once
            samples: list[PollerStats] = []
            updates = []
            for _ in range(7):
                updates += await collect(poller, 1.0)
                samples.append(poller.stats())
    seen = {(u.portfolio, u.endpoint) for u in updates if u.ok}
    expected = {(c.label, e) for c in clients for e in c.poll_jobs()}
    assert expected <= seen, f"missing {len(expected - seen)} of {len(expected)}"
    assert all(u.ok for u in updates), [str(u.error) for u in updates if not u.ok][:3]
    assert venue.violations == 0
    # README: staleness within 2x the interval, per endpoint, at every moment sampled.
    worst = {e: max(staleness_quantile(s, e, 0.99) for s in samples) for e in intervals}
    for endpoint, interval in intervals.items():
        assert worst[endpoint] <= 2 * interval, (endpoint, worst)
    print(
        f"\n1,000 portfolios: {len(updates) / 7:.0f} updates/s, violations {venue.violations}, worst staleness p99 "
        + ", ".join(f"{e} {worst[e]:.2f} s ({worst[e] / intervals[e]:.2f}x)" for e in intervals)
    )


async def test_slow_consumer_memory_bounded_newest_wins() -> None:
    async with SimulatedVenue(connex_portfolios=50, zoomex_accounts=0, seed=1) as venue, SessionPool() as pool:
        poller = Poller(clients_for(venue, pool), assets_every=0.2, positions_every=0.5)
        async with poller:
            await asyncio.sleep(1.0)  # nobody reads
            tracemalloc.start()
            try:
                await asyncio.sleep(1.0)  # steady state: every (portfolio, endpoint) has a pending update
                gc.collect()
                steady = tracemalloc.get_traced_memory()[0]
                dropped_before = poller.stats().superseded
                await asyncio.sleep(2.0)  # still nobody reads: newest wins, nothing piles up
                gc.collect()
                grown = tracemalloc.get_traced_memory()[0] - steady
            finally:
                tracemalloc.stop()
            one_update = sum(len(msgspec.json.encode(u.data)) for u in list(poller._latest.values())[:10]) // 10
            dropped = poller.stats().superseded - dropped_before
            stats = poller.stats()
            assert stats.pending_updates <= 100  # one per (portfolio, endpoint), however long we wait
            assert stats.superseded > 100
            pending = poller.drain()
        assert len(pending) == stats.pending_updates
        assert len({(u.portfolio, u.endpoint) for u in pending}) == len(pending)
    # A queue would have kept every dropped update; newest-wins keeps a fixed set (noise: the
    # simulator's payload cache changes every second, pending updates differ in size).
    assert dropped > 200
    assert grown < max(3_000_000, dropped * one_update // 4), (grown, dropped, one_update)


async def test_add_and_remove_while_running() -> None:
    async with SimulatedVenue(connex_portfolios=6, zoomex_accounts=0, seed=2) as venue, SessionPool() as pool:
        first, second, *_ = clients_for(venue, pool)
        poller = Poller([first], assets_every=0.2, positions_every=None)
        async with poller:
            await collect(poller, 0.5)
            poller.add(second)
            poller.remove(first)
            await asyncio.sleep(0.3)  # anything of `first` still in flight ends now
            poller.drain()
            late = await collect(poller, 0.8)
            with pytest.raises(ValueError, match="already polled"):
                poller.add(second)
        assert {u.portfolio for u in late} == {second.label}
        assert poller.stats().portfolios == 1


async def test_bad_key_among_good_ones_is_quarantined_once() -> None:
    async with (
        SimulatedVenue(connex_portfolios=10, zoomex_accounts=0, seed=5) as venue,
        SessionPool(retry=FAST_RETRY) as pool,
    ):
        clients = clients_for(venue, pool)
        bad = ConnexClient(Credentials("not-a-real-key", "nope", label="bad-desk"), base_url=venue.base_url, pool=pool)
        poller = Poller([*clients, bad], assets_every=0.2, positions_every=None, quarantine_after=3)
        async with poller:
            updates = await collect(poller, 2.0)
        bad_updates = [u for u in updates if u.portfolio == "bad-desk"]
        assert all(isinstance(u.error, AuthenticationError) for u in bad_updates)
        assert sum(u.quarantined for u in bad_updates) == 1
        assert ("bad-desk", "assets") in poller.quarantined
        good = {u.portfolio for u in updates if u.ok}
        assert good == {c.label for c in clients}
        assert venue.stats().for_key("not-a-real-key")  # it was tried, then left alone
        tries = sum(s.requests for s in venue.stats().for_key("not-a-real-key"))
        assert tries == 3


@pytest.mark.timing
async def test_failing_key_never_delays_the_others() -> None:
    async with (
        SimulatedVenue(connex_portfolios=10, zoomex_accounts=0, seed=6) as venue,
        SessionPool(retry=FAST_RETRY, timeout=0.5) as pool,
    ):
        clients = clients_for(venue, pool)
        venue.inject(Fault("http_503", api_key=clients[0].credentials.api_key))
        poller = Poller(clients, assets_every=0.3, positions_every=None)
        async with poller:
            updates = await collect(poller, 2.0)
        stats = poller.stats()
    others = [u for u in updates if u.portfolio != clients[0].label]
    assert all(u.ok for u in others)
    assert max(v for (label, _), v in stats.staleness.items() if label != clients[0].label) < 0.9
    assert any(not u.ok for u in updates if u.portfolio == clients[0].label)


def test_interval_validation() -> None:
    with pytest.raises(ValueError, match="assets_every"):
        Poller([], assets_every=0)


async def test_update_fields(monkeypatch: Any) -> None:
    async with SimulatedVenue(connex_portfolios=1, zoomex_accounts=1, seed=8) as venue, SessionPool() as pool:
        poller = Poller(clients_for(venue, pool), assets_every=1.0, positions_every=1.0, wallet_every=1.0)
        async with poller:
            updates = await collect(poller, 1.5)
    by = {(u.venue, u.endpoint): u for u in updates}
    assert set(by) == {("connex", "assets"), ("connex", "positions"), ("zoomex", "wallet")}
    for u in by.values():
        assert u.ok and u.attempts >= 1 and u.latency > 0 and u.fetched_at > 0


class _Gauge:
    """Counts polls running per group, and the most ever running (per group and in all)."""

    def __init__(self) -> None:
        self.now: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.peak_total = 0
        self.ended: dict[str, int] = {}

    async def run(self, group: str, work: Any) -> None:
        self.now[group] = self.now.get(group, 0) + 1
        self.peak[group] = max(self.peak.get(group, 0), self.now[group])
        self.peak_total = max(self.peak_total, sum(self.now.values()))
        try:
            await work
        finally:
            self.now[group] -= 1
            self.ended[group] = self.ended.get(group, 0) + 1


def _fake_clients(
    pool: SessionPool, gauge: _Gauge, connex: int, zoomex: int, wallet_gate: asyncio.Event, connex_poll: float = 0.005
) -> list[Any]:
    """Clients whose polls only sleep ``connex_poll`` s (ConneX) or wait for ``wallet_gate`` (Zoomex): no HTTP."""

    class FakeConnex(ConnexClient):
        def poll_jobs(self) -> dict[str, Any]:
            return {
                "assets": lambda: gauge.run("assets", asyncio.sleep(connex_poll)),
                "positions": lambda: gauge.run("positions", asyncio.sleep(connex_poll)),
            }

    class FakeZoomex(ZoomexClient):
        def poll_jobs(self) -> dict[str, Any]:
            return {"wallet": lambda: gauge.run("wallet", wallet_gate.wait())}

    url = "http://127.0.0.1:9"
    out: list[Any] = [
        FakeConnex(Credentials(f"{i:032x}", "s" * 64, label=f"cx{i}"), base_url=url, pool=pool) for i in range(connex)
    ]
    out += [
        FakeZoomex(Credentials(f"{i:018X}", "s" * 36, label=f"zx{i}"), base_url=url, pool=pool) for i in range(zoomex)
    ]
    return out


async def test_polls_in_flight_stay_within_the_connections_plus_the_shares_owed() -> None:
    # 12 connections, 3 groups: each group is guaranteed 12 // 3 = 4 polls. Every wallet poll hangs
    # (as behind an exhausted host limit) and ConneX polls take 50 ms, so every group wants more
    # than its share. The wallets borrow the slots the others leave idle; once they hold them, each
    # ConneX group still starts its 4. Polls in flight are therefore bounded by connector_limit plus
    # the shares of the groups that were owed theirs: 12 + 2 * 4 (README, "Fan-out polling").
    gauge, gate = _Gauge(), asyncio.Event()
    pool = SessionPool(connector_limit=12)
    clients = _fake_clients(pool, gauge, connex=30, zoomex=30, wallet_gate=gate, connex_poll=0.05)
    poller = Poller(clients, assets_every=0.05, positions_every=0.05, wallet_every=0.05)
    async with poller:
        await asyncio.sleep(0.5)
        ended_before = dict(gauge.ended)
        await asyncio.sleep(0.5)
        ended = dict(gauge.ended)
        gate.set()
    assert ended.get("wallet", 0) == 0
    assert gauge.peak_total <= 12 + 2 * 4, gauge.peak
    assert gauge.peak["assets"] >= 4 and gauge.peak["positions"] >= 4, gauge.peak
    # In the second half, with the wallets holding what they took, each ConneX group still runs its
    # 4 polls of 50 ms: about 40 polls each.
    for group in ("assets", "positions"):
        assert ended[group] - ended_before[group] >= 20, (group, ended, ended_before)


async def test_an_endpoint_alone_borrows_the_idle_slots() -> None:
    gauge, gate = _Gauge(), asyncio.Event()
    pool = SessionPool(connector_limit=12)
    clients = _fake_clients(pool, gauge, connex=0, zoomex=40, wallet_gate=gate)
    clients += _fake_clients(pool, gauge, connex=5, zoomex=0, wallet_gate=gate)  # positions stay idle
    poller = Poller(clients, assets_every=None, positions_every=60.0, wallet_every=0.05)
    async with poller:
        await asyncio.sleep(0.3)
        gate.set()
    # Share is 12 // 2 = 6, but with positions idle the wallets may use all 12 connections' worth.
    assert gauge.peak["wallet"] == 12
