"""Membership leases on a real redis-server: join, leave at once, expiry by Redis TIME, Redis restarts."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys

import pytest
import redis.asyncio as aioredis
from fleet_helpers import wait_for

from connex_async.fleet.keys import FleetKeys
from connex_async.fleet.membership import Membership
from connex_async.redis_connection import RedisUnavailableError
from connex_async.testing.redis_server import RedisServer


async def test_join_and_leave_are_seen_at_once_not_at_the_next_heartbeat(redis_url: str) -> None:
    # Heartbeats 5 s apart: only the pub/sub nudge can make the others see a change within 0.5 s.
    a = Membership(redis_url, member_id="a", lease_ttl=15, heartbeat=5)
    b = Membership(redis_url, member_id="b", lease_ttl=15, heartbeat=5)
    seen: list[tuple[str, ...]] = []
    a.subscribe(seen.append)
    assert await a.join() == ("a",)
    assert seen == [("a",)]
    await asyncio.sleep(0.2)  # a's subscription is in place
    assert await b.join() == ("a", "b")
    await wait_for(lambda: a.members == ("a", "b"), 0.5, "a sees b join")
    await b.leave()
    await wait_for(lambda: a.members == ("a",), 0.5, "a sees b leave")
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = FleetKeys("connex-async")
        assert [m.decode() for m in await client.zrange(keys.members, 0, -1)] == ["a"]  # deleted, not left to expire
        assert set(await client.hkeys(keys.info)) == {b"a"}
        info = json.loads(await client.hget(keys.info, "a"))
        assert info["lease_ms"] == 15000 and info["heartbeat_ms"] == 5000
    finally:
        await client.aclose()
        await a.leave()
    assert seen == [("a",), ("a", "b"), ("a",)]


_CRASHER = """
import asyncio, sys
from connex_async.fleet.membership import Membership
async def main():
    m = Membership(sys.argv[1], member_id="doomed", lease_ttl=1.0, heartbeat=0.25)
    await m.join()
    print("joined", flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


async def test_a_killed_member_expires_one_lease_after_its_last_heartbeat_by_redis_time(redis_url: str) -> None:
    # The survivor's heartbeat (2.9 s) is far too slow to see the death promptly by itself: it must
    # wake at the dead member's deadline, so the expiry is seen just after one lease (1 s) from the
    # member's last heartbeat, all measured on Redis TIME.
    survivor = Membership(redis_url, member_id="survivor", lease_ttl=3.0, heartbeat=2.9)
    changes: list[tuple[tuple[str, ...], int]] = []
    survivor.subscribe(lambda members: changes.append((members, survivor.redis_time_ms)))
    await survivor.join()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CRASHER, redis_url, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 20) == b"joined\n"
        await wait_for(lambda: "doomed" in survivor.members, 1.0, "the survivor sees the member join")
        await asyncio.sleep(0.6)  # a few heartbeats of the doomed member
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        client = aioredis.Redis.from_url(redis_url)
        try:
            keys = FleetKeys("connex-async")
            final_deadline = await client.zscore(keys.members, "doomed")  # the dead cannot renew it
            assert final_deadline is not None
            await wait_for(lambda: "doomed" not in survivor.members, 3.0, "the killed member expires")
            members, seen_ms = changes[-1]
            assert members == ("survivor",)
            expired_after = (seen_ms - (final_deadline - 1000)) / 1000  # since its last heartbeat, Redis time
            assert 1.0 <= expired_after <= 1.25, expired_after  # never before the lease ends, and promptly after
            assert await client.zscore(keys.members, "doomed") is None
            assert await client.hget(keys.info, "doomed") is None
        finally:
            await client.aclose()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await survivor.leave()


async def test_after_a_redis_restart_members_rejoin_and_events_flow_again(
    redis_url: str, redis_server: RedisServer
) -> None:
    a = Membership(redis_url, member_id="a", lease_ttl=5, heartbeat=1.5)
    b = Membership(redis_url, member_id="b", lease_ttl=5, heartbeat=1.5)
    await a.join()
    await b.join()
    await wait_for(lambda: a.members == ("a", "b"), 0.5, "a sees b")
    try:
        redis_server.stop()
        await wait_for(lambda: not a.connected, 3.0, "a notices that Redis is gone")
        assert a.members == ("a", "b")  # the last view stands: keep polling what we own
        redis_server.start()  # empty: every lease is gone
        await wait_for(lambda: a.connected and b.connected, 2.0, "both heartbeats reach Redis again")
        client = aioredis.Redis.from_url(redis_url)
        try:
            keys = FleetKeys("connex-async")
            assert {m.decode() for m in await client.zrange(keys.members, 0, -1)} == {"a", "b"}  # re-added
        finally:
            await client.aclose()
        await asyncio.sleep(1.0)  # the event subscriptions are back (their retries are <= 0.5 s apart)
        c = Membership(redis_url, member_id="c", lease_ttl=5, heartbeat=1.5)
        await c.join()
        # Heartbeats are 1.5 s apart: seeing c this soon takes the re-established subscription.
        await wait_for(lambda: a.members == ("a", "b", "c") and b.members == ("a", "b", "c"), 0.5, "c's join")
        await c.leave()
    finally:
        await a.leave()
        await b.leave()


async def test_joining_an_unreachable_redis_is_one_line_without_the_password(tmp_path: object) -> None:
    with pytest.raises(RedisUnavailableError) as info:
        await Membership("redis://:hunter2@127.0.0.1:1/0", lease_ttl=1).join()
    message = str(info.value)
    assert message.startswith("cannot reach Redis at redis://:***@127.0.0.1:1/0: ")
    assert "hunter2" not in message and "\n" not in message
    with pytest.raises(RedisUnavailableError, match=r"^cannot reach Redis at unix:///nonexistent/redis.sock: "):
        await Membership("unix:///nonexistent/redis.sock").join()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lease_ttl": 0}, "lease TTL must be > 0 seconds"),
        ({"lease_ttl": 3, "heartbeat": 3}, r"heartbeat \(3 s\) must be > 0 and shorter than the lease TTL \(3 s\)"),
        ({"heartbeat": -1}, "heartbeat"),
        ({"member_id": "two words"}, "member id must be 1-200 characters without spaces"),
        ({"member_id": ""}, "member id"),
        ({"namespace": ""}, "namespace must be 1-100 characters without spaces"),
    ],
)
def test_bad_membership_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Membership("redis://localhost", **kwargs)  # type: ignore[arg-type]


def test_default_heartbeat_is_a_third_of_the_lease() -> None:
    m = Membership("redis://localhost", lease_ttl=9)
    assert m.heartbeat == 3
    assert m.member_id.count("-") >= 2  # host-pid-random


async def test_leave_returns_promptly_while_heartbeats_are_in_flight(redis_url: str) -> None:
    """Regression: with redis-py's ``socket_timeout`` its sends go through ``asyncio.wait_for``, which on
    Python 3.11 swallows a cancellation; ``leave()`` then waited forever for a heartbeat that ran on."""
    rng = random.Random(3)
    other = Membership(redis_url, member_id="other", lease_ttl=1, heartbeat=0.005)  # nudges a lot
    await other.join()
    try:
        for i in range(40):
            m = Membership(redis_url, member_id=f"m{i}", lease_ttl=1, heartbeat=0.005)  # always mid-beat
            await m.join()
            await asyncio.sleep(rng.random() * 0.02)
            async with asyncio.timeout(3):
                await m.leave()
    finally:
        await other.leave()
