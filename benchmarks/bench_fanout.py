"""Fan-out: the Poller over 1k / 5k / 10k portfolios against the simulator in another process.

Setup per size N: a ``SimulatedVenue`` (seed ``SEED``, no latency or jitter) with 90% ConneX
portfolios and 10% Zoomex accounts runs in a child process pinned to the last core; this process,
pinned to the first core, builds one ``ConnexClient`` / ``ZoomexClient`` per portfolio on one shared
``SessionPool(connector_limit=100)`` and a ``Poller`` over all of them. The simulator derives the keys
from its seed and hands them over the pipe. A consumer task reads updates as fast as it can and only
counts them.

Intervals are chosen so that every size demands the same 5,500 polls/s (just above the 5,000 polls/s
target): ConneX assets every ``0.9 N / 4500`` s (4,500/s), positions every ``N / 1000`` s (900/s), the
Zoomex wallet every ``N / 1000`` s (100/s: Zoomex's host-wide 600 per 5 s per IP caps all Zoomex
accounts of one IP together at ~119/s, so the wallet interval must grow with the number of accounts).
The per-key limits (assets 20/s, positions 300/60 s, wallet 10/s) are far above these rates.

The clients are listed ConneX first, then Zoomex (as a credentials file grouped by venue gives them);
at the largest size the same simulator process then serves a second run with the Zoomex clients
interleaved in the list (one after every nine ConneX clients), which isolates the effect of the order.

Figures per run:

- registration: wall time to construct the clients and ``Poller(clients, ...)`` (no I/O);
- memory per portfolio: tracemalloc, in a separate pass without the server: clients (key strings
  included) + Poller + every portfolio's limiters (created exactly as the first poll creates them),
  after ``gc.collect()``. (An RSS delta was tried and dropped: with the sizes run one after another in
  one process, each run reuses the arenas the previous one freed, so it undercounts.)
- polls/s: polls ended over the steady part (after the warm-up); updates/s: updates the consumer read;
- staleness p99: ``poller.stats()`` sampled every 0.73 s of the steady part; the worst sample of the
  p99 per endpoint, compared with that endpoint's interval (and ``staleness_quantile(0.99)`` overall);
- CPU per poll: this process's CPU time over the steady part / polls ended; both processes' CPU %;
- in flight per endpoint (sampled) and the largest ``Update.limiter_wait`` per endpoint;
- violations: the simulator's own count (``venue.stats()`` in the child), must be 0.

Then the client alone: the same Poller over 5k portfolios (interleaved) against a fixed-payload server
(aiohttp on uvloop, no signature checks, no data generation) with intervals demanding ~21,700 polls/s,
so that the Poller runs flat out: the client-side ceiling on asyncio and on uvloop, and a pyinstrument
profile of the asyncio run. Targets: at most 4 KB per portfolio; at least 5,000 polls/s with the
simulator running; staleness p99 within 2x the interval.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks.common import (
    ServerProcess,
    connex_assets_body,
    connex_positions_body,
    fixed_payload_handler,
    not_installed,
    optional,
    pinned,
    print_table,
    run_child,
    serve_fixed_routes,
    served_handle,
    simulator_counts,
    split_cores,
    zoomex_server_time,
    zoomex_wallet_body,
)

NAME = "fanout"
SEED = 5
CONNECTOR_LIMIT = 100
ZOOMEX_SHARE = 0.1
TARGET_BYTES = 4096
TARGET_POLLS = 5000.0
TARGET_STALENESS = 2.0
INTERLEAVED_STEADY = 7.0  # the second run at the largest size (same simulator process)
SAMPLE_EVERY = 0.73  # staleness samples: not a divisor of any interval, so samples do not alias with phases

# (portfolios, assets_every, positions_every, wallet_every, steady seconds)
SIZES: list[tuple[int, float, float, float, float]] = [
    (1_000, 0.2, 1.0, 1.0, 10.0),
    (5_000, 1.0, 5.0, 5.0, 10.0),
    (10_000, 2.0, 10.0, 10.0, 10.0),
]
QUICK_SIZE = (200, 0.2, 1.0, 1.0, 2.0)
# The client alone against a fixed-payload server: demand far above what one core can do.
CEILING = (5_000, 0.25, 1.25, 5.0, 3.0)
CEILING_WARMUP = 2.5  # every job polled at least once (~10,000 jobs at ~7,000 polls/s) before measuring
PROFILE_SECONDS = 1.5
QUICK_CEILING = (200, 0.05, 0.25, 1.0, 1.0)

ASSETS_PATH = "/api/v1/trading/portfolio/assets"
POSITIONS_PATH = "/api/v1/trading/position"
ZOOMEX_WALLET_PATH = "/cloud/trade/v3/account/wallet-balance"
ZOOMEX_TIME_PATH = "/cloud/trade/v3/market/time"

Creds = list[tuple[str, str, str]]


# ============================================================================ servers (child processes)


def serve_simulator(conn: Connection, core: int | None, connex: int, zoomex: int) -> None:
    """Child process entry: a ``SimulatedVenue`` with ``connex`` + ``zoomex`` accounts."""

    async def setup() -> tuple[dict[str, Any], Callable[..., Any], Callable[[], Awaitable[None]]]:
        from connex_async.testing import SimulatedVenue

        venue = SimulatedVenue(connex_portfolios=connex, zoomex_accounts=zoomex, seed=SEED)
        await venue.start()

        def handle(command: str, *args: Any) -> Any:
            if command == "stats":
                return simulator_counts(venue.stats())
            raise ValueError(f"unknown command {command!r}")

        info = {
            "base_url": venue.base_url,
            "connex": [(c.api_key, c.secret, c.label) for c in venue.connex_credentials],
            "zoomex": [(c.api_key, c.secret, c.label) for c in venue.zoomex_credentials],
        }
        return info, handle, venue.stop

    run_child(conn, core, setup)


def serve_fixed(conn: Connection, core: int | None) -> None:
    """Child process entry: fixed payloads for every polled path (uvloop if installed), no checks."""
    run_child(conn, core, _setup_fixed, use_uvloop=True)


async def _setup_fixed() -> tuple[dict[str, Any], Callable[..., Any], Callable[[], Awaitable[None]]]:

    bodies = {
        ASSETS_PATH: connex_assets_body(5),  # the simulator's portfolios hold 3-8 assets
        POSITIONS_PATH: connex_positions_body(3),  # and 0-5 positions
        ZOOMEX_WALLET_PATH: zoomex_wallet_body(),
    }
    served = {"requests": 0}

    routes = {path: fixed_payload_handler(body, served) for path, body in bodies.items()}
    base_url, cleanup = await serve_fixed_routes({**routes, ZOOMEX_TIME_PATH: zoomex_server_time})
    info = {"base_url": base_url, "bytes": {p: len(b) for p, b in bodies.items()}}
    return info, served_handle(served), cleanup


def _fake_creds(n: int) -> tuple[Creds, Creds]:
    """Keys for the fixed server (it checks nothing): the same 90/10 split as the simulator."""
    zoomex = int(n * ZOOMEX_SHARE)
    connex = [(f"{i:032x}", "s" * 64, f"cx-{i:05d}") for i in range(1, n - zoomex + 1)]
    return connex, [(f"{i:018X}", "s" * 36, f"zx-{i:05d}") for i in range(1, zoomex + 1)]


# ============================================================================ client side


def _build(
    base_url: str,
    connex: Creds,
    zoomex: Creds,
    intervals: tuple[float, float, float],
    interleave: bool = False,
    limiter: Any = None,
) -> tuple[Any, Any, Any]:
    """The pool (not opened), the clients and the Poller: what registration costs.

    The clients are listed ConneX first, then Zoomex (as a credentials file grouped by venue would
    give them), or with ``interleave`` one Zoomex client after every nine ConneX clients.
    """
    from connex_async import ConnexClient, Credentials, SessionPool, ZoomexClient
    from connex_async.poller import Poller

    pool = SessionPool(connector_limit=CONNECTOR_LIMIT, limiter=limiter)
    cx = [ConnexClient(Credentials(k, s, label=lbl), base_url=base_url, pool=pool) for k, s, lbl in connex]
    zx = [ZoomexClient(Credentials(k, s, label=lbl), base_url=base_url, pool=pool) for k, s, lbl in zoomex]
    clients: list[Any] = cx + zx
    if interleave and zx:
        step = max(1, len(cx) // len(zx))
        clients = []
        for i in range(max(len(zx), -(-len(cx) // step))):
            clients += cx[i * step : (i + 1) * step] + zx[i : i + 1]
    assets, positions, wallet = intervals
    poller = Poller(clients, assets_every=assets, positions_every=positions, wallet_every=wallet)
    return pool, clients, poller


def _memory_pass(connex: Creds, zoomex: Creds, intervals: tuple[float, float, float]) -> dict[str, float]:
    """tracemalloc: clients + Poller + each portfolio's limiters, per portfolio (no server, no loop)."""
    from urllib.parse import urlsplit

    base_url = "http://127.0.0.1:9"
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        # Fresh copies of the key strings: a caller's credentials count as the portfolio's memory.
        connex = [(k[:1] + k[1:], s[:1] + s[1:], lbl[:1] + lbl[1:]) for k, s, lbl in connex]
        zoomex = [(k[:1] + k[1:], s[:1] + s[1:], lbl[:1] + lbl[1:]) for k, s, lbl in zoomex]
        pool, clients, poller = _build(base_url, connex, zoomex, intervals)
        host = urlsplit(base_url).netloc
        for client in clients:  # the limiters each poll's first request creates (pool._scopes_for)
            for name in client.poll_jobs():
                endpoint = client.endpoints[name]
                pool._scopes_for(client.venue, endpoint, host, client.credentials, client.limits.get(name))
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    n = len(clients)
    top = [
        f"{stat.size / n:6.0f} B/portfolio  {stat.traceback[0].filename.rsplit('/', 2)[-1]}:{stat.traceback[0].lineno}"
        for stat in snapshot.statistics("lineno")[:8]
    ]
    del pool, clients, poller, snapshot
    gc.collect()
    return {"bytes_per_portfolio": (after - before) / n, "limiters": n, "top_lines": top}  # type: ignore[dict-item]


class _GcPasses:
    """Times the collector's passes per generation while installed (``gc.callbacks``)."""

    __slots__ = ("_started", "count", "longest", "seconds")

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self.longest = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took, generation = time.perf_counter() - self._started, info["generation"]
        self.seconds[generation] += took
        self.count[generation] += 1
        self.longest[generation] = max(self.longest[generation], took)

    def __enter__(self) -> _GcPasses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self)

    def summary(self, wall: float) -> dict[str, float]:
        """Share of ``wall`` spent collecting, and the full passes' count and longest."""
        return {
            "share": sum(self.seconds) / wall,
            "full_share": self.seconds[2] / wall,
            "full_passes": self.count[2],
            "longest_full_ms": 1000 * self.longest[2],
        }


async def _fanout(
    base_url: str,
    connex: Creds,
    zoomex: Creds,
    intervals: tuple[float, float, float],
    warmup: float,
    steady: float,
    server_cpu: Callable[[], float],
    *,
    interleave: bool = False,
    profile_seconds: float = 0.0,
    freeze: bool = False,
    limiter: Any = None,
) -> dict[str, Any]:
    """Register, warm up, measure the steady part; then optionally profile a few more seconds.

    ``freeze``: ``gc.freeze()`` after the warm-up (every job polled once, so every limiter exists),
    as a user may do once their portfolios are registered; undone before returning.
    """
    import connex_async.poller  # noqa: F401  (imports are not registration)

    gc.collect()
    started = time.perf_counter()
    pool, clients, poller = _build(base_url, connex, zoomex, intervals, interleave, limiter)
    registration = time.perf_counter() - started
    n = len(clients)
    counts = {"updates": 0, "errors": 0}
    errors: Counter[str] = Counter()
    waits: dict[str, list[float]] = {}  # endpoint -> [updates, sum of limiter waits, max] (steady part)
    measuring = False

    async def consume() -> None:
        async for update in poller:
            counts["updates"] += 1
            if update.error is not None:
                counts["errors"] += 1
                errors[type(update.error).__name__] += 1
            if measuring:
                w = waits.get(update.endpoint)
                if w is None:
                    w = waits[update.endpoint] = [0, 0.0, 0.0]
                w[0] += 1
                w[1] += update.limiter_wait
                w[2] = max(w[2], update.limiter_wait)

    result: dict[str, Any] = {"portfolios": n, "registration_s": registration}
    samples: list[dict[str, float]] = []
    busy: list[Counter[str]] = []
    async with pool:
        consumer = asyncio.create_task(consume())
        await poller.start()
        try:
            await asyncio.sleep(warmup)
            gc.collect()
            if freeze:
                gc.freeze()
            first = poller.stats()
            server0 = await asyncio.to_thread(server_cpu)
            cpu0, t0, updates0 = time.process_time(), time.perf_counter(), counts["updates"]
            measuring = True
            with _GcPasses() as passes:
                while (left := t0 + steady - time.perf_counter()) > 0:
                    await asyncio.sleep(min(SAMPLE_EVERY, left))
                    samples.append(_staleness_sample(poller))
                    busy.append(Counter(job.endpoint for job in poller._jobs.values() if job.running))
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            last = poller.stats()
            server = await asyncio.to_thread(server_cpu)
            updates = counts["updates"] - updates0
            measuring = False
            if profile_seconds:
                result["profile"] = await _profile(profile_seconds)
        finally:
            result["stop_recancels"] = await _stop(poller)
            if freeze:
                gc.unfreeze()
        await consumer
    polls = last.polls_ended - first.polls_ended
    result.update(
        seconds=wall,
        polls=polls,
        polls_per_s=polls / wall,
        updates_per_s=updates / wall,
        failed=last.polls_failed - first.polls_failed,
        superseded=last.superseded - first.superseded,
        cpu_us_per_poll=cpu / max(1, polls) * 1e6,
        gc=passes.summary(wall),
        gc_frozen=freeze,
        client_cpu_util=cpu / wall,
        server_cpu_util=(server - server0) / wall,
        staleness_samples=samples,
        in_flight={
            e: {"max": max(b.get(e, 0) for b in busy), "mean": sum(b.get(e, 0) for b in busy) / len(busy)}
            for e in sorted({e for b in busy for e in b})
        },
        limiter_wait={e: {"mean_s": w[1] / w[0], "max_s": w[2], "updates": w[0]} for e, w in waits.items() if w[0]},
        errors=dict(errors),
        update_errors=counts["errors"],
    )
    return result


async def _stop(poller: Any) -> int:
    """``poller.stop()``, cancelling its scheduler again if it is still running after 1 s; returns how often.

    A guard, not a workaround in use: ``Poller.stop()`` once hung on Python 3.11 (``asyncio.wait_for``
    swallowed the scheduler's cancellation, gh-86296); the scheduler now uses ``asyncio.timeout``.
    The count is reported so that a regression shows in the notes instead of hanging the benchmark.
    """
    stopper = asyncio.create_task(poller.stop())
    recancels = 0
    while not stopper.done():
        await asyncio.wait({stopper}, timeout=1.0)
        scheduler = poller._scheduler
        if not stopper.done() and scheduler is not None and not scheduler.done():
            scheduler.cancel()
            recancels += 1
    await stopper
    return recancels


def _staleness_sample(poller: Any) -> dict[str, float]:
    """``staleness_quantile(0.99)`` over all jobs, and the same p99 per endpoint."""
    stats = poller.stats()
    sample = {"all": stats.staleness_quantile(0.99)}
    by_endpoint: dict[str, list[float]] = {}
    for (_, endpoint), age in stats.staleness.items():
        by_endpoint.setdefault(endpoint, []).append(age)
    for endpoint, ages in by_endpoint.items():
        ages.sort()
        sample[endpoint] = ages[min(len(ages) - 1, int(0.99 * len(ages)))]
    return sample


# Where a poll's client CPU goes: inclusive time of these frames (function, file name) in the profile.
PROFILE_PARTS: list[tuple[str, str, str]] = [
    ("HTTP exchange in aiohttp (SessionPool._send)", "_send", "pool.py"),
    ("classify and decode (Venue.parse)", "parse", "base.py"),
    ("admission: connection and limiter slots (SessionPool._admit)", "_admit", "pool.py"),
    ("limiter lookup (SessionPool._scopes_for)", "_scopes_for", "pool.py"),
    ("signing (SessionPool._sign)", "_sign", "pool.py"),
    ("metrics (SessionPool._observe)", "_observe", "pool.py"),
    ("Poller._finish (update, reschedule)", "_finish", "poller.py"),
    ("Poller._schedule (heap, create_task)", "_schedule", "poller.py"),
    ("the consumer (async for update in poller)", "consume", "bench_fanout.py"),
]


async def _profile(seconds: float) -> dict[str, Any] | str:
    """pyinstrument over the whole event-loop thread (async_mode disabled) for ``seconds``."""
    pyinstrument = optional("pyinstrument")
    if pyinstrument is None:
        return not_installed("pyinstrument")
    from benchmarks.common import _top_self_frames

    # A collector pass runs inside whichever call allocated last, so the profiler charges it to
    # that frame's self time (a 100 ms full pass can make a dict lookup look like 10%). Timing
    # the passes themselves says how much of each frame is really the collector.
    profiler = pyinstrument.Profiler(interval=0.001, async_mode="disabled")
    with _GcPasses() as passes:
        profiler.start()
        try:
            await asyncio.sleep(seconds)
        finally:
            session = profiler.stop()
    gc_seconds = passes.seconds
    root, duration = session.root_frame(), session.duration
    parts: dict[str, float] = {}
    stack = [(root, frozenset[str]())]
    while stack:
        frame, inside = stack.pop()
        name = Path(frame.file_path).name if frame.file_path else ""
        label = next((lbl for lbl, fn, file in PROFILE_PARTS if fn == frame.function and file == name), None)
        if label is not None and label not in inside:  # count a part once per stack
            parts[label] = parts.get(label, 0.0) + frame.time
            inside = inside | {label}
        stack.extend((child, inside) for child in frame.children)
    return {
        "seconds": duration,
        "top_self": _top_self_frames(root, duration, 12),
        "parts": [f"{100 * parts.get(lbl, 0.0) / duration:5.1f}%  {lbl}" for lbl, _, _ in PROFILE_PARTS],
        "gc": f"{100 * sum(gc_seconds) / duration:5.1f}%  the garbage collector, inside the frames above "
        + "(generations 0 / 1 / 2: "
        + " / ".join(f"{100 * g / duration:.1f}%" for g in gc_seconds)
        + ")",
    }


def _run_client(use_uvloop: bool, coro: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    if use_uvloop:
        uvloop = optional("uvloop")
        assert uvloop is not None
        return uvloop.run(coro)  # type: ignore[no-any-return]
    return asyncio.run(coro)  # type: ignore[arg-type]


def _staleness(result: dict[str, Any], intervals: dict[str, float]) -> dict[str, Any]:
    """The worst p99 sample, overall and per endpoint, and its ratio to the endpoint's interval."""
    samples = result.pop("staleness_samples")
    out: dict[str, Any] = {"samples": len(samples)}
    if not samples:
        return out
    out["all_p99_s"] = max(s["all"] for s in samples)
    out["all_p99_vs_longest"] = out["all_p99_s"] / max(intervals.values())
    worst = 0.0
    for endpoint, interval in intervals.items():
        values = [s[endpoint] for s in samples if endpoint in s]
        if values:
            out[f"{endpoint}_p99_s"] = max(values)
            out[f"{endpoint}_ratio"] = max(values) / interval
            worst = max(worst, max(values) / interval)
    out["worst_ratio"] = worst
    return out


def _plan(n: int, intervals: dict[str, float]) -> tuple[int, int, float]:
    zoomex = int(n * ZOOMEX_SHARE)
    connex = n - zoomex
    demanded = connex * (1 / intervals["assets"] + 1 / intervals["positions"]) + zoomex / intervals["wallet"]
    return connex, zoomex, demanded


def _simulator_rows(
    size: tuple[int, float, float, float, float],
    quick: bool,
    client_core: int | None,
    server_core: int | None,
    *,
    interleaved_too: bool,
) -> list[dict[str, Any]]:
    """One simulator process for this size: the clients as listed, then (optionally) interleaved."""
    n, assets, positions, wallet, steady = size
    intervals = {"assets": assets, "positions": positions, "wallet": wallet}
    n_connex, n_zoomex, demanded = _plan(n, intervals)
    warmup = 1.0 if quick else max(intervals.values()) + 0.5  # one full round of every job
    rows: list[dict[str, Any]] = []
    with ServerProcess(serve_simulator, server_core, n_connex, n_zoomex, start_timeout=60.0) as sim:
        connex, zoomex = sim.info["connex"], sim.info["zoomex"]
        for interleave in (False, True) if interleaved_too else (False,):
            before = sim.call("stats")
            with pinned(client_core):
                result = _run_client(
                    False,
                    _fanout(
                        sim.info["base_url"],
                        connex,
                        zoomex,
                        (assets, positions, wallet),
                        warmup,
                        min(steady, INTERLEAVED_STEADY) if interleave else steady,
                        lambda: sim.call("cpu"),
                        interleave=interleave,
                    ),
                )
            after = sim.call("stats")
            venue = {k: after[k] - before[k] for k in after}
            result.update(
                kind="simulator",
                order="interleaved" if interleave else "as listed",
                zoomex=n_zoomex,
                intervals=intervals,
                demanded_polls_per_s=demanded,
                warmup_s=warmup,
                staleness=_staleness(result, intervals),
                simulator=venue,
                violations=venue["violations"],
            )
            rows.append(result)
    with pinned(client_core):
        memory = _memory_pass(connex, zoomex, (assets, positions, wallet))
    rows[0].update(tracemalloc_bytes_per_portfolio=memory["bytes_per_portfolio"], tracemalloc_top=memory["top_lines"])
    return rows


#: The client-side ceiling's variants: (label, event loop, gc.freeze() after the warm-up).
CEILING_VARIANTS: list[tuple[str, str, bool]] = [
    ("asyncio", "asyncio", False),
    ("asyncio + gc.freeze() after the first round", "asyncio", True),
    ("uvloop", "uvloop", False),
]
CEILING_ROUNDS = 2  # the variants alternate, round after round: this VM's speed drifts within minutes


def _ceiling_rows(quick: bool, client_core: int | None, server_core: int | None) -> list[dict[str, Any]]:
    """The client alone against the fixed-payload server, per variant (the first asyncio run profiled)."""
    n, assets, positions, wallet, steady = QUICK_CEILING if quick else CEILING
    intervals = {"assets": assets, "positions": positions, "wallet": wallet}
    _, n_zoomex, demanded = _plan(n, intervals)
    connex, zoomex = _fake_creds(n)
    warmup = 1.0 if quick else CEILING_WARMUP
    uvloop = optional("uvloop") is not None
    rows: list[dict[str, Any]] = []
    profiled = False
    with ServerProcess(serve_fixed, server_core) as server:
        for round_ in range(1, (1 if quick else CEILING_ROUNDS) + 1):
            for label, loop, freeze in CEILING_VARIANTS:
                if loop == "uvloop" and not uvloop:
                    if round_ == 1:
                        rows.append({"kind": "ceiling", "loop": loop, "variant": label, "status": not_installed(loop)})
                    continue
                profile = 0.0 if profiled or loop != "asyncio" or freeze else (0.3 if quick else PROFILE_SECONDS)
                profiled = profiled or profile > 0
                with pinned(client_core):
                    result = _run_client(
                        loop == "uvloop",
                        _fanout(
                            server.info["base_url"],
                            connex,
                            zoomex,
                            (assets, positions, wallet),
                            warmup,
                            steady,
                            lambda: server.call("cpu"),
                            interleave=True,
                            profile_seconds=profile,
                            freeze=freeze,
                        ),
                    )
                result.pop("staleness_samples")
                result.update(
                    kind="ceiling",
                    loop=loop,
                    variant=label,
                    round=round_,
                    order="interleaved",
                    zoomex=n_zoomex,
                    intervals=intervals,
                    demanded_polls_per_s=demanded,
                    warmup_s=warmup,
                    payload_bytes=server.info["bytes"],
                )
                rows.append(result)
    return rows


def run(quick: bool = False) -> dict[str, Any]:
    """Every size against a fresh simulator process, then the client-side ceiling and a profile."""
    client_core, server_core, pin_note = split_cores()
    sizes = [QUICK_SIZE] if quick else SIZES
    rows: list[dict[str, Any]] = []
    for size in sizes:
        rows += _simulator_rows(size, quick, client_core, server_core, interleaved_too=size is sizes[-1])
    ceiling = _ceiling_rows(quick, client_core, server_core)
    profile = next((r.pop("profile") for r in ceiling if "profile" in r), None)
    targets: list[dict[str, Any]] = []
    for row in rows:
        n, order = row["portfolios"], row["order"]
        what = f"{n:,} portfolios" + (", clients interleaved" if order == "interleaved" else "")
        ratio = row["staleness"].get("worst_ratio", float("inf"))
        if "tracemalloc_bytes_per_portfolio" in row:
            memory = row["tracemalloc_bytes_per_portfolio"]
            targets.append(
                {
                    "bench": NAME,
                    "portfolios": n,
                    "vs": "memory",
                    "value": memory,
                    "goal": TARGET_BYTES,
                    "met": memory <= TARGET_BYTES,
                    "text": f"{what}: {memory / 1024:.2f} KB per portfolio (tracemalloc; target <= 4 KB)",
                }
            )
        targets += [
            {
                "bench": NAME,
                "portfolios": n,
                "order": order,
                "vs": "polls_per_s",
                "value": row["polls_per_s"],
                "goal": TARGET_POLLS,
                "met": row["polls_per_s"] >= TARGET_POLLS,
                "text": f"{what}: {row['polls_per_s']:,.0f} polls/s with the simulator "
                f"(demanded {row['demanded_polls_per_s']:,.0f}; target >= 5,000)",
            },
            {
                "bench": NAME,
                "portfolios": n,
                "order": order,
                "vs": "staleness",
                "value": ratio,
                "goal": TARGET_STALENESS,
                "met": ratio <= TARGET_STALENESS,
                "text": f"{what}: staleness p99 at {ratio:.2f}x the interval (worst endpoint; target <= 2x)",
            },
            {
                "bench": NAME,
                "portfolios": n,
                "order": order,
                "vs": "violations",
                "value": row["violations"],
                "goal": 0,
                "met": row["violations"] == 0,
                "text": f"{what}: {row['violations']} simulator-counted violations (target 0)",
            },
        ]
    notes = [
        pin_note,
        f"one SessionPool(connector_limit={CONNECTOR_LIMIT}) shared by all clients (the Poller's in-flight bound); "
        "the consumer only counts updates",
        "simulator: SimulatedVenue in a child process, no latency/jitter, 3-8 assets and 0-5 positions per "
        "portfolio; it verifies every signature and generates every body (Python, one core)",
        "order: 'as listed' = ConneX clients then Zoomex clients (a credentials file grouped by venue); "
        "'interleaved' = one Zoomex client after every nine ConneX clients (same simulator process)",
        "memory: tracemalloc = clients + Poller + every portfolio's limiters (key strings included), in a separate "
        "pass without the server, after gc.collect()",
        "staleness: poller.stats() sampled every 0.73 s of the steady part; worst sample; ratio = p99 ÷ that "
        "endpoint's interval",
        "in flight / limiter wait: polls running per endpoint (sampled with the staleness) and Update.limiter_wait "
        "of the updates read in the steady part",
        "ceiling: the client alone, same Poller, clients interleaved, against a fixed-payload aiohttp server on "
        f"uvloop that checks nothing; {ceiling[0].get('demanded_polls_per_s', 0):,.0f} polls/s demanded so that "
        "the Poller runs flat out; the variants alternate, round after round "
        f"({1 if quick else CEILING_ROUNDS} here: this VM's speed drifts by up to 2x within minutes)",
        "ceiling with gc.freeze(): what a user may choose once portfolios are registered (after the first round, "
        "so every limiter exists): every object alive then leaves the collector's passes; undone after the run",
        "GC: gc.callbacks timing of the collector's passes during the steady part, as a share of its wall time; "
        "full = generation 2 (the passes that walk every tracked object: they are also the longest stalls)",
    ]
    stuck = sum(1 for r in rows + ceiling if r.get("stop_recancels"))
    notes.append(
        f"Poller.stop() needed a second cancel in {stuck} of {len(rows) + len(ceiling)} runs (a guard against "
        "the Python 3.11 wait_for hang fixed in the Poller; see _stop)"
    )
    return {
        "name": NAME,
        "quick": quick,
        "rows": rows,
        "ceiling": ceiling,
        "profile": profile,
        "targets": targets,
        "notes": notes,
    }


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def _busy(row: dict[str, Any]) -> str:
    flights = row.get("in_flight", {})
    waits = row.get("limiter_wait", {})
    parts = []
    for endpoint in ("assets", "positions", "wallet"):
        if endpoint in flights or endpoint in waits:
            f = flights.get(endpoint, {"mean": 0, "max": 0})
            w = waits.get(endpoint)
            wait = f"{w['max_s']:.1f}" if w else "-"
            parts.append(f"{f['mean']:.0f}/{f['max']}, {wait} s")
    return " · ".join(parts)


def _gc_cell(gc_summary: dict[str, float] | None) -> str:
    if not gc_summary:
        return "-"
    return (
        f"{_pct(gc_summary['share'])} (full: {_pct(gc_summary['full_share'])}, "
        f"{gc_summary['full_passes']:.0f}, {gc_summary['longest_full_ms']:.0f} ms)"
    )


def report(result: dict[str, Any]) -> str:
    """The per-size table, the client-alone ceiling, the profile and the notes."""
    table = []
    for row in result["rows"]:
        st = row["staleness"]
        intervals = row["intervals"]
        memory = row.get("tracemalloc_bytes_per_portfolio")
        table.append(
            [
                f"{row['portfolios']:,} ({row['zoomex']:,} Zoomex), {row['order']}",
                "{assets:g} / {positions:g} / {wallet:g} s".format(**intervals),
                f"{row['registration_s'] * 1000:,.0f} ms",
                f"{memory / 1024:.2f} KB" if memory is not None else "-",
                f"{row['demanded_polls_per_s']:,.0f}",
                f"{row['polls_per_s']:,.0f}",
                f"{row['updates_per_s']:,.0f}",
                " / ".join(
                    f"{st[e + '_p99_s']:.1f} s ({st[e + '_ratio']:.2f}x)" for e in intervals if e + "_p99_s" in st
                ),
                f"{row['cpu_us_per_poll']:.0f} µs",
                f"{_pct(row['client_cpu_util'])} / {_pct(row['server_cpu_util'])}",
                _busy(row),
                str(row["violations"]),
                str(row["failed"]),
            ]
        )
    text = print_table(
        "fan-out: Poller against the simulator (separate process), steady part after one full round",
        [
            "portfolios, order",
            "every: assets / positions / wallet",
            "registration",
            "memory/portfolio (tracemalloc)",
            "demanded polls/s",
            "polls/s",
            "updates/s",
            "staleness p99: assets / positions / wallet",
            "CPU/poll",
            "CPU client / sim",
            "in flight mean/max, max limiter wait: assets · positions · wallet",
            "violations",
            "failed",
        ],
        table,
    )
    ceiling = []
    for row in result["ceiling"]:
        if "status" in row:
            ceiling.append([row.get("variant", row["loop"]), "-", row["status"], "-", "-", "-", "-", "-"])
            continue
        ceiling.append(
            [
                f"{row.get('variant', row['loop'])} ({row['portfolios']:,} portfolios, {row['order']})",
                str(row.get("round", 1)),
                f"{row['demanded_polls_per_s']:,.0f}",
                f"{row['polls_per_s']:,.0f}",
                f"{row['cpu_us_per_poll']:.0f} µs",
                _gc_cell(row.get("gc")),
                f"{_pct(row['client_cpu_util'])} / {_pct(row['server_cpu_util'])}",
                str(row["failed"]),
            ]
        )
    text += print_table(
        "fan-out: the client alone (same Poller) against a fixed-payload server: the client-side ceiling",
        [
            "client",
            "round",
            "demanded polls/s",
            "polls/s",
            "CPU/poll",
            "GC: share of the time (full passes: share, count, longest)",
            "CPU client / server",
            "failed",
        ],
        ceiling,
    )
    profile = result.get("profile")
    if profile:
        if isinstance(profile, str):
            lines = [profile]
        else:
            lines = [f"{profile['seconds']:.1f} s on asyncio at the ceiling; share of the loop thread's time:"]
            lines += [
                "",
                "where a poll goes (inclusive):",
                *profile["parts"],
                profile.get("gc", ""),
                "",
                "top frames (self):",
                *profile["top_self"],
            ]
        head = "profile of the client at its ceiling (pyinstrument, async_mode=disabled)"
        print(head + "\n" + "\n".join(lines) + "\n")
        text += f"\n{head}:\n\n```\n" + "\n".join(lines) + "\n```\n"
    for row in result["rows"]:
        if row.get("tracemalloc_top"):
            head = f"tracemalloc: top lines at {row['portfolios']:,} portfolios"
            print(head + "\n" + "\n".join(row["tracemalloc_top"]) + "\n")
            text += f"\n{head}:\n\n```\n" + "\n".join(row["tracemalloc_top"]) + "\n```\n"
    for note in result["notes"]:
        print(f"note: {note}")
        text += f"note: {note}\n"
    print()
    return text
