"""Window-safe rate limits on top of aiolimiter, with cooldowns the server can impose.

Why not ``AsyncLimiter(N, T)`` as it is: it is a bucket of capacity N draining N/T per second, so
it admits a burst of N and then the drip, up to 2N - 1 requests inside one window of length T.
A venue that counts a strict sliding window answers the N+1st with a 429.

The derivation. Let a bucket hold at most ``b`` tokens (``burst``) and refill at ``r`` tokens/s;
each request spends one. Take N+1 consecutive admissions ``a_i <= ... <= a_{i+N}``. At ``a_i``
at most ``b`` tokens are available (the one ``a_i`` spends included), so the other ``N + 1 - b``
must be refilled before ``a_{i+N}``::

    a_{i+N} - a_i >= (N + 1 - b) / r

Choosing ``r = (N + 1 - b) / (T + m)`` makes any N+1 admissions at least ``T + m`` apart. If the
network (and our own event loop) delays two requests by amounts that differ by less than the
margin ``m``, their arrivals are more than ``T`` apart, so no half-open window ``(t - T, t]`` at
the server ever holds more than N of them. Every extra token of burst costs ``1/N`` of throughput,
which is why ``burst`` defaults to 1 (a steady pacer).

Timer slack. A waiter wakes a little after its token is due (epoll rounds timeouts up to whole
milliseconds, other tasks run first). A bucket that is empty at that moment cannot bank the lost
time, so each admission would cost its lateness: about 2% of 20 req/s, measured. The bucket
therefore holds ``s * r`` extra tokens of capacity (``s`` = ``slack`` seconds). Those count in the
bound above like burst, ``a_{i+N} - a_i >= (N + 1 - b - s*r) / r``, so the refill rate becomes::

    r = (N + 1 - b) / (T + m + s)

which keeps any N+1 admissions ``T + m`` apart exactly as before. Lateness beyond ``s`` costs a
fraction ``r * E[late - s]`` of the rate; the slack itself costs ``s / T``. The best ``s`` is
therefore where ``P(late > s) = 1 / N``: a limit of many requests needs a deep slack, one of a
few does not. A shared 600 / 5 s host limit on a loop at 100% CPU delivered 75 req/s of its
117.6 with 3 ms of slack, 108 with 20 ms and 112 with 50 ms (measured, the Zoomex wallets of the
fan-out benchmark). The default is 0.1 ms per request of the limit, at least 3 ms and at most 1%
of the period: 3 ms for 20 / 1 s, 30 ms for 300 / 60 s, 50 ms for 600 / 5 s.

The default margin is 25 ms or 2% of ``T``, whichever is larger: a 60 s window gives up 2% of its
rate for 1.2 s of room, because over long windows the venue's own queueing, not the network,
dominates the spread of delays. Utilization is ``(N + 1 - b) * T / (N * (T + m + s))``: with the
defaults, 97.3% of 20 req/s, 97.9% of 300 req/60 s and 97.1% of 600 req/5 s.
``AsyncLimiter(b + s*r, (b + s*r) / r)`` is exactly that bucket.

Late writes. The bound is between admissions; the margin covers what happens after. A request that
is written long after its admission (a garbage-collector pass between the two) is charged the
excess through :meth:`WindowSafeLimiter.charge_stall` (see :mod:`connex_async.send_ticket`), so the
bound holds between write times.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Hashable
from dataclasses import dataclass
from functools import partial
from itertools import count

from aiolimiter import AsyncLimiter

from connex_async.errors import LimiterTimeoutError

__all__ = ["LimiterRegistry", "RateLimit", "RefundableBucket", "WindowSafeLimiter"]

DEFAULT_MARGIN = 0.025
#: ... or this fraction of the period, if larger: long windows see more of the venue's own queueing.
DEFAULT_MARGIN_FRACTION = 0.02
#: Slack: this much per request of the limit (a deeper bank for limits of many requests) ...
SLACK_PER_REQUEST = 0.0001
#: ... at least this ...
DEFAULT_SLACK = 0.003
#: ... and at most this fraction of the period (what the slack costs in rate).
MAX_SLACK_FRACTION = 0.01


#: Orders waiters in every bucket's heap. aiolimiter gives each bucket its own
#: ``partial(next, count())``: two more objects per limiter for the garbage collector to walk on
#: every full pass (two limiters per portfolio, 470 bytes of its 2.9 KB, measured). The order only
#: has to grow within one heap, which one shared counter does.
_next_waiter = partial(next, count())


class RefundableBucket(AsyncLimiter):
    """aiolimiter's bucket plus a non-waiting :meth:`try_take`, :meth:`refund` and :meth:`push_back`.

    The first two let a request limited per key *and* per host take both slots in one synchronous
    step, so no token is ever held across an await (see :meth:`LimiterRegistry.acquire`). A refund
    is only ever made in the same step as the take, so the token has not drained at all and handing
    back exactly 1 is exact. ``_level``, ``_leak``, ``_rate_per_sec``, ``_wake_next`` and
    ``_next_count`` are aiolimiter 1.x internals (pinned < 2; tests/test_limits.py exercises them).
    """

    __slots__ = ()

    def __init__(self, max_rate: float, time_period: float = 60) -> None:
        super().__init__(max_rate, time_period)
        self._next_count = _next_waiter

    def push_back(self, seconds: float) -> None:
        """Delay the admissions to come by ``seconds`` (more level: only ever stricter).

        The bucket drains first, so that a level which would have reached zero by now does not
        swallow part of the charge.
        """
        self._leak()
        self._level += seconds * self._rate_per_sec

    def try_take(self) -> bool:
        """Take one token if there is capacity right now; never waits."""
        if not self.has_capacity():
            return False
        self._level += 1
        return True

    def refund(self) -> None:
        """Give back the token taken in this same synchronous step, and wake a waiter."""
        self._level = max(0.0, self._level - 1)
        self._wake_next()


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` requests in any window of ``period`` seconds, as the venue counts them.

    ``burst`` is how many requests may go back to back after an idle spell; ``margin`` (seconds)
    absorbs network and scheduling jitter between requests (default: 25 ms or 2% of the period,
    whichever is larger); ``slack`` (seconds) of event-loop lateness per admission is not lost
    (default: 0.1 ms per request of the limit, within 3 ms and 1% of the period).
    See the module docstring for the derivation.
    """

    count: int
    period: float
    burst: int = 1
    margin: float = None  # type: ignore[assignment]  # resolved in __post_init__
    slack: float = None  # type: ignore[assignment]  # resolved in __post_init__

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"RateLimit.count must be a positive int, got {self.count!r}")
        if not self.period > 0:
            raise ValueError(f"RateLimit.period must be > 0 seconds, got {self.period!r}")
        if not 1 <= self.burst <= self.count:
            raise ValueError(f"RateLimit.burst must be in 1..count ({self.count}), got {self.burst!r}")
        if self.margin is None:
            object.__setattr__(self, "margin", max(DEFAULT_MARGIN, DEFAULT_MARGIN_FRACTION * self.period))
        if self.slack is None:
            deep = min(SLACK_PER_REQUEST * self.count, MAX_SLACK_FRACTION * self.period)
            object.__setattr__(self, "slack", max(DEFAULT_SLACK, deep))
        if not self.margin >= 0:
            raise ValueError(f"RateLimit.margin must be >= 0 seconds, got {self.margin!r}")
        if not self.slack >= 0:
            raise ValueError(f"RateLimit.slack must be >= 0 seconds, got {self.slack!r}")

    @property
    def refill_rate(self) -> float:
        """Tokens per second: ``(count + 1 - burst) / (period + margin + slack)``."""
        return (self.count + 1 - self.burst) / (self.period + self.margin + self.slack)

    @property
    def capacity(self) -> float:
        """Bucket capacity in tokens: ``burst`` plus ``slack`` seconds of refill."""
        return self.burst + self.slack * self.refill_rate

    @property
    def utilization(self) -> float:
        """The sustained rate as a fraction of the nominal ``count / period``."""
        return self.refill_rate * self.period / self.count

    def new_bucket(self) -> RefundableBucket:
        """An aiolimiter bucket of ``capacity`` draining at ``refill_rate``."""
        return RefundableBucket(self.capacity, self.capacity / self.refill_rate)


class WindowSafeLimiter:
    """One limit scope (venue, limit group, endpoint): a window-safe bucket plus a cooldown.

    ``cool_down(until)`` is how server feedback wins: a 429 pauses the whole scope, not just the
    request that received it. Waiting is cancellation-safe: a cancelled waiter spends nothing.
    """

    __slots__ = ("_bucket", "_charged_until", "_cooldown_until", "_phased", "cooldowns", "limit")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._bucket = limit.new_bucket()
        self._cooldown_until = 0.0  # time.monotonic()
        self._charged_until = 0.0  # time.monotonic(): stalls up to here are already charged
        self._phased = False
        self.cooldowns = 0

    def committed(self) -> None:
        """The slot taken is used: a request goes out (called once every scope has admitted it)."""
        # Thousands of keys created together would refill in lockstep and reach the venue as one
        # herd every interval, whose queueing delay no margin covers. After the first admission
        # (which stays immediate) each scope's schedule is shifted by a random part of an interval.
        # Only on a committed admission: a tentative one that is refunded must leave no trace.
        if not self._phased:
            self._phased = True
            self._bucket.push_back(random.random() / self.limit.refill_rate)

    @property
    def cooldown_remaining(self) -> float:
        """Seconds until the current cooldown ends (0 if none)."""
        return max(0.0, self._cooldown_until - time.monotonic())

    def cool_down(self, seconds: float) -> None:
        """Admit nothing for ``seconds`` from now (extends, never shortens, a running cooldown)."""
        until = time.monotonic() + max(0.0, seconds)
        if until > self._cooldown_until:
            self._cooldown_until = until
            self.cooldowns += 1

    async def acquire(self) -> None:
        """Wait for a slot; on return the caller may send exactly one request."""
        while True:
            remaining = self.cooldown_remaining
            if remaining > 0:
                await asyncio.sleep(remaining)
                continue
            await self._bucket.acquire()
            # A cooldown that began while we queued wins: give the slot back, wait, take another.
            if self.cooldown_remaining <= 0:
                return
            self.refund()

    def try_acquire(self) -> bool:
        """Take a slot only if one is free right now (no cooldown, capacity in the bucket)."""
        return self.cooldown_remaining <= 0 and self._bucket.try_take()

    def refund(self) -> None:
        """Hand back a slot taken in this same synchronous step (never after an await)."""
        self._bucket.refund()

    def charge_stall(self, start: float, end: float) -> None:
        """Push this scope back by the part of the stall ``[start, end]`` not charged yet.

        A request admitted at ``a`` and written at ``w`` must count as sent at ``w``: pushing the
        next admissions back by ``w - a`` restores the bound between write times. Requests stalled
        by the same pause (a GC pass, new connections opened together) share one charge: charging
        each of them in full would stack, and 64 concurrent first requests on fresh connections
        would block the scope for 64 handshakes. Only the union of the stall intervals is needed:
        every piece of a request's interval is charged by some write that happens after its
        admission, so before the admission N requests later.
        """
        start = max(start, self._charged_until)
        if end > start:
            self._bucket.push_back(end - start)
            self._charged_until = end


class LimiterRegistry:
    """The limiters of one pool, keyed by scope; the first configuration of a scope wins."""

    __slots__ = ("_limiters",)

    def __init__(self) -> None:
        self._limiters: dict[Hashable, WindowSafeLimiter] = {}

    def get(self, scope: Hashable, limit: RateLimit) -> WindowSafeLimiter:
        """The limiter of ``scope``, created with ``limit`` on first use."""
        limiter = self._limiters.get(scope)
        if limiter is None:
            limiter = self._limiters[scope] = WindowSafeLimiter(limit)
        return limiter

    def find(self, scope: Hashable) -> WindowSafeLimiter | None:
        """The limiter of ``scope`` if it exists."""
        return self._limiters.get(scope)

    def discard(self, scope: Hashable) -> None:
        """Forget a scope (a removed portfolio)."""
        self._limiters.pop(scope, None)

    def __len__(self) -> int:
        return len(self._limiters)

    async def acquire(self, limiters: tuple[WindowSafeLimiter, ...], max_wait: float | None) -> float:
        """Take one slot of every scope in the same instant; return the seconds waited.

        Waiting happens on one scope at a time, holding nothing else: once it grants a slot, the
        other scopes are tried synchronously. If one is full, the fresh slot is refunded (it was
        taken in this very step, so nothing has drained) and that scope is waited on next. So no
        slot is ever held across a wait: a key's admission and the host's are the same moment,
        and a cancelled or timed-out request holds nothing.
        """
        started = time.monotonic()
        await self._take_all(limiters, max_wait)
        for limiter in limiters:
            limiter.committed()
        return time.monotonic() - started

    async def _take_all(self, limiters: tuple[WindowSafeLimiter, ...], max_wait: float | None) -> None:
        started = time.monotonic()
        if max_wait is None:
            await self._acquire_all(limiters)
            return
        try:
            async with asyncio.timeout(max_wait):
                await self._acquire_all(limiters)
        except TimeoutError:
            waited = time.monotonic() - started
            raise LimiterTimeoutError(f"no rate-limit slot within max_queue_wait={max_wait}s", waited=waited) from None

    @staticmethod
    def try_acquire_all(limiters: tuple[WindowSafeLimiter, ...]) -> bool:
        """Take a slot of every scope right now, or of none; never waits."""
        taken: list[WindowSafeLimiter] = []
        for limiter in limiters:
            if not limiter.try_acquire():
                for held in taken:
                    held.refund()
                return False
            taken.append(limiter)
        for limiter in taken:
            limiter.committed()
        return True

    async def wait_ready(self, limiters: tuple[WindowSafeLimiter, ...], max_wait: float | None) -> None:
        """Wait until every scope could admit a request now, taking nothing.

        Takes all the slots and gives them back in the same step (exact, see ``RefundableBucket``):
        the caller then competes for them again together with what else it needs.
        """
        await self._take_all(limiters, max_wait)
        for limiter in limiters:
            limiter.refund()

    @staticmethod
    async def _acquire_all(limiters: tuple[WindowSafeLimiter, ...]) -> None:
        blocking = limiters[0] if limiters else None
        while blocking is not None:
            await blocking.acquire()
            taken = [blocking]
            blocking = None
            for other in limiters:
                if other in taken:
                    continue
                if other.try_acquire():
                    taken.append(other)
                    continue
                for limiter in taken:  # refunded in the same step they were taken: exact
                    limiter.refund()
                blocking = other
                break
