"""A throughput run: many portfolios, every endpoint, as fast as the rate limits allow.

It polls ConneX assets + positions and Zoomex wallets for ``--portfolios`` + ``--zoomex`` keys at
short intervals, then prints requests/s, HTTP latency p50/p99, retries, rate-limit cooldowns and
the simulator's count of rate-limit window violations (which must be 0; the exit status is 1
otherwise).

It also shows the Prometheus exporter that ``connex-async poll --metrics-port`` uses:
``PrometheusExporter(pool, poller)`` reads the pool's and the poller's counters at each scrape, and
``--metrics-port PORT`` serves them at ``http://127.0.0.1:PORT/metrics`` while the run lasts; the
final exposition text is printed at the end either way. It needs the ``prometheus`` extra
(``pip install 'connex-async[prometheus]'``; the test extra of a clone includes it).

How to run it: from a clone, ``make demo`` (or ``make test``) sets up ``.venv``; use its
interpreter, ``.venv/bin/python examples/throughput.py`` (plain ``python`` works once the virtualenv
is activated, or wherever connex-async is installed).

Run it against the built-in simulator (no credentials, no network)::

    .venv/bin/python examples/throughput.py --portfolios 500 --zoomex 50 --duration 10 --metrics-port 9464

Run it against a ``connex-async serve`` simulator (keys from the file it wrote)::

    .venv/bin/connex-async serve --portfolios 500 --port 8080 --credentials-out creds.json &
    .venv/bin/python examples/throughput.py --base-url http://127.0.0.1:8080 --credentials creds.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import urllib.request
from collections.abc import AsyncIterator

from connex_async import (
    BaseClient,
    ConfigError,
    ConnexClient,
    Credentials,
    Poller,
    SessionPool,
    ZoomexClient,
    load_portfolios,
)
from connex_async.prometheus import PrometheusExporter
from connex_async.testing import SimulatedVenue

Keys = list[tuple[str, Credentials]]  # (venue, credentials)


@contextlib.asynccontextmanager
async def venue(args: argparse.Namespace, keys: Keys) -> AsyncIterator[tuple[str, Keys, SimulatedVenue | None]]:
    """``(base_url, keys, simulator)``: the given venue and keys, or an in-process simulator."""
    if args.base_url:
        yield args.base_url, keys, None
        return
    async with SimulatedVenue(connex_portfolios=args.portfolios, zoomex_accounts=args.zoomex, seed=2) as sim:
        keys = [("connex", c) for c in sim.connex_credentials] + [("zoomex", c) for c in sim.zoomex_credentials]
        yield sim.base_url, keys, sim


def remote_violations(base_url: str) -> int | None:
    """Violations counted by a ``connex-async serve`` simulator (``None`` for a real venue)."""
    try:
        with urllib.request.urlopen(f"{base_url}/_sim/stats", timeout=5) as response:
            return int(json.load(response)["violations"])
    except (OSError, ValueError, KeyError):
        return None


async def main(args: argparse.Namespace, keys: Keys) -> int:
    async with venue(args, keys) as (base_url, polled, simulator), SessionPool(connector_limit=200) as pool:
        clients: list[BaseClient] = [
            ConnexClient(creds, base_url=base_url, pool=pool)
            if venue_name == "connex"
            else ZoomexClient(creds, base_url=args.zoomex_url or base_url, pool=pool)
            for venue_name, creds in polled
        ]
        # Assets 4/s (limit 20/s), positions 2/s (limit 300/min), wallets 4/s (limit 10/s per key,
        # 600 per 5 s per IP): beyond the IP limit the limiter, not the venue, says "wait".
        poller = Poller(clients, assets_every=0.25, positions_every=0.5, wallet_every=0.25)
        exporter = PrometheusExporter(pool, poller)
        if args.metrics_port is not None:
            port = await exporter.start(port=args.metrics_port)
            print(f"Prometheus metrics at http://127.0.0.1:{port}/metrics", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            async with poller:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(args.duration):
                        async for _update in poller:
                            pass  # a real consumer would store the data; here only the metrics matter
        finally:
            await exporter.stop()
        elapsed = time.monotonic() - started
        exposition = exporter.text()
        violations = simulator.stats().violations if simulator else await asyncio.to_thread(remote_violations, base_url)
    print(exposition)
    metrics = pool.metrics.snapshot()
    print(f"{'venue/endpoint':<18} {'requests':>9} {'retries':>8} {'p50 ms':>8} {'p99 ms':>8} {'wait p99 ms':>12}")
    for (venue_name, endpoint), e in sorted(metrics.endpoints.items()):
        print(
            f"{venue_name + '/' + endpoint:<18} {e.requests:>9} {e.retries:>8} {e.latency_p50 * 1000:>8.1f} "
            f"{e.latency_p99 * 1000:>8.1f} {e.limiter_wait_p99 * 1000:>12.1f}"
        )
    p50 = max((e.latency_p50 for e in metrics.endpoints.values()), default=0.0)
    p99 = max((e.latency_p99 for e in metrics.endpoints.values()), default=0.0)
    print(
        f"throughput: {len(clients)} portfolios, {metrics.requests} requests in {elapsed:.1f} s "
        f"({metrics.requests / elapsed:.0f} requests/s), latency p50 <= {p50 * 1000:.1f} ms "
        f"p99 <= {p99 * 1000:.1f} ms, retries {metrics.retries}, cooldowns {metrics.cooldowns}, "
        f"errors {metrics.errors}, simulator violations {'n/a' if violations is None else violations}"
    )
    return 1 if violations else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to run (default 10)")
    parser.add_argument("--base-url", help="venue base URL (default: an in-process simulator)")
    parser.add_argument("--zoomex-url", help="Zoomex base URL (default: --base-url)")
    parser.add_argument("--credentials", metavar="FILE", help="with --base-url: JSON/TOML keys (default: env vars)")
    parser.add_argument("--portfolios", type=int, default=300, help="simulated ConneX sub-portfolios (default 300)")
    parser.add_argument("--zoomex", type=int, default=30, help="simulated Zoomex accounts (default 30)")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port while running")
    arguments = parser.parse_args()
    real_keys: Keys = []
    if arguments.base_url:  # read and check every key before anything starts
        try:
            real_keys = [(c.venue, c.credentials) for c in load_portfolios(arguments.credentials)]
        except ConfigError as exc:
            parser.error(str(exc))
    sys.exit(asyncio.run(main(arguments, real_keys)))
