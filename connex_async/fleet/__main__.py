"""``python -m connex_async.fleet poll|status``: the fleet on its own, before ``connex-async`` wires it in.

::

    python -m connex_async.fleet poll --credentials sim.json --base-url http://127.0.0.1:8080 \\
        --redis redis://127.0.0.1:6379 --shard auto --output redis-stream
    python -m connex_async.fleet status --redis redis://127.0.0.1:6379 --format json

``poll`` takes the options of ``connex-async poll`` that a fleet worker needs plus the fleet options;
limits are local to the process here (the Redis limiter is wired in by ``connex-async poll``).
Every mistake is one line on stderr, ``connex-async <command>: <message>``, and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import NoReturn

from connex_async.config import ConfigError, PortfolioConfig, load_portfolios
from connex_async.fleet.cli import (
    FleetOptions,
    add_fleet_options,
    add_status_options,
    build_clients,
    run_fleet_poll,
    run_fleet_status,
)
from connex_async.pool import SessionPool
from connex_async.redis_connection import RedisUnavailableError
from connex_async.venues.connex.client import DEFAULT_BASE_URL as CONNEX_URL
from connex_async.venues.zoomex.client import DEFAULT_BASE_URL as ZOOMEX_URL

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (``connex-async <command>: <message>``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="connex-async fleet", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    poll = sub.add_parser("poll", prog="connex-async poll", help="poll this worker's share of the portfolios")
    poll.add_argument("--credentials", metavar="FILE", help="JSON or TOML file (default: environment variables)")
    poll.add_argument("--base-url", help="one base URL for both venues (e.g. a simulator)")
    poll.add_argument("--connex-url", default=CONNEX_URL)
    poll.add_argument("--zoomex-url", default=ZOOMEX_URL)
    poll.add_argument("--duration", type=float, default=None, help="stop after N seconds (default: until a signal)")
    poll.add_argument("--assets-every", type=float, default=1.0)
    poll.add_argument("--positions-every", type=float, default=15.0)
    poll.add_argument("--wallet-every", type=float, default=1.0)
    add_fleet_options(poll)
    status = sub.add_parser("status", prog="connex-async fleet status", help="live members, shares, the stream")
    add_status_options(status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``poll`` or ``status``; 0 on success, 2 on bad input or an unreachable Redis."""
    args = _parser().parse_args(argv)
    prog = "connex-async poll" if args.command == "poll" else "connex-async fleet status"
    try:
        if args.command == "status":
            return asyncio.run(run_fleet_status(args.redis, args.namespace, args.format))
        options = FleetOptions.from_args(args)
        portfolios = load_portfolios(args.credentials)
        return asyncio.run(_poll(args, options, portfolios, prog))
    except (ConfigError, ValueError, RedisUnavailableError) as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return 2


async def _poll(args: argparse.Namespace, options: FleetOptions, portfolios: list[PortfolioConfig], prog: str) -> int:
    async with SessionPool() as pool:
        clients = build_clients(portfolios, args.base_url or args.connex_url, args.base_url or args.zoomex_url, pool)
        return await run_fleet_poll(
            clients,
            options,
            poller_options={
                "assets_every": args.assets_every,
                "positions_every": args.positions_every,
                "wallet_every": args.wallet_every,
            },
            duration=args.duration,
            prog=prog,
        )


if __name__ == "__main__":
    sys.exit(main())
