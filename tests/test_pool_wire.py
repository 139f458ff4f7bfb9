"""The request loop's promises, observed where a venue and a user see them: arrival times at a real
server, the typed error a call ends in, the memory it took, the log text, ``pool.metrics``.

Each test here fails when the promise it names breaks (``make mutate`` breaks them on purpose:
``tools/breakages.toml``). Timing bounds are one-sided wherever the claim allows, and the others
leave hundreds of milliseconds for garbage-collector passes and a machine twice as slow: these tests
need no `timing` mark (they may run beside any other under xdist).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import tracemalloc

import pytest
from aiohttp import web
from venue_checks import FAST_RETRY
from wire_server import ASSETS_BODY, Answer, Arrival, RecordingServer, bounded, json_answer

from connex_async import (
    AuthenticationError,
    ConnexAsyncError,
    ConnexClient,
    Credentials,
    RateLimit,
    RetryPolicy,
    SessionPool,
    ZoomexClient,
)
from connex_async.decoding import DEFAULT_MAX_BODY_BYTES
from connex_async.metrics import Histogram
from connex_async.poller import Poller

CX = Credentials("cx-key-0001", "cx-secret-0001", label="desk-1")
CX2 = Credentials("cx-key-0002", "cx-secret-0002", label="desk-2")
ZX = Credentials("zx-key-0001", "zx-secret-0001", label="zx-desk-1")
MIB = 1024 * 1024
SLOW = 0.5  # what a loaded machine may add to a wait: GC passes, a busy loop, a slow core


def connex(pool: SessionPool, server: RecordingServer, creds: Credentials = CX, **limits: RateLimit) -> ConnexClient:
    return ConnexClient(creds, base_url=server.base_url, pool=pool, limits=limits or None)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


# -- bodies over 32 MiB --------------------------------------------------------------------------


def padded_page(total: int, *, announce_length: bool) -> Answer:
    """An answer that streams a valid assets page padded with spaces to ``total`` bytes.

    Valid JSON: only its size is wrong. Streamed 1 MiB at a time, so the server never holds it;
    a client that hangs up early ends the stream (that is what it should do). Other endpoints get
    their usual answer.
    """

    async def answer(request: web.Request, arrival: Arrival) -> web.StreamResponse | None:
        if not arrival.path.endswith("/assets"):
            return None
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if announce_length:
            response.content_length = total
        await response.prepare(request)
        spaces = b" " * MIB
        left = total - len(ASSETS_BODY)
        try:
            await response.write(ASSETS_BODY)
            while left > 0:
                await response.write(spaces if left >= MIB else spaces[:left])
                left -= MIB
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client closed the connection
        return response

    return answer


OVER_LIMIT = DEFAULT_MAX_BODY_BYTES + 64 * 1024


@pytest.mark.parametrize("announce_length", [True, False], ids=["content-length", "chunked"])
async def test_a_body_over_32_mib_ends_the_call_in_a_typed_error_and_is_not_retried(announce_length: bool) -> None:
    server = RecordingServer(padded_page(OVER_LIMIT, announce_length=announce_length))
    async with server, SessionPool(retry=FAST_RETRY, timeout=30.0) as pool:
        with pytest.raises(ConnexAsyncError) as info:
            await bounded(connex(pool, server).get_assets(), 60)
    assert info.value.portfolio == "desk-1"
    assert len(server.of(CX.api_key)) <= 2, "an over-limit body was retried more than once"


async def peak_of_a_refused_answer(client: ConnexClient) -> int:
    """Bytes allocated at most while ``get_assets`` is refused (the connection and imports warmed first,
    so the peak is the oversized answer's)."""
    await client.get_positions()
    tracemalloc.start()
    try:
        with pytest.raises(ConnexAsyncError):
            await bounded(client.get_assets(), 60)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_a_body_announced_over_32_mib_is_never_read_into_memory() -> None:
    server = RecordingServer(padded_page(OVER_LIMIT, announce_length=True))
    async with server, SessionPool(retry=RetryPolicy(max_retries=0), timeout=30.0) as pool:
        peak = await peak_of_a_refused_answer(connex(pool, server))
    assert peak < 8 * MIB, f"{peak / MIB:.1f} MiB allocated for a refused body"


async def test_a_chunked_body_is_refused_once_it_passes_max_body_bytes() -> None:
    # A small limit and a body 16 times over it: reading stops near the limit, or it does not.
    server = RecordingServer(padded_page(16 * MIB, announce_length=False))
    async with server, SessionPool(retry=RetryPolicy(max_retries=0), max_body_bytes=MIB) as pool:
        peak = await peak_of_a_refused_answer(connex(pool, server))
    assert peak < 4 * MIB, f"{peak / MIB:.1f} MiB allocated for a body refused at 1 MiB"


# -- credentials never kept on errors, never logged ------------------------------------------------

#: Every header that may carry a credential: what a venue (or a proxy) might reflect back.
CREDENTIAL_HEADERS = ("X-MBX-APIKEY", "signature", "nonce", "X-BAPI-API-KEY", "X-BAPI-SIGN", "Authorization", "Cookie")


def reflecting(failures: list[tuple[int, dict[str, object]]]) -> Answer:
    """Answers the n-th request with ``failures[n]`` (status, JSON body; the last one from then on),
    the request's credential headers reflected into the answer's headers, and those the venue's
    request does not have invented, holding the secret."""

    async def answer(request: web.Request, arrival: Arrival) -> web.StreamResponse | None:
        if arrival.path.endswith("/market/time"):
            return None
        headers = {name: request.headers.get(name, f"reflected {secret_of(request)}") for name in CREDENTIAL_HEADERS}
        status, body = failures[min(arrival.index, len(failures) - 1)]
        return json_answer(body, status, headers)

    return answer


def secret_of(request: web.Request) -> str:
    return "cx-secret-0001" if "X-MBX-APIKEY" in request.headers else "zx-secret-0001"


def credential_values(server: RecordingServer, creds: Credentials) -> set[str]:
    """The key, the secret, and every signature and nonce the server received for this key."""
    values = {creds.api_key, creds.secret}
    for arrival in server.of(creds.api_key):
        for name in ("signature", "nonce", "X-BAPI-SIGN"):
            if name in arrival.headers:
                values.add(arrival.headers[name])
    return values


def assert_no_credentials(text: str, values: set[str]) -> None:
    leaked = sorted(v for v in values if v in text)
    assert not leaked, f"credentials in the text: {leaked}"


@pytest.mark.parametrize("venue", ["connex", "zoomex"])
async def test_errors_keep_no_credential_header_and_logs_show_no_credential(
    venue: str, caplog: pytest.LogCaptureFixture
) -> None:
    if venue == "connex":
        creds, failures = CX, [(500, {"code": 500, "message": "boom"}), (200, {"code": 2000, "message": "bad sig"})]
    else:
        creds, failures = ZX, [(200, {"retCode": 10016, "retMsg": "busy"}), (200, {"retCode": 10004, "retMsg": "sig"})]
    server = RecordingServer(reflecting(failures))
    with caplog.at_level(logging.DEBUG, logger="connex_async"):
        async with server, SessionPool(retry=FAST_RETRY) as pool:
            client: ConnexClient | ZoomexClient
            if venue == "connex":
                client = ConnexClient(creds, base_url=server.base_url, pool=pool)
                call = client.get_assets()
            else:
                client = ZoomexClient(creds, base_url=server.base_url, pool=pool)
                call = client.get_wallet_balance()
            with pytest.raises(AuthenticationError) as info:
                await bounded(call)
            # ... and through the Poller, which logs the quarantine with the error's text.
            poller = Poller([client], assets_every=0.05, positions_every=None, wallet_every=0.05, quarantine_after=1)
            async with poller:
                async with asyncio.timeout(10):
                    async for update in poller:
                        if update.quarantined:
                            break
    err = info.value
    assert err.attempts == 2  # the retried failure, then the auth error: both answers reflected credentials
    kept = {name.lower() for name in err.headers}
    assert not kept & {name.lower() for name in CREDENTIAL_HEADERS}, f"kept on the error: {sorted(kept)}"
    values = credential_values(server, creds)
    assert len(values) >= 3  # the key, the secret and at least one signature
    assert_no_credentials(f"{err} {err!r} {err.headers} {update.error} {update.error!r}", values)
    assert_no_credentials(caplog.text, values)
    assert "attempt=2" in caplog.text and "quarantined" in caplog.text  # the logs did see these calls


# -- backoff, Retry-After, cooldowns: when requests arrive ---------------------------------------


async def test_retries_back_off_exponentially_with_jitter() -> None:
    """The default policy: the n-th retry after ``0.5 * 2**(n-1)`` s, jittered down to half of it."""

    async def answer(request: web.Request, arrival: Arrival) -> web.StreamResponse | None:
        return json_answer({"code": 500, "message": "boom"}, 500) if arrival.index < 2 else None

    keys = [Credentials(f"cx-key-{i:04d}", f"s-{i}", label=f"desk-{i}") for i in range(10)]
    server = RecordingServer(answer)
    async with server, SessionPool() as pool:  # the default RetryPolicy
        await bounded(asyncio.gather(*(connex(pool, server, k).get_assets() for k in keys)))
    first, second = zip(*(gaps(server.times(k.api_key)) for k in keys), strict=True)
    assert all(0.245 <= g < 0.5 + SLOW for g in first), first
    assert all(0.495 <= g < 1.0 + SLOW for g in second), second
    # Jitter: ten keys failing together do not come back together.
    assert max(first) - min(first) > 0.06, first
    assert max(second) - min(second) > 0.12, second


async def test_a_retry_after_beyond_the_cap_is_clamped() -> None:
    async def answer(request: web.Request, arrival: Arrival) -> web.StreamResponse | None:
        return web.Response(status=429, headers={"Retry-After": "3600"}) if arrival.index == 0 else None

    server = RecordingServer(answer)
    async with server, SessionPool(retry=RetryPolicy(rate_limit_cap=0.4)) as pool:
        await bounded(connex(pool, server).get_assets(), 10)  # unclamped, an hour
    (gap,) = gaps(server.times(CX.api_key))
    assert 0.38 <= gap < 0.4 + SLOW


def test_the_default_cap_on_a_venue_hint_is_60_seconds() -> None:
    # README: cooled down until Retry-After / X-Bapi-Limit-Reset-Timestamp, clamped to 60 s. (A wire
    # test of the default would wait a minute: the clamp itself is held at the wire just above.)
    exact = RetryPolicy(cooldown_jitter=0.0)
    assert exact.cooldown(3600.0, 1) == 60.0
    assert exact.cooldown(59.0, 1) == 59.0
    # With the default jitter the pause is the clamped hint plus up to half of it, never less.
    assert all(60.0 <= RetryPolicy().cooldown(3600.0, 1) <= 90.0 for _ in range(100))


RATE_LIMITED = {
    "connex-429-no-hint": (lambda: web.Response(status=429), 0.2),
    "connex-100429": (lambda: json_answer({"code": 100429, "message": "Too many requests", "data": None}), 0.2),
    "zoomex-10006": (
        lambda: json_answer(
            {"retCode": 10006, "retMsg": "Too many visits!", "result": {}},
            headers={"X-Bapi-Limit-Reset-Timestamp": str(int((time.time() + 0.6) * 1000)), "X-Bapi-Limit": "10"},
        ),
        0.5,
    ),
}


@pytest.mark.parametrize("case", list(RATE_LIMITED))
async def test_a_rate_limit_answer_pauses_the_key_before_its_retry(case: str) -> None:
    """No hint: a backoff (here 0.2-0.4 s); Zoomex: until the reset timestamp (here 0.6 s ahead)."""
    make, min_gap = RATE_LIMITED[case]

    async def answer(request: web.Request, arrival: Arrival) -> web.StreamResponse | None:
        return make() if arrival.index == 0 and not arrival.path.endswith("/market/time") else None

    server = RecordingServer(answer)
    async with server, SessionPool(retry=RetryPolicy(backoff_base=0.4, backoff_max=0.4)) as pool:
        if case.startswith("zoomex"):
            creds = ZX
            await bounded(ZoomexClient(ZX, base_url=server.base_url, pool=pool).get_wallet_balance())
        else:
            creds = CX
            await bounded(connex(pool, server).get_assets())
        assert pool.metrics.snapshot().cooldowns == 1
    (gap,) = gaps(server.times(creds.api_key))
    assert min_gap - 0.01 <= gap < min_gap + 0.6 + SLOW, gap


async def test_a_retry_after_pauses_every_caller_of_the_key_and_no_other_key() -> None:
    async def answer(request: web.Request, arrival: Arrival) -> web.StreamResponse | None:
        if arrival.key == CX.api_key and arrival.index == 0:
            return web.Response(status=429, headers={"Retry-After": "0.6"})
        return None

    server = RecordingServer(answer)
    async with server, SessionPool(retry=FAST_RETRY) as pool:
        first = asyncio.create_task(connex(pool, server).get_assets())
        await server.wait_for(1, CX.api_key)
        await asyncio.sleep(0.1)
        await bounded(asyncio.gather(first, connex(pool, server).get_assets(), connex(pool, server, CX2).get_assets()))
    limited = server.times(CX.api_key)
    assert len(limited) == 3
    # The retry and the other caller of the key both wait out the server's 0.6 s ...
    assert min(t - limited[0] for t in limited[1:]) >= 0.59
    # ... while another key goes at once (it started 0.1 s after the 429).
    (other,) = server.times(CX2.api_key)
    assert other - limited[0] < 0.6 - 0.1


# -- connections ---------------------------------------------------------------------------------


async def test_requests_on_the_wire_never_exceed_connector_limit() -> None:
    async def answer(request: web.Request, arrival: Arrival) -> None:
        await asyncio.sleep(0.1)

    server = RecordingServer(answer)
    async with server, SessionPool(connector_limit=6) as pool:
        keys = [Credentials(f"cx-key-{i:04d}", f"s-{i}", label=f"desk-{i}") for i in range(30)]
        await bounded(asyncio.gather(*(connex(pool, server, k).get_assets() for k in keys)))
    assert len(server.arrivals) == 30
    assert server.peak_in_flight == 6


# -- quantiles -----------------------------------------------------------------------------------


def test_histogram_quantiles_within_a_bucket_of_the_truth() -> None:
    histogram = Histogram()
    for ms in range(1, 101):
        histogram.observe(ms / 1000)
    assert 0.050 <= histogram.quantile(0.5) <= 0.050 * 1.19**2
    assert 0.090 <= histogram.quantile(0.9) <= 0.090 * 1.19**2
    assert histogram.quantile(0.99) <= histogram.max == 0.1
    assert histogram.quantile(0.01) <= 0.001 * 1.19**2
    assert Histogram().quantile(0.5) == 0.0


async def test_latency_and_limiter_wait_p50_and_p99_in_the_metrics() -> None:
    async def answer(request: web.Request, arrival: Arrival) -> web.StreamResponse | None:
        if arrival.path.endswith("/position") and arrival.index == 7:
            await asyncio.sleep(0.4)  # one slow answer in twenty
        return None

    server = RecordingServer(answer)
    async with server, SessionPool() as pool:
        # Positions: twenty answers, one slow. Assets: nineteen admitted at once, the twentieth waits.
        client = connex(pool, server, positions=RateLimit(1000, 1.0), assets=RateLimit(20, 1.0, burst=19))
        for _ in range(20):
            await bounded(client.get_positions())
        for _ in range(20):
            await bounded(client.get_assets())
        snapshot = pool.metrics.snapshot().endpoints
    positions, assets = snapshot[("connex", "positions")], snapshot[("connex", "assets")]
    assert positions.latency_p50 < 0.1 and positions.latency_p99 >= 0.35
    assert assets.limiter_wait_p50 < 0.05 and assets.limiter_wait_p99 >= 0.3
