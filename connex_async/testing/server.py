"""The simulated ConneX + Zoomex venue: one ``aiohttp.web`` server on a real socket.

Per request: pick a fault (script or rule), sleep the configured latency (+ jitter + the route's
request delay + ``latency`` fault) to model the network, record the **arrival** in the strict
sliding windows (host-wide for Zoomex, then the key's endpoint scope; every arrival counts, rejected
ones too), then answer: an injected fault, the host-wide 403, a Zoomex GET-with-body 403, the
per-key rate-limit answer, an auth or clock error, a parameter error, or the data; the answer
leaves after the route's response delay (:mod:`connex_async.testing.network`).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import random
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import msgspec
from aiohttp import web

from connex_async.credentials import Credentials
from connex_async.testing.auth import AuthFailure, check_connex, check_zoomex
from connex_async.testing.data import ConnexPortfolio, Market, ZoomexAccount, derive_credentials
from connex_async.testing.faults import Fault, FaultPlan, respond_with_fault
from connex_async.testing.network import Delay, Route
from connex_async.testing.stats import EndpointStats, StatsBook, VenueStats
from connex_async.testing.threaded import VenueThread
from connex_async.testing.window import Limit, SlidingWindow, WindowRegistry
from connex_async.testing.wire import connex_body, json_response, text_response, zoomex_body

__all__ = ["CONNEX_PATHS", "DEFAULT_LIMITS", "ZOOMEX_PATHS", "SimulatedVenue"]

CONNEX_ASSETS = "/api/v1/trading/portfolio/assets"
CONNEX_POSITIONS = "/api/v1/trading/position"
ZOOMEX_WALLET = "/cloud/trade/v3/account/wallet-balance"
ZOOMEX_TIME = "/cloud/trade/v3/market/time"
STATS_PATH = "/_sim/stats"

CONNEX_PATHS = {"assets": CONNEX_ASSETS, "positions": CONNEX_POSITIONS}
"""ConneX endpoint name -> path."""
ZOOMEX_PATHS = {"wallet": ZOOMEX_WALLET, "time": ZOOMEX_TIME}
"""Zoomex endpoint name -> path."""

DEFAULT_LIMITS: dict[str, tuple[int, float]] = {
    "connex.assets": (20, 1.0),
    "connex.positions": (300, 60.0),
    "zoomex.wallet": (10, 1.0),
    "zoomex.ip": (600, 5.0),
}
"""Default limits, ``"venue.endpoint"`` -> ``(count, period_seconds)``; ``zoomex.ip`` is host-wide."""

_EXCHANGE_TYPES = frozenset({"BINANCE", "OKX"})
_POSITION_EXCHANGES = frozenset({"BINANCE", "OKX", "EDX"})
_ACCOUNT_TYPES = frozenset({"UNIFIED", "CONTRACT"})
_MAX_PAGE_SIZE = 1000


class _Route:
    __slots__ = ("endpoint", "key_header", "limit_name", "path", "venue")

    def __init__(self, venue: str, endpoint: str, path: str, key_header: str | None) -> None:
        self.venue = venue
        self.endpoint = endpoint
        self.path = path
        self.key_header = key_header
        self.limit_name = f"{venue}.{endpoint}"


_ROUTES = {
    "assets": _Route("connex", "assets", CONNEX_ASSETS, "X-MBX-APIKEY"),
    "positions": _Route("connex", "positions", CONNEX_POSITIONS, "X-MBX-APIKEY"),
    "wallet": _Route("zoomex", "wallet", ZOOMEX_WALLET, "X-BAPI-API-KEY"),
    "time": _Route("zoomex", "time", ZOOMEX_TIME, None),
}


class _Key:
    """A registered key: its secret, label and lazily generated data."""

    __slots__ = ("data", "label", "n_assets", "n_positions", "secret")

    def __init__(self, secret: str, label: str, n_assets: int | None, n_positions: int | None) -> None:
        self.secret = secret
        self.label = label
        self.n_assets = n_assets
        self.n_positions = n_positions
        self.data: ConnexPortfolio | ZoomexAccount | None = None


def _parse_limits(overrides: Mapping[str, Any] | None) -> dict[str, Limit | None]:
    limits: dict[str, Limit | None] = {k: Limit(*v) for k, v in DEFAULT_LIMITS.items()}
    for name, value in (overrides or {}).items():
        if name not in DEFAULT_LIMITS:
            raise ValueError(f"unknown limit {name!r}; expected one of {sorted(DEFAULT_LIMITS)}")
        limits[name] = value if value is None or isinstance(value, Limit) else Limit(*value)
    return limits


def _int_param(text: str | None, default: int) -> int | None:
    if text is None:
        return default
    if not text.isascii() or not text.isdigit():
        return None
    return int(text)


P = ParamSpec("P")
R = TypeVar("R")


def _on_venue_thread(
    method: Callable[Concatenate[SimulatedVenue, P], R],
) -> Callable[Concatenate[SimulatedVenue, P], R]:
    """Run ``method`` on the thread serving the venue when another thread calls it (the pytest fixture's case)."""

    @functools.wraps(method)
    def call(self: SimulatedVenue, /, *args: P.args, **kwargs: P.kwargs) -> R:
        host = self._host
        if host is None:
            return method(self, *args, **kwargs)
        return host.call(functools.partial(method, self, *args, **kwargs))

    return call


class SimulatedVenue:
    """A local ConneX + Zoomex stand-in on a real socket (see the package docstring).

    ``connex_portfolios`` / ``zoomex_accounts`` keys are derived from ``seed`` (labels ``cx-0001``,
    ``zx-0001``, ...). ``latency`` + uniform ``jitter`` (seconds) delay each request before its arrival
    is counted; ``request_delay`` / ``response_delay`` (:class:`~connex_async.testing.network.Delay`)
    add a WAN's distribution before the arrival and before the answer leaves. ``routes`` names more
    network paths to the same venue, each on a port of its own (:meth:`route_url`).
    ``limits`` overrides :data:`DEFAULT_LIMITS` (a value of ``None`` disables that limit).
    ``assets_per_portfolio`` / ``positions_per_portfolio`` are inclusive ranges of rows per portfolio.
    ``success_code_variants`` makes about 10 % of portfolios answer ``"code":200`` and 10 %
    ``"code":"200000"`` (deterministic per key) instead of ``200000``. ``page_overflow`` decides what a
    page beyond ``pageNum`` gets: ``"empty"`` (an empty ``list``) or ``"error"`` (code 400003).
    ``page_params`` are the names the assets endpoint takes the page number by, first found wins:
    the docs say ``page``, LiquidityTech's SDKs send ``pageNum``; a name left out is ignored like
    any unknown parameter (every request then gets page 1), as a venue that does not know it would.
    Values drift every ``drift_interval`` seconds.

    Serve it with ``async with`` on the running loop, or from a thread of its own with
    :class:`~connex_async.testing.threaded.VenueThread` (what the pytest fixtures do).
    """

    __slots__ = (
        "_connex",
        "_date_cache",
        "_faults",
        "_host",
        "_limits",
        "_market",
        "_n_connex",
        "_n_zoomex",
        "_rng",
        "_routes_by_port",
        "_runner",
        "_started",
        "_stats",
        "_windows",
        "_zoomex",
        "assets_per_portfolio",
        "clock_skew",
        "drift_interval",
        "host",
        "jitter",
        "latency",
        "page_overflow",
        "page_params",
        "port",
        "positions_per_portfolio",
        "request_delay",
        "response_delay",
        "route_ports",
        "routes",
        "seed",
        "shutdown_timeout",
        "success_code_variants",
    )

    def __init__(
        self,
        connex_portfolios: int = 10,
        zoomex_accounts: int = 10,
        seed: int = 0,
        latency: float = 0.0,
        jitter: float = 0.0,
        limits: Mapping[str, tuple[int, float] | Limit | None] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        assets_per_portfolio: tuple[int, int] = (3, 8),
        positions_per_portfolio: tuple[int, int] = (0, 5),
        success_code_variants: bool = True,
        page_overflow: str = "empty",
        page_params: Iterable[str] = ("page", "pageNum"),
        drift_interval: float = 1.0,
        clock_skew: float = 0.0,
        shutdown_timeout: float = 2.0,
        request_delay: Delay | None = None,
        response_delay: Delay | None = None,
        routes: Mapping[str, Route] | None = None,
    ) -> None:
        if page_overflow not in ("empty", "error"):
            raise ValueError("page_overflow must be 'empty' or 'error'")
        if latency < 0 or jitter < 0:
            raise ValueError("latency and jitter must be >= 0")
        self.seed = seed
        self.latency = latency
        self.jitter = jitter
        self.request_delay = request_delay
        self.response_delay = response_delay
        self.routes: dict[str, Route] = dict(routes or {})
        self.route_ports: dict[str, int] = {}
        self._routes_by_port: dict[int, Route] = {}
        self.host = host
        self.port = port
        self.assets_per_portfolio = assets_per_portfolio
        self.positions_per_portfolio = positions_per_portfolio
        self.success_code_variants = success_code_variants
        self.page_overflow = page_overflow
        self.page_params = tuple(page_params)
        self.drift_interval = drift_interval
        self.clock_skew = clock_skew
        self.shutdown_timeout = shutdown_timeout
        self._limits = _parse_limits(limits)
        self._market = Market(seed)
        self._rng = random.Random(f"latency:{seed}")
        self._faults = FaultPlan(seed)
        self._stats = StatsBook()
        self._windows = WindowRegistry()
        self._runner: web.AppRunner | None = None
        self._started = time.monotonic()
        self._date_cache: tuple[int, str] = (-1, "")
        self._host: VenueThread[SimulatedVenue] | None = None  # set while a VenueThread serves it
        self._connex: dict[str, _Key] = {}
        self._zoomex: dict[str, _Key] = {}
        self._n_connex = 0
        self._n_zoomex = 0
        for i in range(1, connex_portfolios + 1):
            key, secret = derive_credentials("connex", seed, i)
            self.add_portfolio("connex", key, secret)
        for i in range(1, zoomex_accounts + 1):
            key, secret = derive_credentials("zoomex", seed, i)
            self.add_portfolio("zoomex", key, secret)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Bind the socket and start serving (``port=0`` picks a free port, see :attr:`port`)."""
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_get(CONNEX_ASSETS, self._on_assets)
        app.router.add_get(CONNEX_POSITIONS, self._on_positions)
        app.router.add_get(ZOOMEX_WALLET, self._on_wallet)
        app.router.add_get(ZOOMEX_TIME, self._on_time)
        app.router.add_get(STATS_PATH, self._on_stats)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=self.shutdown_timeout)
        await runner.setup()
        try:
            # A deep backlog: hundreds of clients connecting at once must not wait for a SYN retry.
            site = web.TCPSite(runner, self.host, self.port, reuse_address=True, backlog=1024)
            await site.start()
            for name, route in self.routes.items():
                extra = web.TCPSite(runner, self.host, 0, reuse_address=True, backlog=1024)
                await extra.start()
                self.route_ports[name] = int(runner.addresses[-1][1])
                self._routes_by_port[self.route_ports[name]] = route
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self._started = time.monotonic()

    async def stop(self) -> None:
        """Close the listening socket and every connection."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> SimulatedVenue:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._runner is not None

    @property
    def base_url(self) -> str:
        """``http://host:port`` serving both venues (paths differ)."""
        return self._url(self.port)

    def route_url(self, name: str) -> str:
        """The base URL of the route ``name`` (``routes=`` of the constructor): the same venue, its own delays."""
        if name not in self.routes:
            raise KeyError(f"no route {name!r}; routes: {sorted(self.routes)}")
        return self._url(self.route_ports[name])

    def _url(self, port: int) -> str:
        if self._runner is None:
            raise RuntimeError("SimulatedVenue is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}"

    def _route(self, request: web.Request) -> tuple[Delay | None, Delay | None]:
        """The request's (request, response) delays: its route's, by the port it came in on."""
        if self._routes_by_port:
            transport = request.transport
            sockname = transport.get_extra_info("sockname") if transport is not None else None
            route = self._routes_by_port.get(sockname[1]) if sockname else None
            if route is not None:
                return route.request, route.response
        return self.request_delay, self.response_delay

    # ----------------------------------------------------------------- accounts

    def _table(self, venue: str) -> dict[str, _Key]:
        if venue == "connex":
            return self._connex
        if venue == "zoomex":
            return self._zoomex
        raise ValueError("venue must be 'connex' or 'zoomex'")

    @_on_venue_thread
    def add_portfolio(
        self,
        venue: str = "connex",
        api_key: str | None = None,
        secret: str | None = None,
        label: str | None = None,
        *,
        assets: int | None = None,
        positions: int | None = None,
    ) -> Credentials:
        """Register a ConneX portfolio or Zoomex account; keys are derived when not given.

        ``assets`` / ``positions`` fix the row counts of a ConneX portfolio (e.g. ``assets=2500``).
        """
        table = self._table(venue)
        if venue == "connex":
            self._n_connex += 1
            index, prefix = self._n_connex, "cx"
        else:
            self._n_zoomex += 1
            index, prefix = self._n_zoomex, "zx"
        if api_key is None or secret is None:
            gen_key, gen_secret = derive_credentials(venue, self.seed, index)
            api_key = api_key or gen_key
            secret = secret or gen_secret
        label = label or f"{prefix}-{index:04d}"
        creds = Credentials(api_key, secret, label=label)
        table[api_key] = _Key(secret, label, assets, positions)
        return creds

    @_on_venue_thread
    def remove_portfolio(self, api_key: str) -> bool:
        """Forget ``api_key`` (either venue); later requests get "key not found". True if it existed."""
        found = self._connex.pop(api_key, None) is not None
        return self._zoomex.pop(api_key, None) is not None or found

    def _credentials(self, table: dict[str, _Key]) -> list[Credentials]:
        return [Credentials(k, e.secret, label=e.label) for k, e in table.items()]

    @property
    @_on_venue_thread
    def connex_credentials(self) -> list[Credentials]:
        """Credentials of every ConneX portfolio, in creation order."""
        return self._credentials(self._connex)

    @property
    @_on_venue_thread
    def zoomex_credentials(self) -> list[Credentials]:
        """Credentials of every Zoomex account, in creation order."""
        return self._credentials(self._zoomex)

    def _portfolio(self, api_key: str, entry: _Key) -> ConnexPortfolio:
        data = entry.data
        if not isinstance(data, ConnexPortfolio):
            rng = random.Random(f"sizes:{self.seed}:{api_key}")
            n_assets = entry.n_assets if entry.n_assets is not None else rng.randint(*self.assets_per_portfolio)
            n_pos = entry.n_positions if entry.n_positions is not None else rng.randint(*self.positions_per_portfolio)
            data = ConnexPortfolio(
                api_key,
                entry.secret,
                entry.label,
                self.seed,
                market=self._market,
                n_assets=n_assets,
                n_positions=n_pos,
                now_ms=self.now_ms(),
                code_variants=self.success_code_variants,
            )
            entry.data = data
        return data

    def _account(self, api_key: str, entry: _Key) -> ZoomexAccount:
        data = entry.data
        if not isinstance(data, ZoomexAccount):
            data = ZoomexAccount(api_key, entry.secret, entry.label, self.seed, self._market)
            entry.data = data
        return data

    # ----------------------------------------------------------------- clock, limits, faults, stats

    def now(self) -> float:
        """The simulator's clock: wall clock plus :attr:`clock_skew`, in seconds."""
        return time.time() + self.clock_skew

    def now_ms(self) -> int:
        """The simulator's clock in milliseconds."""
        return int((time.time() + self.clock_skew) * 1000)

    def _date(self) -> str:
        second = int(time.time() + self.clock_skew)
        cached = self._date_cache
        if cached[0] != second:
            cached = (second, email.utils.formatdate(second, usegmt=True))
            self._date_cache = cached
        return cached[1]

    def _step(self) -> int:
        return int((time.monotonic() - self._started) / self.drift_interval)

    @property
    @_on_venue_thread
    def limits(self) -> dict[str, tuple[int, float] | None]:
        """The active limits, ``"venue.endpoint"`` -> ``(count, period)`` or ``None`` (disabled)."""
        return {k: (v.count, v.period) if v else None for k, v in self._limits.items()}

    @_on_venue_thread
    def set_limit(self, name: str, count: int | None, period: float = 1.0) -> None:
        """Change (or with ``count=None`` disable) one limit; its windows start empty."""
        if name not in DEFAULT_LIMITS:
            raise ValueError(f"unknown limit {name!r}")
        self._limits[name] = None if count is None else Limit(count, period)
        venue, _, endpoint = name.partition(".")
        self._windows.drop((venue, endpoint))

    @_on_venue_thread
    def inject(self, fault: Fault) -> Fault:
        """Activate a fault rule; returns it (its ``fired`` counter updates live)."""
        return self._faults.add(fault)

    @_on_venue_thread
    def remove_fault(self, fault: Fault) -> None:
        """Deactivate one fault rule."""
        self._faults.remove(fault)

    @_on_venue_thread
    def script(self, api_key: str, steps: Iterable[str | Fault], endpoint: str | None = None) -> None:
        """Queue fault kinds / :class:`Fault` objects / ``"ok"``, one per request of ``api_key``."""
        self._faults.script(api_key, steps, endpoint)

    @_on_venue_thread
    def clear_faults(self) -> None:
        """Drop every fault rule and script."""
        self._faults.clear()

    @property
    @_on_venue_thread
    def faults(self) -> list[Fault]:
        """The active fault rules."""
        return self._faults.faults

    @_on_venue_thread
    def stats(self) -> VenueStats:
        """A snapshot of the counters."""
        return self._stats.snapshot()

    @property
    @_on_venue_thread
    def violations(self) -> int:
        """Total window violations so far (per-key and host-wide)."""
        return self._stats.violations()

    @_on_venue_thread
    def reset_stats(self) -> None:
        """Zero the counters (windows keep their arrivals)."""
        self._stats.reset()

    # ----------------------------------------------------------------- request path

    async def _on_assets(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, _ROUTES["assets"])

    async def _on_positions(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, _ROUTES["positions"])

    async def _on_wallet(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, _ROUTES["wallet"])

    async def _on_time(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, _ROUTES["time"])

    async def _on_stats(self, request: web.Request) -> web.StreamResponse:
        body = msgspec.json.encode(self._stats.snapshot().to_dict())
        return json_response(body, {})

    def _hit(self, scope: tuple[str, str, str], limit: Limit, now: float) -> tuple[SlidingWindow, int]:
        window = self._windows.window(scope, limit)
        return window, window.hit(now)

    async def _handle(self, request: web.Request, route: _Route) -> web.StreamResponse:
        api_key = request.headers.get(route.key_header) if route.key_header else None
        fault = self._faults.pick(route.venue, route.endpoint, route.path, api_key)
        to_venue, back = self._route(request)
        delay = self.latency
        if self.jitter:
            delay += self._rng.random() * self.jitter
        if to_venue is not None:
            delay += to_venue.sample(self._rng)
        if fault is not None and fault.kind == "latency":
            delay += fault.param("seconds", 1.0)
            fault = None
            latency_fault = True
        else:
            latency_fault = False
        if delay > 0:
            await asyncio.sleep(delay)
        response = await self._arrive(request, route, api_key, fault, latency_fault)
        if back is not None and not response.prepared:  # a streamed fault has begun answering already
            delay = back.sample(self._rng)
            if delay > 0:
                await asyncio.sleep(delay)
        return response

    async def _arrive(
        self, request: web.Request, route: _Route, api_key: str | None, fault: Fault | None, latency_fault: bool
    ) -> web.StreamResponse:
        """Count the arrival in the windows, then decide the answer."""
        venue = route.venue
        now = time.monotonic()
        table = self._connex if venue == "connex" else self._zoomex
        entry = table.get(api_key) if api_key else None
        limit = self._limits.get(route.limit_name) if api_key else None
        row = self._stats.row(
            venue,
            route.endpoint,
            api_key or "",
            entry.label if entry else None,
            (limit.count, limit.period) if limit else None,
        )
        row.requests += 1
        if latency_fault:
            row.faults_injected += 1
        ip_over = False
        if venue == "zoomex":
            ip_limit = self._limits["zoomex.ip"]
            if ip_limit is not None:
                _, n = self._hit(("zoomex", "ip", request.remote or ""), ip_limit, now)
                self._stats.ip_peak = max(self._stats.ip_peak, n)
                if n > ip_limit.count:
                    self._stats.ip_violations += 1
                    ip_over = True
        window: SlidingWindow | None = None
        over = False
        if limit is not None and api_key:
            window, n = self._hit((venue, route.endpoint, api_key), limit, now)
            row.peak = max(row.peak, n)
            if n > limit.count:
                row.violations += 1
                over = True

        headers = {"Date": self._date()}
        if fault is not None:
            row.faults_injected += 1
            return await respond_with_fault(
                fault,
                request,
                venue,
                headers=headers,
                now_ms=self.now_ms(),
                sample_body=self._sample_body(request, route, api_key, entry),
            )
        if ip_over:
            row.rejected_ip += 1
            return text_response("access too frequent", headers, 403)
        if venue == "connex":
            return self._connex_answer(request, route, row, api_key=api_key, entry=entry, over=over, headers=headers)
        return self._zoomex_answer(
            request,
            route,
            row,
            api_key=api_key,
            entry=entry,
            window=window,
            now=now,
            over=over,
            headers=headers,
        )

    def _sample_body(self, request: web.Request, route: _Route, api_key: str | None, entry: _Key | None) -> bytes:
        """The body a successful answer would have had (for ``truncated``, ``slow_body``, ...)."""
        query = request.query
        if route.venue == "connex":
            if entry is None or api_key is None:
                return connex_body(200000, "Success", b"[]")
            p = self._portfolio(api_key, entry)
            if route.endpoint == "assets":
                data, error = self._assets_data(p, query)
                if error is not None:
                    data, _ = self._assets_data(p, {})
            else:
                data, error = self._positions_data(p, query)
                if error is not None:
                    data, _ = self._positions_data(p, {})
            return p.code_prefix + data + b"}"
        if route.endpoint == "time":
            return self._time_body()
        now_ms = self.now_ms()
        if entry is None or api_key is None:
            return zoomex_body(0, "OK", now_ms, b'{"list":[]}')
        account_type = query.get("accountType")
        if account_type not in _ACCOUNT_TYPES:
            account_type = "UNIFIED"
        result = self._account(api_key, entry).wallet_result(account_type, query.get("coin"), self._step())
        return zoomex_body(0, "OK", now_ms, result)

    def _time_body(self) -> bytes:
        ns = time.time_ns() + int(self.clock_skew * 1e9)
        result = f'{{"timeSecond":"{ns // 1_000_000_000}","timeNano":"{ns}"}}'.encode()
        return zoomex_body(0, "OK", ns // 1_000_000, result)

    def _auth_rejected(self, row: EndpointStats, failure: AuthFailure) -> None:
        if failure.kind == "clock":
            row.rejected_clock += 1
        else:
            row.rejected_auth += 1

    # ----------------------------------------------------------------- ConneX

    def _connex_answer(
        self,
        request: web.Request,
        route: _Route,
        row: EndpointStats,
        *,
        api_key: str | None,
        entry: _Key | None,
        over: bool,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        if over:
            row.rejected_rate_limit += 1
            return json_response(connex_body(100429, "Too many requests"), headers, 429)
        query = request.query
        failure = check_connex(
            request.headers,
            query.items(),
            lambda k: e.secret if (e := self._connex.get(k)) is not None else None,
            self.now(),
        )
        if failure is not None:
            self._auth_rejected(row, failure)
            return json_response(connex_body(failure.code, failure.message), headers, failure.status)
        assert api_key is not None and entry is not None
        portfolio = self._portfolio(api_key, entry)
        if route.endpoint == "assets":
            data, error = self._assets_data(portfolio, query)
        else:
            data, error = self._positions_data(portfolio, query)
        if error is not None:
            row.rejected_other += 1
            return json_response(connex_body(error[0], error[1]), headers)
        row.accepted += 1
        return json_response(portfolio.code_prefix + data + b"}", headers)

    def _assets_data(
        self, portfolio: ConnexPortfolio, query: Mapping[str, str]
    ) -> tuple[bytes, tuple[int, str] | None]:
        exchange = query.get("exchangeType")
        if exchange is not None and exchange not in _EXCHANGE_TYPES:
            return b"", (400000, "exchangeType invalid")
        page = _int_param(next((query[n] for n in self.page_params if n in query), None), 1)
        size = _int_param(query.get("pageSize"), _MAX_PAGE_SIZE)
        if page is None or page < 1 or size is None or size < 1:
            return b"", (400000, "parameter error")
        if size > _MAX_PAGE_SIZE:
            return b"", (400002, "page size too large")
        rows = portfolio.asset_rows(self._step(), self.now_ms(), exchange)
        total = len(rows)
        pages = -(-total // size)
        if page > pages and self.page_overflow == "error":
            return b"", (400003, "page number too large")
        start = (page - 1) * size
        head = f'{{"page":{page},"pageSize":{size},"pageNum":{pages},"totalSize":{total},"list":['
        return head.encode() + b",".join(rows[start : start + size]) + b"]}", None

    def _positions_data(
        self, portfolio: ConnexPortfolio, query: Mapping[str, str]
    ) -> tuple[bytes, tuple[int, str] | None]:
        sym = query.get("sym")
        exchange = query.get("exchange")
        zero_filter = query.get("zeroFilter")
        if exchange is not None and exchange not in _POSITION_EXCHANGES:
            return b"", (400000, "exchange invalid")
        if zero_filter not in (None, "true", "false"):
            return b"", (400000, "zeroFilter invalid")
        skip_zero = zero_filter == "true"
        rows = [
            body
            for s, ex, zero, body in portfolio.position_rows(self._step(), self.now_ms())
            if (sym is None or s == sym) and (exchange is None or ex == exchange) and not (skip_zero and zero)
        ]
        return b"[" + b",".join(rows) + b"]", None

    # ----------------------------------------------------------------- Zoomex

    def _zoomex_answer(
        self,
        request: web.Request,
        route: _Route,
        row: EndpointStats,
        *,
        api_key: str | None,
        entry: _Key | None,
        window: SlidingWindow | None,
        now: float,
        over: bool,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        if request.body_exists:
            row.rejected_other += 1
            return text_response("403 Forbidden: a GET request must not carry a body", headers, 403)
        now_ms = self.now_ms()
        if route.endpoint == "time":
            row.accepted += 1
            return json_response(self._time_body(), headers)
        if window is not None:
            count = window.count
            reset = window.reset_after(now) if over else window.next_expiry(now)
            headers["X-Bapi-Limit"] = str(count)
            headers["X-Bapi-Limit-Status"] = str(window.remaining(now))
            headers["X-Bapi-Limit-Reset-Timestamp"] = str(now_ms + int(reset * 1000 + 0.999))
        if over:
            row.rejected_rate_limit += 1
            return json_response(zoomex_body(10006, "Too many visits!", now_ms), headers)
        raw_query = request.raw_path.partition("?")[2]
        failure = check_zoomex(
            request.headers,
            raw_query,
            lambda k: e.secret if (e := self._zoomex.get(k)) is not None else None,
            now_ms,
        )
        if failure is not None:
            self._auth_rejected(row, failure)
            return json_response(zoomex_body(failure.code, failure.message, now_ms), headers, failure.status)
        assert api_key is not None and entry is not None
        query = request.query
        account_type = query.get("accountType")
        if account_type not in _ACCOUNT_TYPES:
            row.rejected_other += 1
            return json_response(zoomex_body(10001, "accountType is invalid", now_ms), headers)
        assert account_type is not None
        result = self._account(api_key, entry).wallet_result(account_type, query.get("coin"), self._step())
        row.accepted += 1
        return json_response(zoomex_body(0, "OK", now_ms, result), headers)

    def __repr__(self) -> str:
        where = self.base_url if self._runner is not None else "stopped"
        sizes = f"connex={len(self._connex)}, zoomex={len(self._zoomex)}"
        return f"SimulatedVenue({where}, {sizes}, seed={self.seed})"
