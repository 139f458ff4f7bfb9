"""A hostile venue for tests: a real ``aiohttp.web`` server on 127.0.0.1 whose answers the test writes.

The simulator (``connex_async.testing``) behaves like the documented venues; this one behaves like
whatever a test needs a broken or malicious venue to do: echo the wrong page, send a gzip bomb,
set cookies, nest JSON 100,000 deep. Every request is recorded (path, query, headers, arrival).
Zoomex clients measure the clock first, so ``/market/time`` is answered here unless the handler
takes it (``answer_time=False``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from connex_async import Credentials
from connex_async.testing.wire import JSON, zoomex_body

__all__ = [
    "ASSETS_PATH",
    "CREDS",
    "CREDS_B",
    "POSITIONS_PATH",
    "TIME_PATH",
    "WALLET_PATH",
    "HostileVenue",
    "Seen",
    "asset_row",
    "assets_body",
    "json_reply",
    "position_row",
    "wallet_body",
]

ASSETS_PATH = "/api/v1/trading/portfolio/assets"
POSITIONS_PATH = "/api/v1/trading/position"
WALLET_PATH = "/cloud/trade/v3/account/wallet-balance"
TIME_PATH = "/cloud/trade/v3/market/time"

# Distinctive values: a test searches for exactly these strings.
CREDS = Credentials("HOSTILE-KEY-a1b2c3d4e5f6", "HOSTILE-SECRET-f6e5d4c3b2a1", label="desk-a")
CREDS_B = Credentials("HOSTILE-KEY-b7b7b7b7b7b7", "HOSTILE-SECRET-b8b8b8b8b8b8", label="desk-b")

FIXTURES = Path(__file__).parent / "fixtures"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Seen:
    """One request as it arrived."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float  # time.monotonic()


class HostileVenue:
    """``async with HostileVenue(handler) as venue:`` serves ``handler`` on ``venue.base_url``."""

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1", answer_time: bool = True) -> None:
        self.handler = handler
        self.host = host
        self.answer_time = answer_time
        self.requests: list[Seen] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> HostileVenue:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>`` (``host`` may be a name such as ``localhost``)."""
        return f"http://{self.host}:{self.port}"

    def hits(self, path: str) -> list[Seen]:
        """The requests that went to ``path``."""
        return [seen for seen in self.requests if seen.path == path]

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Seen(request.path, dict(request.query), dict(request.headers), time.monotonic()))
        if self.answer_time and request.path == TIME_PATH:
            ns = time.time_ns()
            result = f'{{"timeSecond":"{ns // 10**9}","timeNano":"{ns}"}}'.encode()
            return json_reply(zoomex_body(0, "OK", ns // 10**6, result))
        return await self.handler(request)


def json_reply(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """An ``application/json`` answer."""
    return web.Response(body=body, status=status, headers=headers, content_type=JSON)


def asset_row(coin: str = "USDT", **changes: Any) -> dict[str, Any]:
    """One documented assets row (connex-api.md), with ``changes``."""
    row = json.loads((FIXTURES / "connex_assets_doc.json").read_text())["data"]["list"][0]
    row["coin"] = coin
    row.update(changes)
    return dict(row)


def assets_body(
    rows: list[dict[str, Any]], *, page: int = 1, page_size: int = 1000, page_num: int = 1, total: int | None = None
) -> bytes:
    """A compact ConneX assets envelope (compact, like the venue's: no spaces)."""
    data = {
        "page": page,
        "pageSize": page_size,
        "pageNum": page_num,
        "totalSize": len(rows) if total is None else total,
        "list": rows,
    }
    return json.dumps({"code": 200000, "message": "Success", "data": data}, separators=(",", ":")).encode()


def position_row(**changes: Any) -> dict[str, Any]:
    """One ConneX position row, with ``changes``."""
    row: dict[str, Any] = {
        "positionId": "1",
        "portfolioId": "2",
        "sym": "BINANCE_PERP_BTC_USDT",
        "positionSide": "LONG",
        "positionQty": "0.25",
        "avgPrice": "2092.71",
        "tpslOrder": [],
    }
    row.update(changes)
    return row


def wallet_body(**coin_changes: Any) -> bytes:
    """The Zoomex wallet seed (compact), its second coin changed by ``coin_changes``."""
    doc = json.loads((FIXTURES / "zoomex_wallet_seed.json").read_text())
    doc["result"]["list"][0]["coin"][1].update(coin_changes)
    return json.dumps(doc, separators=(",", ":")).encode()
