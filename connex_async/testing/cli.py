"""Run the simulator from the command line (wired into ``connex-async serve``).

Imports the simulator only when it runs, so that ``connex-async --help`` stays quick.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from connex_async.cli_args import CommandParser, count, non_negative_float, port

if TYPE_CHECKING:
    from connex_async.testing.network import Delay
    from connex_async.testing.server import SimulatedVenue

__all__ = [
    "DELAY_HELP",
    "add_delay_arguments",
    "add_serve_arguments",
    "build_parser",
    "delay_spec",
    "run_serve",
    "serve_forever",
    "serve_main",
    "write_credentials",
]

DELAY_HELP = (
    "terms joined by commas: 20ms (fixed), 0-120ms (uniform), 250ms@0.5%% (a spike for 0.5%% of requests), "
    "pareto1.5 (heavy-tailed spikes); e.g. 0-120ms,250ms@0.5%%"
)


def delay_spec(text: str) -> Delay:
    """``--request-delay`` / ``--response-delay``: a :class:`~connex_async.testing.network.Delay` spec."""
    from connex_async.testing.network import Delay  # noqa: PLC0415 - see the module docstring

    try:
        return Delay.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_delay_arguments(parser: argparse.ArgumentParser) -> None:
    """``--request-delay`` / ``--response-delay``: the simulator a WAN away (``serve`` and ``demo``)."""
    parser.add_argument(
        "--request-delay",
        type=delay_spec,
        metavar="SPEC",
        help=f"simulate a WAN: the delay before each request arrives (counted in the windows): {DELAY_HELP}",
    )
    parser.add_argument("--response-delay", type=delay_spec, metavar="SPEC", help="the same before each answer leaves")


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
    request_delay: Delay | None = None,
    response_delay: Delay | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM (or cancellation), printing the base URL first."""
    from connex_async.testing.server import SimulatedVenue  # noqa: PLC0415 - see the module docstring

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
            request_delay=request_delay,
            response_delay=response_delay,
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


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``serve`` (shared by ``connex-async serve`` and :func:`build_parser`)."""
    parser.add_argument("--portfolios", type=count, default=100, help="ConneX portfolios to simulate (default 100)")
    parser.add_argument("--zoomex", type=count, default=10, help="Zoomex accounts to simulate (default 10)")
    parser.add_argument("--port", type=port, default=8080, help="port to listen on; 0 = any free port (default 8080)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed for keys and data (default 0)")
    parser.add_argument(
        "--latency", type=non_negative_float, default=0.0, help="seconds of latency added to every request (default 0)"
    )
    parser.add_argument(
        "--jitter", type=non_negative_float, default=0.0, help="up to this many more seconds, uniform (default 0)"
    )
    add_delay_arguments(parser)
    parser.add_argument(
        "--credentials-out", metavar="FILE", help="write every key as a JSON credentials file for `poll` (mode 0600)"
    )


def build_parser(prog: str = "connex-async serve") -> argparse.ArgumentParser:
    """The argument parser of the ``serve`` command."""
    parser = CommandParser(prog=prog, description="Run the simulated ConneX + Zoomex venue.")
    add_serve_arguments(parser)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    """Serve with parsed ``args`` until interrupted; returns the exit status."""
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
                request_delay=args.request_delay,
                response_delay=args.response_delay,
            )
        )
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"connex-async serve: {exc}", file=sys.stderr)
        return 1
    return 0


def serve_main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and serve until interrupted; returns the exit status."""
    return run_serve(build_parser().parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(serve_main())
