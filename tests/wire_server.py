"""A real HTTP server for the tests that check a promise where a venue sees it: on arrival.

:class:`RecordingServer` listens on 127.0.0.1 (a port the OS picks and the server keeps: nothing
frees a port and binds it again), records every request when it arrives (monotonic time, path, key
header, all headers) and answers with the documented payloads, or with whatever the test's
``answer`` callback returns for that arrival. It knows no signing: what it checks is *when* and
*how often* requests come, and what the client makes of the answers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from aiohttp import web

FIXTURES = Path(__file__).parent / "fixtures"
ASSETS_BODY = (FIXTURES / "connex_assets_doc.json").read_bytes()
POSITIONS_BODY = (FIXTURES / "connex_positions_doc.json").read_bytes()
WALLET_BODY = (FIXTURES / "zoomex_wallet_seed.json").read_bytes()

KEY_HEADERS = ("X-MBX-APIKEY", "X-BAPI-API-KEY")

T = TypeVar("T")


@dataclass(frozen=True)
class Arrival:
    """One request as the server saw it arrive."""

    t: float  # time.monotonic() when the handler started
    path: str
    key: str | None  # the API key header, either venue's
    headers: dict[str, str]
    index: int  # how many requests of the same key and path arrived before this one


Answer = Callable[[web.Request, Arrival], Awaitable[web.StreamResponse | None]]


def time_body() -> bytes:
    now = time.time()
    result = {"timeSecond": str(int(now)), "timeNano": str(int(now * 1e9))}
    return json.dumps({"retCode": 0, "retMsg": "OK", "result": result}).encode()


def default_response(path: str) -> web.Response:
    """The documented success payload of the endpoint at ``path``."""
    if path.endswith("/market/time"):
        body = time_body()
    elif path.endswith("/wallet-balance"):
        body = WALLET_BODY
    elif path.endswith("/position"):
        body = POSITIONS_BODY
    else:
        body = ASSETS_BODY
    return web.Response(body=body, content_type="application/json")


def json_answer(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps(payload).encode()
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


@dataclass
class RecordingServer:
    """Records arrivals; ``answer`` may return a response (or ``None`` for the default one)."""

    answer: Answer | None = None
    arrivals: list[Arrival] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    _seen: Counter[tuple[str | None, str]] = field(default_factory=Counter)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    _port: int = 0

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        # A short shutdown: handlers a test left hanging are cancelled, not waited for.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.25)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        return self.base_url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> RecordingServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        key = next((request.headers[h] for h in KEY_HEADERS if h in request.headers), None)
        index = self._seen[(key, request.path)]
        self._seen[(key, request.path)] += 1
        arrival = Arrival(time.monotonic(), request.path, key, dict(request.headers), index)
        self.arrivals.append(arrival)
        self._arrived.set()
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            response = await self.answer(request, arrival) if self.answer is not None else None
            return response if response is not None else default_response(request.path)
        finally:
            self.in_flight -= 1

    def of(self, key: str | None = None, path_suffix: str = "") -> list[Arrival]:
        """Arrivals of ``key`` (every key if ``None``) whose path ends with ``path_suffix``, in order."""
        return [a for a in self.arrivals if (key is None or a.key == key) and a.path.endswith(path_suffix)]

    def times(self, key: str | None = None, path_suffix: str = "") -> list[float]:
        return [a.t for a in self.of(key, path_suffix)]

    async def wait_for(self, count: int, key: str | None = None, path_suffix: str = "", within: float = 10.0) -> None:
        """Wait until ``count`` matching requests have arrived (fails the test after ``within`` s)."""
        async with asyncio.timeout(within):
            while len(self.of(key, path_suffix)) < count:
                self._arrived.clear()
                await self._arrived.wait()


async def bounded(awaitable: Awaitable[T], seconds: float = 20.0) -> T:
    """``awaitable``, or a TimeoutError after ``seconds`` (a hang fails the test, never the suite)."""
    async with asyncio.timeout(seconds):
        return await awaitable
