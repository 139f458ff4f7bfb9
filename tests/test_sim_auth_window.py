"""The simulator's own signature verification (reference vectors) and its sliding-window counter."""

from __future__ import annotations

import pytest

from connex_async.testing.auth import (
    check_connex,
    check_zoomex,
    connex_message,
    connex_signature,
    zoomex_message,
    zoomex_signature,
)
from connex_async.testing.window import Limit, SlidingWindow, WindowRegistry

# ----------------------------------------------------------------- ConneX vectors (connex-api.md)

CX_SECRET = "xyz"
CX_NONCE = "1712345678"
CX_VECTORS = [
    ([], "&1712345678", "48e81949ffa16684f840dc3e49a12acf20de28796fbfe4da5c8bd97197e319a5"),
    (
        [("exchangeType", "BINANCE"), ("page", "1"), ("pageSize", "1000")],
        "exchangeType=BINANCE&page=1&pageSize=1000&1712345678",
        "5e14e59a89e936e2aea6272826597693ff4b7571dce97c7d0799fe6210b25cb0",
    ),
    (
        [("sym", "BINANCE_PERP_BTC_USDT"), ("exchange", "BINANCE")],
        "exchange=BINANCE&sym=BINANCE_PERP_BTC_USDT&1712345678",
        "9210f37acb2990f657db300e26ecc1bf16a319bf731d5bea47bbe7ffafabd48c",
    ),
]


@pytest.mark.parametrize(("params", "message", "signature"), CX_VECTORS)
def test_connex_vectors(params: list[tuple[str, str]], message: str, signature: str) -> None:
    assert connex_message(params, CX_NONCE) == message
    assert connex_signature(CX_SECRET, params, CX_NONCE) == signature
    # Order of the incoming parameters does not matter: the server sorts.
    assert connex_signature(CX_SECRET, list(reversed(params)), CX_NONCE) == signature


def _cx_headers(signature: str, nonce: str = CX_NONCE, key: str = "K") -> dict[str, str]:
    return {"X-MBX-APIKEY": key, "nonce": nonce, "signature": signature}


@pytest.mark.parametrize(("params", "message", "signature"), CX_VECTORS)
def test_check_connex_good_and_bad(params: list[tuple[str, str]], message: str, signature: str) -> None:
    secrets = {"K": CX_SECRET}
    now = float(CX_NONCE) + 30
    assert check_connex(_cx_headers(signature), params, secrets.get, now) is None
    bad = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    failure = check_connex(_cx_headers(bad), params, secrets.get, now)
    assert failure is not None and failure.code == 2000
    upper = check_connex(_cx_headers(signature.upper()), params, secrets.get, now)
    assert upper is not None and upper.code == 2000
    # Signed with another secret.
    failure = check_connex(_cx_headers(connex_signature("xyz2", params, CX_NONCE)), params, secrets.get, now)
    assert failure is not None and failure.code == 2000
    # A parameter added after signing.
    failure = check_connex(_cx_headers(signature), [*params, ("zeroFilter", "true")], secrets.get, now)
    assert failure is not None and failure.code == 2000


def test_check_connex_key_and_nonce() -> None:
    secrets = {"K": CX_SECRET}
    sig = CX_VECTORS[0][2]
    now = float(CX_NONCE)
    failure = check_connex(_cx_headers(sig, key="nope"), [], secrets.get, now)
    assert failure is not None and failure.code == 100018
    failure = check_connex({"nonce": CX_NONCE, "signature": sig}, [], secrets.get, now)
    assert failure is not None and failure.code == 100018
    assert check_connex(_cx_headers(sig), [], secrets.get, now + 60) is None
    assert check_connex(_cx_headers(sig), [], secrets.get, now - 60) is None
    for skewed in (now + 61, now - 61):
        failure = check_connex(_cx_headers(sig), [], secrets.get, skewed)
        assert failure is not None and (failure.code, failure.kind) == (7000, "clock")
    # Milliseconds instead of seconds are a nonce error, not a signature error.
    failure = check_connex(_cx_headers(sig, nonce=CX_NONCE + "000"), [], secrets.get, now)
    assert failure is not None and failure.code == 7000
    failure = check_connex({"X-MBX-APIKEY": "K", "signature": sig}, [], secrets.get, now)
    assert failure is not None and failure.code == 7000


# ----------------------------------------------------------------- Zoomex vectors (zoomex-api.md)

ZX_KEY = "TEST_API_KEY"
ZX_SECRET = "TEST_SECRET_DO_NOT_USE"
ZX_TS = "1672125440406"
ZX_VECTORS = [
    ("accountType=CONTRACT", "2a63aae20f193d8854009e7621785732b4b33813a356cb7069a5022e9020acbd"),
    ("accountType=UNIFIED&coin=BTC,USDT", "c3f5dc2eff251ce69a8f9f48da67d0163a9e54fb7f02866a388dcce9a6c9dcca"),
    ("", "f20e6b65ebd75cf35e8a5bbbfa0d582b1c14b8b4ffd9600f379ff19845cd8a1c"),
]


def _zx_headers(sign: str, ts: str = ZX_TS, recv: str | None = "5000", key: str = ZX_KEY) -> dict[str, str]:
    headers = {"X-BAPI-API-KEY": key, "X-BAPI-SIGN": sign, "X-BAPI-TIMESTAMP": ts, "X-BAPI-SIGN-TYPE": "2"}
    if recv is not None:
        headers["X-BAPI-RECV-WINDOW"] = recv
    return headers


@pytest.mark.parametrize(("query", "signature"), ZX_VECTORS)
def test_zoomex_vectors(query: str, signature: str) -> None:
    assert zoomex_message(ZX_TS, ZX_KEY, "5000", query) == f"{ZX_TS}{ZX_KEY}5000{query}"
    assert zoomex_signature(ZX_SECRET, ZX_TS, ZX_KEY, "5000", query) == signature


@pytest.mark.parametrize(("query", "signature"), ZX_VECTORS)
def test_check_zoomex_good_and_bad(query: str, signature: str) -> None:
    secrets = {ZX_KEY: ZX_SECRET}
    now_ms = int(ZX_TS) + 100
    assert check_zoomex(_zx_headers(signature), query, secrets.get, now_ms) is None
    bad = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    failure = check_zoomex(_zx_headers(bad), query, secrets.get, now_ms)
    assert failure is not None and failure.code == 10004
    # Another recv window header than the one signed.
    failure = check_zoomex(_zx_headers(signature, recv="6000"), query, secrets.get, now_ms)
    assert failure is not None and failure.code == 10004


def test_check_zoomex_raw_query_is_signed_byte_for_byte() -> None:
    secrets = {ZX_KEY: ZX_SECRET}
    sig = ZX_VECTORS[1][1]  # signed over "coin=BTC,USDT" with raw commas
    now_ms = int(ZX_TS)
    assert check_zoomex(_zx_headers(sig), "accountType=UNIFIED&coin=BTC,USDT", secrets.get, now_ms) is None
    failure = check_zoomex(_zx_headers(sig), "accountType=UNIFIED&coin=BTC%2CUSDT", secrets.get, now_ms)
    assert failure is not None and failure.code == 10004
    failure = check_zoomex(_zx_headers(sig), "coin=BTC,USDT&accountType=UNIFIED", secrets.get, now_ms)
    assert failure is not None and failure.code == 10004


def test_check_zoomex_key_headers_and_timestamp_rule() -> None:
    secrets = {ZX_KEY: ZX_SECRET}
    sig = ZX_VECTORS[0][1]
    query = "accountType=CONTRACT"
    ts = int(ZX_TS)
    failure = check_zoomex(_zx_headers(sig, key="OTHER"), query, secrets.get, ts)
    assert failure is not None and (failure.code, failure.status) == (10003, 200)
    failure = check_zoomex({"X-BAPI-API-KEY": ZX_KEY}, query, secrets.get, ts)
    assert failure is not None and (failure.code, failure.status) == (10003, 401)
    # server_time - recv_window <= ts < server_time + 1000
    assert check_zoomex(_zx_headers(sig), query, secrets.get, ts + 5000) is None
    assert check_zoomex(_zx_headers(sig), query, secrets.get, ts - 999) is None
    for now_ms in (ts + 5001, ts - 1000):
        failure = check_zoomex(_zx_headers(sig), query, secrets.get, now_ms)
        assert failure is not None and (failure.code, failure.kind) == (10002, "clock")


# ----------------------------------------------------------------- sliding window


def test_window_exactly_count_in_period_is_fine_and_one_more_violates() -> None:
    w = SlidingWindow(3, 1.0)
    assert [w.hit(t) for t in (10.0, 10.1, 10.2)] == [1, 2, 3]
    assert w.hit(10.9) == 4  # 4 arrivals within (9.9, 10.9]: a violation (4 > 3)


def test_window_slides_and_edge_is_exclusive() -> None:
    w = SlidingWindow(2, 1.0)
    assert w.hit(0.0) == 1
    assert w.hit(0.5) == 2
    assert w.hit(1.0) == 2  # the arrival at 0.0 left: the window is (0.0, 1.0]
    assert w.hit(1.4) == 3  # 0.5, 1.0, 1.4
    assert w.hit(2.5) == 1


def test_window_counts_rejected_arrivals_too() -> None:
    w = SlidingWindow(2, 1.0)
    for i in range(10):
        w.hit(i * 0.01)
    assert w.occupancy(0.5) == 10
    assert w.remaining(0.5) == 0
    # One more is admitted only once 9 of the 10 have left: the 9th (index 8) at 0.08.
    assert w.reset_after(0.5) == pytest.approx(0.58)
    assert w.next_expiry(0.5) == pytest.approx(0.5)


def test_window_reset_after_under_limit_is_zero() -> None:
    w = SlidingWindow(5, 1.0)
    w.hit(0.0)
    assert w.reset_after(0.1) == 0.0
    assert w.remaining(0.1) == 4


def test_window_many_arrivals_stay_bounded() -> None:
    w = SlidingWindow(20, 1.0)
    t = 0.0
    worst = 0
    for _ in range(100_000):
        t += 0.05  # exactly 20 per second: never more than 20 in (t-1, t]
        worst = max(worst, w.hit(t))
    assert worst <= 21  # float accumulation may put one arrival on the edge
    assert len(w._arrivals) <= 21


def test_registry_scopes_are_independent() -> None:
    reg = WindowRegistry()
    limit = Limit(1, 1.0)
    assert reg.window(("connex", "assets", "a"), limit).hit(0.0) == 1
    assert reg.window(("connex", "assets", "b"), limit).hit(0.0) == 1
    assert reg.window(("connex", "assets", "a"), limit).hit(0.1) == 2
    reg.drop(("connex", "assets"))
    assert len(reg) == 0
    with pytest.raises(ValueError):
        Limit(0, 1.0)
