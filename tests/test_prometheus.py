"""The Prometheus exporter: every series from the pool's and the poller's own counters, served on the loop."""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from venue_checks import FAST_RETRY

from connex_async import BaseClient, ConnexClient, Poller, RateLimit, SessionPool, ZoomexClient
from connex_async.prometheus import PrometheusExporter
from connex_async.testing import SimulatedVenue
from connex_async.testing.network import Delay, Route


def samples(text: str) -> dict[str, list[Sample]]:
    """Sample lists by family name (``_total`` and ``_bucket`` suffixes belong to their family)."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(found: dict[str, list[Sample]], family: str, name: str, **labels: str) -> float:
    matching = [
        s.value for s in found[family] if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matching) == 1, (name, labels, found[family])
    return matching[0]


async def test_every_series_matches_the_pool_and_the_poller() -> None:
    async with (
        SimulatedVenue(connex_portfolios=4, zoomex_accounts=2, seed=1) as venue,
        SessionPool(retry=FAST_RETRY) as pool,
    ):
        key = venue.connex_credentials[0].api_key
        venue.script(key, ["http_503", "http_502_html", "ok"], endpoint="assets")
        clients: list[BaseClient] = [
            ConnexClient(c, base_url=venue.base_url, pool=pool) for c in venue.connex_credentials
        ]
        clients += [ZoomexClient(c, base_url=venue.base_url, pool=pool) for c in venue.zoomex_credentials]
        poller = Poller(clients, assets_every=0.2, positions_every=0.2, wallet_every=0.2)
        exporter = PrometheusExporter(pool, poller)
        async with poller:
            await asyncio.sleep(1.0)
            text = exporter.text()
            snapshot = pool.metrics.snapshot()
    found = samples(text)
    assets = snapshot.endpoints[("connex", "assets")]
    assert value(found, "connex_async_requests", "connex_async_requests_total", venue="connex", endpoint="assets") >= (
        assets.requests - 20  # the snapshot was taken a moment after the scrape
    )
    errors = {s.labels["error"]: s.value for s in found["connex_async_request_errors"]}
    assert errors == {"ServerError": 2.0}  # the 503 and the 502 page, by class
    assert value(found, "connex_async_retries", "connex_async_retries_total", venue="connex", endpoint="assets") == 2
    for family in ("connex_async_request_latency_seconds", "connex_async_limiter_wait_seconds"):
        buckets = [s for s in found[family] if s.name == f"{family}_bucket" and s.labels["endpoint"] == "wallet"]
        counts = [s.value for s in buckets]
        assert counts == sorted(counts) and buckets[-1].labels["le"] == "+Inf"
        assert counts[-1] == value(found, family, f"{family}_count", venue="zoomex", endpoint="wallet") > 0
        assert len(buckets) == 22  # powers of two from 0.1 ms to 105 s, then +Inf
    staleness = {(s.labels["endpoint"], s.labels["quantile"]) for s in found["connex_async_staleness_seconds"]}
    assert staleness == {(e, q) for e in ("assets", "positions", "wallet") for q in ("0.5", "0.99", "1")}
    assert value(found, "connex_async_portfolios", "connex_async_portfolios") == 6
    assert value(found, "connex_async_polls", "connex_async_polls_total", outcome="ok") > 0
    for family in ("connex_async_cooldowns", "connex_async_late_sends", "connex_async_send_lag_max_seconds"):
        assert found[family], family
    assert "cx-0001" not in text  # no per-portfolio series


async def test_round_trips_and_margins_per_host_and_limit_not_per_key() -> None:
    wan = Route(request=Delay(jitter=0.12), response=Delay(jitter=0.01))
    async with (
        SimulatedVenue(connex_portfolios=30, zoomex_accounts=0, seed=2, routes={"wan": wan}) as venue,
        SessionPool() as pool,
    ):
        clients = [ConnexClient(c, base_url=venue.route_url("wan"), pool=pool) for c in venue.connex_credentials]
        clients.append(ConnexClient(venue.connex_credentials[0], base_url=venue.base_url, pool=pool))
        for _ in range(2):
            await asyncio.gather(*(c.get_assets() for c in clients))
        text = PrometheusExporter(pool).text()
        snapshot = pool.metrics.snapshot()
        wan_host, loopback = venue.route_url("wan")[7:], venue.base_url[7:]
    found = samples(text)
    where = {"venue": "connex", "host": wan_host}
    path = snapshot.paths[("connex", wan_host)]
    margins = {
        (s.labels["host"], s.labels["limit"], s.labels["kind"]): s.value
        for s in found["connex_async_limit_margin_seconds"]
    }
    # 30 keys through the WAN, one of them also on loopback: one series per host and limit, widened.
    # The key on both follows the wider host, so no scope follows loopback's margin: only its round trips.
    assert set(margins) == {(wan_host, "20/1s", "current"), (wan_host, "20/1s", "floor")}
    assert margins[wan_host, "20/1s", "current"] == path.margins[0].margin > 0.05
    assert margins[wan_host, "20/1s", "floor"] == 0.025
    hosts = {s.labels["host"] for s in found["connex_async_round_trip_seconds"]}
    assert hosts == {wan_host, loopback}
    family = "connex_async_round_trip_spread_seconds"
    assert value(found, family, family, **where, kind="max") == path.spread_max
    high = value(found, "connex_async_round_trip_seconds", "connex_async_round_trip_seconds", **where, quantile="0.99")
    assert 0.05 < high <= 0.14
    utilization = value(
        found, "connex_async_limit_utilization_ratio", "connex_async_limit_utilization_ratio", **where, limit="20/1s"
    )
    assert utilization == pytest.approx(RateLimit(20, 1.0).with_margin(path.margins[0].margin).utilization)


async def test_start_serves_metrics_on_the_running_loop_and_stop_frees_the_port() -> None:
    async with SessionPool() as pool:
        exporter = PrometheusExporter(pool)
        port = await exporter.start(port=0)
        try:
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                assert "# TYPE connex_async_requests_total counter" in await resp.text()
            with pytest.raises(RuntimeError, match="already serving"):
                await exporter.start(port=0)
        finally:
            await exporter.stop()
        await exporter.stop()  # idempotent
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics"):
                pass


def test_without_prometheus_client_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if the extra were not installed
    with pytest.raises(ImportError, match=r"pip install 'connex-async\[prometheus\]'"):
        PrometheusExporter(SessionPool())
