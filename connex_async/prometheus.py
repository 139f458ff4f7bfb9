"""Prometheus metrics of a pool (and a poller), served at ``/metrics`` on the running event loop.

Needs the ``prometheus`` extra (``pip install 'connex-async[prometheus]'``); nothing else in the SDK
imports this module. ``connex-async poll --metrics-port PORT`` uses it, and so can a bot::

    from connex_async.prometheus import PrometheusExporter

    exporter = PrometheusExporter(pool, poller)   # reads them at each scrape; costs nothing per request
    await exporter.start(port=9464)               # http://127.0.0.1:9464/metrics
    ...
    await exporter.stop()

Every series is computed from :meth:`SessionPool.metrics.snapshot() <connex_async.metrics.Metrics.snapshot>`
and :meth:`Poller.stats() <connex_async.poller.Poller.stats>` when Prometheus scrapes, on the
event loop that owns them: no lock, no thread, no work per request. Histogram buckets are the pool's
own (powers of two from 0.1 ms to 105 s), so their counts are exact. Labels are ``venue``,
``endpoint`` and, for errors, ``error`` (the class name): never a portfolio label, so a fleet of
10,000 keys does not make 10,000 series. Round trips and margins (:mod:`connex_async.margins`) are
per ``venue`` and ``host``, margins also per distinct ``limit``: every key of one limit through one
host has the same margin, so they are one series.

==========================================  =========  ====================================================
metric                                      type       what
==========================================  =========  ====================================================
``connex_async_requests_total``             counter    HTTP attempts, retries included
``connex_async_request_errors_total``       counter    failed attempts, by ``error`` class
``connex_async_retries_total``              counter    attempts that were retries
``connex_async_cooldowns_total``            counter    rate-limit cooldowns imposed by the venue
``connex_async_late_sends_total``           counter    attempts written late after admission (charged)
``connex_async_send_lag_max_seconds``       gauge      the longest such admission-to-write delay
``connex_async_request_latency_seconds``    histogram  HTTP latency of each attempt
``connex_async_limiter_wait_seconds``       histogram  wait for the rate-limit slots of each attempt
``connex_async_round_trip_seconds``         gauge      recent round trips (write to headers) per ``venue``,
                                                       ``host``, by ``quantile`` (0.01, 0.99)
``connex_async_round_trip_spread_seconds``  gauge      their spread, ``kind``: ``p1_p99`` (J) or ``max``
                                                       (to the slowest of the last ~10 s: J_max)
``connex_async_limit_margin_seconds``       gauge      margin per ``venue``, ``host`` and ``limit`` (e.g.
                                                       ``20/1s``), ``kind``: ``current`` or ``floor``
``connex_async_limit_utilization_ratio``    gauge      the rate the current margin allows, of nominal
``connex_async_staleness_seconds``          gauge      age of the newest data per ``endpoint``, by
                                                       ``quantile`` over portfolios (0.5, 0.99, 1 = max)
``connex_async_polls_total``                counter    polls ended (``outcome``: ok / error)
``connex_async_updates_superseded_total``   counter    updates replaced before the consumer read them
``connex_async_portfolios``                 gauge      portfolios polled
``connex_async_quarantined_portfolios``     gauge      portfolios dropped after repeated auth failures
==========================================  =========  ====================================================
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from connex_async.metrics import HistogramSnapshot, MetricsSnapshot

if TYPE_CHECKING:
    from aiohttp import web
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

    from connex_async.poller import Poller
    from connex_async.pool import SessionPool

__all__ = ["PrometheusExporter"]

_INSTALL = "the Prometheus exporter needs prometheus_client: pip install 'connex-async[prometheus]'"
_QUANTILES = (0.5, 0.99, 1.0)


def _import_prometheus() -> None:
    try:
        import prometheus_client  # noqa: F401, PLC0415 - an optional extra, checked when first used
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc


class _Collector:
    """Builds every metric family from the pool's and the poller's counters at scrape time."""

    def __init__(self, pool: SessionPool, poller: Poller | None, prefix: str) -> None:
        self.pool = pool
        self.poller = poller
        self.prefix = prefix

    def collect(self) -> Iterator[Metric]:
        """Called by the registry at every scrape."""
        yield from self._pool_metrics()
        if self.poller is not None:
            yield from self._poller_metrics(self.poller)

    def _pool_metrics(self) -> Iterable[Metric]:
        from prometheus_client.core import (  # noqa: PLC0415 - optional extra
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        p, labels = self.prefix, ["venue", "endpoint"]
        requests = CounterMetricFamily(f"{p}_requests", "HTTP attempts, retries included.", labels=labels)
        errors = CounterMetricFamily(
            f"{p}_request_errors", "Failed HTTP attempts, by error class.", labels=[*labels, "error"]
        )
        retries = CounterMetricFamily(f"{p}_retries", "HTTP attempts that were retries.", labels=labels)
        cooldowns = CounterMetricFamily(f"{p}_cooldowns", "Rate-limit cooldowns imposed by the venue.", labels=labels)
        late = CounterMetricFamily(
            f"{p}_late_sends", "Attempts written late after their admission (charged to their limits).", labels=labels
        )
        lag = GaugeMetricFamily(
            f"{p}_send_lag_max_seconds", "Longest delay between an admission and its write.", labels=labels
        )
        latency = HistogramMetricFamily(f"{p}_request_latency_seconds", "HTTP latency of each attempt.", labels=labels)
        wait = HistogramMetricFamily(
            f"{p}_limiter_wait_seconds", "Wait for the rate-limit slots of each attempt.", labels=labels
        )
        snapshot = self.pool.metrics.snapshot()
        for (venue, endpoint), e in sorted(snapshot.endpoints.items()):
            key = [venue, endpoint]
            requests.add_metric(key, e.requests)
            for error, n in sorted(e.errors.items()):
                errors.add_metric([*key, error], n)
            retries.add_metric(key, e.retries)
            cooldowns.add_metric(key, e.cooldowns)
            late.add_metric(key, e.late_sends)
            lag.add_metric(key, e.send_lag_max)
            latency.add_metric(key, _buckets(e.latency), e.latency.total)
            wait.add_metric(key, _buckets(e.limiter_wait), e.limiter_wait.total)
        return (requests, errors, retries, cooldowns, late, lag, latency, wait, *self._path_metrics(snapshot))

    def _path_metrics(self, snapshot: MetricsSnapshot) -> Iterable[Metric]:
        from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415 - optional extra

        p, where = self.prefix, ["venue", "host"]
        round_trip = GaugeMetricFamily(
            f"{p}_round_trip_seconds", "Recent round trips, write to headers.", labels=[*where, "quantile"]
        )
        spread = GaugeMetricFamily(
            f"{p}_round_trip_spread_seconds",
            "Spread of recent round trips: p1_p99 (J) or max (to the slowest of ~10 s, J_max).",
            labels=[*where, "kind"],
        )
        margin = GaugeMetricFamily(
            f"{p}_limit_margin_seconds",
            "Rate-limit margin per limit through a host: current (adapted to the round trips) or floor.",
            labels=[*where, "limit", "kind"],
        )
        utilization = GaugeMetricFamily(
            f"{p}_limit_utilization_ratio",
            "Sustained rate the current margin allows, as a fraction of the limit's nominal rate.",
            labels=[*where, "limit"],
        )
        for (venue, host), path in sorted(snapshot.paths.items()):
            round_trip.add_metric([venue, host, "0.01"], path.round_trip_low)
            round_trip.add_metric([venue, host, "0.99"], path.round_trip_high)
            spread.add_metric([venue, host, "p1_p99"], path.spread)
            spread.add_metric([venue, host, "max"], path.spread_max)
            for m in path.margins:
                margin.add_metric([venue, host, m.limit, "current"], m.margin)
                margin.add_metric([venue, host, m.limit, "floor"], m.floor)
                utilization.add_metric([venue, host, m.limit], m.utilization)
        return (round_trip, spread, margin, utilization)

    def _poller_metrics(self, poller: Poller) -> Iterable[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: PLC0415

        p, stats = self.prefix, poller.stats()
        by_endpoint: defaultdict[str, list[float]] = defaultdict(list)
        for (_, endpoint), age in stats.staleness.items():
            by_endpoint[endpoint].append(age)
        staleness = GaugeMetricFamily(
            f"{p}_staleness_seconds",
            "Seconds since the newest data of each portfolio, by endpoint; quantile over portfolios (1 = the stalest).",
            labels=["endpoint", "quantile"],
        )
        for endpoint, ages in sorted(by_endpoint.items()):
            ages.sort()
            for q in _QUANTILES:
                staleness.add_metric([endpoint, f"{q:g}"], ages[min(len(ages) - 1, int(q * len(ages)))])
        polls = CounterMetricFamily(f"{p}_polls", "Polls ended, by outcome.", labels=["outcome"])
        polls.add_metric(["ok"], stats.polls_ended - stats.polls_failed)
        polls.add_metric(["error"], stats.polls_failed)
        superseded = CounterMetricFamily(
            f"{p}_updates_superseded", "Updates replaced by a newer one before the consumer read them."
        )
        superseded.add_metric([], stats.superseded)
        portfolios = GaugeMetricFamily(f"{p}_portfolios", "Portfolios polled.", value=stats.portfolios)
        quarantined = GaugeMetricFamily(
            f"{p}_quarantined_portfolios",
            "Portfolios dropped after repeated authentication failures.",
            value=len(stats.quarantined),
        )
        return (staleness, polls, superseded, portfolios, quarantined)


def _buckets(histogram: HistogramSnapshot) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs, ``+Inf`` last."""
    if not histogram.counts:
        return [("+Inf", 0)]
    return [("+Inf" if math.isinf(bound) else repr(bound), n) for bound, n in histogram.cumulative()]


class PrometheusExporter:
    """The metrics of ``pool`` (and of ``poller``, if given) in the Prometheus text format.

    :meth:`render` gives the text; :meth:`start` serves it at ``/metrics`` on the running event loop
    (an aiohttp server, no thread). Series are named ``<prefix>_...`` (see the module docstring).
    Pass ``registry`` to add them to a ``prometheus_client.CollectorRegistry`` of your own.
    """

    def __init__(
        self,
        pool: SessionPool,
        poller: Poller | None = None,
        *,
        prefix: str = "connex_async",
        registry: CollectorRegistry | None = None,
    ) -> None:
        _import_prometheus()
        from prometheus_client import CollectorRegistry  # noqa: PLC0415 - optional extra

        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.registry.register(_Collector(pool, poller, prefix))
        self._runner: web.AppRunner | None = None

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """``(body, content type)`` for a scrape whose ``Accept`` header is ``accept`` (text by default)."""
        from prometheus_client.exposition import choose_encoder  # noqa: PLC0415 - optional extra

        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def text(self) -> str:
        """The Prometheus text format, as a string."""
        return self.render()[0].decode()

    async def start(self, host: str = "127.0.0.1", port: int = 9464) -> int:
        """Serve ``GET /metrics`` on ``host:port`` (``port=0``: any free port); returns the port bound."""
        from aiohttp import web  # noqa: PLC0415 - only a serving exporter needs the server side

        if self._runner is not None:
            raise RuntimeError("the exporter is already serving")
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        return int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        from aiohttp import web  # noqa: PLC0415

        body, content_type = self.render(request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})
