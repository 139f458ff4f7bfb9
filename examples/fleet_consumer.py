"""Read every update of a fleet from its Redis stream, with a consumer group (XREADGROUP + XACK).

Workers started with ``--output redis-stream`` append each update to ``<namespace>:fleet:updates``
(field ``update``: the same JSON as ``--format jsonl``, amounts as exact strings; field ``worker``:
who polled it). Consumers of one group share the entries: each goes to one of them, and stays
pending until acknowledged. A consumer that restarts under the same name first gets back what it
was given but never acknowledged, then new entries; so an update is processed at least once.

Against a running fleet::

    python examples/fleet_consumer.py --redis redis://127.0.0.1:6379 --group risk --consumer risk-1

Self-contained: a simulated venue and one fleet worker in this process, and a throwaway
redis-server unless ``--redis`` is given::

    python examples/fleet_consumer.py --demo --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from connex_async import BaseClient, ConnexClient, SessionPool, ZoomexClient
from connex_async.fleet import FleetKeys, FleetOptions, run_fleet_poll
from connex_async.testing import RedisServer, SimulatedVenue


def describe(update: dict[str, Any]) -> str:
    """One line per update: the portfolio's equity (exact), the number of positions, or the error."""
    where = f"{update['portfolio']} {update['venue']}/{update['endpoint']}"
    if not update["ok"]:
        return f"{where} ERROR {update['error']['type']}: {update['error']['message']}"
    data = update["data"]
    if update["endpoint"] == "assets":
        return f"{where} equity {sum((Decimal(a['equity']) for a in data), Decimal(0))}"
    if update["endpoint"] == "wallet":
        return f"{where} total equity {Decimal(data['list'][0]['totalEquity'])}"
    return f"{where} {len(data)} open positions"


async def consume(
    redis: aioredis.Redis, stream: str, group: str, consumer: str, stop: asyncio.Event
) -> tuple[int, set[str], set[str]]:
    """Read and acknowledge until ``stop`` is set and the stream has nothing new; counts and who/what was seen."""
    with contextlib.suppress(ResponseError):  # BUSYGROUP: the group exists already
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    consumed, workers, portfolios = 0, set(), set()
    cursor = "0"  # first our own pending entries (given to us before, never acknowledged), then ">": new ones
    while True:
        reply = await redis.xreadgroup(
            group, consumer, {stream: cursor}, count=200, block=None if cursor == "0" else 500
        )
        entries = reply[0][1] if reply else []
        if not entries:
            if cursor == "0":
                cursor = ">"
                continue
            if stop.is_set():
                return consumed, workers, portfolios
            continue
        for _, fields in entries:
            update = json.loads(fields[b"update"])
            print(describe(update))
            workers.add(fields[b"worker"].decode())
            portfolios.add(update["portfolio"])
        await redis.xack(stream, group, *(entry_id for entry_id, _ in entries))  # processed: not pending any more
        consumed += len(entries)
        if cursor != ">":
            cursor = entries[-1][0].decode()


@contextlib.asynccontextmanager
async def demo_fleet(url: str, namespace: str) -> AsyncIterator[asyncio.Event]:
    """One fleet worker polling a simulated venue into the stream; set the event to stop it."""
    stop = asyncio.Event()
    async with SimulatedVenue(connex_portfolios=20, zoomex_accounts=5, seed=3) as venue, SessionPool() as pool:
        clients: list[BaseClient] = [
            ConnexClient(c, base_url=venue.base_url, pool=pool) for c in venue.connex_credentials
        ]
        clients += [ZoomexClient(c, base_url=venue.base_url, pool=pool) for c in venue.zoomex_credentials]
        options = FleetOptions(redis=url, namespace=namespace, shard="auto", output="redis-stream", lease_ttl=3)
        poller_options = {"assets_every": 1.0, "positions_every": 5.0, "wallet_every": 1.0}
        worker = asyncio.create_task(run_fleet_poll(clients, options, poller_options=poller_options, stop=stop))
        try:
            yield stop
        finally:
            stop.set()
            await worker  # leaves the fleet, lets its polls end and delivers them to the stream


async def main(args: argparse.Namespace) -> int:
    async with contextlib.AsyncExitStack() as stack:
        url = args.redis or (stack.enter_context(RedisServer()).url if args.demo else None)
        if url is None:
            print("fleet_consumer: --redis URL is required (or --demo)", file=sys.stderr)
            return 2
        stream = FleetKeys(args.namespace).updates
        redis = aioredis.Redis.from_url(url)
        stack.push_async_callback(redis.aclose)
        stop = asyncio.Event()
        reader = asyncio.create_task(consume(redis, stream, args.group, args.consumer, stop))
        if args.demo:
            async with demo_fleet(url, args.namespace):
                await asyncio.sleep(args.duration)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), args.duration)
        stop.set()  # read what is left, then stop
        consumed, workers, portfolios = await reader
        pending = (await redis.xpending(stream, args.group))["pending"]
    print(
        f"summary: {consumed} updates consumed and acknowledged from {len(workers)} worker(s), "
        f"{len(portfolios)} portfolios, pending {pending}"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", metavar="URL", help="the fleet's Redis (with --demo: default a throwaway server)")
    parser.add_argument("--namespace", default="connex-async")
    parser.add_argument("--group", default="example", help="consumer group (created at the stream's start)")
    parser.add_argument("--consumer", default="consumer-1", help="this consumer's name within the group")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to consume (default 10)")
    parser.add_argument("--demo", action="store_true", help="run a simulated venue and a fleet worker in-process")
    sys.exit(asyncio.run(main(parser.parse_args())))
