"""``fleet status``: members, shares and heartbeat ages by Redis TIME; text, JSON, extra sections."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis
from fleet_helpers import redis_now_ms

from connex_async.fleet.keys import FleetKeys
from connex_async.fleet.membership import Membership
from connex_async.fleet.status import Section, read_status, render_json, render_text
from connex_async.fleet.stream import RedisStreamSink
from connex_async.poller import Update


async def test_status_lists_live_members_with_shares_and_heartbeat_ages(redis_url: str) -> None:
    a = Membership(redis_url, member_id="alpha", lease_ttl=6, heartbeat=2, info={"egress_id": "nat-a"})
    b = Membership(redis_url, member_id="beta", lease_ttl=6, heartbeat=2)
    await a.join()
    await b.join()
    a.set_info(owned=7)
    b.set_info(owned=5)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await asyncio.sleep(0.3)  # the nudged heartbeats carry the shares
        keys = FleetKeys("connex-async")
        # A member whose lease ended but that no heartbeat has pruned yet is dead all the same.
        await client.zadd(keys.members, {"ghost": await redis_now_ms(client) - 1})
        status = await read_status(client, "connex-async")
        assert [m.member for m in status.members] == ["alpha", "beta"]
        alpha, beta = status.members
        assert (alpha.owned, alpha.egress_id, beta.owned, beta.egress_id) == (7, "nat-a", 5, None)
        for m in status.members:
            assert 0 <= m.since_heartbeat <= 1.0  # renewed by the nudge, not 2 s ago
            assert 5.0 <= m.lease_left <= 6.0 and m.lease_ttl == 6.0
        text = render_text(status)
        assert "members: 2 live, 12 portfolios owned" in text
        assert "ghost" not in text
        assert "nat-a" in text and "of 6s" in text
        body = json.loads(render_json(status))
        assert [m["member"] for m in body["members"]] == ["alpha", "beta"]
        assert body["members"][0]["owned"] == 7
        assert body["stream"]["entries"] == 0
    finally:
        await client.aclose()
        await a.leave()
        await b.leave()


async def test_the_stream_section_and_a_section_from_another_source(redis_url: str) -> None:
    sink = RedisStreamSink(redis_url, worker="w")
    await sink.start()
    for i in range(5):
        sink.write(Update(f"p{i}", "connex", "assets", [], None, 1.0, 0.01, 1))
    await sink.close()
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = FleetKeys("connex-async")
        await client.xgroup_create(keys.updates, "risk", id="0")
        await client.xreadgroup("risk", "r1", {keys.updates: ">"}, count=2)  # 2 read, not acked

        async def cooling(redis: aioredis.Redis, keys: FleetKeys, now_ms: int) -> Section:
            """What the Redis limiter will add: scopes cooling down (here: made up, to test the seam)."""
            rows = [("connex/assets/key-1", "cooldown", "2.5s")]
            return Section("limits", "limits: 1 scope cooling down", ("scope", "state", "left"), rows, {"n": 1})

        status = await read_status(client, "connex-async", [cooling])
        text = render_text(status)
        assert "stream connex-async:fleet:updates: 5 entries, newest " in text
        assert "latest of 5 (portfolio, endpoint)" in text
        assert "risk" in text
        assert "limits: 1 scope cooling down" in text and "connex/assets/key-1" in text
        body = json.loads(render_json(status))
        assert body["stream"]["groups"] == [{"group": "risk", "consumers": 1, "pending": 2, "lag": 3}]
        assert body["limits"] == {"n": 1}
        assert body["members"] == []
        assert "no live members" in text
    finally:
        await client.aclose()
