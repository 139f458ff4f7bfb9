"""Paging against venues whose pages do not add up: every listing ends, typed, in bounded time.

Each hostile venue here made the old pager (which followed the page number the venue echoed, up
to the ``pageNum`` it claimed) loop forever or return a partial list as if it were complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from hostile import ASSETS_PATH, CREDS, HostileVenue, asset_row, assets_body, json_reply

from connex_async import ConnexClient, PagingError, RetryPolicy, SessionPool
from connex_async.testing import SimulatedVenue

NO_RETRY = RetryPolicy(max_retries=0)
BOUND = 5.0  # a listing that is still running after this long is the bug

ROWS = [asset_row(f"C{i:03d}") for i in range(5)]
SIZE = 2  # rows per page: 5 rows are 3 pages


def page_number(request: web.Request) -> int:
    return int(request.query.get("page") or request.query.get("pageNum") or 1)


def ignores_page(request: web.Request) -> web.Response:
    """Always "page 1 of 3", whatever was asked."""
    return json_reply(assets_body(ROWS[:SIZE], page=1, page_size=SIZE, page_num=3, total=len(ROWS)))


def echo_lags(request: web.Request) -> web.Response:
    """Counts pages from 0 and echoes its own index: asked page 1, it says page 0."""
    index = page_number(request) - 1
    rows = ROWS[index * SIZE : (index + 1) * SIZE]
    return json_reply(assets_body(rows, page=index, page_size=SIZE, page_num=3, total=len(ROWS)))


def zero_based(request: web.Request) -> web.Response:
    """Counts pages from 0 and serves page index n for ``page=n``: page 1 is its second page."""
    n = page_number(request)
    rows = ROWS[n * SIZE : (n + 1) * SIZE]
    return json_reply(assets_body(rows, page=n, page_size=SIZE, page_num=3, total=len(ROWS)))


def repeats(request: web.Request) -> web.Response:
    """Echoes the page asked for, but always sends the first page's rows."""
    n = page_number(request)
    return json_reply(assets_body(ROWS[:SIZE], page=n, page_size=SIZE, page_num=3, total=len(ROWS)))


def endless(request: web.Request) -> web.Response:
    """Honest echo, but a billion rows: a poll would page for ever."""
    n = page_number(request)
    rows = [asset_row(f"X{n}-{i}") for i in range(SIZE)]
    return json_reply(assets_body(rows, page=n, page_size=SIZE, page_num=500_000_000, total=10**9))


async def listing(client: ConnexClient, how: str) -> list[Any]:
    if how == "poll":
        return await client._poll_assets()  # what the Poller runs
    return await client.get_all_assets(page_size=SIZE)


def sync_handler(fn: Callable[[web.Request], web.Response]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return fn(request)

    return handler


@pytest.mark.parametrize("how", ["poll", "get_all_assets"])
@pytest.mark.parametrize(
    ("venue_kind", "requests", "says"),
    [
        (ignores_page, 2, "answered page 1"),
        (echo_lags, 1, "answered page 0"),
        (zero_based, 3, "empty after 3 of totalSize=5"),
        (repeats, 2, "repeats page 1"),
        (endless, 1, "more than max_pages=100"),
    ],
    ids=["ignores-page", "zero-based-echo-lags", "zero-based-gap", "repeats", "endless"],
)
async def test_inconsistent_paging_ends_in_a_paging_error(
    venue_kind: Callable[[web.Request], web.Response], requests: int, says: str, how: str
) -> None:
    async with HostileVenue(sync_handler(venue_kind)) as venue, SessionPool(retry=NO_RETRY) as pool:
        client = ConnexClient(CREDS, base_url=venue.base_url, pool=pool)  # a poll asks for pages of 1000
        with pytest.raises(PagingError, match=says) as info:
            async with asyncio.timeout(BOUND):
                await listing(client, how)
    err = info.value
    assert (err.venue, err.endpoint, err.portfolio) == ("connex", "assets", "desk-a")
    assert len(venue.hits(ASSETS_PATH)) == requests
    assert [int(seen.query["page"]) for seen in venue.hits(ASSETS_PATH)] == list(range(1, requests + 1))


async def test_hard_ceiling_is_configurable() -> None:
    async with HostileVenue(sync_handler(repeats)) as venue, SessionPool(retry=NO_RETRY) as pool:
        client = ConnexClient(CREDS, base_url=venue.base_url, pool=pool, max_pages=2)
        with pytest.raises(PagingError, match="3 pages, more than max_pages=2"):
            await client.get_all_assets(page_size=SIZE)
    assert len(venue.hits(ASSETS_PATH)) == 1


async def test_page_parameter_name_is_configurable_and_the_simulator_takes_both() -> None:
    async with SimulatedVenue(connex_portfolios=0, zoomex_accounts=0, page_params=("pageNum",)) as sim:
        creds = sim.add_portfolio("connex", assets=5)
        async with SessionPool(retry=NO_RETRY) as pool:
            docs = ConnexClient(creds, base_url=sim.base_url, pool=pool)  # sends `page`: ignored here
            with pytest.raises(PagingError, match=r"try ConnexClient\(page_param='pageNum'\)"):
                async with asyncio.timeout(BOUND):
                    await docs.get_all_assets(page_size=2)
            sdk = ConnexClient(creds, base_url=sim.base_url, pool=pool, page_param="pageNum")
            rows = await sdk.get_all_assets(page_size=2)
            assert len(rows) == 5 and len({(a.coin, a.exchange_type) for a in rows}) == 5
    async with SimulatedVenue(connex_portfolios=0, zoomex_accounts=0) as sim:  # default: either name
        creds = sim.add_portfolio("connex", assets=5)
        async with SessionPool(retry=NO_RETRY) as pool:
            for name in ("page", "pageNum"):
                client = ConnexClient(creds, base_url=sim.base_url, pool=pool, page_param=name)
                assert len(await client.get_all_assets(page_size=2)) == 5
    with pytest.raises(ValueError, match="page_param"):
        ConnexClient(creds, page_param="pageNo")


async def test_consistent_multi_page_listing_is_complete_and_in_order() -> None:
    def honest(request: web.Request) -> web.Response:
        n = page_number(request)
        return json_reply(
            assets_body(ROWS[(n - 1) * SIZE : n * SIZE], page=n, page_size=SIZE, page_num=3, total=len(ROWS))
        )

    async with HostileVenue(sync_handler(honest)) as venue, SessionPool(retry=NO_RETRY) as pool:
        client = ConnexClient(CREDS, base_url=venue.base_url, pool=pool)
        rows = await client.get_all_assets(page_size=SIZE)
    assert [a.coin for a in rows] == [r["coin"] for r in ROWS]
    assert len(venue.hits(ASSETS_PATH)) == 3
