"""The request loop over mocked HTTP: signing as the server sees it, every error path, retries, logging."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from venue_checks import FAST_RETRY, connex_signature_ok, zoomex_signature_ok

from connex_async import (
    AuthenticationError,
    CircuitOpenError,
    ConnexClient,
    Credentials,
    LimiterTimeoutError,
    RateLimit,
    RateLimitError,
    RetryPolicy,
    ServerError,
    SessionPool,
    TimestampError,
    ZoomexClient,
)

CX_URL = "https://cx.test"
ZX_URL = "https://zx.test"
ASSETS_RE = re.compile(r"^https://cx\.test/api/v1/trading/portfolio/assets(\?.*)?$")
POSITIONS_RE = re.compile(r"^https://cx\.test/api/v1/trading/position(\?.*)?$")
WALLET_RE = re.compile(r"^https://zx\.test/cloud/trade/v3/account/wallet-balance(\?.*)?$")
TIME_RE = re.compile(r"^https://zx\.test/cloud/trade/v3/market/time$")
ASSETS_BODY = (Path(__file__).parent / "fixtures" / "connex_assets_doc.json").read_text()
WALLET_BODY = (Path(__file__).parent / "fixtures" / "zoomex_wallet_seed.json").read_text()
CREDS = Credentials("cx-key-0001", "cx-secret-0001", label="desk-1")
ZCREDS = Credentials("zx-key-0001", "zx-secret-0001", label="zx-desk-1")


def time_body(offset: float = 0.0) -> str:
    now = time.time() + offset
    return json.dumps(
        {
            "retCode": 0,
            "retMsg": "OK",
            "result": {"timeSecond": str(int(now)), "timeNano": str(int(now * 1e9))},
            "retExtInfo": {},
            "time": int(now * 1000),
        }
    )


def ok_assets(url: Any, **kwargs: Any) -> CallbackResult:
    assert connex_signature_ok("cx-secret-0001", url.raw_query_string, kwargs["headers"]), "bad signature"
    return CallbackResult(status=200, body=ASSETS_BODY, content_type="application/json")


@pytest.fixture
async def pool() -> Any:
    async with SessionPool(retry=FAST_RETRY, timeout=2.0) as p:
        yield p


def connex(pool: SessionPool, **limits: RateLimit) -> ConnexClient:
    return ConnexClient(CREDS, base_url=CX_URL, pool=pool, limits=limits or None)


def calls(m: aioresponses, pattern: re.Pattern[str]) -> int:
    return sum(len(v) for (method, url), v in m.requests.items() if pattern.match(str(url)))


async def test_assets_signed_as_the_server_checks_and_decoded(pool: SessionPool) -> None:
    with aioresponses() as m:
        seen: list[dict[str, str]] = []

        def cb(url: Any, **kwargs: Any) -> CallbackResult:
            seen.append(dict(url.query))
            assert kwargs["headers"]["X-MBX-APIKEY"] == "cx-key-0001"
            assert kwargs.get("data") is None and kwargs.get("json") is None  # never a body on a GET
            return ok_assets(url, **kwargs)

        m.get(ASSETS_RE, callback=cb)
        page = await connex(pool).get_assets("OKX", page=2, page_size=500)
    assert page.assets[0].coin == "USDT"
    assert seen == [{"exchangeType": "OKX", "page": "2", "pageSize": "500"}]


async def test_positions_params_and_zero_filter(pool: SessionPool) -> None:
    with aioresponses() as m:

        def cb(url: Any, **kwargs: Any) -> CallbackResult:
            assert dict(url.query) == {"exchange": "BINANCE", "zeroFilter": "true"}
            assert connex_signature_ok("cx-secret-0001", url.raw_query_string, kwargs["headers"])
            return CallbackResult(body=(Path(__file__).parent / "fixtures" / "connex_positions_doc.json").read_text())

        m.get(POSITIONS_RE, callback=cb)
        (pos,) = await connex(pool).get_positions(exchange="BINANCE", zero_filter=True)
    assert pos.sym == "BINANCE_PERP_ETH_USDT"


async def test_zoomex_syncs_clock_first_then_signs(pool: SessionPool) -> None:
    with aioresponses() as m:
        m.get(TIME_RE, body=time_body(offset=30.0), repeat=True)

        def cb(url: Any, **kwargs: Any) -> CallbackResult:
            headers = kwargs["headers"]
            assert url.raw_query_string == "accountType=UNIFIED&coin=BTC,USDT"
            assert zoomex_signature_ok("zx-key-0001", "zx-secret-0001", url.raw_query_string, headers)
            assert abs(int(headers["X-BAPI-TIMESTAMP"]) / 1000 - (time.time() + 30)) < 2  # offset applied
            return CallbackResult(body=WALLET_BODY)

        m.get(WALLET_RE, callback=cb, repeat=True)
        zx = ZoomexClient(ZCREDS, base_url=ZX_URL, pool=pool)
        await asyncio.gather(*(zx.get_wallet_balance(coins=["BTC", "USDT"]) for _ in range(5)))
        assert calls(m, TIME_RE) == 1  # one measurement for five concurrent callers
    assert pool.clock_offset("zoomex", ZX_URL) == pytest.approx(30.0, abs=1.0)


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 500, "body": '{"code":500,"message":"internal"}'},
        {"status": 503, "body": "Service Unavailable", "content_type": "text/plain"},
        {"status": 502, "body": "<html><body>502 Bad Gateway</body></html>", "content_type": "text/html"},
        {"exception": TimeoutError()},
        {"exception": aiohttp.ServerDisconnectedError()},
        {"exception": aiohttp.ClientOSError(104, "Connection reset by peer")},
        {"exception": aiohttp.ClientPayloadError("Response payload is not completed")},
        {"status": 200, "body": '{"code":400012,"message":"service loading"}'},
    ],
    ids=["500-json", "503-text", "502-html", "timeout", "disconnect", "reset", "truncated", "400012"],
)
async def test_transient_failure_then_success(pool: SessionPool, failure: dict[str, Any]) -> None:
    with aioresponses() as m:
        m.get(ASSETS_RE, **failure)
        m.get(ASSETS_RE, callback=ok_assets)
        page = await connex(pool).get_assets()
    assert page.total_size == 1
    snap = pool.metrics.snapshot().endpoints[("connex", "assets")]
    assert (snap.requests, snap.retries, snap.successes) == (2, 1, 1)


async def test_persistent_502_html_ends_in_server_error_after_all_retries(pool: SessionPool) -> None:
    with aioresponses() as m:
        m.get(ASSETS_RE, status=502, body="<html>Bad Gateway</html>", content_type="text/html", repeat=True)
        with pytest.raises(ServerError) as info:
            await connex(pool).get_assets()
        assert calls(m, ASSETS_RE) == 4  # 1 + max_retries
    err = info.value
    assert (err.venue, err.endpoint, err.portfolio, err.status, err.attempts) == ("connex", "assets", "desk-1", 502, 4)
    assert "Bad Gateway" in str(err)


async def test_auth_error_is_not_retried(pool: SessionPool) -> None:
    with aioresponses() as m:
        m.get(ASSETS_RE, body='{"code":2000,"message":"signature error","data":null}', repeat=True)
        with pytest.raises(AuthenticationError):
            await connex(pool).get_assets()
        assert calls(m, ASSETS_RE) == 1


# Rate-limit answers and cooldowns are held at a real server's arrival times: tests/test_pool_wire.py.


async def test_zoomex_403_opens_circuit_and_fails_fast(pool: SessionPool) -> None:
    with aioresponses() as m:
        m.get(TIME_RE, body=time_body(), repeat=True)
        m.get(WALLET_RE, status=403, body="access too frequent", content_type="text/plain", repeat=True)
        zx = ZoomexClient(ZCREDS, base_url=ZX_URL, pool=pool)
        with pytest.raises(CircuitOpenError) as first:
            await zx.get_wallet_balance()
        other = ZoomexClient(Credentials("zx-key-2", "s2", label="zx-desk-2"), base_url=ZX_URL, pool=pool)
        with pytest.raises(CircuitOpenError) as second:
            await other.get_wallet_balance()
        assert calls(m, WALLET_RE) == 1  # the second call never left the process
    assert first.value.until >= time.time() + 590
    assert second.value.portfolio == "zx-desk-2" and "fail fast until" in str(second.value)
    assert ("zoomex", "zx.test") in pool.open_circuits()


async def test_connex_7000_fixes_nonce_from_date_header_and_retries_once(pool: SessionPool) -> None:
    skew = 120.0  # the venue's clock is two minutes ahead of ours
    nonces: list[int] = []

    def cb(url: Any, **kwargs: Any) -> CallbackResult:
        server_now = time.time() + skew
        nonce = int(kwargs["headers"]["nonce"])
        nonces.append(nonce)
        date = email.utils.formatdate(server_now, usegmt=True)
        if abs(nonce - server_now) > 60:
            return CallbackResult(body='{"code":7000,"message":"nonce invalid","data":null}', headers={"Date": date})
        return ok_assets(url, **kwargs)

    with aioresponses() as m:
        m.get(ASSETS_RE, callback=cb, repeat=True)
        await connex(pool).get_assets()
    assert len(nonces) == 2 and abs(nonces[1] - (time.time() + skew)) < 3
    assert pool.clock_offset("connex", CX_URL) == pytest.approx(skew, abs=2)


async def test_persistent_7000_raises_timestamp_error_after_one_resync(pool: SessionPool) -> None:
    with aioresponses() as m:
        date = email.utils.formatdate(time.time(), usegmt=True)
        m.get(ASSETS_RE, body='{"code":7000,"message":"nonce invalid"}', headers={"Date": date}, repeat=True)
        with pytest.raises(TimestampError):
            await connex(pool).get_assets()
        assert calls(m, ASSETS_RE) == 2


async def test_zoomex_10002_resyncs_from_server_time_and_retries(pool: SessionPool) -> None:
    offsets = iter([0.0, -90.0])  # first sync: no skew; then the venue's clock jumps 90 s back

    with aioresponses() as m:
        m.get(TIME_RE, callback=lambda url, **kw: CallbackResult(body=time_body(next(offsets))), repeat=True)
        m.get(WALLET_RE, body='{"retCode":10002,"retMsg":"invalid timestamp","result":{}}')

        def cb(url: Any, **kwargs: Any) -> CallbackResult:
            ts = int(kwargs["headers"]["X-BAPI-TIMESTAMP"]) / 1000
            assert abs(ts - (time.time() - 90)) < 2
            return CallbackResult(body=WALLET_BODY)

        m.get(WALLET_RE, callback=cb)
        await ZoomexClient(ZCREDS, base_url=ZX_URL, pool=pool).get_wallet_balance()
        assert calls(m, TIME_RE) == 2


async def test_retries_acquire_the_limiter_again(pool: SessionPool) -> None:
    with aioresponses() as m:
        m.get(ASSETS_RE, status=500, body="{}")
        m.get(ASSETS_RE, callback=ok_assets)
        client = connex(pool, assets=RateLimit(1, 0.5, margin=0.0))
        started = time.monotonic()
        await client.get_assets()
        assert time.monotonic() - started >= 0.45  # the retry waited for a new slot


async def test_max_queue_wait_gives_typed_error_and_sends_nothing() -> None:
    async with SessionPool(max_queue_wait=0.1) as pool:
        with aioresponses() as m:
            m.get(ASSETS_RE, callback=ok_assets, repeat=True)
            client = connex(pool, assets=RateLimit(1, 5.0))
            await client.get_assets()
            with pytest.raises(LimiterTimeoutError) as info:
                await client.get_assets()
            assert calls(m, ASSETS_RE) == 1
    assert info.value.portfolio == "desk-1" and info.value.waited >= 0.1


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c: c.get_assets("KRAKEN"), "exchange_type"),
        (lambda c: c.get_assets(page=0), "page"),
        (lambda c: c.get_assets(page_size=1001), "page_size"),
        (lambda c: c.get_assets(page_size=0), "page_size"),
        (lambda c: c.get_positions(exchange="FTX"), "exchange"),
        (lambda c: c.get_positions(sym=""), "sym"),
        (lambda c: c.get_positions(zero_filter="yes"), "zero_filter"),
    ],
)
async def test_arguments_validated_before_anything_is_sent(pool: SessionPool, call: Any, match: str) -> None:
    with aioresponses() as m:
        with pytest.raises(ValueError, match=match):
            await call(connex(pool))
        assert not m.requests


async def test_zoomex_argument_validation(pool: SessionPool) -> None:
    zx = ZoomexClient(ZCREDS, base_url=ZX_URL, pool=pool)
    with pytest.raises(ValueError, match="account_type"):
        await zx.get_wallet_balance(account_type="SPOT")
    with pytest.raises(ValueError, match="coin"):
        await zx.get_wallet_balance(coins=["BTC,ETH"])
    with pytest.raises(ValueError, match="limits"):
        ConnexClient(CREDS, pool=pool, limits={"nope": RateLimit(1, 1.0)})


async def test_debug_log_has_one_line_per_attempt_and_no_secrets(
    pool: SessionPool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="connex_async"), aioresponses() as m:
        m.get(ASSETS_RE, status=500, body='{"code":500,"message":"x"}')
        m.get(ASSETS_RE, callback=ok_assets)
        await connex(pool).get_assets()
    lines = [r.getMessage() for r in caplog.records if "attempt=" in r.getMessage()]
    assert len(lines) == 2
    assert "portfolio=desk-1" in lines[0] and "status=500" in lines[0] and "limiter_wait=" in lines[0]
    for secret in ("cx-secret-0001", "cx-key-0001"):
        assert secret not in caplog.text


async def test_error_text_never_holds_key_or_secret(pool: SessionPool) -> None:
    with aioresponses() as m:
        m.get(ASSETS_RE, body='{"code":2000,"message":"signature error"}')
        with pytest.raises(AuthenticationError) as info:
            await connex(pool).get_assets()
    text = f"{info.value} {info.value!r} {info.value.headers}"
    assert "cx-secret-0001" not in text and "cx-key-0001" not in text


async def test_standalone_client_owns_and_closes_its_pool() -> None:
    with aioresponses() as m:
        m.get(ASSETS_RE, callback=ok_assets)
        async with ConnexClient(CREDS, base_url=CX_URL, retry=RetryPolicy(max_retries=0)) as cx:
            await cx.get_assets()
            assert not cx.pool.closed
    assert cx.pool.closed


async def test_rate_limit_error_after_exhausting_retries() -> None:
    async with SessionPool(retry=RetryPolicy(max_retries=1, backoff_base=0.01, backoff_max=0.02)) as pool:
        with aioresponses() as m:
            m.get(ASSETS_RE, status=429, body="", headers={"Retry-After": "0.05"}, repeat=True)
            with pytest.raises(RateLimitError) as info:
                await connex(pool).get_assets()
    assert info.value.attempts == 2 and info.value.retry_after == 0.05
