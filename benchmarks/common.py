"""What the benchmarks share: timing, CPU time, CPU pinning, server processes, payloads, tables, JSON.

Every figure a benchmark prints is measured in the same run as the baseline it is compared with.
Optional dependencies (pydantic, ccxt, matplotlib, uvloop, pyinstrument) are imported through
:func:`optional`; a missing one turns its row into ``"skipped: <pkg> not installed"``, never an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import importlib.metadata
import json
import math
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

__all__ = [
    "ServerProcess",
    "compare_timings",
    "connex_assets_body",
    "connex_positions_body",
    "cpu_seconds",
    "fmt",
    "machine_info",
    "not_installed",
    "optional",
    "pinned",
    "print_table",
    "profile_top_frames",
    "run_child",
    "split_cores",
    "time_per_call",
    "write_json",
    "zoomex_wallet_body",
]

PACKAGES = ("connex-async", "aiohttp", "msgspec", "aiolimiter", "pydantic", "ccxt", "uvloop", "matplotlib")


# ----------------------------------------------------------------------------- optional deps


def optional(module: str) -> Any | None:
    """``import module``, or ``None`` if it is not installed (or fails to import)."""
    try:
        return importlib.import_module(module)
    except Exception:  # an optional dependency may fail in any way; the row is skipped then
        return None


def not_installed(package: str) -> str:
    """The status of a row whose optional dependency is missing."""
    return f"skipped: {package} not installed"


# ----------------------------------------------------------------------------- timing


def cpu_seconds() -> float:
    """CPU time (user + system) of this process, all threads."""
    return time.process_time()


def rusage_cpu() -> tuple[float, float]:
    """``(user, system)`` CPU seconds of this process from ``getrusage``."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _calibrate(fn: Callable[[], object], min_run: float) -> int:
    """How many calls of ``fn`` last at least ``min_run`` seconds (after one warm-up call)."""
    fn()  # warm-up: first-call caches, lazy imports
    number = 1
    while True:
        started = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - started
        if elapsed >= min_run or number >= 1 << 20:
            return number
        number = max(number * 2, int(number * min_run / max(elapsed, 1e-9) * 1.1))


def time_per_call(fn: Callable[[], object], *, runs: int = 7, min_run: float = 0.05) -> dict[str, float]:
    """Median (and min) seconds per call of ``fn`` over ``runs`` runs of a calibrated loop."""
    return compare_timings({"fn": fn}, runs=runs, min_run=min_run)["fn"]


def compare_timings(
    fns: Mapping[str, Callable[[], object]], *, runs: int = 7, min_run: float = 0.05
) -> dict[str, dict[str, float]]:
    """Median and min seconds per call of each function, measured in interleaved rounds.

    Each round runs every function's calibrated loop once, so a burst of load from elsewhere on
    the machine hits all of them alike instead of one. Garbage is collected before each loop.
    """
    numbers = {name: _calibrate(fn, min_run) for name, fn in fns.items()}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            number = numbers[name]
            gc.collect()
            started = time.perf_counter()
            for _ in range(number):
                fn()
            samples[name].append((time.perf_counter() - started) / number)
    return {
        name: {"median_s": statistics.median(s), "min_s": min(s), "runs": runs, "number": numbers[name]}
        for name, s in samples.items()
    }


def profile_top_frames(fn: Callable[[], object], *, seconds: float = 1.0, top: int = 12) -> list[str] | str:
    """Profile repeated calls of ``fn`` with pyinstrument; the heaviest frames by self time.

    Returns ``"skipped: pyinstrument not installed"`` without it.
    """
    pyinstrument = optional("pyinstrument")
    if pyinstrument is None:
        return not_installed("pyinstrument")
    profiler = pyinstrument.Profiler(interval=0.0002)
    deadline = time.perf_counter() + seconds
    profiler.start()
    while True:  # at least once
        fn()
        if time.perf_counter() >= deadline:
            break
    session = profiler.stop()
    return _top_self_frames(session.root_frame(), session.duration, top)


def _top_self_frames(root: Any, duration: float, top: int) -> list[str]:
    totals: dict[str, float] = {}
    stack = [root]
    while stack:
        frame = stack.pop()
        stack.extend(frame.children)
        if frame.file_path is None or frame.file_path == __file__:  # pyinstrument's root, our loop
            continue
        name = f"{frame.function} ({Path(frame.file_path).name}:{frame.line_no})"
        totals[name] = totals.get(name, 0.0) + frame.total_self_time
    ranked = sorted(totals.items(), key=lambda kv: kv[1], reverse=True)[:top]
    return [f"{100 * t / duration:5.1f}%  {name}" for name, t in ranked if t > 0]


# ----------------------------------------------------------------------------- CPU pinning


def split_cores() -> tuple[int | None, int | None, str]:
    """``(client_core, server_core, note)``: the first and the last core this process may use."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None, "no CPU pinning on this platform"
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None, f"only {len(cores)} core available: client and server share it"
    return cores[0], cores[-1], f"client pinned to core {cores[0]}, server process to core {cores[-1]}"


@contextlib.contextmanager
def pinned(core: int | None) -> Iterator[None]:
    """Pin this process to ``core`` inside the block (no-op for ``None``), then restore."""
    if core is None or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# ----------------------------------------------------------------------------- server processes


class ServerProcess:
    """A server running in a child process (spawned: no inherited event loop), driven over a pipe.

    ``target(conn, *args)`` must be a module-level function that sends ``("ready", info)`` once it
    listens, then answers each command it receives until it gets ``"stop"`` (see :func:`run_child`).
    """

    def __init__(self, target: Callable[..., None], *args: Any, start_timeout: float = 30.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=target, args=(child, *args), daemon=True)
        self._proc.start()
        child.close()
        try:
            if not self._conn.poll(start_timeout):
                raise EOFError
            kind, info = self._conn.recv()
        except (EOFError, OSError):
            self.stop()
            raise RuntimeError(f"server process {target.__name__} did not start") from None
        if kind != "ready":
            self.stop()
            raise RuntimeError(f"server process failed: {info}")
        self.info: dict[str, Any] = info

    def call(self, command: str, *args: Any, timeout: float = 60.0) -> Any:
        """Send ``(command, *args)`` and return the answer."""
        self._conn.send((command, *args))
        if not self._conn.poll(timeout):
            raise RuntimeError(f"server process did not answer {command!r}")
        kind, value = self._conn.recv()
        if kind == "error":
            raise RuntimeError(f"server process: {value}")
        return value

    def stop(self) -> None:
        """Ask the child to stop; terminate it if it does not."""
        with contextlib.suppress(OSError, EOFError, BrokenPipeError):
            self._conn.send(("stop",))
        self._proc.join(5.0)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5.0)
        self._conn.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_child(
    conn: Connection,
    core: int | None,
    setup: Callable[[], Awaitable[tuple[dict[str, Any], Callable[..., Any], Callable[[], Awaitable[None]]]]],
    *,
    use_uvloop: bool = False,
) -> None:
    """The body of a server child: pin, start the server via ``setup``, answer commands until stop.

    ``setup()`` returns ``(info, handle, cleanup)``: ``info`` is sent with ``ready``; ``handle(cmd,
    *args)`` answers a command (sync or async); ``cleanup()`` stops the server. The command ``"cpu"``
    always answers the child's CPU seconds so far.
    """
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})

    async def main() -> None:
        loop = asyncio.get_running_loop()
        try:
            info, handle, cleanup = await setup()
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            return
        info = {**info, "pid": os.getpid(), "core": core, "loop": type(loop).__module__}
        conn.send(("ready", info))
        try:
            while True:
                message = await loop.run_in_executor(None, _recv, conn)
                if message is None or message[0] == "stop":
                    return
                try:
                    value = time.process_time() if message[0] == "cpu" else handle(*message)
                    if asyncio.iscoroutine(value):
                        value = await value
                    conn.send(("ok", value))
                except Exception as exc:
                    conn.send(("error", f"{type(exc).__name__}: {exc}"))
        finally:
            await cleanup()

    uvloop = optional("uvloop") if use_uvloop else None
    if uvloop is not None:
        uvloop.run(main())
    else:
        asyncio.run(main())


def _recv(conn: Connection) -> tuple[Any, ...] | None:
    try:
        message: tuple[Any, ...] = conn.recv()
    except (EOFError, OSError):
        return None
    return message


# ----------------------------------------------------------------------------- payloads


def connex_assets_body(rows: int, seed: int = 7) -> bytes:
    """A ConneX assets envelope with ``rows`` realistic rows (18-22 fractional digits), one page."""
    from connex_async.testing.data import ConnexPortfolio, Market, derive_credentials

    key, secret = derive_credentials("connex", seed, 1)
    portfolio = ConnexPortfolio(
        key,
        secret,
        "bench",
        seed,
        market=Market(seed),
        n_assets=rows,
        n_positions=0,
        now_ms=1_776_000_000_000,
        code_variants=False,
    )
    body = portfolio.asset_rows(0, 1_776_000_000_000, None)
    head = f'{{"page":1,"pageSize":1000,"pageNum":1,"totalSize":{rows},"list":['.encode()
    return portfolio.code_prefix + head + b",".join(body) + b"]}}"


def connex_positions_body(rows: int, seed: int = 7) -> bytes:
    """A ConneX positions envelope with ``rows`` rows (several simulated portfolios' positions)."""
    from connex_async.testing.data import ConnexPortfolio, Market, derive_credentials

    market = Market(seed)
    found: list[bytes] = []
    index = 0
    while len(found) < rows:
        index += 1
        key, secret = derive_credentials("connex", seed, index)
        portfolio = ConnexPortfolio(
            key,
            secret,
            f"bench-{index}",
            seed,
            market=market,
            n_assets=1,
            n_positions=16,
            now_ms=1_776_000_000_000,
            code_variants=False,
        )
        found.extend(body for _, _, _, body in portfolio.position_rows(0, 1_776_000_000_000))
    return b'{"code":200000,"message":"Success","data":[' + b",".join(found[:rows]) + b"]}"


def zoomex_wallet_body(seed: int = 7, account_type: str = "UNIFIED") -> bytes:
    """A Zoomex (Bybit v5 scheme) wallet-balance envelope: one account, eight coins, many ``""``."""
    from connex_async.testing.data import Market, ZoomexAccount, derive_credentials
    from connex_async.testing.wire import zoomex_body

    key, secret = derive_credentials("zoomex", seed, 1)
    account = ZoomexAccount(key, secret, "bench", seed, Market(seed))
    coins = "BTC,ETH,USDT,USDC,XRP,EOS,SOL,DOGE"
    return zoomex_body(0, "OK", 1_776_000_000_000, account.wallet_result(account_type, coins, 0))


# ----------------------------------------------------------------------------- output


def fmt(value: Any, digits: int = 2) -> str:
    """A table cell: floats with ``digits`` decimals, ``-`` for None."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:,.{digits}f}"
    return str(value)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Print (and return) a Markdown table."""
    cells = [[str(c) for c in columns]] + [[fmt(v) if not isinstance(v, str) else v for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [f"### {title}", ""]
    for n, row in enumerate(cells):
        lines.append("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    return text


def simulator_counts(stats: Any) -> dict[str, int]:
    """The totals of a ``SimulatedVenue.stats()`` as plain ints (to send over a process pipe)."""
    names = ("requests", "accepted", "violations", "rejected_rate_limit", "rejected_ip", "rejected_auth")
    return {name: getattr(stats, name) for name in (*names, "rejected_clock", "rejected_other")}


def speed_probe(rounds: int = 7) -> dict[str, float]:
    """How fast this core is right now: ms for a fixed pure-Python workload (median and min of ``rounds``).

    Cloud machines are noisy: on the project's 2-core VM the same code measured 186 and 392 µs
    per poll a quarter of an hour apart. Taken before and after each benchmark, this shows
    whether a run's absolute figures (polls/s, req/s) came from a fast or a slow period; the ratios
    against same-run baselines do not depend on it.
    """
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        table: dict[int, int] = {}
        for i in range(200_000):
            table[i & 1023] = table.get(i & 1023, 0) + i
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"median_ms": times[len(times) // 2], "min_ms": times[0]}


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, OS, Python and package versions: what a reader needs to compare."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cpu": model,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "packages": versions,
    }


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON (non-finite floats become ``null``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(data), indent=1, sort_keys=False) + "\n", encoding="utf-8")


def fixed_payload_handler(body: bytes, served: dict[str, int]) -> Any:
    """An aiohttp handler answering ``body`` as JSON and counting into ``served["requests"]``."""
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        served["requests"] += 1
        return web.Response(body=body, content_type="application/json")

    return handler


async def zoomex_server_time(request: Any) -> Any:
    """A Zoomex ``/market/time`` answer from this machine's clock."""
    from aiohttp import web

    ns = time.time_ns()
    result = f'{{"timeSecond":"{ns // 10**9}","timeNano":"{ns}"}}'
    body = f'{{"retCode":0,"retMsg":"OK","result":{result},"retExtInfo":{{}},"time":{ns // 10**6}}}'
    return web.Response(body=body.encode(), content_type="application/json")


async def serve_fixed_routes(routes: Mapping[str, Any]) -> tuple[str, Callable[[], Awaitable[None]]]:
    """Serve ``{path: handler}`` on a free 127.0.0.1 port; return ``(base_url, cleanup)``."""
    from aiohttp import web

    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return f"http://127.0.0.1:{int(runner.addresses[0][1])}", runner.cleanup


def served_handle(served: dict[str, int]) -> Callable[..., Any]:
    """The command handler of a fixed-payload server child: ``"served"`` -> request count."""

    def handle(command: str, *args: Any) -> Any:
        if command == "served":
            return served["requests"]
        raise ValueError(f"unknown command {command!r}")

    return handle
