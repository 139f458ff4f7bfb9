"""What the fleet tests share: waiting for a condition, Redis TIME, reading the update stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from connex_async.fleet.keys import FleetKeys


async def wait_for(predicate: Callable[[], bool], within: float, what: str) -> float:
    """Seconds until ``predicate()`` holds; fails the test if it does not within ``within`` s."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            pytest.fail(f"not within {within} s: {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def redis_now_ms(client: aioredis.Redis) -> int:
    """Redis TIME in milliseconds: the one clock the fleet is measured by."""
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry: its Redis time (ms, from the id), the worker, and the update."""

    ms: int
    worker: str
    update: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return self.update["portfolio"], self.update["endpoint"]


async def read_stream(client: aioredis.Redis, namespace: str = "connex-async") -> list[Entry]:
    """Every entry of the fleet's update stream, oldest first."""
    entries = []
    for entry_id, fields in await client.xrange(FleetKeys(namespace).updates):
        ms = int(entry_id.decode().split("-", 1)[0])
        entries.append(Entry(ms, fields[b"worker"].decode(), json.loads(fields[b"update"])))
    return entries
