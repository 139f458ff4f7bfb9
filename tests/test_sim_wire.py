"""The simulated venue over a real socket, driven by a raw aiohttp client signing by hand."""

from __future__ import annotations

import asyncio
import email.utils
import errno
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import pytest_asyncio
from multidict import CIMultiDictProxy
from yarl import URL

from connex_async.credentials import Credentials
from connex_async.testing import SimulatedVenue

ASSETS = "/api/v1/trading/portfolio/assets"
POSITIONS = "/api/v1/trading/position"
WALLET = "/cloud/trade/v3/account/wallet-balance"
TIME = "/cloud/trade/v3/market/time"

Reply = tuple[int, "CIMultiDictProxy[str]", bytes]


def cx_headers(creds: Credentials, params: Mapping[str, str], skew: float = 0.0) -> dict[str, str]:
    nonce = str(int(time.time() + skew))
    message = "&".join(f"{k}={v}" for k, v in sorted(params.items())) + "&" + nonce
    sig = hmac.new(creds.secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return {"X-MBX-APIKEY": creds.api_key, "nonce": nonce, "signature": sig, "Content-Type": "application/json"}


def zx_headers(creds: Credentials, query: str, skew: float = 0.0, recv: str = "5000") -> dict[str, str]:
    ts = str(int((time.time() + skew) * 1000))
    sig = hmac.new(creds.secret.encode(), (ts + creds.api_key + recv + query).encode(), hashlib.sha256).hexdigest()
    return {
        "X-BAPI-API-KEY": creds.api_key,
        "X-BAPI-SIGN": sig,
        "X-BAPI-TIMESTAMP": ts,
        "X-BAPI-RECV-WINDOW": recv,
        "X-BAPI-SIGN-TYPE": "2",
    }


async def cx_get(
    session: aiohttp.ClientSession,
    venue: SimulatedVenue,
    creds: Credentials,
    path: str,
    params: Mapping[str, str] | None = None,
    skew: float = 0.0,
) -> Reply:
    params = dict(params or {})
    query = urlencode(sorted(params.items()))
    url = URL(venue.base_url + path + ("?" + query if query else ""), encoded=True)
    async with session.get(url, headers=cx_headers(creds, params, skew)) as resp:
        return resp.status, resp.headers, await resp.read()


async def zx_get(
    session: aiohttp.ClientSession,
    venue: SimulatedVenue,
    creds: Credentials,
    query: str,
    skew: float = 0.0,
    path: str = WALLET,
    **kwargs: Any,
) -> Reply:
    url = URL(venue.base_url + path + ("?" + query if query else ""), encoded=True)
    async with session.get(url, headers=zx_headers(creds, query, skew), **kwargs) as resp:
        return resp.status, resp.headers, await resp.read()


def code_of(body: bytes) -> int:
    return int(json.loads(body)["code"])


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


@pytest_asyncio.fixture
async def venue() -> AsyncIterator[SimulatedVenue]:
    async with SimulatedVenue(connex_portfolios=4, zoomex_accounts=3, seed=7) as v:
        yield v


# ----------------------------------------------------------------- basics


async def test_fixture_from_plugin(simulated_venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    creds = simulated_venue.connex_credentials[0]
    status, _, body = await cx_get(session, simulated_venue, creds, ASSETS)
    assert status == 200 and code_of(body) in (200, 200000)


async def test_credentials_are_deterministic_and_labelled() -> None:
    a = SimulatedVenue(connex_portfolios=3, zoomex_accounts=2, seed=5)
    b = SimulatedVenue(connex_portfolios=3, zoomex_accounts=2, seed=5)
    c = SimulatedVenue(connex_portfolios=3, zoomex_accounts=2, seed=6)
    assert [x.label for x in a.connex_credentials] == ["cx-0001", "cx-0002", "cx-0003"]
    assert [x.label for x in a.zoomex_credentials] == ["zx-0001", "zx-0002"]
    assert a.connex_credentials == b.connex_credentials
    assert a.connex_credentials != c.connex_credentials
    assert len({x.api_key for x in a.connex_credentials + a.zoomex_credentials}) == 5
    with pytest.raises(RuntimeError):
        _ = a.base_url


async def test_fixed_port_and_start_stop() -> None:
    # A port seen free a moment ago can be taken by another process before it is bound again: the
    # test looks for one that stays free (a few tries), rather than assume the first one does.
    for _ in range(5):
        probe = SimulatedVenue(connex_portfolios=1, zoomex_accounts=0)
        await probe.start()
        port = probe.port
        await probe.stop()
        fixed = SimulatedVenue(connex_portfolios=1, zoomex_accounts=0, port=port)
        try:
            await fixed.start()
            break
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    else:
        pytest.fail("5 ports in a row were taken between freeing and binding them again")
    try:
        assert fixed.base_url == f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
            status, _, _ = await cx_get(s, fixed, fixed.connex_credentials[0], ASSETS)
        assert status == 200
    finally:
        await fixed.stop()
    assert not fixed.running


async def test_assets_envelope_and_row_shape(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    codes = set()
    for creds in venue.connex_credentials:
        status, headers, body = await cx_get(session, venue, creds, ASSETS, {"page": "1", "pageSize": "1000"})
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        doc = json.loads(body)
        codes.add(doc["code"])
        assert doc["message"] == "Success"
        data = doc["data"]
        assert data["page"] == 1 and data["pageSize"] == 1000 and data["pageNum"] == 1
        assert data["totalSize"] == len(data["list"]) and 3 <= len(data["list"]) <= 8
        for row in data["list"]:
            assert row["exchangeType"] in ("BINANCE", "OKX")
            assert isinstance(row["portfolioId"], str)
            assert 18 <= len(row["balance"].partition(".")[2]) <= 22
            assert len(row["marginValue"].partition(".")[2]) == 22
            assert row["createAt"].isdigit() and row["updateAt"].isdigit()
            assert "equityValue" in row
    assert codes <= {200000, 200, "200000"}


async def test_success_code_variants_are_deterministic_and_can_be_disabled() -> None:
    async with (
        SimulatedVenue(connex_portfolios=80, zoomex_accounts=0, seed=3) as v,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s,
    ):
        codes = [json.loads((await cx_get(s, v, c, POSITIONS))[2])["code"] for c in v.connex_credentials]
        again = [json.loads((await cx_get(s, v, c, POSITIONS))[2])["code"] for c in v.connex_credentials]
    assert codes == again
    assert {200000, 200, "200000"} == set(codes)
    async with (
        SimulatedVenue(connex_portfolios=20, zoomex_accounts=0, seed=3, success_code_variants=False) as v,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s,
    ):
        codes = [json.loads((await cx_get(s, v, c, POSITIONS))[2])["code"] for c in v.connex_credentials]
    assert set(codes) == {200000}


async def test_paging_2500_rows(session: aiohttp.ClientSession) -> None:
    async with SimulatedVenue(connex_portfolios=0, zoomex_accounts=0, seed=1, drift_interval=3600) as v:
        creds = v.add_portfolio("connex", "big-key", "big-secret", label="big", assets=2500)
        seen: list[tuple[str, str]] = []
        for page in (1, 2, 3):
            status, _, body = await cx_get(session, v, creds, ASSETS, {"page": str(page), "pageSize": "1000"})
            data = json.loads(body)["data"]
            assert status == 200
            assert (data["page"], data["pageSize"], data["pageNum"], data["totalSize"]) == (page, 1000, 3, 2500)
            assert len(data["list"]) == (1000 if page < 3 else 500)
            seen += [(r["coin"], r["exchangeType"]) for r in data["list"]]
        assert len(seen) == 2500 and len(set(seen)) == 2500
        # Beyond the last page: an empty list (page_overflow="empty", the default).
        _, _, body = await cx_get(session, v, creds, ASSETS, {"page": "4", "pageSize": "1000"})
        data = json.loads(body)["data"]
        assert data["list"] == [] and data["pageNum"] == 3
        # Filtered by exchange, default page size.
        _, _, body = await cx_get(session, v, creds, ASSETS, {"exchangeType": "OKX"})
        data = json.loads(body)["data"]
        assert data["totalSize"] == 1250 and {r["exchangeType"] for r in data["list"]} == {"OKX"}
        # pageSize over 1000 is 400002.
        _, _, body = await cx_get(session, v, creds, ASSETS, {"pageSize": "1001"})
        assert code_of(body) == 400002
        _, _, body = await cx_get(session, v, creds, ASSETS, {"exchangeType": "KRAKEN"})
        assert code_of(body) == 400000


async def test_page_overflow_error_mode(session: aiohttp.ClientSession) -> None:
    async with SimulatedVenue(connex_portfolios=1, zoomex_accounts=0, page_overflow="error") as v:
        _, _, body = await cx_get(session, v, v.connex_credentials[0], ASSETS, {"page": "2"})
        assert code_of(body) == 400003


async def test_positions_zero_filter_and_filters(session: aiohttp.ClientSession) -> None:
    async with SimulatedVenue(connex_portfolios=0, zoomex_accounts=0, seed=2) as v:
        creds = v.add_portfolio("connex", "pos-key", "pos-secret", positions=10)
        _, _, body = await cx_get(session, v, creds, POSITIONS)
        rows = json.loads(body)["data"]
        zero = [r for r in rows if r["positionQty"] == "0"]
        live = [r for r in rows if r["positionQty"] != "0"]
        assert len(live) == 10 and zero
        assert all(r["liqPrice"] is None for r in zero)
        assert all(isinstance(r["portfolioId"], str) for r in rows)
        assert {r["positionSide"] for r in rows} <= {"LONG", "SHORT", "NONE", "NET"}
        assert all(r["positionQty"].startswith("-") for r in live if r["positionSide"] == "SHORT")
        assert all(not r["positionQty"].startswith("-") for r in live if r["positionSide"] == "LONG")
        _, _, body = await cx_get(session, v, creds, POSITIONS, {"zeroFilter": "true"})
        filtered = json.loads(body)["data"]
        assert len(filtered) == 10 and all(r["positionQty"] != "0" for r in filtered)
        _, _, body = await cx_get(session, v, creds, POSITIONS, {"zeroFilter": "false"})
        assert len(json.loads(body)["data"]) == len(rows)
        sym = live[0]["sym"]
        _, _, body = await cx_get(session, v, creds, POSITIONS, {"sym": sym, "zeroFilter": "true"})
        assert [r["sym"] for r in json.loads(body)["data"]] == [sym]
        _, _, body = await cx_get(session, v, creds, POSITIONS, {"exchange": "EDX"})
        assert json.loads(body)["data"] == []
        _, _, body = await cx_get(session, v, creds, POSITIONS, {"exchange": "OKX"})
        assert all(r["sym"].startswith("OKX_") for r in json.loads(body)["data"])


async def test_positions_variety_across_portfolios(session: aiohttp.ClientSession) -> None:
    async with SimulatedVenue(connex_portfolios=30, zoomex_accounts=0, seed=4, positions_per_portfolio=(3, 6)) as v:
        rows: list[dict[str, Any]] = []
        for creds in v.connex_credentials:
            rows += json.loads((await cx_get(session, v, creds, POSITIONS, {"zeroFilter": "true"}))[2])["data"]
    assert {r["positionSide"] for r in rows} == {"LONG", "SHORT", "NONE", "NET"}
    assert any(r["liqPrice"] is None for r in rows) and any(r["liqPrice"] for r in rows)
    assert any("tpslOrder" not in r for r in rows)
    assert any(r.get("tpslOrder") == [] for r in rows)
    algo = [r["tpslOrder"][0] for r in rows if r.get("tpslOrder")]
    assert algo and all("algoOrderId" in a for a in algo)


async def test_values_drift(session: aiohttp.ClientSession) -> None:
    async with SimulatedVenue(connex_portfolios=1, zoomex_accounts=0, seed=9, drift_interval=0.05) as v:
        creds = v.connex_credentials[0]
        first = json.loads((await cx_get(session, v, creds, ASSETS))[2])["data"]["list"]
        await asyncio.sleep(0.12)
        later = json.loads((await cx_get(session, v, creds, ASSETS))[2])["data"]["list"]
    assert [r["coin"] for r in first] == [r["coin"] for r in later]
    assert [r["marginValue"] for r in first] != [r["marginValue"] for r in later]


async def test_unknown_and_removed_keys(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    stranger = Credentials("not-a-key", "secret")
    _, _, body = await cx_get(session, venue, stranger, ASSETS)
    assert code_of(body) == 100018
    _, _, body = await zx_get(session, venue, stranger, "accountType=UNIFIED")
    assert json.loads(body)["retCode"] == 10003
    cx, zx = venue.connex_credentials[1], venue.zoomex_credentials[1]
    assert code_of((await cx_get(session, venue, cx, ASSETS))[2]) in (200, 200000)
    assert venue.remove_portfolio(cx.api_key) and venue.remove_portfolio(zx.api_key)
    assert code_of((await cx_get(session, venue, cx, ASSETS))[2]) == 100018
    assert json.loads((await zx_get(session, venue, zx, "accountType=UNIFIED"))[2])["retCode"] == 10003
    assert cx not in venue.connex_credentials
    # A ConneX key is unknown to Zoomex.
    zx_as_cx = Credentials(venue.connex_credentials[0].api_key, venue.connex_credentials[0].secret)
    assert json.loads((await zx_get(session, venue, zx_as_cx, "accountType=UNIFIED"))[2])["retCode"] == 10003
    stats = venue.stats()
    assert stats.rejected_auth == 5


async def test_bad_signatures_over_the_wire(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    cx = venue.connex_credentials[0]
    wrong = Credentials(cx.api_key, "0" * 64)
    assert code_of((await cx_get(session, venue, wrong, ASSETS, {"page": "1"}))[2]) == 2000
    # Signing one value and sending another.
    headers = cx_headers(cx, {"page": "1"})
    async with session.get(venue.base_url + ASSETS, params={"page": "2"}, headers=headers) as resp:
        assert code_of(await resp.read()) == 2000
    # Values are signed decoded: a URL-encoded value verifies against its decoded form.
    headers = cx_headers(cx, {"sym": "BINANCE_PERP_BTC_USDT", "exchange": "BINANCE"})
    url = URL(venue.base_url + POSITIONS + "?exchange=BIN%41NCE&sym=BINANCE_PERP_BTC_USDT", encoded=True)
    async with session.get(url, headers=headers) as resp:
        assert code_of(await resp.read()) in (200, 200000)
    zx = venue.zoomex_credentials[0]
    # Zoomex verifies the raw query: signed with ",", sent as "%2C" -> 10004.
    query = "accountType=UNIFIED&coin=BTC,USDT"
    headers = zx_headers(zx, query)
    url = URL(venue.base_url + WALLET + "?accountType=UNIFIED&coin=BTC%2CUSDT", encoded=True)
    async with session.get(url, headers=headers) as resp:
        assert json.loads(await resp.read())["retCode"] == 10004
    status, _, body = await zx_get(session, venue, zx, query)
    doc = json.loads(body)
    assert status == 200 and doc["retCode"] == 0
    assert [c["coin"] for c in doc["result"]["list"][0]["coin"]] == ["BTC", "USDT"]
    # Missing auth headers -> HTTP 401.
    async with session.get(venue.base_url + WALLET + "?accountType=UNIFIED") as resp:
        assert resp.status == 401 and json.loads(await resp.read())["retCode"] == 10003


async def test_zoomex_wallet_shapes(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    bonus_seen = set()
    for creds in venue.zoomex_credentials:
        _, headers, body = await zx_get(session, venue, creds, "accountType=CONTRACT")
        doc = json.loads(body)
        assert doc["retCode"] == 0 and doc["retMsg"] == "OK" and doc["retExtInfo"] == {}
        account = doc["result"]["list"][0]
        assert account["accountType"] == "CONTRACT" and account["totalEquity"] == ""
        assert all(c["usdValue"] == "" and c["walletBalance"] != "0" for c in account["coin"])
        bonus_seen |= {"bonus" in c for c in account["coin"]}
        assert headers["X-Bapi-Limit"] == "10"
        _, _, body = await zx_get(session, venue, creds, "accountType=UNIFIED")
        account = json.loads(body)["result"]["list"][0]
        assert account["totalEquity"] not in ("", None) and account["coin"][0]["usdValue"] != ""
    _, _, body = await zx_get(session, venue, venue.zoomex_credentials[0], "")
    assert json.loads(body)["retCode"] == 10001
    _, _, body = await zx_get(session, venue, venue.zoomex_credentials[0], "accountType=SPOT")
    assert json.loads(body)["retCode"] == 10001


async def test_market_time_needs_no_auth(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    async with session.get(venue.base_url + TIME) as resp:
        doc = json.loads(await resp.read())
    assert doc["retCode"] == 0
    assert abs(int(doc["result"]["timeSecond"]) - time.time()) < 5
    assert doc["result"]["timeNano"].startswith(doc["result"]["timeSecond"])
    assert abs(doc["time"] - time.time() * 1000) < 5000


async def test_clock_skew(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    venue.clock_skew = 120.0
    cx, zx = venue.connex_credentials[0], venue.zoomex_credentials[0]
    status, headers, body = await cx_get(session, venue, cx, ASSETS)
    assert status == 200 and code_of(body) == 7000
    server_date = email.utils.parsedate_to_datetime(headers["Date"]).timestamp()
    assert 115 < server_date - time.time() < 125
    # A client that adopts the server's clock gets through.
    assert code_of((await cx_get(session, venue, cx, ASSETS, skew=120.0))[2]) in (200, 200000)
    assert json.loads((await zx_get(session, venue, zx, "accountType=UNIFIED"))[2])["retCode"] == 10002
    async with session.get(venue.base_url + TIME) as resp:
        server_s = int(json.loads(await resp.read())["result"]["timeSecond"])
    assert 115 < server_s - time.time() < 125
    assert json.loads((await zx_get(session, venue, zx, "accountType=UNIFIED", skew=120.0))[2])["retCode"] == 0
    venue.clock_skew = 0.0
    assert code_of((await cx_get(session, venue, cx, ASSETS))[2]) in (200, 200000)
    assert venue.stats().rejected_clock == 2


async def test_zoomex_get_with_body_is_403(venue: SimulatedVenue, session: aiohttp.ClientSession) -> None:
    zx = venue.zoomex_credentials[0]
    status, _, body = await zx_get(session, venue, zx, "accountType=UNIFIED", data=b"{}")
    assert status == 403 and b"body" in body


# ----------------------------------------------------------------- limits and stats


async def test_connex_rate_limit_429_and_violations(session: aiohttp.ClientSession) -> None:
    async with SimulatedVenue(connex_portfolios=2, zoomex_accounts=0, limits={"connex.assets": (3, 1.0)}) as v:
        a, b = v.connex_credentials
        replies = [await cx_get(session, v, a, ASSETS) for _ in range(5)]
        assert [r[0] for r in replies] == [200, 200, 200, 429, 429]
        assert json.loads(replies[3][2]) == {"code": 100429, "message": "Too many requests", "data": None}
        assert (await cx_get(session, v, b, ASSETS))[0] == 200  # another key, another scope
        assert (await cx_get(session, v, a, POSITIONS))[0] == 200  # another endpoint
        assert v.violations == 2
        await asyncio.sleep(1.05)
        assert (await cx_get(session, v, a, ASSETS))[0] == 200
        stats = v.stats()
        row = stats.get("connex", "assets", a.api_key)
        assert row is not None
        assert (row.requests, row.accepted, row.rejected_rate_limit, row.violations, row.peak) == (6, 4, 2, 2, 5)
        assert row.label == "cx-0001" and row.limit == (3, 1.0)
        assert stats.violations == 2 and stats.requests == 8
        async with session.get(v.base_url + "/_sim/stats") as resp:
            doc = json.loads(await resp.read())
        assert doc["violations"] == 2 and doc["requests"] == 8
        assert any(e["label"] == "cx-0001" and e["violations"] == 2 for e in doc["endpoints"])
        v.reset_stats()
        assert v.violations == 0 and v.stats().requests == 0


async def test_rejected_requests_count_in_the_window(session: aiohttp.ClientSession) -> None:
    async with SimulatedVenue(connex_portfolios=1, zoomex_accounts=0, limits={"connex.assets": (2, 1.0)}) as v:
        a = v.connex_credentials[0]
        for _ in range(2):
            assert (await cx_get(session, v, a, ASSETS))[0] == 200
        await asyncio.sleep(0.5)
        assert (await cx_get(session, v, a, ASSETS))[0] == 429
        await asyncio.sleep(0.6)
        # The first two left the window, but the rejected one at ~0.5 s is still in it.
        assert (await cx_get(session, v, a, ASSETS))[0] == 200
        assert (await cx_get(session, v, a, ASSETS))[0] == 429


async def test_zoomex_rate_limit_10006_with_headers(session: aiohttp.ClientSession) -> None:
    async with SimulatedVenue(connex_portfolios=0, zoomex_accounts=1, limits={"zoomex.wallet": (2, 1.0)}) as v:
        zx = v.zoomex_credentials[0]
        replies = [await zx_get(session, v, zx, "accountType=UNIFIED") for _ in range(3)]
        assert [r[0] for r in replies] == [200, 200, 200]
        assert [json.loads(r[2])["retCode"] for r in replies] == [0, 0, 10006]
        assert [r[1]["X-Bapi-Limit-Status"] for r in replies] == ["1", "0", "0"]
        assert all(r[1]["X-Bapi-Limit"] == "2" for r in replies)
        reset = int(replies[2][1]["X-Bapi-Limit-Reset-Timestamp"])
        now_ms = time.time() * 1000
        assert now_ms < reset <= now_ms + 1100
        assert v.violations == 1
        await asyncio.sleep(max(0.0, (reset - time.time() * 1000) / 1000) + 0.02)
        assert json.loads((await zx_get(session, v, zx, "accountType=UNIFIED"))[2])["retCode"] == 0


async def test_zoomex_ip_limit_403(session: aiohttp.ClientSession) -> None:
    async with SimulatedVenue(connex_portfolios=1, zoomex_accounts=2, limits={"zoomex.ip": (3, 5.0)}) as v:
        a, b = v.zoomex_credentials
        assert (await zx_get(session, v, a, "accountType=UNIFIED"))[0] == 200
        assert (await zx_get(session, v, b, "accountType=UNIFIED"))[0] == 200
        async with session.get(v.base_url + TIME) as resp:
            assert resp.status == 200
        status, headers, body = await zx_get(session, v, a, "accountType=UNIFIED")
        assert status == 403 and body == b"access too frequent"
        assert headers["Content-Type"].startswith("text/plain")
        async with session.get(v.base_url + TIME) as resp:
            assert resp.status == 403
        # ConneX has no host-wide limit.
        assert (await cx_get(session, v, v.connex_credentials[0], ASSETS))[0] == 200
        stats = v.stats()
        assert stats.ip_violations == 2 and stats.violations == 2 and stats.rejected_ip == 2


async def test_limits_can_be_disabled_and_changed(session: aiohttp.ClientSession) -> None:
    async with SimulatedVenue(connex_portfolios=1, zoomex_accounts=0, limits={"connex.assets": None}) as v:
        a = v.connex_credentials[0]
        statuses = {(await cx_get(session, v, a, ASSETS))[0] for _ in range(30)}
        assert statuses == {200} and v.violations == 0
        v.set_limit("connex.assets", 1, 10.0)
        assert [(await cx_get(session, v, a, ASSETS))[0] for _ in range(2)] == [200, 429]
        assert v.limits["connex.assets"] == (1, 10.0)
    with pytest.raises(ValueError):
        SimulatedVenue(limits={"connex.nope": (1, 1.0)})


async def test_latency_and_jitter_delay_before_arrival(session: aiohttp.ClientSession) -> None:
    async with SimulatedVenue(connex_portfolios=1, zoomex_accounts=0, latency=0.05, jitter=0.05) as v:
        a = v.connex_credentials[0]
        for _ in range(3):
            start = time.perf_counter()
            status, _, _ = await cx_get(session, v, a, ASSETS)
            elapsed = time.perf_counter() - start
            assert status == 200 and 0.05 <= elapsed < 0.5


async def test_concurrent_burst_is_counted_on_arrival(session: aiohttp.ClientSession) -> None:
    async with SimulatedVenue(connex_portfolios=1, zoomex_accounts=0, limits={"connex.assets": (20, 1.0)}) as v:
        a = v.connex_credentials[0]
        replies = await asyncio.wait_for(asyncio.gather(*(cx_get(session, v, a, ASSETS) for _ in range(25))), 10)
        assert sorted(r[0] for r in replies).count(200) == 20
        assert v.violations == 5
        row = v.stats().by_endpoint("connex", "assets")
        assert row.peak == 25 and row.requests == 25


async def test_many_keys_throughput() -> None:
    async with (
        SimulatedVenue(connex_portfolios=300, zoomex_accounts=0, seed=8) as v,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), connector=aiohttp.TCPConnector(limit=64)) as s,
    ):
        keys = v.connex_credentials
        start = time.perf_counter()
        replies = await asyncio.wait_for(
            asyncio.gather(*(cx_get(s, v, keys[i % len(keys)], ASSETS) for i in range(1500))), 20
        )
        elapsed = time.perf_counter() - start
        assert all(r[0] == 200 for r in replies)
        stats = v.stats()
        assert stats.requests == stats.accepted == 1500 and stats.violations == 0
        assert len(stats.endpoints) == 300
        assert elapsed < 10
