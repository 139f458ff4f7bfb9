"""Zoomex v3 (Bybit v5 style) response schemas as msgspec Structs.

Zoomex sends ``""`` for every figure that does not apply (account-wide totals on CONTRACT
accounts, ``usdValue``, ``borrowAmount``...): those are ``None``, never zero. Fields may be
absent (``bonus``); unknown fields are ignored. Row types are ``gc=False``, as ConneX's are.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any, Generic, TypeVar

import msgspec
from msgspec import field

from connex_async.decoding import FiniteRows, first_bad_path

__all__ = [
    "ServerTime",
    "WalletAccount",
    "WalletBalance",
    "WalletCoin",
    "ZoomexEnvelope",
    "ZoomexHead",
    "check_wallet",
]

T = TypeVar("T")


class ZoomexEnvelope(msgspec.Struct, Generic[T]):
    """``{"retCode", "retMsg", "result", "retExtInfo", "time"}``; success is retCode 0."""

    ret_code: int = field(name="retCode")
    ret_msg: str | None = field(name="retMsg", default=None)
    result: T | None = None
    ret_ext_info: dict[str, Any] | None = field(name="retExtInfo", default=None)
    time_ms: int | None = field(name="time", default=None)


class ZoomexHead(msgspec.Struct):
    """Only ``retCode`` and ``retMsg``: reads an error answer whatever its ``result`` holds."""

    ret_code: int = field(name="retCode")
    ret_msg: str | None = field(name="retMsg", default=None)


class WalletCoin(msgspec.Struct, kw_only=True, gc=False):
    """One coin of a wallet account (amounts checked per list by ``check_wallet``)."""

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


class WalletAccount(msgspec.Struct, kw_only=True, gc=False):
    """One account (UNIFIED or CONTRACT) with its account-wide totals and its coins."""

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
    coins: list[WalletCoin] = field(name="coin", default_factory=list)


class WalletBalance(msgspec.Struct, kw_only=True):
    """The ``result`` of wallet-balance: one entry per account."""

    accounts: list[WalletAccount] = field(name="list")


ACCOUNT_AMOUNTS = FiniteRows(WalletAccount)
_COINS = attrgetter("coins")
COIN_AMOUNTS = FiniteRows(WalletCoin)


def check_wallet(envelope: ZoomexEnvelope[WalletBalance]) -> str | None:
    """JSON path of the first non-finite (or out of range) amount of a wallet answer, or ``None``."""
    if envelope.result is None:
        return None
    # One pass over every amount of every account and coin: a wallet is small, so what costs is
    # the fixed price of each pass, not the amounts.
    return first_bad_path(envelope.result.accounts, ACCOUNT_AMOUNTS, "$.result.list", _COINS, COIN_AMOUNTS, "coin")


class ServerTime(msgspec.Struct, kw_only=True):
    """The ``result`` of market/time: the server clock in seconds and nanoseconds."""

    time_second: int = field(name="timeSecond")
    time_nano: int = field(name="timeNano")

    @property
    def time_ms(self) -> int:
        """Server time in milliseconds."""
        return self.time_nano // 1_000_000

    @property
    def datetime(self) -> datetime:
        """Server time as an aware UTC ``datetime``."""
        return datetime.fromtimestamp(self.time_nano / 1e9, tz=UTC)
