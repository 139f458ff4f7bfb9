"""Fleet membership in Redis: a lease per worker, renewed by heartbeats, dated by Redis ``TIME`` only.

The live set is one sorted set, member id -> the end of its lease in Redis ``TIME`` milliseconds.
Why a sorted set rather than one ``SET key PX lease`` per worker: listing per-worker keys needs a
``SCAN`` of the whole keyspace (shared with the limiter's keys) or a registry that must be pruned
anyway, and their expiry happens on Redis's own schedule, not when a reader asks. With the sorted
set one Lua script does everything in one atomic step on one clock: read ``TIME``, drop the members
whose lease has ended, renew this worker's lease, and return the live members with their deadlines.
No process ever compares its own clock with another's; a worker only turns Redis durations
(deadline minus Redis now) into local sleeps.

How a change is noticed:

- **join / leave**: the script publishes on the namespace's ``events`` channel when it (re)adds a
  member or drops an expired one, and :meth:`Membership.leave` deletes the member at once and
  publishes too; every worker subscribes and re-reads the set immediately.
- **death** (kill -9, a lost machine): the dead worker's lease simply runs out. Each worker sleeps
  until the earliest deadline among the others (or its next heartbeat, whichever is first), so the
  survivors see the death within milliseconds of the lease's end, not up to a heartbeat later.
- **no pub/sub at all** (a message lost in a reconnect): every heartbeat returns the whole live set,
  so every worker sees any change within one heartbeat regardless.

A worker that cannot reach Redis keeps its last view (and so keeps polling what it owns) and retries
every ``min(heartbeat, 0.5 s)``; when Redis answers again its heartbeat re-adds it, which
publishes a join, and the fleet rebalances.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from connex_async.fleet.keys import FleetKeys
from connex_async.redis_connection import (
    DEFAULT_NAMESPACE,
    RedisUnavailableError,
    bounded,
    connect,
    describe,
    ensure_reachable,
    redact,
    redis_errors,
    validate_namespace,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["DEFAULT_LEASE_TTL", "Membership", "default_member_id"]

logger = logging.getLogger("connex_async.fleet")

DEFAULT_LEASE_TTL = 10.0

# KEYS: members (zset), info (hash). ARGV: member id, lease ms, info JSON, events channel.
# Returns {Redis now in ms, {member, deadline, member, deadline, ...}}.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #dead > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  for _, member in ipairs(dead) do  -- one by one: unpack() is bounded by Lua's stack
    redis.call('HDEL', KEYS[2], member)
  end
end
local joined = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if joined == 1 then
  redis.call('PUBLISH', ARGV[4], 'join ' .. ARGV[1])
elseif #dead > 0 then
  redis.call('PUBLISH', ARGV[4], 'expire')
end
return {now, redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')}
"""

# KEYS: members, info. ARGV: member id, events channel. Returns 1 if the member was live.
_LEAVE = """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if removed == 1 then
  redis.call('PUBLISH', ARGV[2], 'leave ' .. ARGV[1])
end
return removed
"""

Listener = Callable[[tuple[str, ...]], None]


def default_member_id() -> str:
    """``<host>-<pid>-<random>``: unique per process, readable in ``fleet status``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Membership:
    """This worker's membership of the fleet in namespace ``namespace`` on the Redis at ``url``.

    :meth:`join` (or ``async with``) adds the worker and starts the heartbeat; :attr:`members` is
    the live set as last seen and every change is handed to the callbacks given to
    :meth:`subscribe`; :meth:`leave` deletes the membership at once. ``heartbeat`` defaults to a
    third of ``lease_ttl``, so that two heartbeats can be lost before the lease ends.
    """

    __slots__ = (
        "_connected",
        "_deadlines",
        "_heartbeat_script",
        "_info",
        "_io_timeout",
        "_leave_script",
        "_listeners",
        "_members",
        "_now_ms",
        "_nudge",
        "_redis",
        "_tasks",
        "heartbeat",
        "keys",
        "lease_ttl",
        "member_id",
        "url",
    )

    def __init__(
        self,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        member_id: str | None = None,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        heartbeat: float | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        if not lease_ttl > 0:
            raise ValueError(f"lease TTL must be > 0 seconds, got {lease_ttl}")
        heartbeat = lease_ttl / 3 if heartbeat is None else heartbeat
        if not 0 < heartbeat < lease_ttl:
            raise ValueError(f"heartbeat ({heartbeat} s) must be > 0 and shorter than the lease TTL ({lease_ttl} s)")
        member_id = default_member_id() if member_id is None else member_id
        if not member_id or len(member_id) > 200 or any(c.isspace() for c in member_id):
            raise ValueError(f"member id must be 1-200 characters without spaces, got {member_id!r}")
        self.url = url
        self.keys = FleetKeys(validate_namespace(namespace))
        self.member_id = member_id
        self.lease_ttl = lease_ttl
        self.heartbeat = heartbeat
        # A call slower than a heartbeat is as good as lost: give up and retry on schedule.
        self._io_timeout = max(0.2, min(5.0, heartbeat))
        self._info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), **(info or {})}
        self._info["lease_ms"] = round(lease_ttl * 1000)
        self._info["heartbeat_ms"] = round(heartbeat * 1000)
        self._members: tuple[str, ...] = ()
        self._deadlines: dict[str, int] = {}
        self._now_ms = 0
        self._connected = False
        self._listeners: list[Listener] = []
        self._nudge = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._redis: Redis | None = None
        self._heartbeat_script: AsyncScript | None = None
        self._leave_script: AsyncScript | None = None

    # -- what a worker reads ------------------------------------------------------------------

    @property
    def members(self) -> tuple[str, ...]:
        """The live members (sorted) as of the last successful heartbeat."""
        return self._members

    @property
    def connected(self) -> bool:
        """Whether the last heartbeat reached Redis."""
        return self._connected

    @property
    def redis_time_ms(self) -> int:
        """Redis ``TIME`` (ms) of the last successful heartbeat."""
        return self._now_ms

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(members)`` on every change of the live set (from the heartbeat task)."""
        self._listeners.append(listener)

    def set_info(self, **fields: Any) -> None:
        """Publish ``fields`` (e.g. ``owned=120``) in this member's info, with an early heartbeat."""
        self._info.update(fields)
        self._nudge.set()

    # -- lifecycle ----------------------------------------------------------------------------

    async def join(self) -> tuple[str, ...]:
        """Connect, add this worker and start the heartbeat; :class:`RedisUnavailableError` if Redis
        does not answer. Returns the live members, this worker included."""
        if self._tasks:
            return self._members
        redis = self._redis = connect(self.url, connect_timeout=self._io_timeout)
        try:
            await ensure_reachable(redis, self.url, self._io_timeout)
            self._heartbeat_script = redis.register_script(_HEARTBEAT)
            self._leave_script = redis.register_script(_LEAVE)
            try:
                await self._beat()
            except redis_errors() as exc:
                raise RedisUnavailableError(
                    f"cannot join the fleet at {redact(self.url)}: {describe(exc, self.url)}"
                ) from None
            self._connected = True
        except BaseException:
            await self._close()
            raise
        self._tasks = [
            asyncio.create_task(self._run(), name=f"fleet-heartbeat-{self.member_id}"),
            asyncio.create_task(self._listen(), name=f"fleet-events-{self.member_id}"),
        ]
        return self._members

    async def leave(self) -> None:
        """Stop the heartbeat and delete the membership at once (the others take over now, not when
        the lease ends). If Redis cannot be reached the lease simply runs out."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._leave_script is not None:
            try:
                await self._leave_script(
                    keys=[self.keys.members, self.keys.info], args=[self.member_id, self.keys.events]
                )
            except redis_errors() as exc:
                logger.warning(
                    "fleet: could not leave cleanly (%s); the lease ends in %.1f s",
                    describe(exc, self.url),
                    self.lease_ttl,
                )
        await self._close()

    async def __aenter__(self) -> Self:
        await self.join()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.leave()

    async def _close(self) -> None:
        redis, self._redis = self._redis, None
        self._heartbeat_script = self._leave_script = None
        if redis is not None:
            await redis.aclose()

    # -- the heartbeat ------------------------------------------------------------------------

    async def _beat(self) -> None:
        """One heartbeat: renew the lease, read the live set, tell the listeners if it changed."""
        assert self._heartbeat_script is not None
        reply = await bounded(
            self._heartbeat_script(
                keys=[self.keys.members, self.keys.info],
                args=[self.member_id, round(self.lease_ttl * 1000), json.dumps(self._info), self.keys.events],
            ),
            self._io_timeout,
        )
        now, flat = int(reply[0]), reply[1]
        deadlines = {_text(flat[i]): int(float(flat[i + 1])) for i in range(0, len(flat), 2)}
        self._now_ms, self._deadlines = now, deadlines
        members = tuple(sorted(deadlines))
        if members != self._members:
            self._members = members
            for listener in list(self._listeners):
                try:
                    listener(members)
                except Exception:  # one bad listener must not stop the heartbeat
                    logger.exception("fleet: a membership listener failed")

    def _next_wait(self) -> float:
        """Seconds until the next heartbeat, or until the earliest other lease ends (a death is then
        seen at once, not up to a heartbeat later); a duration measured on Redis's clock."""
        others = [d for m, d in self._deadlines.items() if m != self.member_id]
        if not others:
            return self.heartbeat
        # +10 ms: wake just after the deadline has passed in Redis time, not just before it.
        return max(0.005, min(self.heartbeat, (min(others) - self._now_ms) / 1000 + 0.01))

    async def _run(self) -> None:
        wait = self._next_wait()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._nudge.wait()
            self._nudge.clear()
            try:
                await self._beat()
            except redis_errors() as exc:
                if self._connected:
                    logger.warning(
                        "fleet: lost contact with Redis at %s (%s); keeping the current portfolios",
                        redact(self.url),
                        describe(exc, self.url),
                    )
                self._connected = False
                wait = min(self.heartbeat, 0.5)
                continue
            if not self._connected:
                logger.warning("fleet: Redis at %s answers again; member %s", redact(self.url), self.member_id)
            self._connected = True
            wait = self._next_wait()

    async def _listen(self) -> None:
        """Turn every join / leave / expiry message into an immediate heartbeat; resubscribe after errors."""
        assert self._redis is not None
        backoff = 0.1
        while True:
            pubsub = self._redis.pubsub()
            try:
                await bounded(pubsub.subscribe(self.keys.events), self._io_timeout)
                self._nudge.set()  # changes published while we were not subscribed: look now
                backoff = 0.1
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        self._nudge.set()
            except redis_errors():
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.heartbeat, 0.5)  # as prompt as the heartbeat's retries
            finally:
                with contextlib.suppress(*redis_errors()):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
