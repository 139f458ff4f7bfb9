"""``connex-async``: ``demo`` (the main job on the embedded simulator), ``poll``, ``serve``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import msgspec

from connex_async.client import BaseClient
from connex_async.config import ConfigError, PortfolioConfig, load_portfolios
from connex_async.dashboard import Dashboard
from connex_async.poller import Poller, Update
from connex_async.pool import SessionPool
from connex_async.venues.connex.client import DEFAULT_BASE_URL as CONNEX_URL
from connex_async.venues.connex.client import ConnexClient
from connex_async.venues.zoomex.client import DEFAULT_BASE_URL as ZOOMEX_URL
from connex_async.venues.zoomex.client import ZoomexClient

__all__ = ["main", "run_demo", "update_to_json"]

_JSON = msgspec.json.Encoder(decimal_format="string")


def update_to_json(update: Update) -> bytes:
    """One update as a JSON line: amounts as strings, errors as type and message."""
    error = None
    if update.error is not None:
        error = {"type": type(update.error).__name__, "message": str(update.error)}
    return _JSON.encode(
        {
            "portfolio": update.portfolio,
            "venue": update.venue,
            "endpoint": update.endpoint,
            "ok": update.ok,
            "fetched_at": update.fetched_at,
            "latency_ms": round(update.latency * 1000, 3),
            "attempts": update.attempts,
            "error": error,
            "data": update.data,
        }
    )


async def _consume(
    poller: Poller,
    pool: SessionPool,
    duration: float | None,
    out: TextIO,
    fmt: str,
    dashboard: Dashboard,
    title: str,
) -> None:
    """Feed updates to the dashboard (and JSONL) until ``duration`` passes or a signal arrives."""
    tty = fmt == "table" and out.isatty()
    deadline = None if duration is None else time.monotonic() + duration
    next_render = 0.0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    updates = aiter(poller)
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            timeout = 0.25 if deadline is None else max(0.0, min(0.25, deadline - time.monotonic()))
            try:
                update = await asyncio.wait_for(anext(updates), timeout)
            except TimeoutError:
                update = None
            except StopAsyncIteration:
                break
            if update is not None:
                dashboard.apply(update)
                if fmt == "jsonl":
                    out.write(update_to_json(update).decode() + "\n")
            if fmt == "table" and time.monotonic() >= next_render:
                dashboard.render(out, tty, pool.metrics.snapshot(), title)
                next_render = time.monotonic() + (0.5 if tty else 2.0)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def run_demo(
    portfolios: int = 300,
    zoomex: int = 50,
    duration: float = 15.0,
    seed: int = 7,
    out: TextIO = sys.stdout,
    fmt: str = "table",
) -> int:
    """Poll simulated sub-portfolios for ``duration`` s; print a summary; 0 iff no violation."""
    from connex_async.testing import SimulatedVenue  # noqa: PLC0415 - only the demo needs the simulator

    async with (
        SimulatedVenue(
            connex_portfolios=portfolios, zoomex_accounts=zoomex, seed=seed, latency=0.002, jitter=0.01
        ) as venue,
        SessionPool(connector_limit=100) as pool,
    ):
        clients: list[BaseClient] = [
            ConnexClient(c, base_url=venue.base_url, pool=pool) for c in venue.connex_credentials
        ]
        clients += [ZoomexClient(c, base_url=venue.base_url, pool=pool) for c in venue.zoomex_credentials]
        dashboard = Dashboard()
        title = f"connex-async demo: {portfolios} ConneX + {zoomex} Zoomex simulated portfolios at {venue.base_url}"
        started = time.monotonic()
        async with Poller(clients, assets_every=1.0, positions_every=5.0, wallet_every=1.0) as poller:
            await _consume(poller, pool, duration, out, fmt, dashboard, title)
        elapsed = time.monotonic() - started
        metrics = pool.metrics.snapshot()
        stats = venue.stats()
        if fmt == "table":
            dashboard.render(out, out.isatty(), metrics, title)
        latency = [e for e in metrics.endpoints.values()]
        p50 = max((e.latency_p50 for e in latency), default=0.0)
        p99 = max((e.latency_p99 for e in latency), default=0.0)
        summary = (
            f"\nsummary: {metrics.requests} requests in {elapsed:.1f}s ({metrics.requests / elapsed:.0f} req/s), "
            f"{dashboard.updates} updates, poll latency p50 {dashboard.quantile(0.5) * 1000:.1f} ms "
            f"p99 {dashboard.quantile(0.99) * 1000:.1f} ms, HTTP latency (slowest endpoint) p50 ≈{p50 * 1000:.1f} ms "
            f"p99 ≈{p99 * 1000:.1f} ms, retries {metrics.retries}, cooldowns {metrics.cooldowns}, "
            f"errors {dashboard.errors}, simulator violations {stats.violations}\n"
        )
        stream = sys.stderr if fmt == "jsonl" else out
        stream.write(summary)
        stream.flush()
        return 0 if stats.violations == 0 else 1


async def run_poll(
    portfolios: list[PortfolioConfig],
    connex_url: str,
    zoomex_url: str,
    duration: float | None,
    fmt: str,
    out: TextIO,
    assets_every: float,
    positions_every: float,
    wallet_every: float,
) -> int:
    """Poll real (or simulated) portfolios until ``duration`` passes or Ctrl-C."""
    async with SessionPool() as pool:
        clients: list[BaseClient] = []
        for p in portfolios:
            if p.venue == "connex":
                clients.append(ConnexClient(p.credentials, base_url=connex_url, pool=pool))
            else:
                clients.append(ZoomexClient(p.credentials, base_url=zoomex_url, pool=pool, account_type=p.account_type))
        dashboard = Dashboard()
        async with Poller(
            clients, assets_every=assets_every, positions_every=positions_every, wallet_every=wallet_every
        ) as poller:
            await _consume(poller, pool, duration, out, fmt, dashboard, f"connex-async poll: {len(clients)} portfolios")
        if poller.quarantined:
            for (label, endpoint), reason in poller.quarantined.items():
                sys.stderr.write(f"quarantined {label}/{endpoint}: {reason}\n")
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="connex-async", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log INFO (-v) or DEBUG (-vv) to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="poll simulated sub-portfolios (no credentials, no network)")
    demo.add_argument("--portfolios", type=int, default=300, help="ConneX sub-portfolios (default 300)")
    demo.add_argument("--zoomex", type=int, default=50, help="Zoomex accounts (default 50)")
    demo.add_argument("--duration", type=float, default=15.0, help="seconds to poll (default 15)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--format", choices=("table", "jsonl"), default="table")

    poll = sub.add_parser("poll", help="poll real portfolios from a credentials file or the environment")
    poll.add_argument("--credentials", metavar="FILE", help="JSON or TOML file (default: environment variables)")
    poll.add_argument("--base-url", help="one base URL for both venues (e.g. a simulator)")
    poll.add_argument("--connex-url", default=CONNEX_URL)
    poll.add_argument("--zoomex-url", default=ZOOMEX_URL)
    poll.add_argument("--format", choices=("table", "jsonl"), default="table")
    poll.add_argument("--duration", type=float, default=None, help="stop after N seconds (default: until Ctrl-C)")
    poll.add_argument("--assets-every", type=float, default=1.0)
    poll.add_argument("--positions-every", type=float, default=15.0)
    poll.add_argument("--wallet-every", type=float, default=1.0)

    sub.add_parser("serve", help="run the simulator (see `connex-async serve --help`)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (`connex-async poll --format jsonl | head`): stop quietly, as Unix
        # tools do; point stdout at devnull so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["serve"]:
        from connex_async.testing.cli import serve_main  # noqa: PLC0415 - only serve needs it

        return serve_main(args_list[1:])
    args = _parser().parse_args(args_list)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO, stream=sys.stderr)
    if args.command == "demo":
        return asyncio.run(run_demo(args.portfolios, args.zoomex, args.duration, args.seed, sys.stdout, args.format))
    try:
        portfolios = load_portfolios(args.credentials)
    except ConfigError as exc:
        sys.stderr.write(f"connex-async poll: {exc}\n")
        return 2
    connex_url = args.base_url or args.connex_url
    zoomex_url = args.base_url or args.zoomex_url
    run: Any = run_poll(
        portfolios,
        connex_url,
        zoomex_url,
        args.duration,
        args.format,
        sys.stdout,
        args.assets_every,
        args.positions_every,
        args.wallet_every,
    )
    return int(asyncio.run(run))


if __name__ == "__main__":
    sys.exit(main())
