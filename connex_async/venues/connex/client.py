"""``ConnexClient``: portfolio assets and positions for one ConneX / LiquidityTech API key."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Unpack

from connex_async.client import BaseClient, PoolOptions
from connex_async.credentials import Credentials
from connex_async.errors import PagingError
from connex_async.pool import SessionPool, call_deadline
from connex_async.rate_limit import RateLimit
from connex_async.venues.connex.api import ASSETS, POSITIONS, ConnexVenue
from connex_async.venues.connex.models import Asset, AssetsPage, Position

__all__ = ["DEFAULT_BASE_URL", "EXCHANGE_TYPES", "MAX_PAGES", "PAGE_PARAMS", "POSITION_EXCHANGES", "ConnexClient"]

DEFAULT_BASE_URL = "https://api.connex.trade"
EXCHANGE_TYPES = frozenset({"BINANCE", "OKX"})
POSITION_EXCHANGES = frozenset({"BINANCE", "OKX", "EDX"})
MAX_PAGE_SIZE = 1000
#: The hard ceiling on the pages of one listing (100,000 rows at the default page size).
MAX_PAGES = 100
#: The names a venue may know the page-number parameter by: the seed doc says ``page``,
#: LiquidityTech's official Python and Java SDKs send ``pageNum``.
PAGE_PARAMS = frozenset({"page", "pageNum"})


class ConnexClient(BaseClient):
    """One ConneX portfolio (main or sub), selected by its API key.

    LiquidityTech's RapidX API is the same API: pass ``base_url="https://api.liquiditytech.com"``.
    Limits default to 20/s for assets and 300/60 s for positions, counted per ``limit_group``.
    Without ``pool`` the client owns one, made with the pool options (see :class:`BaseClient`).
    ``page_param`` names the page-number parameter of the assets endpoint (``"page"``, as the
    docs say, or ``"pageNum"``, as the official SDKs send); ``max_pages`` caps one listing.
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
        page_param: str = "page",
        max_pages: int = MAX_PAGES,
        **pool_options: Unpack[PoolOptions],
    ) -> None:
        if page_param not in PAGE_PARAMS:
            raise ValueError(f"page_param must be one of {sorted(PAGE_PARAMS)}, got {page_param!r}")
        if type(max_pages) is not int or max_pages < 1:
            raise ValueError(f"max_pages must be an int >= 1, got {max_pages!r}")
        super().__init__(credentials, base_url=base_url, pool=pool, limits=limits, **pool_options)
        self.page_param = page_param
        self.max_pages = max_pages

    async def get_assets(
        self,
        exchange_type: str | None = None,
        page: int = 1,
        page_size: int = MAX_PAGE_SIZE,
        *,
        deadline: float | None = None,
    ) -> AssetsPage:
        """One page of the portfolio's assets (``GET /api/v1/trading/portfolio/assets``).

        The page number goes out as ``page_param``; the answer is returned as the venue sent it.
        ``deadline`` (seconds) bounds the call, retries included (default: the pool's).
        """
        if exchange_type is not None and exchange_type not in EXCHANGE_TYPES:
            raise ValueError(f"exchange_type must be one of {sorted(EXCHANGE_TYPES)} or None, got {exchange_type!r}")
        if type(page) is not int or page < 1:
            raise ValueError(f"page must be an int >= 1, got {page!r}")
        if type(page_size) is not int or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be an int in 1..{MAX_PAGE_SIZE}, got {page_size!r}")
        params = {"exchangeType": exchange_type, self.page_param: page, "pageSize": page_size}
        return await self._call(ASSETS, params, deadline)

    async def iter_assets(
        self, exchange_type: str | None = None, page_size: int = MAX_PAGE_SIZE, *, deadline: float | None = None
    ) -> AsyncIterator[Asset]:
        """Every asset row, page by page, fetching the next page only when it is needed.

        Pages are asked for by number (1, 2, ...) and checked (:class:`_Pages`): a venue whose
        pages do not add up ends the listing in a :class:`~connex_async.errors.PagingError`.
        ``deadline`` bounds the whole listing, including the time between pages.
        """
        listing = call_deadline(deadline)  # entered around each page, never across a yield
        with listing:
            page = await self.get_assets(exchange_type, 1, page_size)
        pages = _Pages(self, page, page_size)
        for asset in page.assets:
            yield asset
        while (number := pages.next_number()) is not None:
            with listing:
                page = pages.accept(await self.get_assets(exchange_type, number, page_size))
            for asset in page.assets:
                yield asset

    async def get_all_assets(
        self, exchange_type: str | None = None, page_size: int = MAX_PAGE_SIZE, *, deadline: float | None = None
    ) -> list[Asset]:
        """Every asset row of every page, as one list (see :meth:`iter_assets`)."""
        return [asset async for asset in self.iter_assets(exchange_type, page_size, deadline=deadline)]

    async def get_positions(
        self,
        sym: str | None = None,
        exchange: str | None = None,
        zero_filter: bool = False,
        *,
        deadline: float | None = None,
    ) -> list[Position]:
        """Open positions (``GET /api/v1/trading/position``).

        ``zero_filter=True`` drops the zero-size rows the venue otherwise returns for every
        symbol with a leverage setting. ``deadline`` as for :meth:`get_assets`.
        """
        if sym is not None and (not isinstance(sym, str) or not sym.strip()):
            raise ValueError(f"sym must be a non-empty str such as 'BINANCE_PERP_BTC_USDT', got {sym!r}")
        if exchange is not None and exchange not in POSITION_EXCHANGES:
            raise ValueError(f"exchange must be one of {sorted(POSITION_EXCHANGES)} or None, got {exchange!r}")
        if not isinstance(zero_filter, bool):
            raise ValueError(f"zero_filter must be a bool, got {zero_filter!r}")
        params = {"sym": sym, "exchange": exchange, "zeroFilter": zero_filter}
        return await self._call(POSITIONS, params, deadline)

    async def _poll_assets(self) -> list[Asset]:
        # What `get_all_assets` returns, without an async generator per poll (pollers call this
        # thousands of times a second; almost every portfolio fits on one page).
        page = await self.get_assets()
        pages = _Pages(self, page, MAX_PAGE_SIZE)
        if pages.next_number() is None:
            return page.assets
        assets = list(page.assets)  # extended in place: no copy of everything per page
        while (number := pages.next_number()) is not None:
            assets.extend(pages.accept(await self.get_assets(page=number)).assets)
        return assets

    async def _poll_positions(self) -> list[Position]:
        return await self.get_positions(zero_filter=True)

    def poll_jobs(self) -> dict[str, Callable[[], Awaitable[Any]]]:
        """Assets (all pages) and positions (zero-size rows filtered)."""
        return {"assets": self._poll_assets, "positions": self._poll_positions}


class _Pages:
    """One listing's paging: which page to ask for next, and whether the venue's pages add up.

    We page by the number we ask for, never by the one the venue echoes, and stop after the pages
    ``totalSize / pageSize`` of the first page call for, or at an empty page. A venue that ignores
    the page parameter (always "page 1 of 2"), counts pages from 0, or repeats a page would
    otherwise make one poll run forever, spend the key's whole budget and grow without bound. What
    is refused (:class:`~connex_async.errors.PagingError`): a page other than the one asked for;
    a page that repeats the previous one; an empty page while fewer than ``totalSize`` rows came
    (a venue counting from 0 answers page 1 with its second page and runs out early); more pages
    than ``max_pages``.
    """

    __slots__ = ("asked", "client", "last", "planned", "rows")

    def __init__(self, client: ConnexClient, first: AssetsPage, page_size: int) -> None:
        self.client = client
        self.asked = 1
        self.last = first
        self.rows = len(first.assets)
        self._check_number(first)
        size = min(page_size, first.page_size) if first.page_size >= 1 else page_size
        self.planned = max(1, math.ceil(first.total_size / size))
        if self.planned > client.max_pages:
            raise self._error(
                f"totalSize={first.total_size} at pageSize={size} is {self.planned} pages, "
                f"more than max_pages={client.max_pages}",
                "$.data.totalSize",
            )
        if not first.assets:
            self._check_complete(first)
            self.planned = 1

    def next_number(self) -> int | None:
        """The page to ask for next, or ``None`` when the listing is complete."""
        return self.asked + 1 if self.asked < self.planned else None

    def accept(self, page: AssetsPage) -> AssetsPage:
        """Check ``page`` (the answer to :meth:`next_number`) and return it."""
        self.asked += 1
        self._check_number(page)
        if page.assets and page.assets == self.last.assets:
            raise self._error(f"page {self.asked} repeats page {self.asked - 1}", "$.data.list")
        if not page.assets:
            self._check_complete(page)
            self.planned = self.asked  # the portfolio shrank since page 1: nothing follows
        self.rows += len(page.assets)
        self.last = page
        return page

    def _check_number(self, page: AssetsPage) -> None:
        if page.page != self.asked:
            other = "pageNum" if self.client.page_param == "page" else "page"
            raise self._error(
                f"asked for page {self.asked} as `{self.client.page_param}`, the venue answered page {page.page}: "
                f"it may not know that parameter (try ConnexClient(page_param={other!r}))",
                "$.data.page",
            )

    def _check_complete(self, empty: AssetsPage) -> None:
        if self.rows < empty.total_size:
            raise self._error(
                f"page {self.asked} is empty after {self.rows} of totalSize={empty.total_size} rows "
                "(does the venue count pages from 0?)",
                "$.data.list",
            )

    def _error(self, message: str, path: str) -> PagingError:
        return PagingError(
            message, path=path, venue=self.client.venue.name, endpoint="assets", portfolio=self.client.label
        )
