"""``fleet status``: members, shares and heartbeat ages by Redis TIME; text, JSON, extra sections."""

from __future__ import annotations

import asyncio
import json
from typing import Any

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


async def test_status_shows_the_shared_limits_cooling_down_and_circuits_open(redis_url: str) -> None:
    # What one process's limiter wrote to Redis is what `connex-async fleet status` reads back.
    from connex_async.cli import main
    from connex_async.rate_limit import RateLimit
    from connex_async.redis_limits import RedisLimiter

    async with RedisLimiter(redis_url, namespace="desk", egress_id="nat-1") as limiter:
        scope = limiter.scope(("connex", "key:ab12", "assets"), RateLimit(20, 1.0))
        assert not (await limiter.try_admit((scope,), None)).admitted  # a new epoch: every scope waits
        limiter.cool_down(scope, 30.0)
        limiter.open_circuit(("zoomex", "api.zoomex.test"), 600.0, probe_after=60.0)
        await limiter.try_admit((), None)  # the batch that carries them (any call will do)
    status = await asyncio.to_thread(_status_json, main, redis_url)
    rows = {(row["scope"], row["state"].split(",")[0]) for row in status["limits"]}
    assert ("connex:key:ab12:assets", "cooling") in rows
    assert ("zoomex:nat-1:api.zoomex.test", "circuit open") in rows
    assert ("epoch", "embargo") in rows  # this Redis began its epoch seconds ago


def _status_json(main: Any, redis_url: str) -> dict[str, Any]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["fleet", "status", "--redis", redis_url, "--namespace", "desk", "--format", "json"]) == 0
    document: dict[str, Any] = json.loads(out.getvalue())
    return document
