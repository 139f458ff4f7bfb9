"""Exact decoding of the documented payloads, and a clear DecodeError for every bad one."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connex_async import DecodeError, PositionSide
from connex_async.decoding import DEFAULT_MAX_BODY_BYTES
from connex_async.venues.base import Endpoint, RawResponse
from connex_async.venues.connex.api import ASSETS, POSITIONS, ConnexVenue
from connex_async.venues.zoomex.api import SERVER_TIME, WALLET_BALANCE, ZoomexVenue

FIXTURES = Path(__file__).parent / "fixtures"
JSON = {"Content-Type": "application/json"}
CX, ZX = ConnexVenue(), ZoomexVenue()


def parse(venue: Any, endpoint: Endpoint[Any], body: bytes, status: int = 200, headers: Any = None) -> Any:
    return venue.parse(endpoint, RawResponse(status, headers if headers is not None else JSON, body), "desk-1")


def test_documented_assets_page_decodes_exactly() -> None:
    page = parse(CX, ASSETS, (FIXTURES / "connex_assets_doc.json").read_bytes())
    assert (page.page, page.page_size, page.page_count, page.total_size, page.is_last) == (1, 1000, 1, 1, True)
    (asset,) = page.assets
    assert asset.margin_value == Decimal("33.9674801811745561683687")
    assert str(asset.margin_value) == "33.9674801811745561683687"
    assert asset.equity_value == Decimal("33.970877268901446313")
    assert asset.created_at_ms == 1776008971034 and asset.updated_at is not None
    assert asset.portfolio_id == "17xxxxxxxxxxxxxx"
    assert isinstance(asset.balance, Decimal)


def test_documented_positions_decode_exactly() -> None:
    (pos,) = parse(CX, POSITIONS, (FIXTURES / "connex_positions_doc.json").read_bytes())
    assert pos.position_side is PositionSide.LONG
    assert pos.liq_price == Decimal("913.006664676013687927")
    assert pos.unrealized_pnl_rate == Decimal("0.000267373310205427")
    assert pos.position_mm == Decimal("4.18547595348")
    assert pos.tpsl_orders == [] and pos.risk_level == "1"


def test_positions_variants_null_liq_absent_tpsl_numeric_ids_net_side() -> None:
    body = {
        "code": "200000",
        "data": [
            {
                "positionId": 20164589748662851,
                "portfolioId": 2130592799975490,
                "sym": "OKX_PERP_BTC_USDT",
                "positionSide": "NET",
                "positionQty": "-3",
                "liqPrice": None,
                "riskLevel": "2",
            },
            {
                "positionId": "1",
                "portfolioId": "2",
                "sym": "BINANCE_PERP_BTC_USDT",
                "positionSide": "NONE",
                "positionQty": "0",
                "tpslOrder": [{"algoOrderId": 99, "tpTriggerPrice": "70000.5", "newField": 1}],
            },
        ],
    }
    short, flat = parse(CX, POSITIONS, json.dumps(body).encode())
    assert short.position_id == "20164589748662851" and short.portfolio_id == "2130592799975490"
    assert short.position_qty == Decimal("-3") and short.liq_price is None and short.tpsl_orders == []
    assert flat.tpsl_orders[0].algo_order_id == "99"
    assert flat.tpsl_orders[0].tp_trigger_price == Decimal("70000.5")


def test_zoomex_seed_example_decodes_verbatim() -> None:
    wallet = parse(ZX, WALLET_BALANCE, (FIXTURES / "zoomex_wallet_seed.json").read_bytes())
    (account,) = wallet.accounts
    assert account.account_type == "CONTRACT"
    assert account.total_equity is None and account.account_ltv is None  # "" means not applicable
    usdt = account.coins[4]
    assert usdt.coin == "USDT"
    assert usdt.equity == Decimal("60028.59717864")
    assert usdt.cum_realised_pnl == Decimal("-59483.31410791")
    assert usdt.usd_value is None and usdt.total_position_mm is None
    assert usdt.bonus is None  # documented, absent from the example
    assert [c.coin for c in account.coins] == ["BTC", "ETH", "EOS", "XRP", "USDT"]


def test_zoomex_server_time() -> None:
    body = (
        b'{"retCode":0,"retMsg":"OK","result":{"timeSecond":"1688639403","timeNano":"1688639403423213947"},'
        b'"retExtInfo":{},"time":1688639403423}'
    )
    t = parse(ZX, SERVER_TIME, body)
    assert t.time_second == 1688639403 and t.time_ms == 1688639403423


def _assets(**row_changes: Any) -> bytes:
    doc = json.loads((FIXTURES / "connex_assets_doc.json").read_text())
    row = doc["data"]["list"][0]
    for key, value in row_changes.items():
        if value is _DROP:
            del row[key]
        else:
            row[key] = value
    return json.dumps(doc).encode()


_DROP = object()
GOOD = (FIXTURES / "connex_assets_doc.json").read_bytes()
HTML = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"

# (id, body, headers, expected JSON path or None). Every one must end in DecodeError.
BAD_PAYLOADS: list[tuple[str, bytes, dict[str, str], str | None]] = [
    ("truncated", GOOD[: len(GOOD) // 2], JSON, None),
    ("html-page-200", HTML, {"Content-Type": "text/html"}, None),
    ("html-page-claiming-json", HTML, JSON, None),
    ("text-plain", b"service temporarily unavailable", {"Content-Type": "text/plain"}, None),
    ("data-null-on-success", b'{"code":200000,"message":"Success","data":null}', JSON, "$.data"),
    ("data-missing-on-success", b'{"code":200000,"message":"Success"}', JSON, "$.data"),
    ("wrong-type-bool-amount", _assets(balance=True), JSON, "$.data.list[0].balance"),
    ("wrong-type-object-amount", _assets(balance={"v": "1"}), JSON, "$.data.list[0].balance"),
    ("nan", _assets(balance="NaN"), JSON, "$.data.list[0]"),
    ("infinity", _assets(upnl="Infinity"), JSON, "$.data.list[0]"),
    ("minus-infinity", _assets(debt="-Infinity"), JSON, "$.data.list[0]"),
    ("snan", _assets(equity="sNaN"), JSON, "$.data.list[0]"),
    ("garbage-amount", _assets(frozen="12abc"), JSON, "$.data.list[0].frozen"),
    ("empty-required-amount", _assets(balance=""), JSON, "$.data.list[0].balance"),
    ("null-required-amount", _assets(available=None), JSON, "$.data.list[0].available"),
    ("missing-required-field", _assets(coin=_DROP), JSON, "$.data.list[0]"),
    ("timestamp-not-a-number", _assets(createAt="yesterday"), JSON, "$.data.list[0].createAt"),
    (
        "extra-nesting",
        b'{"code":200000,"data":{"data":{"page":1,"pageSize":1,"pageNum":1,"totalSize":0,"list":[]}}}',
        JSON,
        "$.data",
    ),
    ("list-instead-of-page", b'{"code":200000,"data":[]}', JSON, "$.data"),
    ("top-level-array", b"[1,2,3]", JSON, "$"),
    ("json-null", b"null", JSON, "$"),
    ("empty-body", b"", JSON, None),
    ("whitespace-body", b"  \n ", JSON, None),
    ("non-utf8", b'{"code":200000,"message":"\xff\xfe","data":null}', JSON, None),
    ("code-not-a-number", b'{"code":"ok","data":{}}', JSON, "$.code"),
]


@pytest.mark.parametrize(("body", "headers", "path"), [c[1:] for c in BAD_PAYLOADS], ids=[c[0] for c in BAD_PAYLOADS])
def test_bad_payload_is_a_decode_error(body: bytes, headers: dict[str, str], path: str | None) -> None:
    with pytest.raises(DecodeError) as info:
        parse(CX, ASSETS, body, headers=headers)
    err = info.value
    assert (err.venue, err.endpoint, err.portfolio) == ("connex", "assets", "desk-1")
    if path is not None:
        assert err.path == path, str(err)
    assert len(err.snippet) <= 160
    assert "connex/assets" in str(err)


def test_a_body_over_32_mib_is_a_decode_error_however_valid() -> None:
    # A page that decodes, padded with spaces (valid JSON): only its size is wrong. Built here, not
    # at import, so that collecting the suite does not allocate it.
    at_limit = GOOD + b" " * (DEFAULT_MAX_BODY_BYTES - len(GOOD))
    assert parse(CX, ASSETS, at_limit).page == 1
    with pytest.raises(DecodeError, match="exceeds") as info:
        parse(CX, ASSETS, at_limit + b" ")
    assert (info.value.venue, info.value.endpoint, info.value.portfolio) == ("connex", "assets", "desk-1")


def test_bad_side_and_zoomex_result_null() -> None:
    body = (
        b'{"code":200000,"data":[{"positionId":"1","portfolioId":"2","sym":"X",'
        b'"positionSide":"SIDEWAYS","positionQty":"1"}]}'
    )
    with pytest.raises(DecodeError, match="positionSide"):
        parse(CX, POSITIONS, body)
    with pytest.raises(DecodeError) as info:
        parse(ZX, WALLET_BALANCE, b'{"retCode":0,"retMsg":"OK","result":null}')
    assert info.value.path == "$.result"


# Tolerated: exact values, no error.
def test_amount_as_json_number_stays_exact() -> None:
    body = _assets().replace(b'"marginValue": "33.9674801811745561683687"', b'"marginValue": 33.9674801811745561683687')
    assert b'"marginValue": 33.96' in body
    assert parse(CX, ASSETS, body).assets[0].margin_value == Decimal("33.9674801811745561683687")


def test_exponent_amount_within_range_is_exact_not_an_error() -> None:
    # The range is 1e±300 (AMOUNT_EXPONENT_LIMIT); beyond it: tests/test_hostile_venue.py.
    assert parse(CX, ASSETS, _assets(debt="1e300")).assets[0].debt == Decimal("1E+300")
    assert parse(CX, ASSETS, _assets(debt="-2.5E-300")).assets[0].debt == Decimal("-2.5E-300")


def test_empty_optional_amount_is_none_and_unknown_fields_ignored() -> None:
    page = parse(CX, ASSETS, _assets(upnl="", btcValue="0.1", total="5"))
    assert page.assets[0].upnl is None
    assert page.assets[0].balance == Decimal("33.970877268901446313")


def test_code_as_numeric_string_and_code_200() -> None:
    body = GOOD.replace(b'"code":200000', b'"code":"200"')
    assert parse(CX, ASSETS, body).page == 1


def test_missing_content_type_with_json_body_is_read() -> None:
    assert parse(CX, ASSETS, GOOD, headers={}).page == 1


def _position(**changes: Any) -> dict[str, Any]:
    row = {
        "positionId": "1",
        "portfolioId": "2",
        "sym": "BINANCE_PERP_BTC_USDT",
        "positionSide": "LONG",
        "positionQty": "1",
        "avgPrice": "100",
    }
    row.update(changes)
    return row


@pytest.mark.parametrize(
    ("rows", "path"),
    [
        ([_position(), _position(avgPrice="NaN")], "$.data[1]"),
        ([_position(positionQty="-Infinity")], "$.data[0]"),
        ([_position(tpslOrder=[{"tpTriggerPrice": "Infinity"}])], "$.data[0].tpslOrder[0]"),
    ],
)
def test_non_finite_position_amounts_are_located(rows: list[dict[str, Any]], path: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse(CX, POSITIONS, json.dumps({"code": 200000, "data": rows}).encode())
    assert info.value.path == path


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [("coin", "NaN", "$.result.list[0].coin[1]"), ("account", "Infinity", "$.result.list[0]")],
)
def test_non_finite_wallet_amounts_are_located(field: str, value: str, path: str) -> None:
    doc = json.loads((FIXTURES / "zoomex_wallet_seed.json").read_text())
    account = doc["result"]["list"][0]
    if field == "coin":
        account["coin"][1]["equity"] = value
    else:
        account["totalEquity"] = value
    with pytest.raises(DecodeError) as info:
        parse(ZX, WALLET_BALANCE, json.dumps(doc).encode())
    assert info.value.path == path


def test_numeric_position_ids_become_strings_exactly() -> None:
    body = (
        b'{"code":200000,"data":[{"positionId":20164589748662851234,"portfolioId":2130592799975490,'
        b'"sym":"X","positionSide":"NET","positionQty":"1"}]}'
    )
    (pos,) = parse(CX, POSITIONS, body)
    assert (pos.position_id, pos.portfolio_id) == ("20164589748662851234", "2130592799975490")
