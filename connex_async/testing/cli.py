"""Run the simulator from the command line (wired into ``connex-async serve``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence

from connex_async.testing.server import SimulatedVenue

__all__ = ["build_parser", "serve_forever", "serve_main", "write_credentials"]


def write_credentials(venue: SimulatedVenue, path: str) -> None:
    """Write every key as a JSON list of ``{"label","venue","api_key","secret"}`` (mode 0600)."""
    rows = [
        {"label": c.label, "venue": "connex", "api_key": c.api_key, "secret": c.secret}
        for c in venue.connex_credentials
    ] + [
        {"label": c.label, "venue": "zoomex", "api_key": c.api_key, "secret": c.secret}
        for c in venue.zoomex_credentials
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(rows, fh, indent=1)
        fh.write("\n")


async def serve_forever(
    connex_portfolios: int,
    zoomex_accounts: int,
    port: int,
    host: str,
    seed: int,
    *,
    credentials_out: str | None = None,
    latency: float = 0.0,
    jitter: float = 0.0,
) -> None:
    """Serve until SIGINT or SIGTERM (or cancellation), printing the base URL first."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        async with SimulatedVenue(
            connex_portfolios=connex_portfolios,
            zoomex_accounts=zoomex_accounts,
            seed=seed,
            latency=latency,
            jitter=jitter,
            host=host,
            port=port,
        ) as venue:
            if credentials_out:
                write_credentials(venue, credentials_out)
            print(venue.base_url, flush=True)
            print(
                f"serving {connex_portfolios} ConneX portfolios and {zoomex_accounts} Zoomex accounts "
                f"(seed {seed}); stats at {venue.base_url}/_sim/stats; Ctrl-C to stop",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
            print(f"stopped: {venue.stats()!r}", file=sys.stderr, flush=True)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def build_parser(prog: str = "connex-async serve") -> argparse.ArgumentParser:
    """The argument parser of the ``serve`` command."""
    parser = argparse.ArgumentParser(prog=prog, description="Run the simulated ConneX + Zoomex venue.")
    parser.add_argument("--portfolios", type=int, default=100, help="ConneX portfolios (default 100)")
    parser.add_argument("--zoomex", type=int, default=10, help="Zoomex accounts (default 10)")
    parser.add_argument("--port", type=int, default=8080, help="port (0 = any free port; default 8080)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed for keys and data (default 0)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds of latency per request")
    parser.add_argument("--jitter", type=float, default=0.0, help="seconds of extra uniform jitter")
    parser.add_argument("--credentials-out", metavar="FILE", help="write the keys as JSON to FILE")
    return parser


def serve_main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and serve until interrupted; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        asyncio.run(
            serve_forever(
                args.portfolios,
                args.zoomex,
                args.port,
                args.host,
                args.seed,
                credentials_out=args.credentials_out,
                latency=args.latency,
                jitter=args.jitter,
            )
        )
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"connex-async serve: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(serve_main())
