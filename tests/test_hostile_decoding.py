"""What a hostile or broken venue can put in a body, through a real socket: typed, located, or tolerated.

Deep JSON, amounts that are not plain decimal text, two envelope codes, a byte order mark, a
success envelope under an error status, ``tpslOrder: null``, and HTTP 429 with ``Retry-After`` on
Zoomex. Each case ended differently before: a bare ``RecursionError``, a silent ``Decimal`` that
later raises ``decimal.Overflow``, an auth error read as success, a ``DecodeError`` on a harmless
BOM, data handed out from a 500, or an immediate retry.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from hostile import (
    CREDS,
    WALLET_PATH,
    HostileVenue,
    asset_row,
    assets_body,
    json_reply,
    position_row,
    wallet_body,
)

from connex_async import (
    ConnexAsyncError,
    ConnexClient,
    DecodeError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    SessionPool,
    ZoomexClient,
)
from connex_async.testing.wire import zoomex_body

NO_RETRY = RetryPolicy(max_retries=0)
DEEP = 100_000


def replying(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return json_reply(body, status, headers)

    return handler


async def call(body: bytes, venue_name: str = "connex", endpoint: str = "assets", **reply: Any) -> Any:
    """Serve ``body`` and make one call of ``endpoint``; return its data (or raise what it raised)."""
    async with HostileVenue(replying(body, **reply)) as venue, SessionPool(retry=NO_RETRY) as pool:
        if venue_name == "zoomex":
            return await ZoomexClient(CREDS, base_url=venue.base_url, pool=pool).get_wallet_balance()
        client = ConnexClient(CREDS, base_url=venue.base_url, pool=pool)
        return await (client.get_positions() if endpoint == "positions" else client.get_assets())


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# -------------------------------------------------------------------------------------------- deep JSON

DEEP_CASES = {
    "in-data": ("connex", assets_body([asset_row()]).replace(b'"list":', f'"x":{nested(DEEP)},"list":'.encode())),
    "unknown-top-level-field": ("connex", assets_body([asset_row()])[:-1] + f',"x":{nested(DEEP)}}}'.encode()),
    "zoomex-retExtInfo": (
        "zoomex",
        wallet_body().replace(b'"retExtInfo":{}', f'"retExtInfo":{{"x":{nested(DEEP)}}}'.encode()),
    ),
    "error-envelope-data": ("connex", f'{{"code":2000,"message":"x","data":{nested(DEEP)}}}'.encode()),
}


@pytest.mark.parametrize("case", list(DEEP_CASES))
async def test_deeply_nested_json_is_a_decode_error_not_a_recursion_error(case: str) -> None:
    venue_name, body = DEEP_CASES[case]
    assert body.count(b"[") >= DEEP
    with pytest.raises(ConnexAsyncError) as info:
        await call(body, venue_name)
    assert isinstance(info.value, DecodeError), repr(info.value)
    if case != "error-envelope-data":  # there the payload's type fails first; the depth only in the head
        assert "nested too deeply" in str(info.value)


# -------------------------------------------------------------------------------------------- amounts

NOT_PLAIN = {
    "underscore": "1_000",
    "padded": " 12 ",
    "trailing-space": "12 ",
    "arabic-indic": "\u0661\u0662",
    "full-width": "\uff11\uff12",
    "escaped-arabic-indic": "ESCAPED",  # written as \\u0661 on the wire
}
OUT_OF_RANGE = {"huge": "1e999999999", "minus-huge": "-1E+999999999", "tiny": "1e-999999999", "beyond-1e300": "1e301"}


@pytest.mark.parametrize("case", list(NOT_PLAIN))
async def test_amount_text_no_venue_writes_is_refused_with_its_path(case: str) -> None:
    body = assets_body([asset_row("USDT"), asset_row("BTC", balance=NOT_PLAIN[case])])
    if case == "escaped-arabic-indic":
        body = body.replace(b'"ESCAPED"', b'"\\u0661\\u0662"')
    with pytest.raises(DecodeError, match="not plain decimal text") as info:
        await call(body)
    assert info.value.path == "$.data.list[1].balance"


@pytest.mark.parametrize("case", list(OUT_OF_RANGE))
async def test_amount_beyond_the_sane_range_is_refused(case: str) -> None:
    text = OUT_OF_RANGE[case]
    assert not case.startswith("huge") or Decimal(text).is_finite()  # Decimal itself takes it ...
    body = assets_body([asset_row("USDT"), asset_row("BTC", equity=text)])
    with pytest.raises(DecodeError, match="within 1e±300") as info:
        await call(body)
    assert info.value.path == "$.data.list[1]"


@pytest.mark.parametrize(
    ("venue_name", "endpoint", "body", "path"),
    [
        ("zoomex", "wallet", wallet_body(walletBalance="1_000"), "$.result.list[0].coin[1].walletBalance"),
        ("zoomex", "wallet", wallet_body(equity="1e999999999"), "$.result.list[0].coin[1]"),
        (
            "connex",
            "positions",
            json.dumps({"code": 200000, "data": [position_row(tpslOrder=[{"orderQty": " 1"}])]}).encode(),
            "$.data[0].tpslOrder[0].orderQty",
        ),
        (
            "connex",
            "positions",
            json.dumps({"code": 200000, "data": [position_row(avgPrice="2\uff10")]}, ensure_ascii=False).encode(),
            "$.data[0].avgPrice",
        ),
    ],
    ids=["wallet-underscore", "wallet-huge", "tpsl-padded", "position-full-width"],
)
async def test_amount_checks_cover_every_venue_and_nesting(
    venue_name: str, endpoint: str, body: bytes, path: str
) -> None:
    with pytest.raises(DecodeError) as info:
        await call(body, venue_name, endpoint)
    assert info.value.path == path


async def test_plain_amount_spellings_are_tolerated_exactly() -> None:
    row = asset_row("BTC", balance="+5", available="-0.5", frozen="5.", debt=".25", upnl=7, marginValue=1.5e-3)
    page = await call(assets_body([row]))
    (asset,) = page.assets
    assert (asset.balance, asset.available, asset.frozen, asset.debt) == (
        Decimal(5),
        Decimal("-0.5"),
        Decimal(5),
        Decimal("0.25"),
    )
    assert (asset.upnl, asset.margin_value) == (Decimal(7), Decimal("0.0015"))


# -------------------------------------------------------------------------------------------- decided cases


async def test_two_disagreeing_envelope_codes_are_refused() -> None:
    body = assets_body([asset_row()]).replace(b'{"code":200000,', b'{"code":2000,"code":200000,', 1)
    assert body.count(b'"code"') == 2
    with pytest.raises(DecodeError, match=r"two different codes \(2000 first, 200000 last\)"):
        await call(body)


async def test_utf8_bom_before_valid_json_is_tolerated() -> None:
    page = await call(b"\xef\xbb\xbf" + assets_body([asset_row("ETH")]))
    assert page.assets[0].coin == "ETH"
    wallet = await call(b"\xef\xbb\xbf" + wallet_body(), "zoomex")
    assert wallet.accounts[0].coins[1].coin


@pytest.mark.parametrize(
    ("venue_name", "status", "error"),
    [("connex", 500, ServerError), ("zoomex", 500, ServerError), ("connex", 429, RateLimitError)],
)
async def test_success_envelope_under_an_error_status_is_the_status(
    venue_name: str, status: int, error: type[ConnexAsyncError]
) -> None:
    body = assets_body([asset_row()]) if venue_name == "connex" else wallet_body()
    with pytest.raises(ConnexAsyncError) as info:
        await call(body, venue_name, status=status)
    assert type(info.value) is error
    assert info.value.status == status  # type: ignore[attr-defined]


async def test_tpsl_order_null_reads_as_no_orders() -> None:
    body = json.dumps({"code": 200000, "data": [position_row(tpslOrder=None), position_row(positionId="2")]})
    first, second = await call(body.encode(), endpoint="positions")
    assert first.tpsl_orders == [] and second.tpsl_orders == []
    # A list the portfolio's figures live in is different: null there is an error, not "no assets".
    with pytest.raises(DecodeError, match=r"\$\.data\.list"):
        await call(assets_body([]).replace(b'"list":[]', b'"list":null'))


async def test_zoomex_http_429_honours_retry_after() -> None:
    answers = iter([json_reply(b"Too Many Requests", 429, {"Retry-After": "1"}), json_reply(wallet_body())])

    async def handler(request: web.Request) -> web.StreamResponse:
        return next(answers)

    retry = RetryPolicy(max_retries=1, backoff_base=0.01, backoff_max=0.01)
    async with HostileVenue(handler) as venue, SessionPool(retry=retry) as pool:
        zx = ZoomexClient(CREDS, base_url=venue.base_url, pool=pool)
        async with asyncio.timeout(10):
            await zx.get_wallet_balance()
    first, second = venue.hits(WALLET_PATH)
    assert second.at - first.at >= 0.95, f"retried after {second.at - first.at:.3f}s despite Retry-After: 1"


async def test_zoomex_rate_limit_code_takes_the_later_of_both_hints() -> None:
    body = zoomex_body(10006, "Too many visits!", 0)
    with pytest.raises(RateLimitError) as info:
        await call(body, "zoomex", headers={"Retry-After": "7"})
    assert info.value.retry_after == 7.0
    with pytest.raises(RateLimitError) as info:
        await call(b"slow down", "zoomex", status=429, headers={"Retry-After": "3"})
    assert info.value.retry_after == 3.0
