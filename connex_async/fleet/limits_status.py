"""``fleet status``'s section on the shared limits: scopes cooling down, circuits open, the embargo.

Reads the Redis limiter's keys (:func:`connex_async.redis_limits.key_prefix`); every "left" is a
difference of Redis ``TIME`` values, as the limiter's own decisions are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connex_async.fleet.keys import FleetKeys
from connex_async.fleet.status import Section
from connex_async.redis_limits import key_prefix

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["LONGEST_WINDOW_S", "limits_section"]

#: The longest window of the venues' default limits (ConneX positions: 300 per 60 s, margin 1.2 s):
#: a new epoch younger than this may still hold some scope.
LONGEST_WINDOW_S = 61.2
_BATCH = 500


async def limits_section(redis: Redis, keys: FleetKeys, now_ms: int) -> Section:
    """Scopes in a cooldown, circuits open (with their next probe), and a recent new epoch."""
    prefix = key_prefix(keys.namespace)
    now_us = now_ms * 1000
    rows: list[tuple[str, str, str]] = []
    born = await redis.hget(f"{prefix}:epoch", "born")
    if born is not None and now_us - int(float(born)) < LONGEST_WINDOW_S * 1e6:
        age = (now_us - int(float(born))) / 1e6
        rows.append(("epoch", "embargo", f"new epoch {age:.1f}s ago: each scope waits one window from it"))
    names = [key async for key in redis.scan_iter(match=f"{prefix}:[sc]:*", count=1000)]
    for start in range(0, len(names), _BATCH):
        chunk = names[start : start + _BATCH]
        async with redis.pipeline(transaction=False) as pipe:
            for name in chunk:
                pipe.hmget(name, "cool", "until", "probe_at")
            states = await pipe.execute()
        for name, (cool, until, probe_at) in zip(chunk, states, strict=True):
            rows += _rows(_text(name)[len(prefix) + 3 :], cool, until, probe_at, now_us)  # drop "{ns}:s:"
    rows.sort()
    return Section(
        name="limits",
        title=f"shared limits: {sum(r[1] == 'cooling' for r in rows)} scopes cooling down, "
        f"{sum(r[1].startswith('circuit') for r in rows)} circuits open",
        columns=("scope", "state", "left"),
        rows=rows,
        data=[{"scope": scope, "state": state, "left": left} for scope, state, left in rows],
        empty="no scope cooling down, no circuit open",
    )


def _rows(name: str, cool: Any, until: Any, probe_at: Any, now_us: int) -> list[tuple[str, str, str]]:
    rows = []
    if cool is not None and int(float(cool)) > now_us:
        rows.append((name, "cooling", f"{(int(float(cool)) - now_us) / 1e6:.1f}s"))
    if until is not None and int(float(until)) > now_us:
        probe = int(float(probe_at or until)) - now_us
        state = "circuit half-open" if probe <= 0 else f"circuit open, probe in {probe / 1e6:.0f}s"
        rows.append((name, state, f"{(int(float(until)) - now_us) / 1e6:.0f}s"))
    return rows


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
