"""The real clients against the real simulator over sockets, for every fault kind.

Each call ends in success after retries or in the right typed error, nothing hangs (every await is
bounded), and the counts on both sides agree: the simulator saw exactly as many arrivals as the
client made attempts, so nothing was resent behind the limiter's back and nothing was lost.

Accounting note: ``track_call`` counts the HTTP attempts of the call itself, not the Zoomex
``/market/time`` requests the pool makes to measure (or re-sync) its clock offset; those show on the
simulator's ``time`` endpoint and are counted there.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import aiohttp
import msgspec
import pytest
from yarl import URL

from connex_async import (
    APIError,
    AssetsPage,
    AttemptEvent,
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ConnexAsyncError,
    ConnexClient,
    Credentials,
    DecodeError,
    PermissionDeniedError,
    RateLimit,
    RateLimitError,
    RequestTimeoutError,
    RetryPolicy,
    ServerError,
    SessionPool,
    TimestampError,
    TransportError,
    WalletBalance,
    ZoomexClient,
)
from connex_async.pool import track_call
from connex_async.testing import FAULT_KINDS, Fault, SimulatedVenue
from connex_async.testing.auth import connex_signature

POLICY = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_max=0.05)
MAX_ATTEMPTS = 1 + POLICY.max_retries
TIMEOUT = 0.2  # per-attempt HTTP timeout of the pools in the fault tests
SLOW = 0.5  # slow_body / latency faults last this long: well beyond TIMEOUT
CALL_BOUND = 10.0  # no single call may take longer than this (a hang fails the test)
SETTLE = 3.0  # how long to wait for late arrivals (a latency fault delays the arrival)

T = TypeVar("T")


# --------------------------------------------------------------------------------------------- helpers


def make_fault(kind: str, *, seconds: float = SLOW, **scope: Any) -> Fault:
    """A fault of ``kind`` with parameters that keep the tests fast and the timeouts certain."""
    fault = Fault(kind, **scope)
    if kind in ("slow_body", "latency"):
        fault.params["seconds"] = seconds
    if kind == "rate_limit":
        fault.params["retry_after"] = 0.05  # Zoomex would otherwise reset 1 s from now
    return fault


class AttemptLog:
    """Every attempt the pool reports, kept in order (subscribed to the pool's metrics)."""

    def __init__(self, pool: SessionPool) -> None:
        self.events: list[AttemptEvent] = []
        pool.metrics.subscribe(self.events.append)

    def count(self, venue: str, endpoint: str, label: str | None = None) -> int:
        return sum(
            1
            for e in self.events
            if e.venue == venue and e.endpoint == endpoint and (label is None or e.portfolio == label)
        )


def arrivals(venue: SimulatedVenue, venue_name: str, endpoint: str, api_key: str = "") -> int:
    """Requests the simulator counted for one (venue, endpoint, key); the time endpoint has key ""."""
    row = venue.stats().get(venue_name, endpoint, api_key)
    return 0 if row is None else row.requests


async def settle(read: Callable[[], int], expected: int, within: float = SETTLE) -> int:
    """Wait until ``read()`` reaches ``expected`` (late arrivals), then a little more (hidden resends)."""
    for _ in range(int(within / 0.01)):
        if read() >= expected:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    return read()


async def bounded(awaitable: Awaitable[T], seconds: float = CALL_BOUND) -> T:
    async with asyncio.timeout(seconds):
        return await awaitable


@dataclass
class Rig:
    venue: SimulatedVenue
    pool: SessionPool
    log: AttemptLog


@asynccontextmanager
async def rig(*, http_timeout: float = TIMEOUT, connector_limit: int = 100, **venue_kw: Any) -> AsyncIterator[Rig]:
    venue_kw.setdefault("connex_portfolios", 3)
    venue_kw.setdefault("zoomex_accounts", 3)
    venue_kw.setdefault("seed", 41)
    async with (
        SimulatedVenue(**venue_kw) as venue,
        SessionPool(retry=POLICY, timeout=http_timeout, connector_limit=connector_limit) as pool,
    ):
        yield Rig(venue, pool, AttemptLog(pool))


@dataclass(frozen=True)
class Target:
    """One endpoint of one venue, called through the public client."""

    name: str
    venue: str
    endpoint: str
    call: Callable[[Any], Awaitable[Any]]
    result_check: Callable[[Any], bool] = field(default=lambda _: True)

    def creds(self, venue: SimulatedVenue, index: int = 0) -> Credentials:
        pool = venue.connex_credentials if self.venue == "connex" else venue.zoomex_credentials
        return pool[index]

    def client(self, r: Rig, creds: Credentials) -> ConnexClient | ZoomexClient:
        # The venues' own limits, with a burst that lets the retries of one call go without pacing
        # (still window-safe; pacing is not what these tests are about).
        if self.venue == "connex":
            limits = {
                "assets": RateLimit(20, 1.0, burst=MAX_ATTEMPTS),
                "positions": RateLimit(300, 60.0, burst=MAX_ATTEMPTS),
            }
            return ConnexClient(creds, base_url=r.venue.base_url, pool=r.pool, limits=limits)
        limits = {"wallet": RateLimit(10, 1.0, burst=MAX_ATTEMPTS)}
        return ZoomexClient(creds, base_url=r.venue.base_url, pool=r.pool, limits=limits)

    async def warm_up(self, r: Rig) -> None:
        """Zoomex: let a spare key measure the clock offset, so the tracked call has no time request."""
        if self.venue == "zoomex":
            spare = r.venue.zoomex_credentials[-1]
            await bounded(ZoomexClient(spare, base_url=r.venue.base_url, pool=r.pool).get_wallet_balance())
            assert r.pool.clock_offset("zoomex", r.venue.base_url) is not None


TARGETS = [
    Target(
        "connex-assets",
        "connex",
        "assets",
        lambda c: c.get_assets(),
        lambda res: isinstance(res, AssetsPage) and len(res.assets) > 0,
    ),
    Target(
        "connex-positions",
        "connex",
        "positions",
        lambda c: c.get_positions(zero_filter=True),
        lambda res: isinstance(res, list),
    ),
    Target(
        "zoomex-wallet",
        "zoomex",
        "wallet",
        lambda c: c.get_wallet_balance(),
        lambda res: isinstance(res, WalletBalance),
    ),
]
TARGET_IDS = [t.name for t in TARGETS]


def time_requests(r: Rig) -> int:
    return arrivals(r.venue, "zoomex", "time")


# --------------------------------------------------------------------------------------------- 1. transient


TRANSIENT = [
    "http_500",
    "http_503",
    "http_502_html",
    "reset",
    "truncated",
    "rate_limit",
    "slow_body",
    "latency",
    "clock_error",
]


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("kind", TRANSIENT)
async def test_transient_fault_then_success(kind: str, target: Target) -> None:
    async with rig() as r:
        await target.warm_up(r)
        creds = target.creds(r.venue)
        client = target.client(r, creds)
        r.venue.script(creds.api_key, [make_fault(kind), "ok"], endpoint=target.endpoint)
        times_before = time_requests(r)

        with track_call() as call:
            result = await bounded(target.call(client))

        assert target.result_check(result), result
        # A re-sync after a Zoomex clock error asks /market/time: not one of the call's attempts.
        resyncs = time_requests(r) - times_before
        assert resyncs == (1 if (kind, target.venue) == ("clock_error", "zoomex") else 0)
        assert call.attempts == 2
        assert r.log.count(target.venue, target.endpoint, creds.label) == 2

        seen = await settle(lambda: arrivals(r.venue, target.venue, target.endpoint, creds.api_key), 2)
        assert seen == 2, f"{kind}: client made 2 attempts, simulator saw {seen} (hidden resend?)"
        row = r.venue.stats().get(target.venue, target.endpoint, creds.api_key)
        assert row is not None
        assert row.faults_injected == 1
        # A latency fault only delays: that request is also served (after the client gave up on it).
        assert row.accepted == (2 if kind == "latency" else 1)
        assert r.venue.violations == 0
        assert r.pool.metrics.snapshot().endpoints[(target.venue, target.endpoint)].retries == 1


# --------------------------------------------------------------------------------------------- 2. persistent


@dataclass(frozen=True)
class Expect:
    error: type[ConnexAsyncError]
    attempts: int
    status: int | dict[str, int] | None = None  # or venue -> status
    code: dict[str, int] = field(default_factory=dict)  # venue -> code


PERSISTENT: dict[str, Expect] = {
    "http_500": Expect(ServerError, MAX_ATTEMPTS, 500, {"connex": 500, "zoomex": 10016}),
    "http_503": Expect(ServerError, MAX_ATTEMPTS, 503, {"connex": 500, "zoomex": 10016}),
    "http_502_html": Expect(ServerError, MAX_ATTEMPTS, 502),
    "reset": Expect(TransportError, MAX_ATTEMPTS),
    "truncated": Expect(TransportError, MAX_ATTEMPTS),
    "slow_body": Expect(RequestTimeoutError, MAX_ATTEMPTS),
    "latency": Expect(RequestTimeoutError, MAX_ATTEMPTS),
    "malformed_json": Expect(DecodeError, 1, 200),
    "text_400": Expect(BadRequestError, 1, 400),
    "auth_error": Expect(AuthenticationError, 1, 200, {"connex": 2000, "zoomex": 10004}),
    "clock_error": Expect(TimestampError, 2, 200, {"connex": 7000, "zoomex": 10002}),
    # ConneX: HTTP 429 (its body is not read, like the official SDKs); Zoomex: HTTP 200 + retCode 10006.
    "rate_limit": Expect(RateLimitError, MAX_ATTEMPTS, {"connex": 429, "zoomex": 200}, {"zoomex": 10006}),
}
PERSISTENT_CASES = [
    pytest.param(kind, target, id=f"{kind}-{target.name}") for kind in PERSISTENT for target in TARGETS
] + [
    # The host-wide 403 on ConneX is a permission answer: not retried, no circuit (that is Zoomex's).
    pytest.param("ip_limit", target, id=f"ip_limit-{target.name}")
    for target in TARGETS
    if target.venue == "connex"
]


@pytest.mark.parametrize(("kind", "target"), PERSISTENT_CASES)
async def test_persistent_fault_ends_in_typed_error(kind: str, target: Target) -> None:
    expect = PERSISTENT.get(kind) or Expect(PermissionDeniedError, 1, 403)
    async with rig() as r:
        await target.warm_up(r)
        creds = target.creds(r.venue)
        client = target.client(r, creds)
        fault = r.venue.inject(make_fault(kind, times=None, api_key=creds.api_key, endpoint=target.endpoint))
        times_before = time_requests(r)

        with track_call() as call, pytest.raises(ConnexAsyncError) as info:
            await bounded(target.call(client))

        err = info.value
        assert type(err) is expect.error, f"{kind}: got {type(err).__name__}: {err}"
        assert err.attempts == expect.attempts
        assert (err.venue, err.endpoint, err.portfolio) == (target.venue, target.endpoint, creds.label)
        assert creds.secret not in str(err) and creds.api_key not in str(err)
        status = expect.status.get(target.venue) if isinstance(expect.status, dict) else expect.status
        if status is not None:
            assert getattr(err, "status", None) == status
        if target.venue in expect.code:
            assert isinstance(err, APIError) and err.code == expect.code[target.venue]
        if kind in ("reset", "truncated"):
            assert err.__cause__ is not None  # the transport exception is kept

        resyncs = time_requests(r) - times_before
        assert resyncs == (1 if (kind, target.venue) == ("clock_error", "zoomex") else 0)
        assert call.attempts == expect.attempts
        assert r.log.count(target.venue, target.endpoint, creds.label) == expect.attempts

        seen = await settle(lambda: arrivals(r.venue, target.venue, target.endpoint, creds.api_key), expect.attempts)
        assert seen == expect.attempts, f"{kind}: client made {expect.attempts} attempts, simulator saw {seen}"
        assert fault.fired == expect.attempts
        assert r.venue.violations == 0


async def test_zoomex_ip_limit_opens_circuit_and_other_keys_fail_fast() -> None:
    async with rig() as r:
        target = TARGETS[2]
        await target.warm_up(r)
        first, second = r.venue.zoomex_credentials[:2]
        r.venue.inject(make_fault("ip_limit", times=None, api_key=first.api_key))

        with track_call() as call, pytest.raises(CircuitOpenError) as info:
            await bounded(ZoomexClient(first, base_url=r.venue.base_url, pool=r.pool).get_wallet_balance())
        err = info.value
        assert (err.status, err.attempts, call.attempts) == (403, 1, 1)
        assert err.portfolio == first.label
        assert err.until > time.time() + 60
        host = URL(r.venue.base_url).raw_authority
        assert ("zoomex", host) in r.pool.open_circuits()

        # Another key on the same host fails fast, before the limiter and without any request.
        loop = asyncio.get_running_loop()
        started = loop.time()
        with track_call() as call2, pytest.raises(CircuitOpenError) as info2:
            await bounded(ZoomexClient(second, base_url=r.venue.base_url, pool=r.pool).get_wallet_balance(), 1.0)
        assert loop.time() - started < 1.0  # no limiter wait, no request (GC passes alone take 0.1 s)
        assert info2.value.portfolio == second.label
        assert info2.value.status is None
        assert call2.attempts == 0
        await asyncio.sleep(0.05)
        assert arrivals(r.venue, "zoomex", "wallet", second.api_key) == 0
        assert arrivals(r.venue, "zoomex", "wallet", first.api_key) == 1
        assert r.venue.violations == 0

        # ConneX on the same host is another venue: not affected by Zoomex's circuit.
        cx = ConnexClient(r.venue.connex_credentials[0], base_url=r.venue.base_url, pool=r.pool)
        assert isinstance(await bounded(cx.get_assets()), AssetsPage)


async def test_fail_fast_error_reports_zero_attempts() -> None:
    async with rig() as r:
        await TARGETS[2].warm_up(r)
        first, second = r.venue.zoomex_credentials[:2]
        r.venue.inject(make_fault("ip_limit", times=None, api_key=first.api_key))
        with pytest.raises(CircuitOpenError):
            await bounded(ZoomexClient(first, base_url=r.venue.base_url, pool=r.pool).get_wallet_balance())
        with track_call() as call, pytest.raises(CircuitOpenError) as info:
            await bounded(ZoomexClient(second, base_url=r.venue.base_url, pool=r.pool).get_wallet_balance())
        assert arrivals(r.venue, "zoomex", "wallet", second.api_key) == 0
        assert call.attempts == 0
        assert info.value.attempts == 0


# --------------------------------------------------------------------------------------------- 3. clock skew


@pytest.mark.parametrize("skew", [120.0, -120.0])
async def test_connex_clock_skew_resyncs_once_from_date_header(skew: float) -> None:
    async with rig(http_timeout=5.0, clock_skew=skew) as r:
        first, second = r.venue.connex_credentials[:2]
        with track_call() as call:
            page = await bounded(ConnexClient(first, base_url=r.venue.base_url, pool=r.pool).get_assets())
        assert isinstance(page, AssetsPage)
        assert call.attempts == 2  # one 7000, one re-sync from the Date header, one success
        offset = r.pool.clock_offset("connex", r.venue.base_url)
        assert offset is not None and abs(offset - skew) < 2.0

        # The offset is shared by the pool: other keys and endpoints sign right the first time.
        other = ConnexClient(second, base_url=r.venue.base_url, pool=r.pool)
        with track_call() as call2:
            await bounded(other.get_assets())
            await bounded(other.get_positions(zero_filter=True))
        assert call2.attempts == 2

        stats = r.venue.stats()
        assert stats.get("connex", "assets", first.api_key).rejected_clock == 1  # type: ignore[union-attr]
        assert stats.rejected_clock == 1
        assert stats.requests == 4
        assert stats.accepted == 3
        assert stats.violations == 0


@pytest.mark.parametrize("skew", [120.0, -120.0])
async def test_zoomex_clock_skew_measured_first(skew: float) -> None:
    async with rig(http_timeout=5.0, clock_skew=skew) as r:
        keys = r.venue.zoomex_credentials
        clients = [ZoomexClient(c, base_url=r.venue.base_url, pool=r.pool) for c in keys]
        stats_list = []
        for client in clients:  # sequential: the first one measures, the others reuse
            with track_call() as call:
                assert isinstance(await bounded(client.get_wallet_balance()), WalletBalance)
            stats_list.append(call.attempts)
        assert stats_list == [1] * len(keys)  # the clock's own request is not the call's attempt

        offset = r.pool.clock_offset("zoomex", r.venue.base_url)
        assert offset is not None and abs(offset - skew) < 0.5
        server_time = await bounded(clients[0].get_server_time())
        assert abs(server_time.time_nano / 1e9 - (time.time() + skew)) < 0.5

        stats = r.venue.stats()
        assert stats.rejected_clock == 0
        assert stats.by_endpoint("zoomex", "wallet").requests == len(keys)
        assert stats.by_endpoint("zoomex", "wallet").accepted == len(keys)
        assert stats.by_endpoint("zoomex", "time").requests == 2  # the measurement + get_server_time
        assert stats.violations == 0


# --------------------------------------------------------------------------------------------- 4. chaos

# Every kind the simulator has, except those that end a key (auth) or a host (ip_limit) for good.
CHAOS_KINDS = sorted(FAULT_KINDS - {"auth_error", "ip_limit"})
CHAOS_P = 0.03  # per kind and request: about 30 % of requests meet one fault
CHAOS_TIMEOUT = 0.5
CHAOS_SLOW = 0.8  # latency / slow_body beyond the chaos timeout
ALLOWED_CHAOS_ERRORS = (
    ServerError,
    TransportError,  # RequestTimeoutError included
    DecodeError,
    BadRequestError,
    TimestampError,
    RateLimitError,
)


async def test_mixed_chaos_nothing_lost_nothing_hangs() -> None:
    sizes = {"connex_portfolios": 30, "zoomex_accounts": 10, "seed": 97}
    async with rig(http_timeout=CHAOS_TIMEOUT, connector_limit=400, **sizes) as r:
        faults = [r.venue.inject(make_fault(k, probability=CHAOS_P, seconds=CHAOS_SLOW)) for k in CHAOS_KINDS]
        base = r.venue.base_url
        cx_clients = [ConnexClient(c, base_url=base, pool=r.pool) for c in r.venue.connex_credentials]
        zx_clients = [ZoomexClient(c, base_url=base, pool=r.pool) for c in r.venue.zoomex_credentials]
        jobs: list[tuple[str, str, Callable[[], Awaitable[Any]]]] = []
        for c in cx_clients:
            positions = partial(c.get_positions, zero_filter=True)
            jobs += [(c.label, "assets", c.get_assets), (c.label, "positions", positions)] * 2
        # Few calls per Zoomex key: with more than 10 requests of one key in a second, a request
        # delayed by a latency fault far beyond the limiter's margin could land in a later window.
        for z in zx_clients:
            jobs += [(z.label, "wallet", z.get_wallet_balance)] * 3
        assert len(jobs) == 150

        outcomes: dict[int, tuple[object, int]] = {}

        async def run(i: int, job: Callable[[], Awaitable[Any]]) -> None:
            with track_call() as call:
                try:
                    result: object = await bounded(job())
                except ConnexAsyncError as exc:
                    result = exc
            assert i not in outcomes
            outcomes[i] = (result, call.attempts)

        started = time.monotonic()
        async with asyncio.timeout(30):
            await asyncio.gather(*(run(i, job) for i, (_, _, job) in enumerate(jobs)))
        elapsed = time.monotonic() - started

        assert len(outcomes) == len(jobs)  # exactly one outcome per call
        errors = [(jobs[i], res) for i, (res, _) in outcomes.items() if isinstance(res, ConnexAsyncError)]
        for (label, endpoint, _), err in errors:
            assert isinstance(err, ALLOWED_CHAOS_ERRORS), f"{type(err).__name__}: {err}"
            assert (err.portfolio, err.endpoint) == (label, endpoint)
            assert 1 <= err.attempts <= MAX_ATTEMPTS + 1  # + one try after a clock re-sync
        successes = len(jobs) - len(errors)
        assert successes >= len(jobs) * 0.8, f"only {successes} of {len(jobs)} calls succeeded"
        total_attempts = sum(attempts for _, attempts in outcomes.values())
        assert total_attempts > len(jobs)  # the faults did make the client retry

        # Every attempt arrived exactly once (latency faults arrive late: wait for them). The
        # /market/time requests of the pool's clock sync are not any call's attempts.
        seen = await settle(
            lambda: r.venue.stats().requests - r.venue.stats().by_endpoint("zoomex", "time").requests, total_attempts
        )
        assert seen == total_attempts, f"client attempts {total_attempts} != simulator arrivals {seen}"
        # ... and per endpoint too, the clock's own requests included (they may arrive late as well).
        metrics = r.pool.metrics.snapshot()
        clock_requests = metrics.endpoints[("zoomex", "time")].requests
        await settle(lambda: r.venue.stats().by_endpoint("zoomex", "time").requests, clock_requests)
        stats = r.venue.stats()
        for key in [("connex", "assets"), ("connex", "positions"), ("zoomex", "wallet"), ("zoomex", "time")]:
            assert metrics.endpoints[key].requests == stats.by_endpoint(*key).requests, key
        # Answers: every success is one accepted answer; a latency-faulted request is served after
        # the client gave up on it, so it is accepted on the server and a timeout on the client.
        latency_fired = faults[CHAOS_KINDS.index("latency")].fired
        assert sum(e.successes for e in metrics.endpoints.values()) == stats.accepted - latency_fired
        assert stats.faults_injected == sum(f.fired for f in faults)
        assert all(f.fired > 0 for f in faults), faults
        assert stats.violations == 0
        assert elapsed < 15


async def test_host_limiter_queue_keeps_key_window() -> None:
    async with rig(http_timeout=5.0, connex_portfolios=0, zoomex_accounts=41) as r:
        clients = [ZoomexClient(c, base_url=r.venue.base_url, pool=r.pool) for c in r.venue.zoomex_credentials]
        busy, others = clients[0], clients[1:]
        # 40 keys make 2 calls each (a host queue of ~40 slots, ~340 ms), then only `busy` is left.
        calls = [c.get_wallet_balance() for c in others for _ in range(2)]
        calls += [busy.get_wallet_balance() for _ in range(15)]
        await bounded(asyncio.gather(*calls), 20.0)
        row = r.venue.stats().get("zoomex", "wallet", busy.credentials.api_key)
        assert row is not None
        # Before limits.LimiterRegistry.acquire refunded stale tokens: peak 11, 1 violation, 1 x 10006.
        assert (row.peak, row.violations, row.rejected_rate_limit) == (10, 0, 0), row.to_dict()
        assert row.requests == 15


# --------------------------------------------------------------------------------------------- 5. isolation


@pytest.mark.parametrize("venue_name", ["connex", "zoomex"])
async def test_failing_key_never_blocks_others(venue_name: str) -> None:
    async with rig(http_timeout=0.25, connex_portfolios=21, zoomex_accounts=21) as r:
        target = TARGETS[0] if venue_name == "connex" else TARGETS[2]
        await target.warm_up(r)
        bad, *good = (target.creds(r.venue, i) for i in range(21))
        r.venue.inject(Fault("latency", seconds=0.6, api_key=bad.api_key))
        loop = asyncio.get_running_loop()
        started = loop.time()
        done: dict[str, float] = {}

        async def call(creds: Credentials) -> object:
            try:
                return await bounded(target.call(target.client(r, creds)))
            finally:
                done[creds.label] = loop.time() - started

        bad_task = asyncio.create_task(call(bad))
        await asyncio.sleep(0.01)  # the failing key is already in flight
        results = await bounded(asyncio.gather(*(call(c) for c in good)))
        assert all(target.result_check(res) for res in results)
        assert not bad_task.done()
        with pytest.raises(RequestTimeoutError) as info:
            await bounded(bad_task)
        assert info.value.attempts == MAX_ATTEMPTS

        slowest_good = max(done[c.label] for c in good)
        assert slowest_good < done[bad.label] / 3, (slowest_good, done[bad.label])
        assert slowest_good < 1.0
        await settle(lambda: arrivals(r.venue, target.venue, target.endpoint, bad.api_key), MAX_ATTEMPTS)
        assert r.venue.violations == 0


# --------------------------------------------------------------------------------------------- 6. paging


async def raw_assets_page(venue: SimulatedVenue, creds: Credentials, page: int, size: int) -> dict[str, Any]:
    """One assets page fetched by hand (signed with the simulator's own algorithm), amounts as text."""
    params = [("page", str(page)), ("pageSize", str(size))]
    nonce = str(int(venue.now()))
    headers = {
        "X-MBX-APIKEY": creds.api_key,
        "nonce": nonce,
        "signature": connex_signature(creds.secret, params, nonce),
    }
    url = f"{venue.base_url}/api/v1/trading/portfolio/assets?page={page}&pageSize={size}"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(url, headers=headers) as resp,
    ):
        assert resp.status == 200
        data: dict[str, Any] = json.loads(await resp.read(), parse_float=str, parse_int=str)["data"]
        return data


async def test_paging_2500_assets_exact_decimals() -> None:
    async with rig(http_timeout=5.0, connex_portfolios=0, zoomex_accounts=0, drift_interval=3600.0) as r:
        creds = r.venue.add_portfolio("connex", assets=2500)
        client = ConnexClient(creds, base_url=r.venue.base_url, pool=r.pool)
        with track_call() as call:
            assets = await bounded(client.get_all_assets(page_size=1000))
        assert call.attempts == 3
        assert arrivals(r.venue, "connex", "assets", creds.api_key) == 3
        assert len(assets) == 2500
        assert len({(a.coin, a.exchange_type) for a in assets}) == 2500

        raw_rows = []
        for page in (1, 2, 3):
            data = await bounded(raw_assets_page(r.venue, creds, page, 1000))
            assert (int(data["pageNum"]), int(data["totalSize"])) == (3, 2500)
            raw_rows += data["list"]
        assert len(raw_rows) == 2500

        checked = 0
        for asset, raw in zip(assets, raw_rows, strict=True):
            assert (asset.coin, asset.exchange_type) == (raw["coin"], raw["exchangeType"])
            for struct_field in msgspec.structs.fields(asset):
                name = struct_field.name
                value = getattr(asset, name)
                assert not isinstance(value, float), name
                wire = raw.get(struct_field.encode_name)
                if struct_field.type in (Decimal, Decimal | None):
                    if wire in ("", None):
                        assert value is None, (name, wire)
                    else:
                        assert isinstance(value, Decimal), (name, value)
                        assert str(value) == wire, (name, wire, value)  # digit for digit
                        checked += 1
        assert checked > 2500 * 8
        assert any(len(str(a.balance).partition(".")[2]) >= 18 for a in assets)
        assert r.venue.violations == 0
