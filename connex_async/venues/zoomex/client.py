"""``ZoomexClient``: wallet balance and server time for one Zoomex API key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Unpack

from connex_async.client import BaseClient, PoolOptions
from connex_async.credentials import Credentials
from connex_async.pool import SessionPool
from connex_async.rate_limit import RateLimit
from connex_async.venues.zoomex.api import SERVER_TIME, WALLET_BALANCE, ZOOMEX_IP_LIMIT, ZoomexVenue
from connex_async.venues.zoomex.models import ServerTime, WalletBalance

__all__ = ["ACCOUNT_TYPES", "DEFAULT_BASE_URL", "ZoomexClient"]

DEFAULT_BASE_URL = "https://openapi.zoomex.com"
ACCOUNT_TYPES = frozenset({"UNIFIED", "CONTRACT"})


class ZoomexClient(BaseClient):
    """One Zoomex account (UID), selected by its API key.

    The wallet-balance limit defaults to 10/s per key; the host-wide 600 per 5 s per IP sits on
    top, shared by every Zoomex client of the pool (``host_limit``; the first client to reach a
    host sets it). ``recv_window`` is in milliseconds. Without ``pool`` the client owns one, made
    with the pool options (see :class:`BaseClient`).
    """

    endpoints = {"wallet": WALLET_BALANCE, "time": SERVER_TIME}

    def __init__(
        self,
        credentials: Credentials,
        *,
        base_url: str = DEFAULT_BASE_URL,
        pool: SessionPool | None = None,
        limits: Mapping[str, RateLimit] | None = None,
        recv_window: int = 5000,
        account_type: str = "UNIFIED",
        host_limit: RateLimit | None = ZOOMEX_IP_LIMIT,
        **pool_options: Unpack[PoolOptions],
    ) -> None:
        _check_account_type(account_type)
        super().__init__(credentials, base_url=base_url, pool=pool, limits=limits, **pool_options)
        self.venue = ZoomexVenue(recv_window=recv_window, host_limit=host_limit)
        self.account_type = account_type

    async def get_wallet_balance(
        self, account_type: str | None = None, coins: Iterable[str] | None = None, *, deadline: float | None = None
    ) -> WalletBalance:
        """Wallet balance (``GET /cloud/trade/v3/account/wallet-balance``).

        Without ``coins`` the venue returns only non-zero assets. ``deadline`` (seconds) bounds
        the call, clock sync and retries included (default: the pool's).
        """
        account_type = account_type or self.account_type
        _check_account_type(account_type)
        coin: str | None = None
        if coins is not None:
            names = [coins] if isinstance(coins, str) else list(coins)
            for name in names:
                if not isinstance(name, str) or not name.isalnum():
                    raise ValueError(f"coin names must be alphanumeric like 'BTC', got {name!r}")
            coin = ",".join(names) or None
        return await self._call(WALLET_BALANCE, {"accountType": account_type, "coin": coin}, deadline)

    async def get_server_time(self, *, deadline: float | None = None) -> ServerTime:
        """The venue's clock (unsigned)."""
        return await self._call(SERVER_TIME, {}, deadline)

    def poll_jobs(self) -> dict[str, Callable[[], Awaitable[Any]]]:
        """The wallet balance of the client's account type."""
        return {"wallet": self.get_wallet_balance}


def _check_account_type(account_type: str) -> None:
    if account_type not in ACCOUNT_TYPES:
        raise ValueError(f"account_type must be one of {sorted(ACCOUNT_TYPES)}, got {account_type!r}")
