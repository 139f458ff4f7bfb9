"""An equity alert bot: embed a client, poll equity, react when it falls below a threshold.

The bot holds one ``ConnexClient`` (and, if configured, one ``ZoomexClient``), reads each
portfolio's USD equity every ``--every`` seconds, and calls an async hook (here: print and log a
WARNING) when equity crosses below the threshold. The alert re-arms once equity is back above it,
so a portfolio hovering at the line does not spam. Errors are typed: a failed read is logged and
the bot keeps going.

How to run it: from a clone, ``make demo`` (or ``make test``) sets up ``.venv``; use its
interpreter, ``.venv/bin/python examples/equity_alert_bot.py`` (plain ``python`` works once the virtualenv
is activated, or wherever connex-async is installed).

Run it against the built-in simulator (no credentials, no network; the simulated market is
fast-forwarded so that an alert fires within a few seconds)::

    .venv/bin/python examples/equity_alert_bot.py --duration 10

Run it against a real venue (keys from CONNEX_API_KEY / CONNEX_API_SECRET, and optionally
ZOOMEX_API_KEY / ZOOMEX_API_SECRET)::

    .venv/bin/python examples/equity_alert_bot.py --base-url https://api.connex.trade \\
        --zoomex-url https://openapi.zoomex.com --threshold 250000 --duration 3600
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

from connex_async import BaseClient, ConnexAsyncError, ConnexClient, Credentials, SessionPool, ZoomexClient, equity_of

logger = logging.getLogger("equity_alert_bot")


@dataclass(frozen=True)
class Alert:
    """Equity of one portfolio fell below its threshold."""

    portfolio: str
    venue: str
    equity: Decimal
    threshold: Decimal


AlertHook = Callable[[Alert], Awaitable[None]]


async def print_alert(alert: Alert) -> None:
    """The default hook: replace it with a chat message, a pager call, or de-risking orders."""
    print(
        f"ALERT {alert.portfolio} ({alert.venue}): equity {alert.equity:,.2f} USD < threshold {alert.threshold:,.2f}",
        flush=True,
    )


class EquityAlertBot:
    """Poll the equity of a few portfolios and call ``on_alert`` when one falls below its threshold.

    With ``threshold=None`` each portfolio's threshold is ``ratio`` times its first reading.
    """

    def __init__(
        self,
        clients: list[BaseClient],
        *,
        threshold: Decimal | None = None,
        ratio: Decimal = Decimal("0.999"),
        every: float = 1.0,
        on_alert: AlertHook = print_alert,
    ) -> None:
        self.clients = clients
        self.threshold = threshold
        self.ratio = ratio
        self.every = every
        self.on_alert = on_alert
        self.thresholds: dict[str, Decimal] = {}
        self.below: set[str] = set()  # portfolios already alerted (re-armed when back above)
        self.alerts = 0

    async def run(self, duration: float) -> None:
        """Check every ``every`` seconds until ``duration`` has passed."""
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            await asyncio.gather(*(self.check(client) for client in self.clients))
            await asyncio.sleep(max(0.0, min(self.every, deadline - time.monotonic())))

    async def check(self, client: BaseClient) -> None:
        """Read one portfolio's equity and alert on a downward crossing."""
        try:
            if isinstance(client, ZoomexClient):
                equity = equity_of(await client.get_wallet_balance())
            else:
                assert isinstance(client, ConnexClient)
                equity = equity_of(await client.get_all_assets())
        except ConnexAsyncError as exc:  # typed: RateLimitError, AuthenticationError, TransportError, ...
            logger.warning("could not read %s: %s", client.label, exc)
            return
        if equity is None:
            return
        if client.label not in self.thresholds:
            self.thresholds[client.label] = self.threshold if self.threshold is not None else equity * self.ratio
        threshold = self.thresholds[client.label]
        logger.info("%s equity %.2f (threshold %.2f)", client.label, equity, threshold)
        if equity >= threshold:
            self.below.discard(client.label)
        elif client.label not in self.below:
            self.below.add(client.label)
            self.alerts += 1
            logger.warning("%s equity %.2f fell below %.2f", client.label, equity, threshold)
            await self.on_alert(Alert(client.label, client.venue.name, equity, threshold))


def env_credentials(venue: str) -> Credentials | None:
    """``<VENUE>_API_KEY`` / ``<VENUE>_API_SECRET`` from the environment, if set."""
    key, secret = os.environ.get(f"{venue}_API_KEY"), os.environ.get(f"{venue}_API_SECRET")
    if not key or not secret:
        return None
    return Credentials(key, secret, label=venue.lower())


@contextlib.asynccontextmanager
async def make_clients(args: argparse.Namespace, pool: SessionPool) -> AsyncIterator[list[BaseClient]]:
    """Clients for real keys (``--base-url``) or for an in-process simulator."""
    if args.base_url:
        connex, zoomex = env_credentials("CONNEX"), env_credentials("ZOOMEX")
        assert connex is not None  # checked before starting
        clients: list[BaseClient] = [ConnexClient(connex, base_url=args.base_url, pool=pool)]
        if zoomex is not None:
            clients.append(ZoomexClient(zoomex, base_url=args.zoomex_url or args.base_url, pool=pool))
        yield clients
        return
    from connex_async.testing import SimulatedVenue  # only the simulated run needs it

    # drift_interval=0.05 fast-forwards the simulated market 20x, so that equity moves visibly in seconds.
    async with SimulatedVenue(connex_portfolios=1, zoomex_accounts=1, seed=0, drift_interval=0.05) as venue:
        yield [
            ConnexClient(venue.connex_credentials[0], base_url=venue.base_url, pool=pool),
            ZoomexClient(venue.zoomex_credentials[0], base_url=venue.base_url, pool=pool),
        ]


async def main(args: argparse.Namespace) -> int:
    async with SessionPool() as pool, make_clients(args, pool) as clients:
        bot = EquityAlertBot(clients, threshold=args.threshold, ratio=args.ratio, every=args.every)
        await bot.run(args.duration)
    print(f"done: {bot.alerts} alert(s) in {args.duration:g} s", flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to run (default 10)")
    parser.add_argument("--base-url", help="venue base URL (default: an in-process simulator)")
    parser.add_argument("--zoomex-url", help="Zoomex base URL (default: --base-url)")
    parser.add_argument("--threshold", type=Decimal, help="absolute USD threshold for every portfolio")
    parser.add_argument("--ratio", type=Decimal, default=Decimal("0.999"), help="else: ratio x first reading")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between checks (default 0.5)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every reading")
    arguments = parser.parse_args()
    if arguments.base_url and env_credentials("CONNEX") is None:
        parser.error("set CONNEX_API_KEY and CONNEX_API_SECRET (or omit --base-url to use the simulator)")
    logging.basicConfig(level=logging.INFO if arguments.verbose else logging.WARNING, stream=sys.stderr)
    sys.exit(asyncio.run(main(arguments)))
