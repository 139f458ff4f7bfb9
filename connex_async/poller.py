"""Fan-out polling of many portfolios, as fresh as the limits allow.

One scheduler task walks a heap of jobs (one per portfolio and endpoint) and starts each poll when
it is due; no task exists for an idle job, so 10,000 portfolios cost a heap entry each, not a
coroutine each, and a job never has more than one poll running. Phases are spread over the interval
within each endpoint, so that thousands of keys never fire in the same millisecond.

Polls in flight on one pool are kept near its ``connector_limit`` and shared between endpoint
groups (venue, endpoint): each group is guaranteed an equal share and borrows what the others leave
idle (:class:`_InFlight`); a borrowed slot is never taken back from a running poll, so polls in
flight reach at most ``connector_limit`` plus the shares still owed to the other groups, while
requests on the wire never exceed ``connector_limit`` (the pool's connection slots). A due job
that may not start waits in its group's queue, so a backlog on one endpoint (Zoomex wallets
behind the host-wide limit) never takes the slots of another. Every request still goes through
the pool, which admits it through the limiters without holding a connection while it waits: the
poller decides *when to want* data, the pool *when to send*.

Output is "newest wins" per (portfolio, endpoint): a consumer that falls behind sees the latest
data for each, never an unbounded queue, and :attr:`PollerStats.superseded` counts what it missed.

Quarantine: a job whose polls fail ``quarantine_after`` times in a row with a permission error
pauses alone (the key may lack that one endpoint's permission; its other endpoints go on); an
authentication error pauses every job of the portfolio (the key itself is refused). After
``quarantine_pause`` seconds one probe poll runs: success lifts the quarantine, failure starts
another pause. ``add()`` of a quarantined portfolio replaces it (a rotated key) and polls at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeAlias, TypeVar, cast

from connex_async.client import BaseClient
from connex_async.errors import AuthenticationError, ConnexAsyncError, PermissionDeniedError
from connex_async.pool import track_call
from connex_async.venues.connex.models import Asset, Position
from connex_async.venues.zoomex.models import WalletBalance

__all__ = [
    "AssetsUpdate",
    "PollCancelledError",
    "PollUpdate",
    "Poller",
    "PollerStats",
    "PositionsUpdate",
    "Update",
    "WalletUpdate",
]

T = TypeVar("T")

logger = logging.getLogger("connex_async")

JobKey = tuple[str, str]  # (portfolio label, endpoint)


class PollCancelledError(ConnexAsyncError):
    """The poller stopped while this poll was in flight; the poll's update carries this error."""


@dataclass(frozen=True, slots=True)
class Update(Generic[T]):
    """The outcome of one poll: ``data`` or ``error``, never both.

    ``fetched_at`` is ``time.time()`` when the poll ended; ``latency`` the wall time of the whole
    poll (all pages, retries, limiter waits); ``attempts`` the HTTP attempts it took. A
    :class:`Poller` yields the typed subclasses (:data:`PollUpdate`): compare ``endpoint`` and
    a type checker knows what ``data`` holds.
    """

    portfolio: str
    venue: str
    endpoint: str
    data: T | None
    error: ConnexAsyncError | None
    fetched_at: float
    latency: float
    attempts: int
    limiter_wait: float = 0.0
    #: This poll's failure paused its job (or, for an authentication error, its portfolio).
    quarantined: bool = False

    @property
    def ok(self) -> bool:
        """True when the poll returned data."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class AssetsUpdate(Update[list[Asset]]):
    """A ConneX assets poll: ``data`` is every asset row of every page."""

    endpoint: Literal["assets"]


@dataclass(frozen=True, slots=True)
class PositionsUpdate(Update[list[Position]]):
    """A ConneX positions poll: ``data`` is the open positions (zero-size rows filtered)."""

    endpoint: Literal["positions"]


@dataclass(frozen=True, slots=True)
class WalletUpdate(Update[WalletBalance]):
    """A Zoomex wallet poll: ``data`` is the wallet balance of the client's account type."""

    endpoint: Literal["wallet"]


PollUpdate: TypeAlias = AssetsUpdate | PositionsUpdate | WalletUpdate
"""What a :class:`Poller` yields. ``if update.endpoint == "assets":`` narrows it to :class:`AssetsUpdate`."""

_UPDATE_TYPES: dict[str, type[Update[Any]]] = {
    "assets": AssetsUpdate,
    "positions": PositionsUpdate,
    "wallet": WalletUpdate,
}


class _InFlight:
    """The polls running on one pool, about ``limit`` in all, shared fairly between endpoint groups.

    Each group is guaranteed ``limit // groups`` polls and may borrow beyond that while the pool's
    total is under ``limit`` (so the total can exceed ``limit`` by the shares owed to groups that
    start while others are borrowing: 20 on 12 connections with three groups). Why a total: polls
    beyond the pool's connections only queue for one, and each holds a task and its objects; 300
    polls on 100 connections cost about a quarter more CPU per poll than 100 (measured in
    ``benchmarks/bench_fanout.py``, mostly in the garbage collector). Why a guaranteed share: a
    group stuck behind its limiter must never hold every slot and starve the others.
    """

    __slots__ = ("groups", "limit", "queued", "running", "total")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self.groups: dict[tuple[str, str], tuple[str, str]] = {}
        self.running: dict[tuple[str, str], int] = {}  # every group registered on this pool
        self.queued: dict[tuple[str, str], deque[_Job]] = {}  # due jobs that may not start yet

    def add_group(self, group: tuple[str, str]) -> tuple[str, str]:
        """Register ``group``; returns the one shared tuple for it (jobs keep that, not a copy each)."""
        if group not in self.groups:
            self.groups[group] = group
            self.running[group] = 0
            self.queued[group] = deque()
        return self.groups[group]

    def may_start(self, group: tuple[str, str]) -> bool:
        running = self.running[group]
        if running >= self.limit:
            return False
        return self.total < self.limit or running < max(1, self.limit // len(self.running))

    def next_queued(self) -> _Job | None:
        """Pop the oldest queued job of the group with the fewest polls running that may start."""
        best: tuple[str, str] | None = None
        for group, queue in self.queued.items():
            while queue and queue[0].removed:
                queue.popleft()
            if queue and self.may_start(group) and (best is None or self.running[group] < self.running[best]):
                best = group
        return None if best is None else self.queued[best].popleft()


@dataclass(slots=True)
class _Job:
    client: BaseClient
    endpoint: str
    fetch: Callable[[], Awaitable[Any]]
    interval: float
    due: float = 0.0
    last_success: float | None = None  # time.monotonic()
    created: float = field(default_factory=time.monotonic)
    running: bool = False
    removed: bool = False
    auth_failures: int = 0  # authentication or permission errors in a row
    quarantined_until: float | None = None  # time.monotonic(); inf: until the portfolio is re-added
    quarantine_whole: bool = False  # paused with its whole portfolio (an authentication error)
    key: JobKey = field(init=False)
    group: tuple[str, str] = field(init=False)  # (venue, endpoint): shares the pool's in-flight slots
    in_flight: _InFlight | None = None  # the pool's, set by Poller._register

    def __post_init__(self) -> None:
        self.key = (self.client.label, self.endpoint)
        self.group = (self.client.venue.name, self.endpoint)


@dataclass(frozen=True, slots=True)
class PollerStats:
    """Counters of a poller at one moment; ``staleness`` is seconds since the newest data."""

    portfolios: int
    jobs: int
    in_flight: int
    polls_started: int
    polls_ended: int
    polls_failed: int
    superseded: int
    pending_updates: int
    #: (portfolio, endpoint) -> the error that paused it.
    quarantined: dict[JobKey, str]
    staleness: dict[JobKey, float]
    #: Unexpected (non-SDK) exceptions by type and endpoint: the first of each is logged with its
    #: traceback, the rest only counted here.
    unexpected_errors: dict[str, int] = field(default_factory=dict)

    def staleness_quantile(self, q: float) -> float:
        """The ``q`` quantile of staleness over all jobs (0 if none)."""
        values = sorted(self.staleness.values())
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(q * len(values)))]


class Poller:
    """Poll every client's endpoints at their intervals and yield an :class:`Update` per poll.

    ``assets_every`` / ``positions_every`` apply to ConneX clients, ``wallet_every`` to Zoomex
    clients (seconds; ``None`` skips that endpoint). Requests on the wire are bounded by each
    pool's connector limit. A job whose polls fail with a permission error ``quarantine_after``
    times in a row pauses for ``quarantine_pause`` seconds (an authentication error pauses the
    whole portfolio), then one probe poll decides; ``quarantine_pause=None`` pauses until the
    portfolio is re-added with :meth:`add`.
    """

    def __init__(
        self,
        clients: Iterable[BaseClient] = (),
        *,
        assets_every: float | None = 1.0,
        positions_every: float | None = 15.0,
        wallet_every: float | None = 1.0,
        quarantine_after: int = 3,
        quarantine_pause: float | None = 300.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.intervals: dict[str, float | None] = {
            "assets": assets_every,
            "positions": positions_every,
            "wallet": wallet_every,
        }
        for name, every in self.intervals.items():
            if every is not None and every <= 0:
                raise ValueError(f"{name}_every must be > 0 seconds or None")
        if quarantine_pause is not None and not quarantine_pause > 0:
            raise ValueError("quarantine_pause must be > 0 seconds or None")
        self.quarantine_after = quarantine_after
        self.quarantine_pause = quarantine_pause
        self.stop_timeout = stop_timeout
        self._jobs: dict[JobKey, _Job] = {}
        self._clients: dict[str, BaseClient] = {}
        self._heap: list[tuple[float, int, _Job]] = []
        self._seq = itertools.count()
        self._latest: dict[JobKey, PollUpdate] = {}
        self._ready: deque[JobKey] = deque()
        self._has_updates = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight: dict[int, _InFlight] = {}  # id(pool) -> its polls in flight and queued
        self._scheduler: asyncio.Task[None] | None = None
        self._closing = False
        self._started = self._ended = self._failed = self._superseded = 0
        self._quarantined: dict[JobKey, str] = {}
        self._unexpected: dict[str, int] = {}
        # Spread each endpoint's first polls evenly over its interval: the n-th of N clients that
        # poll an endpoint starts at n/N of it, whatever the order or mix of venues in `clients`.
        pending = list(clients)
        counts: dict[str, int] = {}
        for client in pending:
            for endpoint in client.poll_jobs():
                counts[endpoint] = counts.get(endpoint, 0) + 1
        seen: dict[str, int] = {}
        for client in pending:
            phases = {}
            for endpoint in client.poll_jobs():
                phases[endpoint] = seen.get(endpoint, 0) / counts[endpoint]
                seen[endpoint] = seen.get(endpoint, 0) + 1
            self._register(client, phases)

    # -- membership ------------------------------------------------------------------------

    def add(self, client: BaseClient) -> None:
        """Start polling ``client`` (at a random phase); its label must be unique.

        A quarantined portfolio may be added again (say, with a rotated key): it replaces the
        quarantined one, and its polls start at once.
        """
        if any(key[0] == client.label for key in self._quarantined):
            self.remove(client.label)
            self._register(client, dict.fromkeys(client.poll_jobs(), 0.0))
        else:
            self._register(client, {endpoint: random.random() for endpoint in client.poll_jobs()})
        self._wake.set()

    def remove(self, client_or_label: BaseClient | str) -> None:
        """Stop polling a portfolio (quarantined or not); a poll in flight still ends in one update."""
        label = client_or_label if isinstance(client_or_label, str) else client_or_label.label
        self._clients.pop(label, None)
        for key in [k for k in self._jobs if k[0] == label]:
            self._jobs.pop(key).removed = True
            self._quarantined.pop(key, None)

    def _register(self, client: BaseClient, phases: dict[str, float]) -> None:
        if client.label in self._clients:
            raise ValueError(f"a portfolio labelled {client.label!r} is already polled")
        self._clients[client.label] = client
        now = time.monotonic()
        for endpoint, fetch in client.poll_jobs().items():
            interval = self.intervals.get(endpoint)
            if interval is None:
                continue
            job = _Job(client, endpoint, fetch, interval, due=now + phases[endpoint] * interval)
            job.in_flight = self._in_flight.get(id(client.pool))
            if job.in_flight is None:
                job.in_flight = self._in_flight[id(client.pool)] = _InFlight(client.pool.connector_limit)
            job.group = job.in_flight.add_group(job.group)
            self._jobs[job.key] = job
            heapq.heappush(self._heap, (job.due, next(self._seq), job))

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Self:
        """Start the scheduler (idempotent)."""
        if self._scheduler is None:
            self._scheduler = asyncio.create_task(self._schedule(), name="connex-async-poller")
        return self

    async def stop(self, grace: float | None = None) -> None:
        """Stop scheduling; let polls in flight finish for ``grace`` s, then cancel the rest.

        A cancelled poll still yields one update, with a :class:`PollCancelledError`.
        """
        self._closing = True
        self._wake.set()  # the scheduler checks _closing when it wakes, whatever it was waiting for
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.stop_timeout if grace is None else grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._has_updates.set()  # wake a consumer so it can see the end

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- consuming -------------------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> PollUpdate:
        while not self._ready:
            if self._closing and not self._tasks:
                raise StopAsyncIteration
            self._has_updates.clear()
            await self._has_updates.wait()
        return self._latest.pop(self._ready.popleft())

    def drain(self) -> list[PollUpdate]:
        """Every pending update, without waiting."""
        updates = [self._latest.pop(key) for key in self._ready]
        self._ready.clear()
        return updates

    def _publish(self, update: PollUpdate) -> None:
        key = (update.portfolio, update.endpoint)
        if key in self._latest:
            self._superseded += 1  # the consumer never saw the older one: newest wins
        else:
            self._ready.append(key)
        self._latest[key] = update
        self._has_updates.set()

    # -- scheduling ------------------------------------------------------------------------

    async def _schedule(self) -> None:
        # `asyncio.timeout`, not `wait_for`: on 3.11 wait_for can swallow the cancellation sent
        # by stop() when a wake-up lands in the same loop iteration, and the scheduler then ran on.
        while not self._closing:
            if not self._heap:
                self._wake.clear()
                await self._wake.wait()
                continue
            due, _, job = self._heap[0]
            delay = due - time.monotonic()
            if delay > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                continue
            heapq.heappop(self._heap)
            if job.removed:
                continue
            if job.quarantined_until is not None and job.quarantined_until > due:
                self._push(job, job.quarantined_until)  # its portfolio was paused after it was queued
                continue
            in_flight = job.in_flight
            assert in_flight is not None
            if in_flight.may_start(job.group):
                self._start(job)
            else:
                in_flight.queued[job.group].append(job)

    def _start(self, job: _Job) -> None:
        in_flight = job.in_flight
        assert in_flight is not None
        in_flight.running[job.group] += 1
        in_flight.total += 1
        job.running = True
        task = asyncio.create_task(self._poll(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_next(self, ended: _Job) -> None:
        """A poll ended: start whatever queued jobs of its pool may start now."""
        in_flight = ended.in_flight
        assert in_flight is not None
        in_flight.running[ended.group] -= 1
        in_flight.total -= 1
        while not self._closing and (job := in_flight.next_queued()) is not None:
            self._start(job)

    async def _poll(self, job: _Job) -> None:
        self._started += 1
        started = time.perf_counter()
        error: ConnexAsyncError | None = None
        data: Any = None
        try:
            with track_call() as call:
                try:
                    data = await job.fetch()
                except ConnexAsyncError as exc:
                    error = exc
                except asyncio.CancelledError:
                    error = PollCancelledError(
                        "poller stopped while the poll was in flight",
                        venue=job.client.venue.name,
                        endpoint=job.endpoint,
                        portfolio=job.client.label,
                    )
                except Exception as exc:  # a bug must not silently eat a portfolio's updates
                    error = self._unexpected_error(job, exc)
        finally:
            job.running = False
            self._start_next(job)
        self._finish(job, data, error, time.perf_counter() - started, call.attempts, call.limiter_wait)

    def _unexpected_error(self, job: _Job, exc: Exception) -> ConnexAsyncError:
        """Log the first of each kind with its traceback, count the rest: a bug that hits every
        poll of every portfolio must not write thousands of tracebacks a second."""
        kind = f"{type(exc).__name__} in {job.client.venue.name}/{job.endpoint}"
        seen = self._unexpected.get(kind, 0)
        self._unexpected[kind] = seen + 1
        if not seen:
            logger.exception(
                "poll of %s/%s failed unexpectedly; further %s are only counted (Poller.stats().unexpected_errors)",
                job.client.label,
                job.endpoint,
                kind,
            )
        return ConnexAsyncError(
            f"unexpected {type(exc).__name__}: {exc}",
            venue=job.client.venue.name,
            endpoint=job.endpoint,
            portfolio=job.client.label,
        )

    def _finish(
        self,
        job: _Job,
        data: Any,
        error: ConnexAsyncError | None,
        latency: float,
        attempts: int,
        limiter_wait: float,
    ) -> None:
        self._ended += 1
        now = time.monotonic()
        quarantined = False
        if error is None:
            job.last_success = now
            job.auth_failures = 0
            if job.quarantined_until is not None:
                self._lift(job)
        else:
            self._failed += 1
            if isinstance(error, AuthenticationError | PermissionDeniedError):
                job.auth_failures += 1
                paused = job.quarantined_until is not None and job.quarantined_until > now  # a poll in flight
                quarantined = job.auth_failures >= self.quarantine_after and not job.removed and not paused
        if quarantined:
            self._quarantine(job, error, now)
        update = _UPDATE_TYPES.get(job.endpoint, Update)(
            portfolio=job.client.label,
            venue=job.client.venue.name,
            endpoint=job.endpoint,
            data=data,
            error=error,
            fetched_at=time.time(),
            latency=latency,
            attempts=attempts,
            limiter_wait=limiter_wait,
            quarantined=quarantined,
        )
        self._publish(cast(PollUpdate, update))
        if not job.removed and not self._closing:
            # Coalesce: a poll that overran its interval runs once more now, not once per missed tick.
            job.due = max(job.due + job.interval, now, job.quarantined_until or now)
            self._push(job, job.due)

    def _push(self, job: _Job, due: float) -> None:
        """Schedule ``job`` at ``due`` (never, if that is infinity: it waits to be re-added)."""
        if due == math.inf:
            return
        heapq.heappush(self._heap, (due, next(self._seq), job))
        if self._heap[0][2] is job:  # otherwise the scheduler already sleeps until an earlier job
            self._wake.set()

    def _quarantine(self, job: _Job, error: ConnexAsyncError | None, now: float) -> None:
        """Pause ``job`` (a permission error) or every job of its portfolio (an authentication error)."""
        until = now + self.quarantine_pause if self.quarantine_pause is not None else math.inf
        whole = isinstance(error, AuthenticationError)
        jobs = [j for j in self._jobs.values() if j.client is job.client] if whole else [job]
        for paused in jobs:
            paused.quarantined_until = until
            paused.quarantine_whole = whole
            # Each paused job's next poll is a probe: one more refusal pauses again at once.
            paused.auth_failures = max(paused.auth_failures, self.quarantine_after - 1)
            self._quarantined[paused.key] = str(error)
        pause = "until re-added" if until == math.inf else f"for {self.quarantine_pause:g}s, then probed"
        scope = "every endpoint of the portfolio" if whole else "this endpoint only"
        logger.warning(
            "portfolio %s %s quarantined (%s) after %d failures in a row, %s: %s",
            job.client.label,
            job.endpoint,
            scope,
            job.auth_failures,
            pause,
            error,
        )

    def _lift(self, job: _Job) -> None:
        """A probe succeeded: this endpoint works again, and so does the key of a portfolio paused whole."""
        lifted = [job]
        if job.quarantine_whole:
            lifted += [j for j in self._jobs.values() if j.client is job.client and j.quarantine_whole and j is not job]
        for resumed in lifted:
            resumed.quarantined_until = None
            resumed.quarantine_whole = False
            resumed.auth_failures = 0
            self._quarantined.pop(resumed.key, None)
        logger.warning("portfolio %s %s: quarantine lifted, a probe poll succeeded", job.client.label, job.endpoint)

    # -- observing -------------------------------------------------------------------------

    @property
    def quarantined(self) -> dict[JobKey, str]:
        """Quarantined (portfolio, endpoint) jobs and the error that put each there."""
        return dict(self._quarantined)

    def stats(self) -> PollerStats:
        """Counters and staleness (seconds since each job's newest data, or since it was added)."""
        now = time.monotonic()
        return PollerStats(
            portfolios=len(self._clients),
            jobs=len(self._jobs),
            in_flight=len(self._tasks),
            polls_started=self._started,
            polls_ended=self._ended,
            polls_failed=self._failed,
            superseded=self._superseded,
            pending_updates=len(self._ready),
            quarantined=dict(self._quarantined),
            staleness={
                key: now - (job.last_success if job.last_success is not None else job.created)
                for key, job in self._jobs.items()
            },
            unexpected_errors=dict(self._unexpected),
        )
