"""Pipeline: client CPU per request and requests/s at concurrency 1, 16, 64, ours vs baselines.

A local aiohttp server in a separate process (pinned to the last core; on uvloop if installed,
so it is not the bottleneck) answers fixed payloads: a 20-row ConneX assets page and one
Bybit-v5-shaped wallet (UNIFIED, eight coins) on both the Zoomex path and ``/v5/account/wallet-balance``.
The client runs in this process, pinned to the first core. Rows, each with its own session:

- ``aiohttp GET + read`` of the assets payload: the floor (no signing, no limiter, no decode);
- ``aiohttp GET + read + SDK decoder``: the floor plus ``ASSETS.decoder.decode`` (explains the gap);
- ``ours: ConnexClient.get_assets``: the whole SDK path (limit, sign, send, classify, decode) with
  ``limits={"assets": RateLimit(10**9, 1.0)}``: the limiter runs but never waits;
- the same two on uvloop (``floor + uvloop``, ``ours + uvloop``), only if uvloop is installed;
- wallet: ``aiohttp GET + read`` of the wallet, ``ours: ZoomexClient.get_wallet_balance``
  (unlimited, no host limit) and ``ccxt bybit fetch_balance`` against the same bytes, with
  ``enableRateLimit=False``, fake keys, markets preloaded empty and the account mode preset, so
  each call is exactly one GET ``/v5/account/wallet-balance``.

Client CPU per request = process CPU time (``time.process_time``) of this process over the measured
interval / requests completed. Targets: ours at most 1.25x the floor's CPU per request; at least
1.8x ccxt's requests/s (compared on the wallet payload, the one both can decode).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

from benchmarks.common import (
    ServerProcess,
    connex_assets_body,
    cpu_seconds,
    fixed_payload_handler,
    not_installed,
    optional,
    pinned,
    print_table,
    profile_top_frames,
    run_child,
    serve_fixed_routes,
    served_handle,
    split_cores,
    zoomex_server_time,
    zoomex_wallet_body,
)

NAME = "pipeline"
ASSETS_ROWS = 20
CONCURRENCY = (1, 16, 64)
TARGET_CPU_VS_FLOOR = 1.25
TARGET_RPS_VS_CCXT = 1.8

ASSETS_PATH = "/api/v1/trading/portfolio/assets"
ZOOMEX_WALLET_PATH = "/cloud/trade/v3/account/wallet-balance"
ZOOMEX_TIME_PATH = "/cloud/trade/v3/market/time"
BYBIT_WALLET_PATH = "/v5/account/wallet-balance"


# ============================================================================ server (child process)


def serve(conn: Connection, core: int | None) -> None:
    """Child process entry: a fixed-payload aiohttp server (uvloop if installed)."""
    run_child(conn, core, _setup_server, use_uvloop=True)


async def _setup_server() -> tuple[dict[str, Any], Callable[..., Any], Callable[[], Awaitable[None]]]:

    assets = connex_assets_body(ASSETS_ROWS)
    wallet = zoomex_wallet_body()
    served = {"requests": 0}

    routes = {
        ASSETS_PATH: fixed_payload_handler(assets, served),
        ZOOMEX_WALLET_PATH: fixed_payload_handler(wallet, served),
        BYBIT_WALLET_PATH: fixed_payload_handler(wallet, served),
        ZOOMEX_TIME_PATH: zoomex_server_time,
    }
    base_url, cleanup = await serve_fixed_routes(routes)
    info = {"base_url": base_url, "assets_bytes": len(assets), "wallet_bytes": len(wallet)}
    return info, served_handle(served), cleanup


# ============================================================================ client rows

# A row factory is an async context: it builds its client inside the running loop and yields one
# coroutine function that performs exactly one request (including whatever decode the row does).
Call = Callable[[], Awaitable[object]]


class _Row:
    def __init__(self, key: str, label: str, payload: str, loop: str = "asyncio") -> None:
        self.key, self.label, self.payload, self.loop = key, label, payload, loop

    async def open(self, base_url: str) -> Call:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class _AiohttpRow(_Row):
    def __init__(self, key: str, label: str, payload: str, path: str, decode: Callable[[bytes], object] | None = None):
        super().__init__(key, label, payload)
        self.path, self.decode = path, decode
        self.session: Any = None

    async def open(self, base_url: str) -> Call:
        import aiohttp

        self.session = aiohttp.ClientSession()
        session, url, decode = self.session, base_url + self.path, self.decode

        async def call() -> object:
            async with session.get(url) as resp:
                body = await resp.read()
            return decode(body) if decode is not None else body

        return call

    async def close(self) -> None:
        await self.session.close()


class _ConnexRow(_Row):
    async def open(self, base_url: str) -> Call:
        from connex_async import ConnexClient, Credentials, RateLimit

        creds = Credentials("k" * 32, "s" * 64, label="bench")
        self.client = ConnexClient(creds, base_url=base_url, limits={"assets": RateLimit(10**9, 1.0)})
        await self.client.__aenter__()
        return self.client.get_assets

    async def close(self) -> None:
        await self.client.close()


class _ZoomexRow(_Row):
    async def open(self, base_url: str) -> Call:
        from connex_async import Credentials, RateLimit, ZoomexClient

        creds = Credentials("K" * 18, "s" * 36, label="bench")
        self.client = ZoomexClient(creds, base_url=base_url, limits={"wallet": RateLimit(10**9, 1.0)}, host_limit=None)
        await self.client.__aenter__()
        client = self.client

        async def call() -> object:
            return await client.get_wallet_balance("UNIFIED")

        return call

    async def close(self) -> None:
        await self.client.close()


class _CcxtRow(_Row):
    async def open(self, base_url: str) -> Call:
        import ccxt.async_support as ccxt_async

        exchange = ccxt_async.bybit(
            {"apiKey": "K" * 18, "secret": "s" * 36, "enableRateLimit": False, "timeout": 10_000}
        )
        exchange.urls["api"] = {name: base_url for name in exchange.urls["api"]}
        # No market or account-mode discovery: each fetch_balance is one GET /v5/account/wallet-balance.
        exchange.markets, exchange.markets_by_id, exchange.currencies = {}, {}, {}
        exchange.options.update(enableUnifiedMargin=False, enableUnifiedAccount=True, unifiedMarginStatus=6)
        self.exchange = exchange

        async def call() -> object:
            return await exchange.fetch_balance()

        return call

    async def close(self) -> None:
        await self.exchange.close()


def _rows(uvloop: bool, ccxt: bool) -> list[tuple[_Row, str | None]]:
    from benchmarks.bench_decode import FLOOR_ASSETS
    from connex_async.venues.connex.api import ASSETS

    bare, decode = FLOOR_ASSETS.decode, ASSETS.decoder.decode
    rows: list[tuple[_Row, str | None]] = [
        (_AiohttpRow("floor", "aiohttp GET + read (floor)", "assets", ASSETS_PATH), None),
        (_AiohttpRow("floor_msgspec", "aiohttp GET + read + bare msgspec Struct", "assets", ASSETS_PATH, bare), None),
        (_AiohttpRow("floor_decode", "aiohttp GET + read + SDK decoder", "assets", ASSETS_PATH, decode), None),
        (_ConnexRow("ours", "ours: ConnexClient.get_assets", "assets"), None),
    ]
    floor_uv = _AiohttpRow("floor_uvloop", "aiohttp GET + read, uvloop (floor)", "assets", ASSETS_PATH)
    ours_uv = _ConnexRow("ours_uvloop", "ours: ConnexClient.get_assets, uvloop", "assets")
    floor_uv.loop = ours_uv.loop = "uvloop"
    skip_uv = None if uvloop else not_installed("uvloop")
    rows += [(floor_uv, skip_uv), (ours_uv, skip_uv)]
    rows += [
        (_AiohttpRow("wallet_floor", "aiohttp GET + read (floor)", "wallet", ZOOMEX_WALLET_PATH), None),
        (_ZoomexRow("wallet_ours", "ours: ZoomexClient.get_wallet_balance", "wallet"), None),
        (_CcxtRow("ccxt", "ccxt bybit fetch_balance", "wallet"), None if ccxt else not_installed("ccxt")),
    ]
    return rows


async def _measure(call: Call, concurrency: int, duration: float, server_cpu: Callable[[], float]) -> dict[str, float]:
    await asyncio.gather(*(call() for _ in range(concurrency)))  # warm-up: open the connections
    await asyncio.gather(*(call() for _ in range(concurrency)))
    stop = False
    done = [0] * concurrency

    async def worker(i: int) -> None:
        while not stop:
            await call()
            done[i] += 1

    server0 = server_cpu()
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    tasks = [asyncio.create_task(worker(i)) for i in range(concurrency)]
    await asyncio.sleep(duration)
    stop = True
    await asyncio.gather(*tasks)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    server = server_cpu() - server0
    n = sum(done)
    return {
        "requests": n,
        "seconds": wall,
        "rps": n / wall,
        "cpu_us_per_request": cpu / n * 1e6,
        "cpu_util": cpu / wall,
        "server_cpu_util": server / wall,
    }


async def _run_row(
    row: _Row, base_url: str, duration: float, server_cpu: Callable[[], float]
) -> list[dict[str, float]]:
    call = await row.open(base_url)
    try:
        first = await call()
        if first is None:
            raise AssertionError(f"{row.key}: empty result")
        return [{"concurrency": c, **await _measure(call, c, duration, server_cpu)} for c in CONCURRENCY]
    finally:
        await row.close()


def _run_loop(row: _Row, base_url: str, duration: float, server_cpu: Callable[[], float]) -> list[dict[str, float]]:
    if row.loop == "uvloop":
        uvloop = optional("uvloop")
        assert uvloop is not None
        return uvloop.run(_run_row(row, base_url, duration, server_cpu))  # type: ignore[no-any-return]
    return asyncio.run(_run_row(row, base_url, duration, server_cpu))


def _profile_ours(base_url: str, seconds: float) -> list[str] | str:
    """pyinstrument over the SDK row at concurrency 16 (what costs CPU beyond the floor)."""
    pyinstrument = optional("pyinstrument")
    if pyinstrument is None:
        return not_installed("pyinstrument")

    async def body() -> None:
        row = _ConnexRow("ours", "", "assets")
        call = await row.open(base_url)
        try:
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                await asyncio.gather(*(call() for _ in range(16)))
        finally:
            await row.close()

    return profile_top_frames(lambda: asyncio.run(body()), seconds=0.0, top=15)


def run(quick: bool = False) -> dict[str, Any]:
    """Measure every row at every concurrency against one server process, in interleaved rounds.

    Each round measures every row once; a point's figures are the medians over rounds, so a burst
    of load from elsewhere on the machine does not land on one row only.
    """
    duration, rounds = (0.1, 1) if quick else (0.5, 5)
    client_core, server_core, pin_note = split_cores()
    uvloop = optional("uvloop") is not None
    ccxt = optional("ccxt.async_support") is not None
    rows = _rows(uvloop, ccxt)
    samples: dict[str, list[list[dict[str, float]]]] = {row.key: [] for row, _ in rows}
    failed: dict[str, str] = {}
    notes = [pin_note]
    with ServerProcess(serve, server_core) as server:
        base_url = server.info["base_url"]
        notes.append(
            f"server: aiohttp on {server.info['loop']}, assets payload {server.info['assets_bytes']} B "
            f"({ASSETS_ROWS} rows), wallet payload {server.info['wallet_bytes']} B; "
            f"{rounds} round(s) of {duration:g} s per point, medians"
        )
        with pinned(client_core):
            for _ in range(rounds):
                for row, skip in rows:
                    if skip is not None or row.key in failed:
                        continue
                    try:
                        samples[row.key].append(_run_loop(row, base_url, duration, lambda: server.call("cpu")))
                    except Exception as exc:  # a baseline that cannot run is reported, never faked
                        if row.key != "ccxt":
                            raise
                        failed[row.key] = f"skipped: ccxt failed: {type(exc).__name__}: {exc}"[:200]
            results = [_summarize(row, skip or failed.get(row.key), samples[row.key]) for row, skip in rows]
            targets = _targets(results)
            breakdown = _breakdown(results)
            profile: list[str] | str | None = None
            if any(t.get("met") is False for t in targets):
                profile = _profile_ours(base_url, 0.3 if quick else 2.0)
        notes.append(f"server answered {server.call('served')} requests")
    return {
        "name": NAME,
        "quick": quick,
        "duration_per_point_s": duration,
        "rounds": rounds,
        "concurrency": list(CONCURRENCY),
        "rows": results,
        "targets": targets,
        "breakdown_us": breakdown,
        "profile": profile,
        "notes": notes,
    }


def _summarize(row: _Row, skip: str | None, rounds: list[list[dict[str, float]]]) -> dict[str, Any]:
    entry: dict[str, Any] = {"key": row.key, "label": row.label, "payload": row.payload, "loop": row.loop}
    if skip is not None:
        entry["status"] = skip
        return entry
    points = []
    for i, concurrency in enumerate(CONCURRENCY):
        per_round = [r[i] for r in rounds]
        point: dict[str, float] = {"concurrency": concurrency}
        for name in per_round[0]:
            if name != "concurrency":
                point[name] = statistics.median(p[name] for p in per_round)
        points.append(point)
    entry.update(status="ok", points=points)
    return entry


def _breakdown(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Where ours spends CPU per request beyond the floor, per concurrency (assets rows, asyncio)."""
    out: dict[str, dict[str, float]] = {}
    for c in CONCURRENCY:
        points = [_point(results, key, c) for key in ("floor", "floor_msgspec", "floor_decode", "ours")]
        if any(p is None for p in points):
            continue
        floor, bare, sdk_decoder, ours = (p["cpu_us_per_request"] for p in points if p is not None)
        out[str(c)] = {
            "http_floor": floor,
            "bare_msgspec_decode": bare - floor,
            "sdk_decoder_checks": sdk_decoder - bare,
            "pool_path": ours - sdk_decoder,
            "ours_total": ours,
        }
    return out


def _point(results: list[dict[str, Any]], key: str, concurrency: int) -> dict[str, float] | None:
    for row in results:
        if row["key"] == key and row.get("status") == "ok":
            for point in row["points"]:
                if point["concurrency"] == concurrency:
                    return point  # type: ignore[no-any-return]
    return None


def _targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []
    comparisons = [("ours", "floor", "assets, asyncio"), ("ours_uvloop", "floor_uvloop", "assets, uvloop")]
    for c in CONCURRENCY:
        for ours_key, floor_key, what in comparisons:
            ours, floor = _point(results, ours_key, c), _point(results, floor_key, c)
            if ours is None or floor is None:
                continue
            value = ours["cpu_us_per_request"] / floor["cpu_us_per_request"]
            targets.append(
                {
                    "bench": NAME,
                    "concurrency": c,
                    "vs": floor_key,
                    "value": value,
                    "goal": TARGET_CPU_VS_FLOOR,
                    "met": value <= TARGET_CPU_VS_FLOOR,
                    "text": f"c={c} {what}: ours {value:.3f}x the floor's CPU/request (target <= {TARGET_CPU_VS_FLOOR}x)",
                }
            )
        ours, ccxt = _point(results, "wallet_ours", c), _point(results, "ccxt", c)
        if ours is None or ccxt is None:
            targets.append({"bench": NAME, "concurrency": c, "vs": "ccxt", "status": "skipped"})
            continue
        value = ours["rps"] / ccxt["rps"]
        targets.append(
            {
                "bench": NAME,
                "concurrency": c,
                "vs": "ccxt",
                "value": value,
                "goal": TARGET_RPS_VS_CCXT,
                "met": value >= TARGET_RPS_VS_CCXT,
                "text": f"c={c} wallet: ours {value:.3f}x ccxt's requests/s (target >= {TARGET_RPS_VS_CCXT}x)",
            }
        )
    return targets


def report(result: dict[str, Any]) -> str:
    """Print requests/s and CPU µs per request per row and concurrency, with ratios to the floor."""
    table = []
    floors = {"assets": "floor", "wallet": "wallet_floor"}
    for row in result["rows"]:
        if row.get("status") != "ok":
            table.append([row["payload"], row["label"], "-", row["status"], "-", "-", "-"])
            continue
        floor_key = "floor_uvloop" if row["loop"] == "uvloop" else floors[row["payload"]]
        for point in row["points"]:
            floor = _point(result["rows"], floor_key, point["concurrency"])
            ratio = point["cpu_us_per_request"] / floor["cpu_us_per_request"] if floor else None
            table.append(
                [
                    row["payload"],
                    row["label"],
                    str(point["concurrency"]),
                    f"{point['rps']:,.0f}",
                    f"{point['cpu_us_per_request']:.0f}",
                    f"{ratio:.2f}x" if ratio is not None else "-",
                    f"{100 * point['cpu_util']:.0f}% / {100 * point['server_cpu_util']:.0f}%",
                ]
            )
    text = print_table(
        "pipeline: requests/s and client CPU per request (client and server on separate cores)",
        ["payload", "client", "conc.", "req/s", "CPU µs/req", "CPU vs floor", "CPU client / server"],
        table,
    )
    for c, parts in result.get("breakdown_us", {}).items():
        line = (
            f"where ours spends CPU at c={c} (µs/request, assets): HTTP floor {parts['http_floor']:.0f} + bare msgspec "
            f"decode {parts['bare_msgspec_decode']:.0f} + SDK decoder checks {parts['sdk_decoder_checks']:.0f} "
            f"+ pool path (limit, sign, metrics, venue.parse) {parts['pool_path']:.0f} = {parts['ours_total']:.0f}"
        )
        print(line)
        text += line + "\n"
    for note in result["notes"]:
        print(f"note: {note}")
        text += f"note: {note}\n"
    profile = result.get("profile")
    if profile:
        lines = ["profile of ours, c=16 (pyinstrument, self time):"]
        lines += [f"    {f}" for f in profile] if isinstance(profile, list) else [f"    {profile}"]
        print("\n".join(lines))
        text += "\n".join(lines) + "\n"
    print()
    return text
