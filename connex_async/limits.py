"""The local limiter backend: window-safe buckets on top of aiolimiter, in this process.

Why not ``AsyncLimiter(N, T)`` as it is: it is a bucket of capacity N draining N/T per second, so
it admits a burst of N and then the drip, up to 2N - 1 requests inside one window of length T.
A venue that counts a strict sliding window answers the N+1st with a 429. The bucket we build
instead, and why it holds, is derived in :mod:`connex_async.rate_limit`:
``AsyncLimiter(b + s*r, (b + s*r) / r)`` with ``r = (N + 1 - b) / (T + m + s)``.

:class:`LimiterRegistry` is the default :class:`~connex_async.limiter_backend.LimiterBackend`: one
:class:`WindowSafeLimiter` per scope (bucket, cooldown, late-write charge), host circuits
(:mod:`connex_async.circuits`), and multi-scope admission in one synchronous step. Scopes that
have drained are dropped (a drained bucket is a fresh one), so removed portfolios cost nothing.

**Adaptive margins** (:mod:`connex_async.margins`) change a live bucket's rate and capacity
(:meth:`WindowSafeLimiter.retune`). The tokens in it are time already booked: a level ``L`` at rate
``r`` means the next ``L / r`` seconds are taken (GCRA's ``tat - now``), so a retune keeps that time
and re-expresses it at the new rate: nothing is given back or lost by a narrowing. A widening must
do more: the bound with the new margin ``m'`` holds for admissions made at the new interval
``e'``, but up to N admissions before it were spaced by the old ``e`` only. Writing ``k`` for those
among any N + 1 whose last comes after the change, the last comes at least
``T + m' - k (e' - e)`` after the first; so the bucket is pushed back by ``N (e' - e)`` (``k <= N``)
and every N + 1 admissions that end after the widening are at least ``T + m'`` apart, from the
moment it widens. A scope with no admission in the last ``T + m'`` has nothing to push.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections.abc import Hashable
from functools import partial
from itertools import count
from typing import Any

from aiolimiter import AsyncLimiter

from connex_async.circuits import CircuitTable
from connex_async.errors import LimiterTimeoutError
from connex_async.limiter_backend import ADMITTED, PROBE, CircuitKey, LimiterBackend, ScopeKey, Verdict
from connex_async.margins import AdaptiveScope, follow_all
from connex_async.rate_limit import RateLimit

__all__ = ["LimiterRegistry", "RateLimit", "RefundableBucket", "WindowSafeLimiter"]

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

    def retune(self, capacity: float, rate: float, push: float) -> None:
        """Refill at ``rate`` with ``capacity`` from now on: the time booked stays booked, plus ``push`` seconds.

        The level is booked time times the rate (``limits`` module docstring), so it is drained at
        the old rate first, converted to seconds, pushed, and converted back at the new rate. A
        sleeping waiter's timer was set at the old rate: it is set again.
        """
        self._leak()
        booked = self._level / self._rate_per_sec + push
        self.max_rate = capacity
        self.time_period = capacity / rate
        self._rate_per_sec = rate
        self._level = booked * rate
        if self._waiters:
            self._wake_next()

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


class WindowSafeLimiter(AdaptiveScope):
    """One limit scope (venue, limit group, endpoint): a window-safe bucket plus a cooldown.

    ``cool_down(until)`` is how server feedback wins: a 429 pauses the whole scope, not just the
    request that received it. Waiting is cancellation-safe: a cancelled waiter spends nothing.
    ``limit`` is the configured limit; ``current`` the one in effect (its margin adapted: see the
    module docstring and :class:`~connex_async.margins.AdaptiveScope`).
    """

    __slots__ = (
        "__weakref__",
        "_bucket",
        "_charged_until",
        "_cooldown_until",
        "_last_admitted",
        "_phased",
        "cooldowns",
        "limit",
    )

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._init_margin(limit)
        self._bucket = self.new_bucket()
        self._cooldown_until = 0.0  # time.monotonic()
        self._charged_until = 0.0  # time.monotonic(): stalls up to here are already charged
        self._phased = False
        self._last_admitted = 0.0  # time.monotonic()
        self.cooldowns = 0

    def new_bucket(self) -> RefundableBucket:
        """An aiolimiter bucket of ``limit.capacity`` draining at ``limit.refill_rate``."""
        return RefundableBucket(self.limit.capacity, self.limit.capacity / self.limit.refill_rate)

    def retune(self, limit: RateLimit, *, wider: bool) -> None:
        """Put ``limit`` (another margin) in effect at once; a widening pushes the bucket back by ``N (e' - e)``."""
        old, self.current = self.current, limit
        push = 0.0
        if wider and time.monotonic() - self._last_admitted < limit.window:
            push = limit.count * (limit.emission_interval - old.emission_interval)
        self._bucket.retune(limit.capacity, limit.refill_rate, push)

    def committed(self) -> None:
        """The slot taken is used: a request goes out (called once every scope has admitted it)."""
        # Thousands of keys created together would refill in lockstep and reach the venue as one
        # herd every interval, whose queueing delay no margin covers. After the first admission
        # (which stays immediate) each scope's schedule is shifted by a random part of an interval.
        # Only on a committed admission: a tentative one that is refunded must leave no trace.
        self._last_admitted = time.monotonic()
        if not self._phased:
            self._phased = True
            self._bucket.push_back(random.random() / self.current.refill_rate)

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

    @property
    def drained(self) -> bool:
        """Nothing in the bucket, no cooldown, nobody waiting: it admits exactly as a new one would.

        Also a whole window since the last admission: a request admitted before may still be on its
        way to the socket, and its late-write charge must find this limiter.
        """
        bucket = self._bucket
        if bucket._waiters or self.cooldown_remaining > 0:
            return False
        if time.monotonic() - self._last_admitted < self.current.window + self.current.slack:
            return False
        try:
            return bucket.has_capacity(bucket.max_rate)  # level + capacity <= capacity: level is 0
        except RuntimeError:  # no running loop: the bucket cannot tell the time, keep it
            return False

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


class LimiterRegistry(LimiterBackend):
    """The limiters of one pool, keyed by scope; the first configuration of a scope wins.

    One scope, one limiter, always: a swept limiter that a request still holds (it got its handle
    before waiting for a connection) is taken back when its scope is asked for again, never
    duplicated. Two limiters for one key would be two budgets.
    """

    __slots__ = ("_circuits", "_limiters", "_swept", "_swept_at")

    #: Sweep drained scopes when the registry has grown by this factor since the last sweep
    #: (amortized O(1) per new scope; memory at most this factor above the live scopes).
    SWEEP_GROWTH = 1.5

    def __init__(self) -> None:
        super().__init__()
        self._limiters: dict[Hashable, WindowSafeLimiter] = {}
        #: Swept limiters, for as long as something still holds them (weakly: then they are gone).
        self._swept: weakref.WeakValueDictionary[Hashable, WindowSafeLimiter] = weakref.WeakValueDictionary()
        self._circuits = CircuitTable()
        self._swept_at = 64

    def get(self, scope: Hashable, limit: RateLimit) -> WindowSafeLimiter:
        """The limiter of ``scope``, created with ``limit`` on first use (or taken back, if swept but held)."""
        limiter = self._limiters.get(scope)
        if limiter is None:
            limiter = self._swept.pop(scope, None)
            if limiter is None:
                if len(self._limiters) >= self._swept_at:
                    self.sweep()
                limiter = WindowSafeLimiter(limit)
            self._limiters[scope] = limiter
        return limiter

    def scope(self, key: ScopeKey, limit: RateLimit) -> WindowSafeLimiter:
        """The backend seam's name for :meth:`get`."""
        return self.get(key, limit)

    def find(self, scope: Hashable) -> WindowSafeLimiter | None:
        """The limiter of ``scope`` if it exists."""
        return self._limiters.get(scope)

    def discard(self, scope: Hashable) -> None:
        """Forget a scope."""
        self._limiters.pop(scope, None)
        self._swept.pop(scope, None)

    def sweep(self) -> int:
        """Drop every scope that has drained (it would admit exactly as a new one); return how many.

        A removed portfolio's scopes drain within one window of its last request and go at the
        next sweep; a scope shared by keys that are still polled never drains for long enough.
        "Drained" cannot see a request that holds the limiter while it waits for a connection (a
        fresh limiter, not admitted yet, looks drained too): such a limiter stays reachable, weakly,
        and :meth:`get` takes it back. Started all at once, 1,000 keys x 3 callers behind 100
        connections had 900 keys' limiters made twice or more, and 15,000 violations.
        """
        idle = [scope for scope, limiter in self._limiters.items() if limiter.drained]
        for scope in idle:
            self._swept[scope] = self._limiters.pop(scope)
        self._swept_at = max(64, int(len(self._limiters) * self.SWEEP_GROWTH))
        return len(idle)

    def __len__(self) -> int:
        return len(self._limiters)

    # -- the backend seam -------------------------------------------------------------------

    async def try_admit(self, scopes: tuple[Any, ...], circuit: CircuitKey | None) -> Verdict:
        """Pass the circuit and take a slot of every scope in one synchronous step, or nothing."""
        probe = False
        if circuit is not None:
            remaining = self._circuits.check(circuit)
            if remaining is not None:
                return Verdict(False, circuit_remaining=remaining)
            probe = self._circuits.is_probing(circuit)
            follow_all(self.paths, scopes, circuit)
        if not self.try_acquire_all(scopes):
            if probe:
                self._circuits.release_probe(circuit)  # type: ignore[arg-type]
            return Verdict(False)
        return PROBE if probe else ADMITTED

    async def wait_ready(self, scopes: tuple[Any, ...], verdict: Verdict, max_wait: float | None) -> None:
        """Wait in the buckets' own FIFO order until every scope could admit; take nothing."""
        await self._take_all(scopes, max_wait)
        for limiter in scopes:
            limiter.refund()

    def cool_down(self, scope: Any, seconds: float) -> None:
        """Pause one scope (server feedback wins)."""
        scope.cool_down(seconds)

    def charge_stall(self, scopes: tuple[Any, ...], start: float, end: float) -> None:
        """Push each scope back by the part of ``[start, end]`` it has not been charged yet."""
        for limiter in scopes:
            limiter.charge_stall(start, end)

    def open_circuit(self, circuit: CircuitKey, seconds: float, probe_after: float | None) -> None:
        """Fail the host fast for ``seconds``; half-open after ``probe_after``."""
        self._circuits.open(circuit, seconds, probe_after)

    def close_circuit(self, circuit: CircuitKey) -> None:
        """The probe was answered."""
        self._circuits.close(circuit)

    def release_probe(self, circuit: CircuitKey) -> None:
        """The probe got no answer."""
        self._circuits.release_probe(circuit)

    def open_circuits(self) -> dict[CircuitKey, float]:
        """Seconds left of every open circuit."""
        return self._circuits.remaining()

    # -- multi-scope acquisition ------------------------------------------------------------

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
