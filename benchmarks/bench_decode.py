"""Decode: bytes -> typed result with exact Decimals, ours vs three baselines, in one run.

Payloads (deterministic, from the simulator's generator): a 1,000-row ConneX assets page, 50
ConneX positions, a Zoomex UNIFIED wallet with eight coins (16 ``""`` amounts). Rows:

- ``ours: decoder``: ``Endpoint.decoder.decode(body)`` (envelope Struct, amounts checked finite);
- ``ours: parse``: ``Venue.parse(endpoint, RawResponse)``: what the request loop calls;
- ``json.loads + Decimal``: the hand-written equivalent (same fields, Decimal amounts, int
  timestamps, ``""`` -> None), into dicts: the cheapest typed container;
- ``pydantic v2``: models with ``Decimal`` fields, aliases, ``""`` -> None via ``BeforeValidator``,
  ``model_validate_json`` (the Rust JSON path);
- ``msgspec floor``: bare Structs with the same ``Decimal`` fields, no ``__post_init__`` (no finite
  check), no envelope handling; for Zoomex the same ``""`` -> ``null`` rewrite, since a Decimal field
  cannot take ``""`` at all.

Targets: ours at least 2x faster than json.loads + Decimal and pydantic; at most 1.15x the floor.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from enum import StrEnum
from typing import Any

import msgspec
from msgspec import field

from benchmarks.common import (
    compare_timings,
    connex_assets_body,
    connex_positions_body,
    not_installed,
    optional,
    print_table,
    profile_top_frames,
    zoomex_wallet_body,
)
from connex_async.venues.base import RawResponse
from connex_async.venues.connex.api import ASSETS, POSITIONS, ConnexVenue
from connex_async.venues.zoomex.api import WALLET_BALANCE, ZoomexVenue

NAME = "decode"
TARGET_VS_BASELINES = 2.0
TARGET_VS_FLOOR = 1.15

# ============================================================================ hand-written baseline


def _dec(v: Any) -> Decimal | None:
    return None if v is None or v == "" else Decimal(v)


def _int(v: Any) -> int | None:
    return None if v is None or v == "" else int(v)


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


def _amounts(*names: tuple[str, str]) -> tuple[tuple[str, str, Callable[[Any], Any]], ...]:
    return tuple((wire, name, _dec) for wire, name in names)


_ASSET_FIELDS = (
    ("portfolioId", "portfolio_id", _str),
    ("coin", "coin", _str),
    ("exchangeType", "exchange_type", _str),
    *_amounts(
        ("balance", "balance"),
        ("available", "available"),
        ("frozen", "frozen"),
        ("equity", "equity"),
        ("debt", "debt"),
        ("borrow", "borrow"),
        ("overdraw", "overdraw"),
        ("indexPrice", "index_price"),
        ("marginValue", "margin_value"),
        ("virtualBorrow", "virtual_borrow"),
        ("upnl", "upnl"),
        ("debtMargin", "debt_margin"),
        ("perpMargin", "perp_margin"),
        ("maxTransferable", "max_transferable"),
        ("equityValue", "equity_value"),
    ),
    ("createAt", "created_at_ms", _int),
    ("updateAt", "updated_at_ms", _int),
)
_TPSL_FIELDS = (
    ("algoOrderId", "algo_order_id", _str),
    ("algoOrderType", "algo_order_type", _str),
    ("sym", "sym", _str),
    ("side", "side", _str),
    ("orderQty", "order_qty", _dec),
    ("orderState", "order_state", _str),
    ("tpTriggerPrice", "tp_trigger_price", _dec),
    ("slTriggerPrice", "sl_trigger_price", _dec),
)
_POSITION_FIELDS = (
    ("positionId", "position_id", _str),
    ("portfolioId", "portfolio_id", _str),
    ("sym", "sym", _str),
    ("positionSide", "position_side", _str),
    *_amounts(
        ("positionQty", "position_qty"),
        ("positionMargin", "position_margin"),
        ("positionMM", "position_mm"),
        ("positionValue", "position_value"),
        ("unrealizedPNL", "unrealized_pnl"),
        ("unrealizedPNLRate", "unrealized_pnl_rate"),
        ("avgPrice", "avg_price"),
        ("markPrice", "mark_price"),
        ("leverage", "leverage"),
        ("maxLeverage", "max_leverage"),
    ),
    ("riskLevel", "risk_level", _str),
    *_amounts(("fee", "fee"), ("fundingFee", "funding_fee"), ("liqPrice", "liq_price")),
    ("createAt", "created_at_ms", _int),
    ("updateAt", "updated_at_ms", _int),
)
_COIN_FIELDS = (
    ("coin", "coin", _str),
    *_amounts(
        ("equity", "equity"),
        ("usdValue", "usd_value"),
        ("walletBalance", "wallet_balance"),
        ("borrowAmount", "borrow_amount"),
        ("availableToBorrow", "available_to_borrow"),
        ("availableToWithdraw", "available_to_withdraw"),
        ("accruedInterest", "accrued_interest"),
        ("totalOrderIM", "total_order_im"),
        ("totalPositionIM", "total_position_im"),
        ("totalPositionMM", "total_position_mm"),
        ("unrealisedPnl", "unrealised_pnl"),
        ("cumRealisedPnl", "cum_realised_pnl"),
        ("bonus", "bonus"),
    ),
)
_ACCOUNT_FIELDS = (
    ("accountType", "account_type", _str),
    *_amounts(
        ("accountIMRate", "account_im_rate"),
        ("accountMMRate", "account_mm_rate"),
        ("totalEquity", "total_equity"),
        ("totalWalletBalance", "total_wallet_balance"),
        ("totalMarginBalance", "total_margin_balance"),
        ("totalAvailableBalance", "total_available_balance"),
        ("totalPerpUPL", "total_perp_upl"),
        ("totalInitialMargin", "total_initial_margin"),
        ("totalMaintenanceMargin", "total_maintenance_margin"),
        ("accountLTV", "account_ltv"),
    ),
)


def _convert(row: dict[str, Any], fields: tuple[tuple[str, str, Callable[[Any], Any]], ...]) -> dict[str, Any]:
    get = row.get
    return {name: conv(get(wire)) for wire, name, conv in fields}


def _connex_data(body: bytes) -> Any:
    doc = json.loads(body, parse_float=Decimal)  # numbers stay exact too
    if int(doc["code"]) not in (200, 200000):
        raise ValueError(doc.get("message"))
    return doc["data"]


def hand_assets(body: bytes) -> dict[str, Any]:
    """``json.loads`` + ``Decimal`` by hand: the assets page as dicts."""
    data = _connex_data(body)
    return {
        "page": int(data["page"]),
        "page_size": int(data["pageSize"]),
        "page_count": int(data["pageNum"]),
        "total_size": int(data["totalSize"]),
        "assets": [_convert(row, _ASSET_FIELDS) for row in data.get("list") or ()],
    }


def hand_positions(body: bytes) -> list[dict[str, Any]]:
    """``json.loads`` + ``Decimal`` by hand: positions (with their TP/SL orders) as dicts."""
    out = []
    for row in _connex_data(body):
        item = _convert(row, _POSITION_FIELDS)
        item["tpsl_orders"] = [_convert(o, _TPSL_FIELDS) for o in row.get("tpslOrder") or ()]
        out.append(item)
    return out


def hand_wallet(body: bytes) -> dict[str, Any]:
    """``json.loads`` + ``Decimal`` by hand: the Zoomex wallet as dicts."""
    doc = json.loads(body, parse_float=Decimal)
    if int(doc["retCode"]) != 0:
        raise ValueError(doc.get("retMsg"))
    accounts = []
    for row in doc["result"]["list"]:
        account = _convert(row, _ACCOUNT_FIELDS)
        account["coins"] = [_convert(c, _COIN_FIELDS) for c in row.get("coin") or ()]
        accounts.append(account)
    return {"accounts": accounts}


# ============================================================================ msgspec floor


class FloorAsset(msgspec.Struct, kw_only=True):
    portfolio_id: str = field(name="portfolioId")
    coin: str
    exchange_type: str = field(name="exchangeType")
    balance: Decimal
    available: Decimal
    frozen: Decimal
    equity: Decimal
    debt: Decimal | None = None
    borrow: Decimal | None = None
    overdraw: Decimal | None = None
    index_price: Decimal | None = field(name="indexPrice", default=None)
    margin_value: Decimal | None = field(name="marginValue", default=None)
    virtual_borrow: Decimal | None = field(name="virtualBorrow", default=None)
    upnl: Decimal | None = None
    debt_margin: Decimal | None = field(name="debtMargin", default=None)
    perp_margin: Decimal | None = field(name="perpMargin", default=None)
    max_transferable: Decimal | None = field(name="maxTransferable", default=None)
    equity_value: Decimal | None = field(name="equityValue", default=None)
    created_at_ms: int | None = field(name="createAt", default=None)
    updated_at_ms: int | None = field(name="updateAt", default=None)


class FloorAssetsPage(msgspec.Struct, kw_only=True):
    page: int
    page_size: int = field(name="pageSize")
    page_count: int = field(name="pageNum")
    total_size: int = field(name="totalSize")
    assets: list[FloorAsset] = field(name="list", default_factory=list)


class FloorAssetsEnvelope(msgspec.Struct):
    code: int
    message: str | None = None
    data: FloorAssetsPage | None = None


class FloorTpsl(msgspec.Struct, kw_only=True):
    algo_order_id: str | None = field(name="algoOrderId", default=None)
    algo_order_type: str | None = field(name="algoOrderType", default=None)
    sym: str | None = None
    side: str | None = None
    order_qty: Decimal | None = field(name="orderQty", default=None)
    order_state: str | None = field(name="orderState", default=None)
    tp_trigger_price: Decimal | None = field(name="tpTriggerPrice", default=None)
    sl_trigger_price: Decimal | None = field(name="slTriggerPrice", default=None)


class FloorPosition(msgspec.Struct, kw_only=True):
    position_id: str = field(name="positionId")
    portfolio_id: str = field(name="portfolioId")
    sym: str
    position_side: str = field(name="positionSide")
    position_qty: Decimal = field(name="positionQty")
    position_margin: Decimal | None = field(name="positionMargin", default=None)
    position_mm: Decimal | None = field(name="positionMM", default=None)
    position_value: Decimal | None = field(name="positionValue", default=None)
    unrealized_pnl: Decimal | None = field(name="unrealizedPNL", default=None)
    unrealized_pnl_rate: Decimal | None = field(name="unrealizedPNLRate", default=None)
    avg_price: Decimal | None = field(name="avgPrice", default=None)
    mark_price: Decimal | None = field(name="markPrice", default=None)
    leverage: Decimal | None = None
    max_leverage: Decimal | None = field(name="maxLeverage", default=None)
    risk_level: str | None = field(name="riskLevel", default=None)
    fee: Decimal | None = None
    funding_fee: Decimal | None = field(name="fundingFee", default=None)
    liq_price: Decimal | None = field(name="liqPrice", default=None)
    created_at_ms: int | None = field(name="createAt", default=None)
    updated_at_ms: int | None = field(name="updateAt", default=None)
    tpsl_orders: list[FloorTpsl] = field(name="tpslOrder", default_factory=list)


class FloorPositionsEnvelope(msgspec.Struct):
    code: int
    message: str | None = None
    data: list[FloorPosition] | None = None


class FloorCoin(msgspec.Struct, kw_only=True):
    coin: str
    equity: Decimal | None = None
    usd_value: Decimal | None = field(name="usdValue", default=None)
    wallet_balance: Decimal | None = field(name="walletBalance", default=None)
    borrow_amount: Decimal | None = field(name="borrowAmount", default=None)
    available_to_borrow: Decimal | None = field(name="availableToBorrow", default=None)
    available_to_withdraw: Decimal | None = field(name="availableToWithdraw", default=None)
    accrued_interest: Decimal | None = field(name="accruedInterest", default=None)
    total_order_im: Decimal | None = field(name="totalOrderIM", default=None)
    total_position_im: Decimal | None = field(name="totalPositionIM", default=None)
    total_position_mm: Decimal | None = field(name="totalPositionMM", default=None)
    unrealised_pnl: Decimal | None = field(name="unrealisedPnl", default=None)
    cum_realised_pnl: Decimal | None = field(name="cumRealisedPnl", default=None)
    bonus: Decimal | None = None


class FloorAccount(msgspec.Struct, kw_only=True):
    account_type: str = field(name="accountType")
    account_im_rate: Decimal | None = field(name="accountIMRate", default=None)
    account_mm_rate: Decimal | None = field(name="accountMMRate", default=None)
    total_equity: Decimal | None = field(name="totalEquity", default=None)
    total_wallet_balance: Decimal | None = field(name="totalWalletBalance", default=None)
    total_margin_balance: Decimal | None = field(name="totalMarginBalance", default=None)
    total_available_balance: Decimal | None = field(name="totalAvailableBalance", default=None)
    total_perp_upl: Decimal | None = field(name="totalPerpUPL", default=None)
    total_initial_margin: Decimal | None = field(name="totalInitialMargin", default=None)
    total_maintenance_margin: Decimal | None = field(name="totalMaintenanceMargin", default=None)
    account_ltv: Decimal | None = field(name="accountLTV", default=None)
    coins: list[FloorCoin] = field(name="coin", default_factory=list)


class FloorWallet(msgspec.Struct, kw_only=True):
    accounts: list[FloorAccount] = field(name="list")


class FloorWalletEnvelope(msgspec.Struct):
    ret_code: int = field(name="retCode")
    ret_msg: str | None = field(name="retMsg", default=None)
    result: FloorWallet | None = None


FLOOR_ASSETS = msgspec.json.Decoder(FloorAssetsEnvelope, strict=False)
_FLOOR_POSITIONS = msgspec.json.Decoder(FloorPositionsEnvelope, strict=False)
_FLOOR_WALLET = msgspec.json.Decoder(FloorWalletEnvelope, strict=False)
# JSON whitespace is exactly these four bytes; a literal replacement keeps re.sub in C.
_EMPTY_MEMBER = re.compile(rb':[ \t\n\r]*""')


def floor_wallet(body: bytes) -> FloorWalletEnvelope:
    """The floor for Zoomex: ``""`` -> ``null`` (the fastest way we know), then a bare decode."""
    return _FLOOR_WALLET.decode(_EMPTY_MEMBER.sub(b":null", body))


# ============================================================================ pydantic baseline


def _pydantic_models() -> dict[str, Any] | None:
    """pydantic v2 models equivalent to ours, or None without pydantic."""
    pydantic = optional("pydantic")
    if pydantic is None or not pydantic.VERSION.startswith("2"):
        return None
    from typing import Annotated

    from pydantic import BaseModel, BeforeValidator, Field

    def empty_is_none(v: Any) -> Any:
        return None if v == "" else v

    blank = BeforeValidator(empty_is_none)
    OptDec = Annotated[Decimal | None, blank]
    OptInt = Annotated[int | None, blank]

    class PAsset(BaseModel):
        portfolio_id: str | int = Field(alias="portfolioId")
        coin: str
        exchange_type: str = Field(alias="exchangeType")
        balance: Decimal
        available: Decimal
        frozen: Decimal
        equity: Decimal
        debt: OptDec = None
        borrow: OptDec = None
        overdraw: OptDec = None
        index_price: OptDec = Field(default=None, alias="indexPrice")
        margin_value: OptDec = Field(default=None, alias="marginValue")
        virtual_borrow: OptDec = Field(default=None, alias="virtualBorrow")
        upnl: OptDec = None
        debt_margin: OptDec = Field(default=None, alias="debtMargin")
        perp_margin: OptDec = Field(default=None, alias="perpMargin")
        max_transferable: OptDec = Field(default=None, alias="maxTransferable")
        equity_value: OptDec = Field(default=None, alias="equityValue")
        created_at_ms: OptInt = Field(default=None, alias="createAt")
        updated_at_ms: OptInt = Field(default=None, alias="updateAt")

    class PAssetsPage(BaseModel):
        page: int
        page_size: int = Field(alias="pageSize")
        page_count: int = Field(alias="pageNum")
        total_size: int = Field(alias="totalSize")
        assets: list[PAsset] = Field(default_factory=list, alias="list")

    class PAssetsEnvelope(BaseModel):
        code: int
        message: str | None = None
        data: PAssetsPage | None = None

    class Side(StrEnum):
        LONG = "LONG"
        SHORT = "SHORT"
        NONE = "NONE"
        NET = "NET"

    class PTpsl(BaseModel):
        algo_order_id: str | int | None = Field(default=None, alias="algoOrderId")
        algo_order_type: str | None = Field(default=None, alias="algoOrderType")
        sym: str | None = None
        side: str | None = None
        order_qty: OptDec = Field(default=None, alias="orderQty")
        order_state: str | None = Field(default=None, alias="orderState")
        tp_trigger_price: OptDec = Field(default=None, alias="tpTriggerPrice")
        sl_trigger_price: OptDec = Field(default=None, alias="slTriggerPrice")

    class PPosition(BaseModel):
        position_id: str | int = Field(alias="positionId")
        portfolio_id: str | int = Field(alias="portfolioId")
        sym: str
        position_side: Side = Field(alias="positionSide")
        position_qty: Decimal = Field(alias="positionQty")
        position_margin: OptDec = Field(default=None, alias="positionMargin")
        position_mm: OptDec = Field(default=None, alias="positionMM")
        position_value: OptDec = Field(default=None, alias="positionValue")
        unrealized_pnl: OptDec = Field(default=None, alias="unrealizedPNL")
        unrealized_pnl_rate: OptDec = Field(default=None, alias="unrealizedPNLRate")
        avg_price: OptDec = Field(default=None, alias="avgPrice")
        mark_price: OptDec = Field(default=None, alias="markPrice")
        leverage: OptDec = None
        max_leverage: OptDec = Field(default=None, alias="maxLeverage")
        risk_level: str | None = Field(default=None, alias="riskLevel")
        fee: OptDec = None
        funding_fee: OptDec = Field(default=None, alias="fundingFee")
        liq_price: OptDec = Field(default=None, alias="liqPrice")
        created_at_ms: OptInt = Field(default=None, alias="createAt")
        updated_at_ms: OptInt = Field(default=None, alias="updateAt")
        tpsl_orders: list[PTpsl] = Field(default_factory=list, alias="tpslOrder")

    class PPositionsEnvelope(BaseModel):
        code: int
        message: str | None = None
        data: list[PPosition] | None = None

    class PCoin(BaseModel):
        coin: str
        equity: OptDec = None
        usd_value: OptDec = Field(default=None, alias="usdValue")
        wallet_balance: OptDec = Field(default=None, alias="walletBalance")
        borrow_amount: OptDec = Field(default=None, alias="borrowAmount")
        available_to_borrow: OptDec = Field(default=None, alias="availableToBorrow")
        available_to_withdraw: OptDec = Field(default=None, alias="availableToWithdraw")
        accrued_interest: OptDec = Field(default=None, alias="accruedInterest")
        total_order_im: OptDec = Field(default=None, alias="totalOrderIM")
        total_position_im: OptDec = Field(default=None, alias="totalPositionIM")
        total_position_mm: OptDec = Field(default=None, alias="totalPositionMM")
        unrealised_pnl: OptDec = Field(default=None, alias="unrealisedPnl")
        cum_realised_pnl: OptDec = Field(default=None, alias="cumRealisedPnl")
        bonus: OptDec = None

    class PAccount(BaseModel):
        account_type: str = Field(alias="accountType")
        account_im_rate: OptDec = Field(default=None, alias="accountIMRate")
        account_mm_rate: OptDec = Field(default=None, alias="accountMMRate")
        total_equity: OptDec = Field(default=None, alias="totalEquity")
        total_wallet_balance: OptDec = Field(default=None, alias="totalWalletBalance")
        total_margin_balance: OptDec = Field(default=None, alias="totalMarginBalance")
        total_available_balance: OptDec = Field(default=None, alias="totalAvailableBalance")
        total_perp_upl: OptDec = Field(default=None, alias="totalPerpUPL")
        total_initial_margin: OptDec = Field(default=None, alias="totalInitialMargin")
        total_maintenance_margin: OptDec = Field(default=None, alias="totalMaintenanceMargin")
        account_ltv: OptDec = Field(default=None, alias="accountLTV")
        coins: list[PCoin] = Field(default_factory=list, alias="coin")

    class PWallet(BaseModel):
        accounts: list[PAccount] = Field(alias="list")

    class PWalletEnvelope(BaseModel):
        ret_code: int = Field(alias="retCode")
        ret_msg: str | None = Field(default=None, alias="retMsg")
        result: PWallet | None = None
        ret_ext_info: dict[str, Any] | None = Field(default=None, alias="retExtInfo")
        time_ms: int | None = Field(default=None, alias="time")

    return {"assets": PAssetsEnvelope, "positions": PPositionsEnvelope, "wallet": PWalletEnvelope}


# ============================================================================ the benchmark


def _checksums(kind: str, approach: str, result: Any) -> tuple[int, Decimal]:
    """(rows, sum of one amount column): every approach must agree on both."""
    if approach == "hand":
        if kind == "assets":
            rows = result["assets"]
            return len(rows), sum(r["balance"] for r in rows)
        if kind == "positions":
            return len(result), sum(r["position_qty"] for r in result)
        coins = [c for a in result["accounts"] for c in a["coins"]]
        return len(coins), sum(c["equity"] or 0 for c in coins)
    if approach == "ours_parse":
        data = result
    elif kind == "wallet":
        data = result.result
    else:
        data = result.data
    if kind == "assets":
        return len(data.assets), sum(r.balance for r in data.assets)
    if kind == "positions":
        return len(data), sum(r.position_qty for r in data)
    coins = [c for a in data.accounts for c in a.coins]
    return len(coins), sum(c.equity or 0 for c in coins)


def run(quick: bool = False) -> dict[str, Any]:
    """Time every approach on every payload; return rows, targets and (for misses) profiles."""
    runs, min_run = (3, 0.01) if quick else (7, 0.08)
    payloads = {
        "assets": (f"ConneX assets, {100 if quick else 1000} rows", connex_assets_body(100 if quick else 1000)),
        "positions": ("ConneX positions, 50 rows", connex_positions_body(50)),
        "wallet": ("Zoomex wallet, 8 coins", zoomex_wallet_body()),
    }
    connex, zoomex = ConnexVenue(), ZoomexVenue()
    headers = {"Content-Type": "application/json"}
    endpoints = {"assets": ASSETS, "positions": POSITIONS, "wallet": WALLET_BALANCE}
    venues = {"assets": connex, "positions": connex, "wallet": zoomex}
    hand = {"assets": hand_assets, "positions": hand_positions, "wallet": hand_wallet}
    floor: dict[str, Callable[[bytes], Any]] = {
        "assets": FLOOR_ASSETS.decode,
        "positions": _FLOOR_POSITIONS.decode,
        "wallet": floor_wallet,
    }
    models = _pydantic_models()

    rows: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    profiles: dict[str, Any] = {}
    for kind, (title, body) in payloads.items():
        endpoint, venue = endpoints[kind], venues[kind]
        response = RawResponse(200, headers, body)
        decode = endpoint.decoder.decode
        approaches: dict[str, tuple[str, Callable[[], Any] | None, str | None]] = {
            "ours_decoder": ("ours: Endpoint.decoder.decode", lambda d=decode, b=body: d(b), None),
            "ours_parse": (
                "ours: Venue.parse(RawResponse)",
                lambda v=venue, e=endpoint, r=response: v.parse(e, r, "bench"),
                None,
            ),
            "hand": ("json.loads + Decimal by hand", lambda f=hand[kind], b=body: f(b), None),
            "pydantic": (
                "pydantic v2 model_validate_json",
                (lambda m=models[kind], b=body: m.model_validate_json(b)) if models else None,
                None if models else not_installed("pydantic"),
            ),
            "floor": ("msgspec bare Struct (floor)", lambda f=floor[kind], b=body: f(b), None),
        }
        reference = _checksums(kind, "ours_decoder", decode(body))
        runnable: dict[str, Callable[[], Any]] = {}
        for key, (_, fn, _) in approaches.items():
            if fn is not None:
                checksum = _checksums(kind, key, fn())
                if checksum != reference:
                    raise AssertionError(f"{kind}/{key} decoded differently: {checksum} != {reference}")
                runnable[key] = fn
        measured = compare_timings(runnable, runs=runs, min_run=min_run)
        timings = {key: t["median_s"] for key, t in measured.items()}
        for key, (label, _, skip) in approaches.items():
            row: dict[str, Any] = {"payload": kind, "title": title, "bytes": len(body), "approach": key, "label": label}
            if key in measured:
                t = measured[key]
                row.update(status="ok", ms=t["median_s"] * 1000, ms_min=t["min_s"] * 1000, runs=t["runs"])
            else:
                row["status"] = skip
            rows.append(row)
        ours = timings["ours_decoder"]
        for row in rows:
            if row["payload"] == kind and row.get("status") == "ok":
                row["ratio_vs_ours"] = timings[row["approach"]] / ours
        for key, goal, kind_of in (
            ("hand", TARGET_VS_BASELINES, "speedup"),
            ("pydantic", TARGET_VS_BASELINES, "speedup"),
            ("floor", TARGET_VS_FLOOR, "overhead"),
        ):
            if key not in timings:
                targets.append({"bench": NAME, "payload": kind, "vs": key, "status": "skipped"})
                continue
            if kind_of == "speedup":
                value = timings[key] / ours
                met = value >= goal
                text = f"ours {value:.3f}x faster than {key} (target >= {goal}x)"
            else:
                value = ours / timings[key]
                met = value <= goal
                text = f"ours {value:.3f}x the floor (target <= {goal}x)"
            targets.append(
                {"bench": NAME, "payload": kind, "vs": key, "value": value, "goal": goal, "met": met, "text": text}
            )
            if not met and kind not in profiles:
                profiles[kind] = profile_top_frames(lambda d=decode, b=body: d(b), seconds=0.2 if quick else 1.0, top=8)
    return {"name": NAME, "quick": quick, "rows": rows, "targets": targets, "profiles": profiles}


def report(result: dict[str, Any]) -> str:
    """Print the decode table (ms per decode, ratio of each approach's time to ours)."""
    table = []
    for row in result["rows"]:
        if row.get("status") != "ok":
            table.append([row["title"], row["label"], row["status"], "-", "-"])
            continue
        table.append(
            [row["title"], row["label"], f"{row['ms']:.3f}", f"{row['ms_min']:.3f}", f"{row['ratio_vs_ours']:.2f}x"]
        )
    text = print_table(
        "decode: ms per decode (median; time ÷ ours: >1 means ours is faster)",
        ["payload", "approach", "ms median", "ms min", "time vs ours"],
        table,
    )
    for kind, frames in result["profiles"].items():
        lines = [f"profile of ours on {kind} (pyinstrument, self time):"]
        lines += [f"    {f}" for f in frames] if isinstance(frames, list) else [f"    {frames}"]
        print("\n".join(lines) + "\n")
        text += "\n".join(lines) + "\n"
    return text
