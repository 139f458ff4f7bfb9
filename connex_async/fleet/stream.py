"""Updates into a Redis Stream, so consumers read the whole fleet from one place.

Each update becomes one entry of the namespace's ``updates`` stream (``XADD ... MAXLEN ~ maxlen``;
fields ``update``: the same JSON line ``--output jsonl`` prints, amounts as exact strings, and
``worker``: the member id that polled it), and the newest line per (portfolio, endpoint) is kept in
the ``latest`` hash under ``"<portfolio>|<endpoint>"``. "Newest" means last written to Redis: two
workers that briefly poll one portfolio are not ordered by their own clocks, which may disagree.

Back-pressure: :meth:`RedisStreamSink.write` never blocks the poller. Updates wait in a bounded
buffer (``buffer`` entries plus one batch in flight) and a single flusher task sends them in batches
of up to ``batch``, one ``MULTI``/``EXEC`` pipeline each (all of a batch or none of it), each given
``io_timeout`` s. If Redis is slow or down the buffer fills and the **oldest** updates are dropped
and counted in :attr:`dropped`: the poller already works newest-wins, and a blocked poller would
stop polling exactly when data is most wanted. A failed batch goes back to the front of the buffer
and is retried with backoff (0.05 s up to 2 s). Delivery is at least once: a connection lost (or a
batch timed out) after ``EXEC`` was sent but before its reply makes the batch go again.
:meth:`close` delivers what is pending for up to ``close_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from connex_async.fleet.keys import FleetKeys
from connex_async.fleet.output import update_encoder
from connex_async.poller import Update
from connex_async.redis_connection import (
    DEFAULT_NAMESPACE,
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

__all__ = ["DEFAULT_MAXLEN", "RedisStreamSink"]

logger = logging.getLogger("connex_async.fleet")

DEFAULT_MAXLEN = 100_000
_Entry = tuple[str, bytes]  # ("<portfolio>|<endpoint>", JSON line)


class RedisStreamSink:
    """Write updates to the fleet's stream and ``latest`` hash on the Redis at ``url`` (see the module)."""

    __slots__ = (
        "_buffer",
        "_encode",
        "_flusher",
        "_idle",
        "_in_flight",
        "_redis",
        "_wake",
        "batch",
        "close_timeout",
        "dropped",
        "failures",
        "io_timeout",
        "keys",
        "maxlen",
        "url",
        "worker",
        "written",
    )

    def __init__(
        self,
        url: str,
        *,
        worker: str,
        namespace: str = DEFAULT_NAMESPACE,
        maxlen: int = DEFAULT_MAXLEN,
        buffer: int = 10_000,
        batch: int = 500,
        close_timeout: float = 5.0,
        io_timeout: float = 5.0,
    ) -> None:
        if maxlen < 1 or buffer < 1 or batch < 1:
            raise ValueError("maxlen, buffer and batch must be >= 1")
        self.url = url
        self.keys = FleetKeys(validate_namespace(namespace))
        self.worker = worker
        self.maxlen = maxlen
        self.batch = batch
        self.close_timeout = close_timeout
        self.io_timeout = io_timeout
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self._encode = update_encoder()
        self._buffer: deque[_Entry] = deque(maxlen=buffer)
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._flusher: asyncio.Task[None] | None = None
        self._redis: Redis | None = None

    @property
    def pending(self) -> int:
        """Updates taken but not yet confirmed by Redis."""
        return len(self._buffer) + self._in_flight

    async def start(self) -> None:
        """Connect (:class:`~connex_async.redis_connection.RedisUnavailableError` if Redis does not
        answer) and start the flusher."""
        if self._flusher is not None:
            return
        self._redis = connect(self.url, connect_timeout=self.io_timeout)
        try:
            await ensure_reachable(self._redis, self.url, self.io_timeout)
        except BaseException:
            await self._redis.aclose()
            self._redis = None
            raise
        self._flusher = asyncio.create_task(self._flush_forever(), name="fleet-stream-flusher")

    def write(self, update: Update[Any]) -> None:
        """Queue ``update``; if the buffer is full the oldest queued update is dropped (and counted)."""
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append((f"{update.portfolio}|{update.endpoint}", self._encode(update)))
        self._idle.clear()
        self._wake.set()

    async def close(self) -> None:
        """Deliver what is pending (up to ``close_timeout`` s), then stop; what is left counts as dropped."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.close_timeout):
                    await self._idle.wait()
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        self.dropped += self.pending
        self._buffer.clear()
        self._in_flight = 0
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def __aenter__(self) -> RedisStreamSink:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _flush_forever(self) -> None:
        backoff = 0.05
        while True:
            if not self._buffer:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._buffer.popleft() for _ in range(min(self.batch, len(self._buffer)))]
            self._in_flight = len(batch)
            try:
                await bounded(self._send(batch), self.io_timeout)
            except redis_errors() as exc:
                self._in_flight = 0
                self._requeue(batch)
                if self.failures == 0 or backoff >= 2.0:
                    logger.warning(
                        "fleet stream: Redis at %s unreachable (%s); buffering up to %d updates, oldest dropped",
                        redact(self.url),
                        describe(exc, self.url),
                        self._buffer.maxlen,
                    )
                self.failures += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            self._in_flight = 0
            self.written += len(batch)
            backoff = 0.05

    async def _send(self, batch: list[_Entry]) -> None:
        assert self._redis is not None
        latest: dict[str, bytes] = {}
        async with self._redis.pipeline(transaction=True) as pipe:
            for key, line in batch:
                pipe.xadd(
                    self.keys.updates, {"update": line, "worker": self.worker}, maxlen=self.maxlen, approximate=True
                )
                latest[key] = line  # the newest of the batch per (portfolio, endpoint)
            pipe.hset(self.keys.latest, mapping=latest)  # type: ignore[arg-type]
            await pipe.execute()

    def _requeue(self, batch: list[_Entry]) -> None:
        """Put a failed batch back in front; it is older than everything queued, so if the buffer
        filled meanwhile, its own entries are the ones to drop."""
        for entry in reversed(batch):
            if len(self._buffer) == self._buffer.maxlen:
                self.dropped += 1
            else:
                self._buffer.appendleft(entry)
