"""ConneX (LiquidityTech RapidX) response schemas as msgspec Structs.

Amounts are exact ``Decimal`` (``None`` where the venue sends ``null`` or ``""``); timestamps
are ``int`` milliseconds with ``datetime`` properties beside them. Unknown fields are ignored.

Row types are ``gc=False`` (msgspec): a decoded row is a tree, never part of a reference cycle,
so the garbage collector need not track the thousands a fan-out decodes every second.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from itertools import chain, repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Generic, TypeVar

import msgspec
from msgspec import field

from connex_async.decoding import FiniteRows, first_bad_path

__all__ = [
    "ASSET_AMOUNTS",
    "POSITION_AMOUNTS",
    "TPSL_AMOUNTS",
    "Asset",
    "AssetsPage",
    "ConnexEnvelope",
    "ConnexHead",
    "Position",
    "PositionSide",
    "TpslOrder",
    "bad_asset_path",
    "check_positions",
]

T = TypeVar("T")

if TYPE_CHECKING:
    FlexibleId = str
else:
    # `portfolioId` is a string on assets and a JSON number elsewhere; both decode exactly
    # (never through a float) and __post_init__ makes it a str.
    FlexibleId = str | int


def _ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class ConnexEnvelope(msgspec.Struct, Generic[T]):
    """``{"code", "message", "data"}``; success is code 200 or 200000."""

    code: int
    message: str | None = None
    data: T | None = None


class ConnexHead(msgspec.Struct):
    """Only ``code`` and ``message``: reads an error answer whatever its ``data`` holds."""

    code: int
    message: str | None = None


class Asset(msgspec.Struct, kw_only=True, gc=False):
    """One coin on one exchange in the portfolio (a row of the assets page).

    No ``__post_init__``: pages hold 1,000 rows, and the finiteness of their amounts is checked
    for the whole list at once (``ASSET_AMOUNTS``). ``portfolioId`` is documented as a string here.
    """

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

    @property
    def updated_at(self) -> datetime | None:
        """``updated_at_ms`` as an aware UTC ``datetime``."""
        return None if self.updated_at_ms is None else _ms_to_datetime(self.updated_at_ms)


#: Checks the amounts of every row of an assets page in one pass.
ASSET_AMOUNTS = FiniteRows(Asset)


def bad_asset_path(envelope: ConnexEnvelope[AssetsPage]) -> str | None:
    """JSON path of the first asset row with a non-finite amount, or ``None``."""
    if envelope.data is None:
        return None
    index = ASSET_AMOUNTS.first_bad(envelope.data.assets)
    return None if index is None else f"$.data.list[{index}]"


class AssetsPage(msgspec.Struct, kw_only=True):
    """One page of portfolio assets. ``page_count`` is the wire's ``pageNum`` (total pages)."""

    page: int
    page_size: int = field(name="pageSize")
    page_count: int = field(name="pageNum")
    total_size: int = field(name="totalSize")
    assets: list[Asset] = field(name="list", default_factory=list)

    @property
    def is_last(self) -> bool:
        """True when no page follows this one."""
        return self.page >= self.page_count


class PositionSide(StrEnum):
    """LONG / SHORT in hedge mode; NONE (documented) or NET (official SDKs) in one-way mode."""

    LONG = "LONG"
    SHORT = "SHORT"
    NONE = "NONE"
    NET = "NET"


class TpslOrder(msgspec.Struct, kw_only=True, gc=False):
    """A take-profit / stop-loss algo order attached to a position; every field is optional.

    No ``__post_init__`` (a Python call per order): ``check_positions`` makes numeric ids strings
    and checks the amounts of every order of the list in the same C-level passes as the positions.
    """

    algo_order_id: FlexibleId | None = field(name="algoOrderId", default=None)
    algo_order_type: str | None = field(name="algoOrderType", default=None)
    sym: str | None = None
    side: str | None = None
    order_qty: Decimal | None = field(name="orderQty", default=None)
    order_state: str | None = field(name="orderState", default=None)
    tp_trigger_price: Decimal | None = field(name="tpTriggerPrice", default=None)
    sl_trigger_price: Decimal | None = field(name="slTriggerPrice", default=None)


class Position(msgspec.Struct, kw_only=True, gc=False):
    """One position. ``position_qty`` is signed (negative = short); ``liq_price`` may be ``None``.

    Amounts are checked for the whole list at once (``check_positions``), like assets.
    """

    position_id: FlexibleId = field(name="positionId")
    portfolio_id: FlexibleId = field(name="portfolioId")
    sym: str
    position_side: PositionSide = field(name="positionSide")
    # Before the amounts, not among them (the wire's order): amounts stay consecutive fields,
    # which FiniteRows extracts with one slice.
    risk_level: str | None = field(name="riskLevel", default=None)  # a tier: "1", "2", ...
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
    fee: Decimal | None = None
    funding_fee: Decimal | None = field(name="fundingFee", default=None)
    liq_price: Decimal | None = field(name="liqPrice", default=None)
    created_at_ms: int | None = field(name="createAt", default=None)
    updated_at_ms: int | None = field(name="updateAt", default=None)
    tpsl_orders: list[TpslOrder] = field(name="tpslOrder", default_factory=list)

    @property
    def updated_at(self) -> datetime | None:
        """``updated_at_ms`` as an aware UTC ``datetime``."""
        return None if self.updated_at_ms is None else _ms_to_datetime(self.updated_at_ms)


#: Checks the amounts of every position in one pass.
POSITION_AMOUNTS = FiniteRows(Position)
TPSL_AMOUNTS = FiniteRows(TpslOrder)
_IDS = attrgetter("position_id", "portfolio_id")
_ORDERS = attrgetter("tpsl_orders")
_ALGO_ID = attrgetter("algo_order_id")


def check_positions(envelope: ConnexEnvelope[list[Position]]) -> str | None:
    """Make numeric ids strings; return the JSON path of the first bad amount, if any."""
    positions = envelope.data
    if not positions:
        return None
    if not all(map(isinstance, chain.from_iterable(map(_IDS, positions)), repeat(str))):
        for p in positions:  # a JSON number, read exactly: now a str
            p.position_id, p.portfolio_id = str(p.position_id), str(p.portfolio_id)
    orders = chain.from_iterable(map(_ORDERS, positions))
    if any(map(isinstance, map(_ALGO_ID, orders), repeat(int))):
        for order in chain.from_iterable(map(_ORDERS, positions)):
            if isinstance(order.algo_order_id, int):
                order.algo_order_id = str(order.algo_order_id)
    return first_bad_path(positions, POSITION_AMOUNTS, "$.data", _ORDERS, TPSL_AMOUNTS, "tpslOrder")
