"""Fan-out polling of many sub-portfolios into JSON lines.

One ``SessionPool`` (one HTTP session, one limiter registry) is shared by a client per API key, and
one ``Poller`` polls them all: each update (data or typed error) becomes one JSON object on stdout,
amounts as strings so that nothing is rounded. A summary goes to stderr at the end: updates, errors,
superseded updates (newest-wins backpressure, when the consumer falls behind) and, against the
simulator, rate-limit window violations (always 0).

How to run it: from a clone, ``make demo`` (or ``make test``) sets up ``.venv``; use its
interpreter, ``.venv/bin/python examples/fanout_jsonl.py`` (plain ``python`` works once the virtualenv
is activated, or wherever connex-async is installed).

Run it against the built-in simulator (no credentials, no network)::

    .venv/bin/python examples/fanout_jsonl.py --portfolios 200 --duration 10 > updates.jsonl

Run it against real venues or a ``connex-async serve`` simulator, with keys from a credentials file
(JSON or TOML, as for ``connex-async poll``) or from CONNEX_API_KEY / CONNEX_API_SECRET (and
ZOOMEX_API_KEY / ZOOMEX_API_SECRET)::

    .venv/bin/python examples/fanout_jsonl.py --base-url http://127.0.0.1:8080 --credentials creds.json | jq .portfolio
    .venv/bin/python examples/fanout_jsonl.py --base-url https://api.connex.trade \\
        --zoomex-url https://openapi.zoomex.com --credentials creds.toml > updates.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
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
    update_to_json,
)
from connex_async.testing import SimulatedVenue

Keys = list[tuple[str, Credentials]]  # (venue, credentials)


@contextlib.asynccontextmanager
async def venue(args: argparse.Namespace, keys: Keys) -> AsyncIterator[tuple[str, Keys, SimulatedVenue | None]]:
    """``(base_url, keys, simulator)``: the real venue and its keys, or an in-process simulator."""
    if args.base_url:
        yield args.base_url, keys, None
        return
    async with SimulatedVenue(connex_portfolios=args.portfolios, zoomex_accounts=args.zoomex, seed=1) as sim:
        keys = [("connex", c) for c in sim.connex_credentials] + [("zoomex", c) for c in sim.zoomex_credentials]
        yield sim.base_url, keys, sim


async def main(args: argparse.Namespace, keys: Keys) -> int:
    out = sys.stdout.buffer
    updates = errors = 0
    started = time.monotonic()
    async with venue(args, keys) as (base_url, polled, simulator), SessionPool() as pool:
        clients: list[BaseClient] = [
            ConnexClient(creds, base_url=base_url, pool=pool)
            if venue_name == "connex"
            else ZoomexClient(creds, base_url=args.zoomex_url or base_url, pool=pool)
            for venue_name, creds in polled
        ]
        poller = Poller(clients, assets_every=1.0, positions_every=5.0, wallet_every=1.0)
        async with poller:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.duration):
                    async for update in poller:
                        out.write(update_to_json(update) + b"\n")
                        updates += 1
                        errors += not update.ok
        # Stopping lets polls in flight finish; each still ends in exactly one update.
        for update in poller.drain():
            out.write(update_to_json(update) + b"\n")
            updates += 1
            errors += not update.ok
        out.flush()
        stats = poller.stats()
        elapsed = time.monotonic() - started
        violations = "n/a" if simulator is None else simulator.stats().violations
    print(
        f"summary: {updates} updates ({updates / elapsed:.0f}/s) from {len(clients)} portfolios, "
        f"{errors} errors, {stats.superseded} superseded, {len(stats.quarantined)} quarantined, "
        f"simulator violations {violations}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to poll (default 10)")
    parser.add_argument("--base-url", help="venue base URL (default: an in-process simulator)")
    parser.add_argument("--zoomex-url", help="Zoomex base URL (default: --base-url)")
    parser.add_argument("--credentials", metavar="FILE", help="with --base-url: JSON/TOML keys (default: env vars)")
    parser.add_argument("--portfolios", type=int, default=200, help="simulated ConneX sub-portfolios (default 200)")
    parser.add_argument("--zoomex", type=int, default=20, help="simulated Zoomex accounts (default 20)")
    arguments = parser.parse_args()
    real_keys: Keys = []
    if arguments.base_url:  # read and check every key before anything starts
        try:
            real_keys = [(c.venue, c.credentials) for c in load_portfolios(arguments.credentials)]
        except ConfigError as exc:
            parser.error(str(exc))
    try:
        sys.exit(asyncio.run(main(arguments, real_keys)))
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
