"""The Redis limiter backend: one rate budget for every process and machine of a fleet.

Two processes on one IP or one key that each keep their own limits together break the venue's
limit. :class:`RedisLimiter` keeps the buckets in Redis instead, and every process admits through
it (``SessionPool(limiter=RedisLimiter(url))``, or ``connex-async poll --redis URL``).

**The bound carries over.** The script (``redis_admit.lua``) is GCRA on exactly the bucket that
:mod:`connex_async.rate_limit` derives: emission interval ``e = (T + m + s) / (N + 1 - b)`` and
tolerance ``tau = (b - 1) e + s``. A scope admits at ``t`` iff ``tat - tau <= t`` and then books
``tat = max(tat, t) + e``. At any admission ``a_i``, ``tat <= a_i + tau + e`` afterwards, and each of
the next N admissions adds ``e`` to ``tat`` while needing ``tat - tau <= a``; so
``a_{i+N} >= a_i + N e - tau = a_i + (N + 1 - b) e - s = a_i + T + m``: any N + 1 admissions of one
scope, from however many processes, are at least ``T + m`` apart, the utilization figures of
``rate_limit.py`` hold unchanged, and all of it is dated by **Redis TIME alone** (no process's
clock is compared with another's; waits come back as durations).

**All scopes of a request in one instant.** The key's scope, the host's (per egress IP) and the
host's circuit are decided in one script call: all admitted, or none touched.

**Cost.** One script call per request costs ~100 us of client CPU. So the admissions wanted in one
loop tick go to Redis as one batch (one EVALSHA, at most one in flight per process), and waiters
blocked by the same scope wait behind one timer per process (:class:`_Gate`) instead of each
asking Redis again.

**Adaptive margins, the widest wins.** Each process measures its own round trips
(:mod:`connex_async.margins`) and sends its scope's margin with every admission (``"N b T m s"``).
Processes on different routes may disagree, and a budget shared with a process on a bad route must
be spaced for that route: the script keeps, per scope, the widest margin any process sent in the
last two to four periods (a windowed maximum in two slots of ``2T``, ``m1`` and ``m0``), with an
admission or a refused one (a process that waits has requests in flight), and books every admission
with it, so the margin in effect is never narrower than that of any process that asked within
``2T``. That is long enough: the bound needs a margin only between admissions at
most ``T + m <= 2T`` apart (margins are capped at ``T``). A widening pushes ``tat`` back by
``N (e' - e)``, exactly as the local bucket does (``limits.py``), from the margin the scope was last
booked with (``me``), unless the scope has been idle for a window. The margin state lives in the
scope's hash and expires with it. A widening reaches Redis with this process's next ask of the
scope (its waiting head asks again within one refill interval): until then, other processes may
book one admission at the old spacing. Processes still on the script before margins adapted book
their own margin and take no part in this.

**Late writes** are charged as locally (:mod:`connex_async.send_ticket`): the scope's ``tat`` moves
back by the excess, so later admissions, in every process, keep the bound between write times.
The charge cannot take back what other processes were granted meanwhile; it does not need to: the
N admissions after a late request's admission come ``T + m`` after it, and the charge reaches
Redis long before the last of them (``test_redis_limits.py`` proves it against a strict window).

**Failure.** Redis unreachable: fail closed, every admission raises
:class:`~connex_async.errors.LimiterUnavailableError` at once (nothing is sent unadmitted) and the
backend retries Redis with backoff. Redis restarted or failed over (state is in memory and
replicated asynchronously, so recent admissions may be forgotten): the script sees a new server
``run_id`` in its epoch key and holds every scope for one full window ``T + m`` before admitting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from importlib import resources
from random import getrandbits
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from connex_async.errors import LimiterTimeoutError, LimiterUnavailableError
from connex_async.limiter_backend import ADMITTED, PROBE, CircuitKey, LimiterBackend, ScopeKey, Verdict
from connex_async.margins import AdaptiveScope, follow_all
from connex_async.rate_limit import RateLimit
from connex_async.redis_connection import (
    RedisUnavailableError,
    bounded,
    connect,
    describe,
    ensure_reachable,
    redact,
    validate_namespace,
    validate_url,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["DEFAULT_NAMESPACE", "RedisLimiter", "RedisScope", "key_prefix", "load_script"]

logger = logging.getLogger("connex_async")

DEFAULT_NAMESPACE = "connex-async"
DEFAULT_EGRESS_ID = "default"
#: How long one circuit probe may be out before another request may probe (seconds).
PROBE_LEASE = 60.0
#: Admissions of one loop tick sent in one script call, at most.
MAX_BATCH = 256
#: Operations kept for the next call while Redis is down (cooldowns, charges), at most.
MAX_HELD_OPS = 10_000
_US = 1_000_000
_PROBE_LEASE_US = round(PROBE_LEASE * _US)


def key_prefix(namespace: str) -> str:
    """The prefix of every limiter key of ``namespace``: ``{ns}`` (a hash tag: one cluster slot).

    ``{ns}:epoch`` (hash: id, born, run), ``{ns}:s:<venue>:<group>:<endpoint>`` (a scope: tat, cool,
    in microseconds of Redis TIME; me, m1, m0, mp: its adaptive margin), ``{ns}:c:<venue>:<egress
    id>:<host>`` (a circuit: until, probe_at, probing, pause).
    """
    return f"{{{namespace}}}"


def load_script() -> str:
    """The Lua source of the admission script (shipped beside this module)."""
    return resources.files("connex_async").joinpath("redis_admit.lua").read_text(encoding="utf-8")


class _Gate:
    """Waiters of one blocking scope in this process: only the head sleeps, on one timer.

    The head is a task; it stays head across its retries until it is admitted (or gives up), then
    the next waiter becomes head and tries at once for a fresh wait. Parked waiters check again
    after a while in case the head vanished without a word (cancelled between two tries).
    """

    __slots__ = ("head", "parked")

    def __init__(self) -> None:
        self.head: asyncio.Task[Any] | None = None
        self.parked: deque[asyncio.Future[None]] = deque()

    def pass_on(self) -> None:
        self.head = None
        while self.parked:
            waiter = self.parked.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def _params(limit: RateLimit) -> bytes:
    """``"N b T m s"`` as the script reads them (microseconds)."""
    return (
        f"{limit.count} {limit.burst} {round(limit.period * _US)} {round(limit.margin * _US)} "
        f"{round(limit.slack * _US)}"
    ).encode()


class RedisScope(AdaptiveScope):
    """This process's handle of one shared scope: its key, its limit, its local charge mark.

    ``limit`` is the configured limit, ``current`` the one in effect here (its margin adapted to
    this process's round trips); the script books the widest margin any process sends.
    """

    __slots__ = ("charged_until", "gate", "key", "limit", "params")

    def __init__(self, key: str, limit: RateLimit) -> None:
        self.key = key
        self.limit = limit
        self._init_margin(limit)
        #: The parameters of ``current``, encoded once per margin.
        self.params = _params(limit)
        self.charged_until = 0.0  # time.monotonic(): stalls up to here are charged already
        self.gate: _Gate | None = None

    def retune(self, limit: RateLimit, *, wider: bool) -> None:
        """Send ``limit``'s margin from the next admission on (the script pushes ``tat`` if it widens)."""
        self.current = limit
        self.params = _params(limit)

    def __repr__(self) -> str:
        return f"RedisScope({self.key!r}, {self.limit.count}/{self.limit.period}s)"


class _Admission:
    __slots__ = ("circuit", "future", "scopes")

    def __init__(self, scopes: tuple[RedisScope, ...], circuit: str | None, future: asyncio.Future[Verdict]) -> None:
        self.scopes = scopes
        self.circuit = circuit
        self.future = future


class RedisLimiter(LimiterBackend):
    """Rate-limit scopes, cooldowns and circuits in Redis, shared by every process that uses them.

    ``namespace`` separates fleets (two fleets with different namespaces on one IP do **not** share
    a budget). ``egress_id`` names the public IP this process's requests leave from: per-IP limits
    (the Zoomex host limit) and circuits are counted per egress id. Leave the default (one id,
    shared by all: the safe choice) unless machines really leave through different addresses.
    ``socket_timeout`` bounds each Redis call; beyond it the admission fails closed.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        egress_id: str = DEFAULT_EGRESS_ID,
        socket_timeout: float = 1.0,
        max_batch: int = MAX_BATCH,
        reconnect_backoff: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        if (url is None) == (client is None):
            raise ValueError("give RedisLimiter exactly one of url or client")
        if url is not None:
            validate_url(url)
        validate_namespace(namespace)
        for name, value in (("namespace", namespace), ("egress_id", egress_id)):
            if not value or any(c in value for c in "{}:") or not value.isprintable() or " " in value:
                raise ValueError(f"{name} must be printable text without spaces, braces or colons, got {value!r}")
        super().__init__()
        self.url = url
        self.namespace = namespace
        self.egress_id = egress_id
        self.socket_timeout = socket_timeout
        self.max_batch = max_batch
        self.reconnect_backoff = reconnect_backoff
        self._client = client
        self._owns_client = client is None
        self._script: AsyncScript | None = None
        self._prefix = key_prefix(namespace)
        self._epoch_key = f"{self._prefix}:epoch"
        self._scopes: dict[ScopeKey, RedisScope] = {}
        self._queue: list[_Admission | tuple[Any, ...]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._down_until = 0.0  # time.monotonic(): admissions fail fast until then
        self._down_reason = ""
        self._backoff = reconnect_backoff[0]
        self._nonce = secrets.token_hex(8)  # names the epoch this process would begin, if one begins
        self._circuits: dict[CircuitKey, float] = {}  # known open, time.monotonic() until
        self.calls = 0  # script calls made (the batching's effect, for tests and benchmarks)
        self.asked = 0  # admissions asked for (granted or refused)
        self.epochs_seen = 0  # new epochs begun by this process's calls

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> Self:
        """Connect and check that Redis answers; raise :class:`LimiterUnavailableError` if not."""
        if self._client is None:
            try:
                # No hidden retries, no redis-py socket timeout (every call is bounded here
                # instead): a call that fails must fail now, and this class decides when to try
                # again, with backoff, so that nothing waits on Redis for longer than it says.
                self._client = connect(self.url or "", connect_timeout=self.socket_timeout)
            except RedisUnavailableError as exc:
                raise LimiterUnavailableError(str(exc)) from None
        if self._script is None:
            self._script = self._client.register_script(load_script())
        try:
            await ensure_reachable(self._client, self.url or "", self.socket_timeout)
        except RedisUnavailableError as exc:
            raise LimiterUnavailableError(str(exc)) from None
        return self

    async def aclose(self) -> None:
        """Stop the batcher and close the connection (if this limiter opened it)."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        self._fail_queue(LimiterUnavailableError("the Redis limiter was closed"))
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()
        self._script = None

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _where(self) -> str:
        return "a given client" if self.url is None else redact(self.url)

    def _reason(self, exc: BaseException) -> str:
        """What went wrong, in one line, without a password of the URL."""
        return f"{type(exc).__name__}: {describe(exc, self.url or '')}"[:200]

    # -- scopes ------------------------------------------------------------------------------

    def scope(self, key: ScopeKey, limit: RateLimit) -> RedisScope:
        """The handle of one shared scope; per-IP (host) scopes carry this process's egress id."""
        found = self._scopes.get(key)
        if found is None:
            venue, group, name = key
            if group == "host":
                group = f"host@{self.egress_id}"
            found = self._scopes[key] = RedisScope(f"{self._prefix}:s:{venue}:{group}:{name}", limit)
        return found

    def stale_after(self, scopes: tuple[Any, ...]) -> float | None:
        """Half the tightest scope's window: later, the N admissions after it may all be out already."""
        return min((scope.limit.window / 2 for scope in scopes), default=None)

    def discard(self, key: ScopeKey) -> None:
        """Forget the local handle; the shared state expires in Redis on its own once drained."""
        self._scopes.pop(key, None)

    def _circuit_key(self, circuit: CircuitKey) -> str:
        return f"{self._prefix}:c:{circuit[0]}:{self.egress_id}:{circuit[1]}"

    # -- admission ---------------------------------------------------------------------------

    async def try_admit(self, scopes: tuple[Any, ...], circuit: CircuitKey | None) -> Verdict:
        """One admission in the next batch: every scope and the circuit in one instant, or nothing."""
        if time.monotonic() < self._down_until:
            raise LimiterUnavailableError(f"Redis limiter unavailable: {self._down_reason}")
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        key = None
        if circuit is not None:
            key = self._circuit_key(circuit)
            follow_all(self.paths, scopes, circuit)
        self._enqueue(_Admission(scopes, key, future))
        verdict = await future
        if verdict.admitted:
            self._left_gates(scopes)
        elif verdict.circuit_remaining is not None and circuit is not None:
            self._circuits[circuit] = time.monotonic() + verdict.circuit_remaining
        return verdict

    async def wait_ready(self, scopes: tuple[Any, ...], verdict: Verdict, max_wait: float | None) -> None:
        """Wait behind this process's one timer for the blocking scope, holding nothing."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(max_wait):
                await self._wait_at_gate(scopes, verdict)
        except TimeoutError:
            waited = time.monotonic() - started
            raise LimiterTimeoutError(f"no rate-limit slot within max_queue_wait={max_wait}s", waited=waited) from None

    async def _wait_at_gate(self, scopes: tuple[RedisScope, ...], verdict: Verdict) -> None:
        scope = verdict.blocking
        # Another of this request's scopes blocks now: stop heading the others' gates, or their
        # waiters would wait for a scope that is free for them.
        self._left_gates(tuple(s for s in scopes if s is not scope))
        if not isinstance(scope, RedisScope):
            await asyncio.sleep(verdict.wait)
            return
        gate = scope.gate
        if gate is None:
            gate = scope.gate = _Gate()
        me = asyncio.current_task()
        while gate.head is not None and gate.head is not me and not gate.head.done():
            parked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            gate.parked.append(parked)
            # The head may vanish between two tries without passing on: look again now and then.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(1.0, 2 * verdict.wait)):
                    await parked
            if parked.done() and gate.head is None:
                return  # our turn: try at once for a fresh wait
        gate.head = me
        try:
            await asyncio.sleep(verdict.wait)
        except BaseException:
            gate.pass_on()
            raise

    @staticmethod
    def _left_gates(scopes: tuple[RedisScope, ...]) -> None:
        """An admitted task stops heading the gates of its scopes: the next waiter goes."""
        me = asyncio.current_task()
        for scope in scopes:
            gate = scope.gate
            if gate is not None and gate.head is me:
                gate.pass_on()

    # -- feedback ----------------------------------------------------------------------------

    def cool_down(self, scope: Any, seconds: float) -> None:
        """Push the scope's cooldown in Redis: every process sees it at its next admission."""
        self._enqueue(("C", scope.key, round(max(0.0, seconds) * _US)))

    def charge_stall(self, scopes: tuple[Any, ...], start: float, end: float) -> None:
        """Charge the part of the stall not charged yet (a per-process union, as locally)."""
        for scope in scopes:
            begin = max(start, scope.charged_until)
            if end > begin:
                scope.charged_until = end
                self._enqueue(("S", scope.key, round((end - begin) * _US)))

    def open_circuit(self, circuit: CircuitKey, seconds: float, probe_after: float | None) -> None:
        """Open the host's circuit fleet-wide (per egress id)."""
        self._circuits[circuit] = time.monotonic() + seconds
        probe = -1 if probe_after is None else round(probe_after * _US)
        self._enqueue(("O", self._circuit_key(circuit), round(seconds * _US), probe))

    def close_circuit(self, circuit: CircuitKey) -> None:
        """The probe was answered: close the circuit fleet-wide."""
        self._circuits.pop(circuit, None)
        self._enqueue(("X", self._circuit_key(circuit)))

    def release_probe(self, circuit: CircuitKey) -> None:
        """The probe got no answer: another request may probe."""
        self._enqueue(("R", self._circuit_key(circuit)))

    def open_circuits(self) -> dict[CircuitKey, float]:
        """Circuits this process has seen open, with the seconds they have left."""
        now = time.monotonic()
        for key in [k for k, until in self._circuits.items() if until <= now]:
            del self._circuits[key]
        return {key: until - now for key, until in self._circuits.items()}

    async def declare_cold_start(self) -> None:
        """The operator's word that no request went out for a whole window: begin without holding.

        Otherwise a Redis that starts empty (a first start, a restart, a failover) holds every scope
        for one window, because it cannot know what the venue still counts.
        """
        if self._script is None:
            await self.open()
        await self._call([self._nonce, _PROBE_LEASE_US, 0, "Z"], [self._epoch_key])

    # -- the batch ---------------------------------------------------------------------------

    def _enqueue(self, item: _Admission | tuple[Any, ...]) -> None:
        if not isinstance(item, _Admission) and len(self._queue) >= MAX_HELD_OPS:
            logger.warning("Redis limiter: %d operations held while Redis is down; dropping the oldest", MAX_HELD_OPS)
            self._queue.pop(0)
        self._queue.append(item)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="connex-async-redis-limiter")

    async def _flush(self) -> None:
        """Send what the loop tick queued, one script call at a time, until nothing is left."""
        await asyncio.sleep(0)  # let the rest of this tick queue its admissions too
        while self._queue:
            if time.monotonic() < self._down_until:
                self._fail_queue(LimiterUnavailableError(f"Redis limiter unavailable: {self._down_reason}"))
                return
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                await self._run(batch)
            except Exception as exc:
                self._went_down(exc, batch)

    async def _run(self, batch: list[_Admission | tuple[Any, ...]]) -> None:
        keys = [self._epoch_key]
        index: dict[str, int] = {self._epoch_key: 1}
        params: list[bytes] = []
        ops: list[str] = []

        def ref(key: str, limit_params: bytes | None = None) -> int:
            found = index.get(key)
            if found is None:
                keys.append(key)
                found = index[key] = len(keys)
                params.append(limit_params or b"0")
            elif limit_params is not None:  # first seen by a cooldown or a charge: no limit yet
                params[found - 2] = limit_params
            return found

        admissions: list[_Admission] = []
        for item in batch:
            if isinstance(item, _Admission):
                admissions.append(item)
                circuit = 0 if item.circuit is None else ref(item.circuit)
                refs = " ".join(f"{ref(scope.key, scope.params)} {getrandbits(20)}" for scope in item.scopes)
                ops.append(f"A {len(item.scopes)} {circuit} {refs}")
            else:
                ops.append(" ".join(map(str, (item[0], ref(item[1]), *item[2:]))))
        self.asked += len(admissions)
        result = await self._call([self._nonce, _PROBE_LEASE_US, len(keys) - 1, *params, *ops], keys)
        self._backoff = self.reconnect_backoff[0]
        if result[0]:
            self.epochs_seen += 1
            logger.warning(
                "Redis limiter: a new epoch began in namespace %s (Redis restarted or failed over, or first use): "
                "every scope waits one full window before admitting",
                self.namespace,
            )
        for n, admission in enumerate(admissions):
            status, value, blocking = result[1 + 3 * n : 4 + 3 * n]
            if not admission.future.done():
                admission.future.set_result(self._verdict(admission, keys, status, value, blocking))

    @staticmethod
    def _verdict(admission: _Admission, keys: list[str], status: int, value: int, blocking: int) -> Verdict:
        if status == 0:
            return ADMITTED
        if status == 1:
            return PROBE
        if status == 3:
            return Verdict(False, circuit_remaining=value / _US)
        blocked_key = keys[blocking - 1]
        scope = next((s for s in admission.scopes if s.key == blocked_key), None)
        return Verdict(False, wait=value / _US, blocking=scope)

    async def _call(self, argv: list[Any], keys: list[str]) -> list[int]:
        script = self._script
        if script is None:
            raise LimiterUnavailableError("the Redis limiter is not open: `async with RedisLimiter(url)`")
        self.calls += 1
        reply: bytes = await bounded(script(keys=keys, args=argv), self.socket_timeout)
        return [int(part) for part in reply.split()]

    def _went_down(self, exc: Exception, batch: list[_Admission | tuple[Any, ...]]) -> None:
        self._down_reason = self._reason(exc)
        self._down_until = time.monotonic() + self._backoff
        logger.warning("Redis limiter: %s; failing closed, next try in %.2fs", self._down_reason, self._backoff)
        self._backoff = min(self._backoff * 2, self.reconnect_backoff[1])
        error = LimiterUnavailableError(f"Redis limiter unavailable: {self._down_reason}")
        # Feedback (cooldowns, charges, circuits) is kept for the next call; admissions fail now.
        held = [item for item in batch if not isinstance(item, _Admission)]
        self._queue[:0] = held[-MAX_HELD_OPS:]
        for item in batch:
            if isinstance(item, _Admission) and not item.future.done():
                item.future.set_exception(error)
        self._fail_queue(error)

    def _fail_queue(self, error: LimiterUnavailableError) -> None:
        kept: list[_Admission | tuple[Any, ...]] = []
        for item in self._queue:
            if isinstance(item, _Admission):
                if not item.future.done():
                    item.future.set_exception(error)
            else:
                kept.append(item)
        self._queue = kept
