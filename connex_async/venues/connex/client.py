"""``ConnexClient``: portfolio assets and positions for one ConneX / LiquidityTech API key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from connex_async.client import BaseClient
from connex_async.credentials import Credentials
from connex_async.limits import RateLimit
from connex_async.pool import SessionPool
from connex_async.retry import RetryPolicy
from connex_async.venues.connex.api import ASSETS, POSITIONS, ConnexVenue
from connex_async.venues.connex.models import Asset, AssetsPage, Position

__all__ = ["DEFAULT_BASE_URL", "EXCHANGE_TYPES", "POSITION_EXCHANGES", "ConnexClient"]

DEFAULT_BASE_URL = "https://api.connex.trade"
EXCHANGE_TYPES = frozenset({"BINANCE", "OKX"})
POSITION_EXCHANGES = frozenset({"BINANCE", "OKX", "EDX"})
MAX_PAGE_SIZE = 1000


class ConnexClient(BaseClient):
    """One ConneX portfolio (main or sub), selected by its API key.

    LiquidityTech's RapidX API is the same API: pass ``base_url="https://api.liquiditytech.com"``.
    Limits default to 20/s for assets and 300/60 s for positions, counted per ``limit_group``.
    Without ``pool`` the client owns one, made with the pool options (see :class:`BaseClient`).
    """

    venue = ConnexVenue()
    endpoints = {"assets": ASSETS, "positions": POSITIONS}

    def __init__(
        self,
        credentials: Credentials,
        *,
        base_url: str = DEFAULT_BASE_URL,
        pool: SessionPool | None = None,
        limits: Mapping[str, RateLimit] | None = None,
        connector_limit: int | None = None,
        limit_per_host: int | None = None,
        timeout: float | None = None,
        max_queue_wait: float | None = None,
        retry: RetryPolicy | None = None,
        max_body_bytes: int | None = None,
        user_agent: str | None = None,
    ) -> None:
        super().__init__(
            credentials,
            base_url=base_url,
            pool=pool,
            limits=limits,
            connector_limit=connector_limit,
            limit_per_host=limit_per_host,
            timeout=timeout,
            max_queue_wait=max_queue_wait,
            retry=retry,
            max_body_bytes=max_body_bytes,
            user_agent=user_agent,
        )

    async def get_assets(
        self, exchange_type: str | None = None, page: int = 1, page_size: int = MAX_PAGE_SIZE
    ) -> AssetsPage:
        """One page of the portfolio's assets (``GET /api/v1/trading/portfolio/assets``)."""
        if exchange_type is not None and exchange_type not in EXCHANGE_TYPES:
            raise ValueError(f"exchange_type must be one of {sorted(EXCHANGE_TYPES)} or None, got {exchange_type!r}")
        if type(page) is not int or page < 1:
            raise ValueError(f"page must be an int >= 1, got {page!r}")
        if type(page_size) is not int or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be an int in 1..{MAX_PAGE_SIZE}, got {page_size!r}")
        params = {"exchangeType": exchange_type, "page": page, "pageSize": page_size}
        return await self._call(ASSETS, params)

    async def iter_assets(
        self, exchange_type: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncIterator[Asset]:
        """Every asset row, page by page, fetching the next page only when it is needed."""
        page = 1
        while True:
            result = await self.get_assets(exchange_type, page=page, page_size=page_size)
            for asset in result.assets:
                yield asset
            if result.is_last or not result.assets:
                return
            page += 1

    async def get_all_assets(self, exchange_type: str | None = None, page_size: int = MAX_PAGE_SIZE) -> list[Asset]:
        """Every asset row of every page, as one list."""
        return [asset async for asset in self.iter_assets(exchange_type, page_size)]

    async def get_positions(
        self, sym: str | None = None, exchange: str | None = None, zero_filter: bool = False
    ) -> list[Position]:
        """Open positions (``GET /api/v1/trading/position``).

        ``zero_filter=True`` drops the zero-size rows the venue otherwise returns for every
        symbol with a leverage setting.
        """
        if sym is not None and (not isinstance(sym, str) or not sym.strip()):
            raise ValueError(f"sym must be a non-empty str such as 'BINANCE_PERP_BTC_USDT', got {sym!r}")
        if exchange is not None and exchange not in POSITION_EXCHANGES:
            raise ValueError(f"exchange must be one of {sorted(POSITION_EXCHANGES)} or None, got {exchange!r}")
        if not isinstance(zero_filter, bool):
            raise ValueError(f"zero_filter must be a bool, got {zero_filter!r}")
        params = {"sym": sym, "exchange": exchange, "zeroFilter": zero_filter}
        return await self._call(POSITIONS, params)

    async def _poll_assets(self) -> list[Asset]:
        # What `get_all_assets` returns, without an async generator per poll (pollers call this
        # thousands of times a second; almost every portfolio fits on one page).
        page = await self.get_assets()
        assets = page.assets
        while not page.is_last and page.assets:
            page = await self.get_assets(page=page.page + 1)
            assets = assets + page.assets
        return assets

    async def _poll_positions(self) -> list[Position]:
        return await self.get_positions(zero_filter=True)

    def poll_jobs(self) -> dict[str, Callable[[], Awaitable[Any]]]:
        """Assets (all pages) and positions (zero-size rows filtered)."""
        return {"assets": self._poll_assets, "positions": self._poll_positions}
