"""FleetWorker in one process: two workers, two pollers, one simulator, one real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis
from fleet_helpers import wait_for

from connex_async import ConnexClient, Poller, SessionPool
from connex_async.client import BaseClient
from connex_async.fleet.hashing import Rendezvous
from connex_async.fleet.keys import FleetKeys
from connex_async.fleet.membership import Membership
from connex_async.fleet.worker import FleetWorker
from connex_async.poller import Update
from connex_async.testing import SimulatedVenue
from connex_async.testing.redis_server import RedisServer


class Collector:
    """Drains a poller into a list, as a consumer would."""

    def __init__(self, poller: Poller) -> None:
        self.updates: list[Update] = []
        self._task = asyncio.create_task(self._run(poller))

    async def _run(self, poller: Poller) -> None:
        async for update in poller:
            self.updates.append(update)

    def labels_since(self, index: int) -> set[str]:
        return {u.portfolio for u in self.updates[index:]}

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@asynccontextmanager
async def fleet_of_clients(n: int) -> AsyncIterator[list[BaseClient]]:
    async with SimulatedVenue(connex_portfolios=n, zoomex_accounts=0) as venue, SessionPool() as pool:
        yield [ConnexClient(c, base_url=venue.base_url, pool=pool) for c in venue.connex_credentials]


def polled(poller: Poller) -> set[str]:
    return {label for label, _ in poller.stats().staleness}


async def test_two_workers_split_by_rendezvous_and_one_takes_all_when_the_other_leaves(redis_url: str) -> None:
    async with fleet_of_clients(30) as clients:
        labels = [c.label for c in clients]
        pollers = [Poller(assets_every=0.2, positions_every=None) for _ in range(2)]
        workers = [
            FleetWorker(clients, p, Membership(redis_url, member_id=f"w{i}", lease_ttl=2, heartbeat=0.5))
            for i, p in enumerate(pollers)
        ]
        collectors = [Collector(p) for p in pollers]
        for p in pollers:
            await p.start()
        try:
            await workers[0].start()
            assert workers[0].owned == set(labels)  # alone: everything
            await workers[1].start()
            expected = Rendezvous(labels).assign(["w0", "w1"])
            await wait_for(lambda: workers[0].owned == set(expected["w0"]), 0.5, "w0 gives w1 its share at once")
            assert workers[1].owned == set(expected["w1"])
            assert 5 <= len(expected["w1"]) <= 25  # a real split, not everything on one side
            for worker, poller in zip(workers, pollers, strict=True):
                assert polled(poller) == worker.owned  # the poller polls exactly the share
            mark = [len(c.updates) for c in collectors]
            await asyncio.sleep(0.6)  # three intervals
            assert collectors[0].labels_since(mark[0]) == set(expected["w0"])
            assert collectors[1].labels_since(mark[1]) == set(expected["w1"])

            await workers[1].stop()  # leave: deletes the membership, w0 takes over now
            await pollers[1].stop()
            await wait_for(lambda: workers[0].owned == set(labels), 0.5, "w0 takes everything after w1 leaves")
            mark0 = len(collectors[0].updates)
            await wait_for(lambda: collectors[0].labels_since(mark0) == set(labels), 1.0, "w0 polls every portfolio")
            assert workers[0].membership.members == ("w0",)
        finally:
            for w in workers:
                await w.stop()
            for p in pollers:
                await p.stop()
            for c in collectors:
                await c.close()


async def test_a_worker_that_loses_redis_keeps_polling_and_rejoins(redis_url: str, redis_server: RedisServer) -> None:
    async with fleet_of_clients(12) as clients:
        poller = Poller(assets_every=0.2, positions_every=None)
        worker = FleetWorker(clients, poller, Membership(redis_url, member_id="w", lease_ttl=1.5, heartbeat=0.3))
        collector = Collector(poller)
        await poller.start()
        await worker.start()
        try:
            redis_server.stop()
            await wait_for(lambda: not worker.membership.connected, 2.0, "the worker notices Redis is gone")
            mark = len(collector.updates)
            await asyncio.sleep(0.6)
            assert collector.labels_since(mark) == {c.label for c in clients}  # still polling all it owned
            assert worker.owned == {c.label for c in clients}
            redis_server.start()  # empty: the membership is gone
            await wait_for(lambda: worker.membership.connected, 2.0, "the heartbeat reaches Redis again")
            client = aioredis.Redis.from_url(redis_url)
            try:
                assert await client.zscore(FleetKeys("connex-async").members, "w") is not None  # re-added
            finally:
                await client.aclose()
            assert worker.owned == {c.label for c in clients}
        finally:
            await worker.stop()
            await poller.stop()
            await collector.close()


async def test_a_quarantined_portfolio_regained_later_is_tried_again_and_the_rest_still_moves(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Quarantine is the Poller's pause, not a verdict the fleet keeps: a worker that regains a
    # quarantined portfolio adds it again (a rotated key may have fixed it), and a key that is
    # still dead is quarantined again after `quarantine_after` failures; the other portfolios move
    # between workers all the while.
    async with SimulatedVenue(connex_portfolios=12, zoomex_accounts=0) as venue, SessionPool() as pool:
        clients: list[BaseClient] = [
            ConnexClient(c, base_url=venue.base_url, pool=pool) for c in venue.connex_credentials
        ]
        labels = {c.label for c in clients}
        share = Rendezvous(sorted(labels)).assign(["w0", "w1"])
        doomed = next(c for c in clients if c.label in share["w1"])  # w1's share of two; w0's when alone
        venue.remove_portfolio(doomed.credentials.api_key)  # every poll of it now fails authentication
        p0 = Poller(assets_every=0.1, positions_every=None, quarantine_after=2)
        p1 = Poller(assets_every=0.1, positions_every=None, quarantine_after=2)
        w0 = FleetWorker(clients, p0, Membership(redis_url, member_id="w0", lease_ttl=2, heartbeat=0.5))
        w1 = FleetWorker(clients, p1, Membership(redis_url, member_id="w1", lease_ttl=2, heartbeat=0.5))
        collectors = [Collector(p0), Collector(p1)]
        dead = (doomed.label, "assets")
        await p0.start()
        await p1.start()
        try:
            await w0.start()
            await wait_for(lambda: dead in p0.quarantined, 3.0, "w0 quarantines the dead key")
            await w1.start()  # w0 loses the label to w1 ...
            await wait_for(lambda: doomed.label not in w0.owned, 0.5, "w0 hands over w1's share")
            await wait_for(lambda: dead in p1.quarantined, 3.0, "w1 finds the key dead too")
            await w1.stop()  # ... and regains it, with the rest of w1's share
            await wait_for(lambda: w0.owned == labels, 0.5, "w0 takes w1's share back")
            await wait_for(lambda: dead in p0.quarantined, 3.0, "w0 quarantines it again")
            assert polled(p0) == labels
        finally:
            await w0.stop()
            await w1.stop()
            await p0.stop()
            await p1.stop()
            for c in collectors:
                await c.close()
