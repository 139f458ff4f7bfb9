"""The session pool and the one request loop every venue goes through.

Per attempt: **limit** (per key scope, then per host, and the host's circuit) -> **sign** (fresh
nonce / timestamp) -> **send** (one shared aiohttp session, the signed query byte for byte) ->
**classify and decode** (the venue's ``parse``) -> **retry or raise** (typed error). The whole call
runs under its **deadline**. Where to look:

- deadline: :meth:`SessionPool.request` around the loop (:meth:`SessionPool._attempts`),
  :class:`_Budget`, :class:`call_deadline`; its timer armed only as it nears (:mod:`connex_async.deadlines`)
- limiting: :meth:`SessionPool._scopes_for`, :meth:`SessionPool._admit` through one
  :class:`~connex_async.limiter_backend.LimiterBackend` (local :mod:`connex_async.limits` or
  :mod:`connex_async.redis_limits`; the loop cannot tell which); a request written late after its
  admission charges its scopes the difference (:mod:`connex_async.send_ticket`)
- circuits: a ban signal stops the host (:meth:`SessionPool._recover`), half-open probes
  (:meth:`SessionPool._report_probe`)
- signing:  :meth:`SessionPool._sign`, :mod:`connex_async.signing`
- sending:  :meth:`SessionPool._send`; the body cap while reading :meth:`SessionPool._read_capped`;
  what is kept of aiohttp's exceptions, scrubbed: :mod:`connex_async.redaction`
- retrying: :meth:`SessionPool._recover`, :mod:`connex_async.retry`
- decoding: the venue's ``parse``, :mod:`connex_async.decoding`
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from connex_async.credentials import Credentials
from connex_async.deadlines import loop_watch
from connex_async.decoding import DEFAULT_MAX_BODY_BYTES
from connex_async.errors import (
    APIError,
    CircuitOpenError,
    ConnexAsyncError,
    LimiterTimeoutError,
    LimiterUnavailableError,
    PoolClosedError,
    RateLimitError,
    RequestTimeoutError,
    TimestampError,
    TransportError,
    one_line,
)
from connex_async.limiter_backend import CircuitKey, LimiterBackend, Verdict
from connex_async.limits import LimiterRegistry
from connex_async.metrics import AttemptEvent, Metrics
from connex_async.rate_limit import RateLimit
from connex_async.redaction import mask_key, scrubbed
from connex_async.retry import RetryPolicy
from connex_async.send_ticket import DatedRequest, DatedResponse, SendTicket, StaleAdmission, sending
from connex_async.signing import ParamValue, SignedRequest, encode_query, normalize_params
from connex_async.venues.base import Endpoint, RawResponse, Venue

__all__ = ["DEFAULT_DEADLINE", "CallStats", "SessionPool", "call_deadline", "track_call"]

T = TypeVar("T")
logger = logging.getLogger("connex_async")


@functools.lru_cache(maxsize=256)
def _where(venue: Venue, endpoint: Endpoint[Any], label: str | None) -> dict[str, str | None]:
    """An error's venue, endpoint and portfolio (built only when there is an error to raise)."""
    return {"venue": venue.name, "endpoint": endpoint.name, "portfolio": label}


def _host_of(base_url: str) -> str:
    return urlsplit(base_url).netloc


#: A call whose admissions go stale before the write this many times in a row gives up.
MAX_STALE_ADMISSIONS = 3

#: After a failed clock measurement, sign with the local clock this long before measuring again.
CLOCK_RETRY_SECONDS = 30.0


@dataclass(slots=True)
class CallStats:
    """What one logical call cost: filled in by the pool while :func:`track_call` is active."""

    attempts: int = 0
    limiter_wait: float = 0.0
    latency: float = 0.0


_current_call: ContextVar[CallStats | None] = ContextVar("connex_async_call", default=None)

#: A call's deadline when the caller sets none: far above what a healthy call takes (four attempts
#: at the default 10 s timeout, with backoff, are about 44 s), low enough that a call stuck behind
#: clock syncs, cooldowns and retries ends while someone still waits for its answer.
DEFAULT_DEADLINE = 60.0


class _Budget:
    """The time budget of one call, and what the call was doing when it ran out (for the error).

    A call made inside another (the pool's own clock sync) inherits the outer deadline if that one
    ends sooner: the context variable below carries it down.
    """

    __slots__ = ("armed", "attempts", "covered", "expires", "last_error", "seconds", "stage")

    armed: bool

    def __init__(self, seconds: float | None, outer: _Budget | None) -> None:
        self.seconds = seconds
        self.expires = None if seconds is None or seconds == math.inf else time.monotonic() + seconds
        #: An enclosing call's timer ends this one: it needs none of its own (two timers due at the
        #: same instant would fire in either order, and the outer call must be the one to report).
        self.covered = False
        if outer is not None and outer.expires is not None and (self.expires is None or outer.expires <= self.expires):
            self.seconds, self.expires, self.covered = outer.seconds, outer.expires, outer.armed
        self.armed = False  # an asyncio timer of this call enforces `expires`
        self.attempts = 0  # attempts that reached the wire
        self.stage = "starting"
        self.last_error: ConnexAsyncError | None = None

    def error(self, venue: Venue, endpoint: Endpoint[Any], label: str | None) -> RequestTimeoutError:
        """The error that ends the call: which budget, doing what, after how many attempts."""
        last = self.last_error
        tail = f"; last error: {type(last).__name__}: {last._detail()}" if last is not None else ""
        err = RequestTimeoutError(
            f"deadline={self.seconds:g}s ran out while {self.stage}, after {self.attempts} attempt(s){tail}",
            last,
            budget="deadline",
            venue=venue.name,
            endpoint=endpoint.name,
            portfolio=label,
        )
        err.attempts = self.attempts
        return err


_current_budget: ContextVar[_Budget | None] = ContextVar("connex_async_budget", default=None)


class call_deadline:  # lower case: a block, like `track_call`
    """One deadline over every request made inside the block: ``with call_deadline(5.0): ...``.

    A request's own deadline still applies; the sooner of the two ends it. The clock starts when
    this object is made, so one object may be entered again and again (a paged listing enters it
    around each page, never across a ``yield``: the deadline must not leak into the consumer).
    """

    __slots__ = ("_budget", "_tokens")

    def __init__(self, seconds: float | None) -> None:
        self._budget = None if seconds is None else _Budget(seconds, _current_budget.get())
        self._tokens: list[Token[_Budget | None]] = []

    def __enter__(self) -> None:
        if self._budget is not None:
            self._tokens.append(_current_budget.set(self._budget))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._budget is not None:
            _current_budget.reset(self._tokens.pop())


class track_call:  # lower case: used like the function it replaced, `with track_call() as call:`
    """Collect attempts, limiter wait and HTTP latency of the requests made inside the block.

    A class rather than ``@contextmanager``: the Poller enters one per poll, and a generator-based
    manager costs two extra objects and a generator frame each time.
    """

    __slots__ = ("_token", "stats")

    def __init__(self) -> None:
        self.stats = CallStats()

    def __enter__(self) -> CallStats:
        self._token = _current_call.set(self.stats)
        return self.stats

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _current_call.reset(self._token)


class SessionPool:
    """One aiohttp session, a limiter backend and clock offsets, shared by clients.

    ``connector_limit`` bounds connections (and so in-flight requests); ``timeout`` bounds each
    HTTP attempt, not the wait for a rate-limit slot, which ``max_queue_wait`` bounds on its own.
    ``limiter`` is where rate-limit slots, cooldowns and circuits live: this process
    (:class:`~connex_async.limits.LimiterRegistry`, the default) or Redis
    (:class:`~connex_async.redis_limits.RedisLimiter`, shared by every process of a fleet; the
    caller opens and closes it). ``circuit_probe_after`` is how long a host stays fully closed
    after a ban signal before one probe request may find out whether it is over (``None``: wait
    out the whole circuit).
    ``deadline`` bounds a whole call: queueing, clock sync, every attempt and backoff (``None``:
    no bound; each call may pass its own).
    """

    def __init__(
        self,
        *,
        connector_limit: int = 100,
        limit_per_host: int = 0,
        timeout: float = 10.0,
        max_queue_wait: float | None = None,
        retry: RetryPolicy | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        user_agent: str = "connex-async/0.1",
        limiter: LimiterBackend | None = None,
        circuit_probe_after: float | None = 60.0,
        deadline: float | None = DEFAULT_DEADLINE,
    ) -> None:
        if connector_limit < 1:
            raise ValueError("connector_limit must be >= 1")
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        if deadline is not None and not deadline > 0:
            raise ValueError("deadline must be > 0 seconds or None")
        self.connector_limit = connector_limit
        self.limit_per_host = limit_per_host
        self.timeout = timeout
        self.max_queue_wait = max_queue_wait
        self.retry = retry or RetryPolicy()
        self.max_body_bytes = max_body_bytes
        self.user_agent = user_agent
        self.limiter: LimiterBackend = limiter if limiter is not None else LimiterRegistry()
        self.circuit_probe_after = circuit_probe_after
        self.deadline = deadline
        self.metrics = Metrics(paths=self.limiter.network_snapshot)
        self._session: aiohttp.ClientSession | None = None
        self._clock_offsets: dict[tuple[str, str], float] = {}
        self._clock_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._clock_retry_at: dict[tuple[str, str], float] = {}
        # One slot per connection: a request takes its send slot and its rate-limit slots in the
        # same instant, so it never queues for a connection between admission and send.
        self._send_slots: asyncio.Semaphore | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> Self:
        """Create the session inside the running loop (idempotent)."""
        if self._session is None or self._session.closed:
            self._send_slots = asyncio.Semaphore(self.connector_limit)
            connector = aiohttp.TCPConnector(
                limit=self.connector_limit, limit_per_host=self.limit_per_host, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": self.user_agent},
                raise_for_status=False,
                request_class=DatedRequest,
                response_class=DatedResponse,  # dates the answer: round trips for the adaptive margins
                auto_decompress=True,
                # Many keys share this session: one jar would send a cookie set on key A's answer
                # with key B's requests. Both venues authenticate every request by its headers,
                # so no cookie is kept at all.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            # aiohttp silently resends an idempotent request once after a reset (aio-libs/aiohttp
            # #10790; no public switch, its own test_utils flips this flag). That hidden second
            # send would bypass the limiter; our loop retries instead, through the limiter.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
        return self

    async def close(self) -> None:
        """Close the session and its connections."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    @property
    def closed(self) -> bool:
        """True before :meth:`open` and after :meth:`close`."""
        return self._session is None or self._session.closed

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- the request loop ------------------------------------------------------------------

    async def request(
        self,
        venue: Venue,
        endpoint: Endpoint[T],
        base_url: str,
        params: Mapping[str, ParamValue],
        credentials: Credentials | None,
        *,
        limit: RateLimit | None = None,
        deadline: float | None = None,
    ) -> T:
        """Send one logical request, retrying as the policy allows; return the decoded data.

        Raises a :class:`~connex_async.errors.ConnexAsyncError` subclass naming venue, endpoint
        and portfolio label when the request cannot succeed. ``deadline`` (seconds, default the
        pool's) bounds the whole call; when it runs out the call ends in a
        :class:`~connex_async.errors.RequestTimeoutError` with ``budget="deadline"`` saying what
        the call was doing. A call made inside another (the clock sync) ends by the outer deadline.
        """
        if endpoint.signed and credentials is None:
            raise ValueError(f"{venue.name}/{endpoint.name} needs credentials")
        budget = _Budget(self.deadline if deadline is None else deadline, _current_budget.get())
        label = credentials.label if credentials else None
        token = _current_budget.set(budget)
        try:
            if budget.expires is None or budget.covered:
                return await self._attempts(venue, endpoint, base_url, params, credentials, limit, budget)
            left = budget.expires - time.monotonic()
            if left <= 0:
                raise budget.error(venue, endpoint, label)
            budget.armed = True
            # Cancellation-safe all the way down; its timer is armed only as the deadline nears.
            watch = loop_watch()
            async with asyncio.timeout(None) as scope:
                watch.watch(scope, left)
                try:
                    return await self._attempts(venue, endpoint, base_url, params, credentials, limit, budget)
                finally:
                    watch.forget(scope)
        except TimeoutError:
            if not budget.armed or not scope.expired():
                raise
            raise budget.error(venue, endpoint, label) from budget.last_error
        finally:
            _current_budget.reset(token)

    async def _attempts(
        self,
        venue: Venue,
        endpoint: Endpoint[T],
        base_url: str,
        params: Mapping[str, ParamValue],
        credentials: Credentials | None,
        limit: RateLimit | None,
        budget: _Budget,
    ) -> T:
        """The attempt loop of :meth:`request` (which adds the deadline around it)."""
        host = _host_of(base_url)
        label = credentials.label if credentials else None
        scopes = self._scopes_for(venue, endpoint, host, credentials, limit)
        circuit = (venue.name, host)
        url = base_url.rstrip("/") + endpoint.path
        call = _current_call.get()
        attempt = stale = 0
        clock_resynced = False
        stale_after = self.limiter.stale_after(scopes)
        while True:
            attempt += 1
            waited, started, probe = 0.0, time.perf_counter(), False
            session = self._session
            if session is None or session.closed:  # never opened, or closed while this call ran
                raise self._closed_error(venue, endpoint, label, attempt - 1)
            try:
                if endpoint.signed and venue.sync_clock_first:
                    # Before the limiter: nothing slow may sit between a granted slot and the send,
                    # or the delay would eat the limiter's jitter margin.
                    budget.stage = "measuring the venue's clock"
                    await self._first_clock_sync(venue, base_url)
                budget.stage = "waiting for a connection and a rate-limit slot"
                waited, asked_at, probe = await self._admit(scopes, circuit, venue, endpoint, label)
                ticket = SendTicket(self.limiter, scopes, asked_at, stale_after, circuit) if scopes else None
                try:
                    signed = self._sign(venue, base_url, params, credentials if endpoint.signed else None)
                    budget.stage, budget.attempts = "waiting for the venue's answer", attempt
                    started = time.perf_counter()
                    response = await self._send(session, endpoint.method, url, signed, venue, endpoint, label, ticket)
                    if credentials is not None:  # a venue may quote our request back: never keep the key
                        response = mask_key(response, credentials.api_key)
                    latency = time.perf_counter() - started
                finally:
                    self._release_send_slot()
                    if ticket is not None and ticket.late:
                        self._observe_late_send(venue, endpoint, label, ticket)
                result = venue.parse(endpoint, response, label)
            except ConnexAsyncError as err:
                if probe:
                    self._report_probe(circuit, err)
                status = getattr(err, "status", None)
                if isinstance(err, LimiterTimeoutError | LimiterUnavailableError | CircuitOpenError) and status is None:
                    err.attempts = attempt - 1
                    raise  # nothing was sent this time
                err.attempts = attempt
                budget.last_error = err
                latency = time.perf_counter() - started
                self._observe(venue, endpoint, label, attempt, status, latency, waited, call, err)
                if isinstance(err, TimestampError):
                    # One re-sync and one more try; a clock that is still off will not fix itself.
                    budget.stage = "re-syncing the clock"
                    if clock_resynced or not await self._resync_clock(venue, base_url, err):
                        raise
                    clock_resynced = True
                    continue
                budget.stage = "backing off before a retry"
                await self._recover(err, attempt, venue, circuit, endpoint, scopes)
                continue
            except StaleAdmission as exc:
                # Not written: the slot is lost, not the call. Ask again (a loop that keeps stalling
                # this long is a fault to report, not to retry forever).
                if probe:
                    self.limiter.release_probe(circuit)
                attempt -= 1
                stale += 1
                logger.warning("%s/%s portfolio=%s not sent: %s; admitted again", venue.name, endpoint.name, label, exc)
                if stale >= MAX_STALE_ADMISSIONS:
                    raise LimiterTimeoutError(
                        f"admission went stale {stale} times before the write: the event loop is stalling",
                        waited=0.0,
                        **_where(venue, endpoint, label),
                    ) from None
                continue
            except BaseException:
                if probe:  # cancelled (or a bug) while probing: the next request may probe instead
                    self.limiter.release_probe(circuit)
                raise
            if probe:
                self._report_probe(circuit, None)
            self._observe(venue, endpoint, label, attempt, response.status, latency, waited, call, None)
            return result

    async def _admit(
        self,
        scopes: tuple[Any, ...],
        circuit: CircuitKey,
        venue: Venue,
        endpoint: Endpoint[Any],
        label: str | None,
    ) -> tuple[float, float, bool]:
        """Take a send slot and every rate-limit slot in one instant; hold nothing while waiting.

        Returns the seconds waited, when the granted admission was asked for (``time.monotonic()``:
        the request's lateness counts from there, a Redis round trip included) and whether this
        request is its host circuit's probe.
        Holding a connection while queueing for a limiter would starve other keys (a host-limited
        Zoomex backlog took every connection); holding limiter slots while queueing for a
        connection would put a wait between admission and send. So: wait for a connection, then
        ask the limiter backend; if a scope is full, let the connection go, wait as the backend
        says, then try again.
        """
        slots = self._send_slots
        assert slots is not None
        started = time.monotonic()
        deadline = None if self.max_queue_wait is None else started + self.max_queue_wait
        try:
            while True:
                if deadline is None:
                    await slots.acquire()
                else:
                    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                        await slots.acquire()
                asked_at = time.monotonic()
                try:
                    verdict = await self.limiter.try_admit(scopes, circuit)
                except BaseException:
                    slots.release()
                    raise
                if verdict.admitted:
                    return asked_at - started, asked_at, verdict.probe
                slots.release()
                if verdict.circuit_remaining is not None:
                    raise self._circuit_open(verdict, circuit, venue, endpoint, label)
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                await self.limiter.wait_ready(scopes, verdict, left)
        except TimeoutError:
            raise LimiterTimeoutError(
                f"no rate-limit slot within max_queue_wait={self.max_queue_wait}s",
                waited=time.monotonic() - started,
                venue=venue.name,
                endpoint=endpoint.name,
                portfolio=label,
            ) from None
        except ConnexAsyncError as err:  # the backend's own errors (timeout, Redis down) learn where
            err.venue, err.endpoint, err.portfolio = venue.name, endpoint.name, label
            raise

    @staticmethod
    def _circuit_open(
        verdict: Verdict, circuit: CircuitKey, venue: Venue, endpoint: Endpoint[Any], label: str | None
    ) -> CircuitOpenError:
        remaining = verdict.circuit_remaining or 0.0
        until = time.time() + remaining
        return CircuitOpenError(
            f"host {circuit[1]} paused after a ban signal; calls fail fast until "
            f"{time.strftime('%H:%M:%S', time.gmtime(until))} UTC",
            until=until,
            retry_after=remaining,
            venue=venue.name,
            endpoint=endpoint.name,
            portfolio=label,
        )

    def _closed_error(self, venue: Venue, endpoint: Endpoint[Any], label: str | None, attempts: int) -> PoolClosedError:
        what = "was closed while this call was in flight" if attempts else "is not open"
        err = PoolClosedError(
            f"SessionPool {what}: use `async with SessionPool()` or `await open()`", **_where(venue, endpoint, label)
        )
        err.attempts = attempts
        return err

    def _release_send_slot(self) -> None:
        if self._send_slots is not None:
            self._send_slots.release()

    def _scopes_for(
        self,
        venue: Venue,
        endpoint: Endpoint[Any],
        host: str,
        credentials: Credentials | None,
        limit: RateLimit | None,
    ) -> tuple[Any, ...]:
        """Key scope first (venue, limit group, endpoint), then the venue's host-wide scope."""
        found: list[Any] = []
        limit = limit or endpoint.default_limit
        if limit is not None:
            group = credentials.limit_group if credentials else "anonymous"
            found.append(self.limiter.scope((venue.name, group, endpoint.name), limit))
        if venue.host_limit is not None:
            found.append(self.limiter.scope((venue.name, "host", host), venue.host_limit))
        return tuple(found)

    def _sign(
        self,
        venue: Venue,
        base_url: str,
        params: Mapping[str, ParamValue],
        credentials: Credentials | None,
    ) -> SignedRequest:
        """Sign afresh for every attempt, at venue time (local clock + measured offset)."""
        if credentials is None:
            return SignedRequest(encode_query(normalize_params(params)), {})
        offset = self._clock_offsets.get((venue.name, base_url), 0.0)
        return venue.sign(params, credentials, time.time() + offset)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        signed: SignedRequest,
        venue: Venue,
        endpoint: Endpoint[Any],
        label: str | None,
        ticket: SendTicket | None = None,
    ) -> RawResponse:
        """One HTTP exchange; the query goes out exactly as signed (``encoded=True``), no body.

        ``ticket`` learns when the request was written (:class:`~connex_async.send_ticket.DatedRequest`).
        The body is capped while it is read (:meth:`_read_capped`). Whatever aiohttp raises leaves
        here scrubbed of our request (:func:`~connex_async.redaction.scrubbed`): its traceback runs
        through aiohttp's frames, whose locals hold the signed headers.
        """
        target = URL(f"{url}?{signed.query}" if signed.query else url, encoded=True)
        token = sending.set(ticket)
        try:
            async with session.request(method, target, headers=signed.headers, allow_redirects=False) as resp:
                return RawResponse(resp.status, resp.headers, await self._read_capped(resp, endpoint, label))
        except ConnexAsyncError:
            raise  # ours (an over-long body): nothing of aiohttp's attached
        except TimeoutError as exc:  # aiohttp's timeouts subclass TimeoutError too
            raise RequestTimeoutError(
                f"no answer within timeout={self.timeout}s",
                scrubbed(exc),
                venue=venue.name,
                endpoint=endpoint.name,
                portfolio=label,
            ) from exc
        except aiohttp.ClientPayloadError as exc:
            where = _where(venue, endpoint, label)
            raise TransportError(f"truncated or corrupt body: {exc}", scrubbed(exc), **where) from exc
        except (aiohttp.ClientError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            where = _where(venue, endpoint, label)
            raise TransportError(f"{type(exc).__name__}: {reason}", scrubbed(exc), **where) from exc
        except RuntimeError as exc:
            if not session.closed:
                raise scrubbed(exc) from None
            raise PoolClosedError(
                "the pool was closed while the request was in flight", **_where(venue, endpoint, label)
            ) from None
        except BaseException as exc:  # CancelledError, or a bug: re-raised from here, without aiohttp's frames
            raise scrubbed(exc) from None
        finally:
            sending.reset(token)

    async def _read_capped(self, resp: aiohttp.ClientResponse, endpoint: Endpoint[Any], label: str | None) -> bytes:
        """The body as aiohttp decodes it, refused as soon as it exceeds ``max_body_bytes``.

        Counted on the decompressed bytes, chunk by chunk, whatever the transfer encoding (length,
        chunked or until close) and content encoding: a 389 KB gzip body expands to 400 MB, and a
        chunked one declares no length at all. aiohttp (>= 3.13.3) decompresses in bounded steps,
        so at most a chunk or two beyond the cap is ever held. Too long is a :class:`DecodeError`
        (not the documented shape; never retried: the next answer would be the same) and the
        connection is dropped rather than drained.
        """
        limit = self.max_body_bytes
        declared = resp.content_length
        chunks: list[bytes] = []
        size = 0 if declared is None or declared <= limit else declared
        read = resp.content.readany
        while size <= limit and (chunk := await read()):
            size += len(chunk)
            chunks.append(chunk)
        if size > limit:
            resp.close()
            what = f"body of at least {size} bytes" if chunks else f"declared body of {size} bytes"
            problem = f"{what} exceeds max_body_bytes={limit}"
            raise endpoint.decoder.error(problem, chunks[0] if chunks else b"", resp.status, label)
        return b"".join(chunks)

    async def _recover(
        self,
        err: ConnexAsyncError,
        attempt: int,
        venue: Venue,
        circuit: CircuitKey,
        endpoint: Endpoint[Any],
        scopes: tuple[Any, ...],
    ) -> None:
        """Prepare the next attempt, or re-raise ``err`` when there must be none."""
        if isinstance(err, CircuitOpenError):
            self.limiter.open_circuit(circuit, err.retry_after or 0.0, self.circuit_probe_after)
            logger.warning("%s: circuit opened for host %s until %.0f: %s", venue.name, circuit[1], err.until, err)
            raise err
        if isinstance(err, RateLimitError):
            # Server feedback wins: the whole scope pauses, not only this request.
            pause = self.retry.cooldown(err.retry_after, attempt)
            if scopes:
                self.limiter.cool_down(scopes[0], pause)
                self.metrics.record_cooldown(venue.name, endpoint.name)
            elif err.retryable and attempt <= self.retry.max_retries:
                await asyncio.sleep(pause)  # nothing to cool down (an unlimited endpoint): wait here
        if not err.retryable or attempt > self.retry.max_retries:
            raise err
        if not isinstance(err, RateLimitError):  # a rate-limited retry waits in the limiter instead
            await asyncio.sleep(self.retry.backoff(attempt))

    def _report_probe(self, circuit: CircuitKey, err: ConnexAsyncError | None) -> None:
        """A circuit's probe came back: any answer but a ban signal means the host is reachable."""
        if isinstance(err, CircuitOpenError):
            return  # _recover opens it again, with a longer pause before the next probe
        if err is None or isinstance(err, APIError):
            self.limiter.close_circuit(circuit)
            logger.warning("%s: host %s answered the circuit's probe; circuit closed", circuit[0], circuit[1])
        else:
            self.limiter.release_probe(circuit)

    def open_circuits(self) -> dict[tuple[str, str], float]:
        """``(venue, host) -> until`` (``time.time()`` seconds) for every host this process knows paused."""
        now = time.time()
        return {key: now + remaining for key, remaining in self.limiter.open_circuits().items()}

    # -- clock ----------------------------------------------------------------------------

    def clock_offset(self, venue: Venue | str, base_url: str) -> float | None:
        """The measured ``venue_time - local_time`` for a venue and base URL, if known."""
        name = venue if isinstance(venue, str) else venue.name
        return self._clock_offsets.get((name, base_url))

    async def _first_clock_sync(self, venue: Venue, base_url: str) -> None:
        key = (venue.name, base_url)
        if key in self._clock_offsets or time.monotonic() < self._clock_retry_at.get(key, 0.0):
            return
        lock = self._clock_locks.setdefault(key, asyncio.Lock())
        async with lock:  # one measurement, however many callers arrive together
            if key in self._clock_offsets or time.monotonic() < self._clock_retry_at.get(key, 0.0):
                return
            if not await self._resync_clock(venue, base_url, None):
                # Sign with the local clock for a while; a TimestampError will re-sync anyway.
                self._clock_retry_at[key] = time.monotonic() + CLOCK_RETRY_SECONDS

    async def _resync_clock(self, venue: Venue, base_url: str, error: ConnexAsyncError | None) -> bool:
        token = _current_call.set(None)  # the clock's own requests are not the caller's attempts
        try:
            offset = await venue.measure_clock_offset(self, base_url, error)
        except ConnexAsyncError as exc:
            logger.warning("%s: clock sync failed: %s", venue.name, exc)
            return False
        finally:
            _current_call.reset(token)
        if offset is None:
            return False
        self._clock_offsets[(venue.name, base_url)] = offset
        logger.info("%s: clock offset to %s is %+.3fs", venue.name, base_url, offset)
        return True

    # -- bookkeeping ----------------------------------------------------------------------

    def _observe_late_send(self, venue: Venue, endpoint: Endpoint[Any], label: str | None, ticket: SendTicket) -> None:
        lag = ticket.lag or 0.0
        self.metrics.record_late_send(venue.name, endpoint.name, lag)
        # Not an error (the limiter has been charged, the window stays safe), but a stalled event
        # loop is worth knowing about: it also delays every other request in flight.
        logger.debug(
            "%s/%s portfolio=%s written %.1fms after its admission; rate-limit scopes pushed back",
            venue.name,
            endpoint.name,
            label,
            lag * 1000,
        )

    def _observe(
        self,
        venue: Venue,
        endpoint: Endpoint[Any],
        label: str | None,
        attempt: int,
        status: int | None,
        latency: float,
        waited: float,
        call: CallStats | None,
        err: ConnexAsyncError | None,
    ) -> None:
        error = type(err).__name__ if err is not None else None
        self.metrics.record(AttemptEvent(venue.name, endpoint.name, label, attempt, status, latency, waited, error))
        if call is not None:
            call.attempts += 1
            call.limiter_wait += waited
            call.latency += latency
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s/%s portfolio=%s attempt=%d status=%s latency=%.1fms limiter_wait=%.1fms%s",
                venue.name,
                endpoint.name,
                label,
                attempt,
                status,
                latency * 1000,
                waited * 1000,
                f" error={error}: {one_line(err.detail)}" if err is not None else "",
            )
