"""``connex-async``: ``demo`` (the simulator), ``poll`` (real portfolios), ``serve`` (a simulator), ``fleet``.

``poll`` takes the fleet options (``--redis``, ``--shard``, ...; :mod:`connex_async.fleet.cli`):
limits shared through Redis, a static or automatic share of the portfolios, output to a Redis
Stream. ``fleet status`` / ``fleet init`` look after a fleet's namespace.

Each command is a subparser built by an ``_add_<command>`` function that declares its options
(each with help text and a checker from :mod:`connex_async.cli_args`) and the function that runs it
(``set_defaults(run=...)``). A usage error anywhere is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from connex_async import __version__
from connex_async.cli_args import CommandParser, count, http_url, interval, port, positive_float
from connex_async.client import BaseClient
from connex_async.config import ConfigError, PortfolioConfig, load_portfolios
from connex_async.dashboard import VENUE_NAMES, Dashboard, plural
from connex_async.errors import LimiterUnavailableError
from connex_async.fleet.cli import (
    FleetOptions,
    add_fleet_options,
    add_status_options,
    build_clients,
    namespace_type,
    open_limiter,
    redis_url_type,
    run_fleet_poll,
    run_fleet_status,
    static_share,
)
from connex_async.jsonl import update_to_json
from connex_async.metrics import MetricsSnapshot
from connex_async.poller import Poller
from connex_async.pool import SessionPool
from connex_async.redis_connection import DEFAULT_NAMESPACE, RedisUnavailableError
from connex_async.venues.connex.client import DEFAULT_BASE_URL as CONNEX_URL
from connex_async.venues.connex.client import ConnexClient
from connex_async.venues.zoomex.client import DEFAULT_BASE_URL as ZOOMEX_URL
from connex_async.venues.zoomex.client import ZoomexClient

if TYPE_CHECKING:
    from connex_async.testing.network import Delay

__all__ = ["PollOptions", "build_parser", "main", "run_demo", "run_poll", "update_to_json"]

logger = logging.getLogger("connex_async")

ENVIRONMENT = """\
environment (read when --credentials is not given):
  CONNEX_API_KEY, CONNEX_API_SECRET   one ConneX portfolio (label: CONNEX_LABEL, default "connex")
  ZOOMEX_API_KEY, ZOOMEX_API_SECRET   one Zoomex account (label: ZOOMEX_LABEL, default "zoomex")
"""


async def _consume(
    poller: Poller,
    pool: SessionPool,
    duration: float | None,
    out: TextIO,
    fmt: str,
    dashboard: Dashboard,
    title: str,
) -> None:
    """Feed updates to the dashboard (and JSONL) until ``duration`` passes or a signal arrives."""
    tty = fmt == "table" and out.isatty()
    deadline = None if duration is None else time.monotonic() + duration
    next_render = 0.0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    updates = aiter(poller)
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            timeout = 0.25 if deadline is None else max(0.0, min(0.25, deadline - time.monotonic()))
            try:
                update = await asyncio.wait_for(anext(updates), timeout)
            except TimeoutError:
                update = None
            except StopAsyncIteration:
                break
            if update is not None:
                dashboard.apply(update)
                if fmt == "jsonl":
                    out.write(update_to_json(update).decode() + "\n")
            if fmt == "table" and time.monotonic() >= next_render:
                dashboard.render(out, tty, pool.metrics.snapshot(), title)
                next_render = time.monotonic() + (0.5 if tty else 2.0)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def _summary(dashboard: Dashboard, metrics: MetricsSnapshot, elapsed: float, extra: str) -> str:
    """The last line of ``demo`` and ``poll``: requests, updates, latency, retries, errors, ``extra``."""
    endpoints = list(metrics.endpoints.values())
    p50 = max((e.latency_p50 for e in endpoints), default=0.0)
    p99 = max((e.latency_p99 for e in endpoints), default=0.0)
    errors = f"errors {dashboard.errors}" + (f" ({dashboard.errors_by_class()})" if dashboard.errors else "")
    return (
        f"summary: {metrics.requests} requests in {elapsed:.1f}s ({metrics.requests / max(elapsed, 1e-9):.0f} req/s), "
        f"{dashboard.updates} updates, poll latency p50 {dashboard.quantile(0.5) * 1000:.1f} ms "
        f"p99 {dashboard.quantile(0.99) * 1000:.1f} ms, HTTP latency (slowest endpoint) p50 ≈{p50 * 1000:.1f} ms "
        f"p99 ≈{p99 * 1000:.1f} ms, retries {metrics.retries}, cooldowns {metrics.cooldowns}, {errors}{extra}"
    )


def _margins(metrics: MetricsSnapshot) -> str:
    """One line per host whose round trips widened a margin beyond its floor (nothing otherwise)."""
    lines = []
    for (venue, host), path in sorted(metrics.paths.items()):
        wide = [m for m in path.margins if m.margin > m.floor]
        if wide:
            margins = ", ".join(f"{m.limit} {m.margin * 1000:.0f} ms ({m.utilization:.1%})" for m in wide)
            lines.append(
                f"margins: {venue} {host}: round trips {path.round_trip_low * 1000:.0f}-"
                f"{path.round_trip_high * 1000:.0f} ms (1%-99%): {margins}\n"
            )
    return "".join(lines)


async def run_demo(
    portfolios: int = 300,
    zoomex: int = 50,
    duration: float = 15.0,
    seed: int = 7,
    out: TextIO | None = None,
    fmt: str = "table",
    *,
    request_delay: Delay | None = None,
    response_delay: Delay | None = None,
) -> int:
    """Poll simulated sub-portfolios for ``duration`` s; print a summary; 0 iff no violation.

    ``request_delay`` / ``response_delay`` make the simulator a WAN away (the summary then shows the
    margins the round trips widened).
    """
    from connex_async.testing import SimulatedVenue  # noqa: PLC0415 - only the demo needs the simulator

    out = out or sys.stdout
    async with (
        SimulatedVenue(
            connex_portfolios=portfolios,
            zoomex_accounts=zoomex,
            seed=seed,
            latency=0.002,
            jitter=0.01,
            request_delay=request_delay,
            response_delay=response_delay,
        ) as venue,
        SessionPool(connector_limit=100) as pool,
    ):
        clients: list[BaseClient] = [
            ConnexClient(c, base_url=venue.base_url, pool=pool) for c in venue.connex_credentials
        ]
        clients += [ZoomexClient(c, base_url=venue.base_url, pool=pool) for c in venue.zoomex_credentials]
        dashboard = Dashboard(expected={"connex": portfolios, "zoomex": zoomex})
        title = f"connex-async demo: {dashboard.venue_mix()} simulated portfolios at {venue.base_url}"
        started = time.monotonic()
        async with Poller(clients, assets_every=1.0, positions_every=5.0, wallet_every=1.0) as poller:
            await _consume(poller, pool, duration, out, fmt, dashboard, title)
        elapsed = time.monotonic() - started
        metrics = pool.metrics.snapshot()
        stats = venue.stats()
        if fmt == "table":
            dashboard.render(out, out.isatty(), metrics, title)
        summary = _summary(dashboard, metrics, elapsed, f", simulator violations {stats.violations}")
        stream = sys.stderr if fmt == "jsonl" else out
        stream.write(f"\n{summary}\n{_margins(metrics)}")
        stream.flush()
        return 0 if stats.violations == 0 else 1


@dataclass(frozen=True, slots=True)
class PollOptions:
    """What ``connex-async poll`` does: which portfolios, where, how often, what it prints and serves."""

    portfolios: list[PortfolioConfig]
    connex_url: str = CONNEX_URL
    zoomex_url: str = ZOOMEX_URL
    duration: float | None = None
    fmt: str = "table"
    assets_every: float | None = 1.0
    positions_every: float | None = 15.0
    wallet_every: float | None = 1.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    fleet: FleetOptions = field(default_factory=FleetOptions)

    def clients(self, pool: SessionPool) -> list[BaseClient]:
        """One client per portfolio, on ``pool``."""
        return build_clients(self.portfolios, self.connex_url, self.zoomex_url, pool)

    def poller_options(self) -> dict[str, float | None]:
        """The polling intervals, as :class:`~connex_async.poller.Poller` takes them."""
        return {
            "assets_every": self.assets_every,
            "positions_every": self.positions_every,
            "wallet_every": self.wallet_every,
        }

    def polled_endpoints(self) -> int:
        """How many (portfolio, endpoint) jobs these intervals give (0: nothing to poll)."""
        on = {"assets": self.assets_every, "positions": self.positions_every, "wallet": self.wallet_every}
        per_venue = {"connex": ("assets", "positions"), "zoomex": ("wallet",)}
        return sum(1 for p in self.portfolios for e in per_venue[p.venue] if on[e] is not None)


async def run_poll(options: PollOptions, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Poll until ``options.duration`` passes or Ctrl-C; 0 if any poll succeeded, else 1 (with the reason).

    With ``--redis`` every request is admitted through the shared limiter (Redis unreachable at
    start: one line, exit 2). ``--shard auto`` or ``--output redis-stream`` hand the portfolios to
    the fleet runner (:func:`connex_async.fleet.cli.run_fleet_poll`).
    """
    out, err = out or sys.stdout, err or sys.stderr
    try:
        async with open_limiter(options.fleet) as limiter, SessionPool(limiter=limiter) as pool:
            if options.fleet.runs_fleet:
                return await run_fleet_poll(
                    options.clients(pool),
                    options.fleet,
                    poller_options=options.poller_options(),
                    duration=options.duration,
                    out=out,
                    err=err,
                )
            return await _poll_here(options, pool, out, err)
    except (RedisUnavailableError, LimiterUnavailableError) as exc:
        err.write(f"connex-async poll: {exc}\n")
        return 2


async def _poll_here(options: PollOptions, pool: SessionPool, out: TextIO, err: TextIO) -> int:
    """This process's share, with the live table or JSON lines, a summary and an exit status."""
    clients = static_share(options.clients(pool), options.fleet, err, "connex-async poll")
    poller = Poller(
        clients,
        assets_every=options.assets_every,
        positions_every=options.positions_every,
        wallet_every=options.wallet_every,
    )
    dashboard = Dashboard(expected=Counter(c.venue.name for c in clients))
    exporter = None
    if options.metrics_port is not None:
        from connex_async.prometheus import PrometheusExporter  # noqa: PLC0415 - an optional extra

        exporter = PrometheusExporter(pool, poller)
        try:
            bound = await exporter.start(options.metrics_host, options.metrics_port)
        except OSError as exc:
            where = f"{options.metrics_host}:{options.metrics_port}"
            err.write(f"connex-async poll: cannot serve metrics on {where}: {exc.strerror or exc}\n")
            return 1
        err.write(f"connex-async poll: Prometheus metrics at http://{options.metrics_host}:{bound}/metrics\n")
        err.flush()
    title = f"connex-async poll: {dashboard.venue_mix()} portfolios"
    started = time.monotonic()
    try:
        async with poller:
            await _consume(poller, pool, options.duration, out, options.fmt, dashboard, title)
            polled_for = time.monotonic() - started  # then polls in flight may finish (Poller.stop)
    finally:
        if exporter is not None:
            await exporter.stop()
    elapsed = time.monotonic() - started
    metrics = pool.metrics.snapshot()
    if options.fmt == "table":
        tty = out.isatty()
        dashboard.render(out, tty, metrics, title)
        if not tty:  # a terminal's table shows each failing portfolio's reason; a pipe gets them here
            out.writelines(line + "\n" for line in dashboard.failing_lines())
    quarantined = len({label for label, _ in poller.quarantined})  # portfolios, not their endpoints
    summary = _summary(dashboard, metrics, elapsed, f", quarantined {quarantined}")
    stream = err if options.fmt == "jsonl" else out
    stream.write(f"\n{summary}\n")
    stream.flush()
    if dashboard.ok_updates:
        return 0
    if dashboard.updates:
        reason = f"every poll failed ({dashboard.errors_by_class()}); last: {dashboard.last_error}"
    else:
        reason = f"no poll finished within {polled_for:.1f}s"
    err.write(f"connex-async poll: {reason}\n")
    return 1


# -- the command line ---------------------------------------------------------------------------


def _verbosity(parser: argparse.ArgumentParser, dest: str) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        dest=dest,
        action="count",
        default=0,
        help="log INFO (-v) or one DEBUG line per HTTP attempt (-vv) to stderr",
    )


def _add_demo(sub: argparse._SubParsersAction[CommandParser]) -> None:
    from connex_async.testing.cli import add_delay_arguments  # noqa: PLC0415 - keep startup light

    demo = sub.add_parser(
        "demo",
        help="poll simulated sub-portfolios (no credentials, no network)",
        description="Poll simulated ConneX and Zoomex sub-portfolios on an embedded simulator, then print a "
        "summary. Exit status 1 if the simulator counted a rate-limit violation.",
    )
    _verbosity(demo, "sub_verbose")
    demo.add_argument("--portfolios", type=count, default=300, help="ConneX sub-portfolios (default 300)")
    demo.add_argument("--zoomex", type=count, default=50, help="Zoomex accounts (default 50)")
    demo.add_argument("--duration", type=positive_float, default=15.0, help="seconds to poll (default 15)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the simulated keys and data (default 7)")
    add_delay_arguments(demo)
    demo.add_argument(
        "--format",
        choices=("table", "jsonl"),
        default="table",
        help="table: a live table on a terminal, progress lines otherwise; jsonl: one JSON object per update",
    )
    demo.set_defaults(run=_run_demo, parser=demo)


def _add_poll(sub: argparse._SubParsersAction[CommandParser]) -> None:
    poll = sub.add_parser(
        "poll",
        help="poll real portfolios from a credentials file or the environment",
        description="Poll the balances and positions of every portfolio in a credentials file (or the\n"
        "environment) until --duration passes or Ctrl-C. Exit status 1 if no poll succeeded.",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _verbosity(poll, "sub_verbose")
    poll.add_argument(
        "--credentials",
        metavar="FILE",
        help="JSON or TOML file, one entry per portfolio (default: the environment variables below)",
    )
    poll.add_argument(
        "--base-url", type=http_url, metavar="URL", help="one base URL for both venues (e.g. a simulator)"
    )
    poll.add_argument(
        "--connex-url", type=http_url, default=CONNEX_URL, metavar="URL", help=f"ConneX base URL (default {CONNEX_URL})"
    )
    poll.add_argument(
        "--zoomex-url", type=http_url, default=ZOOMEX_URL, metavar="URL", help=f"Zoomex base URL (default {ZOOMEX_URL})"
    )
    poll.add_argument(
        "--format",
        choices=("table", "jsonl"),
        default="table",
        help="table: a live table on a terminal, progress lines otherwise; jsonl: one JSON object per update "
        "(amounts as strings), the summary on stderr",
    )
    poll.add_argument(
        "--duration", type=positive_float, metavar="SECONDS", help="stop after this many seconds (default: at Ctrl-C)"
    )
    for endpoint, default in (("assets", "1"), ("positions", "15"), ("wallet", "1")):
        venue = "Zoomex" if endpoint == "wallet" else "ConneX"
        poll.add_argument(
            f"--{endpoint}-every",
            type=interval,
            default=float(default),
            metavar="SECONDS|off",
            help=f"seconds between {venue} {endpoint} polls of each portfolio, or off (default {default})",
        )
    poll.add_argument(
        "--metrics-port",
        type=port,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (needs: pip install 'connex-async[prometheus]')",
    )
    poll.add_argument(
        "--metrics-host", default="127.0.0.1", metavar="HOST", help="address for --metrics-port (default 127.0.0.1)"
    )
    add_fleet_options(poll)
    poll.set_defaults(run=_run_poll, parser=poll)


def _add_serve(sub: argparse._SubParsersAction[CommandParser]) -> None:
    from connex_async.testing.cli import add_serve_arguments, run_serve  # noqa: PLC0415 - keep startup light

    serve = sub.add_parser(
        "serve",
        help="run the simulated venues for other programs to poll",
        description="Run the simulated ConneX + Zoomex venue on a real socket until Ctrl-C; print its base URL.",
    )
    _verbosity(serve, "sub_verbose")
    add_serve_arguments(serve)
    serve.set_defaults(run=run_serve, parser=serve)


def build_parser() -> CommandParser:
    """The ``connex-async`` parser: ``demo``, ``poll``, ``serve``."""
    parser = CommandParser(
        prog="connex-async",
        description="Poll balances and positions of many ConneX and Zoomex sub-portfolios within the\n"
        "venues' rate limits, with exact decimal amounts.",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"connex-async {__version__}")
    _verbosity(parser, "verbose")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    _add_demo(sub)
    _add_poll(sub)
    _add_serve(sub)
    _add_fleet(sub)
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    if args.portfolios == 0 and args.zoomex == 0:
        args.parser.error("nothing to poll: --portfolios and --zoomex are both 0")
    return asyncio.run(
        run_demo(
            args.portfolios,
            args.zoomex,
            args.duration,
            args.seed,
            sys.stdout,
            args.format,
            request_delay=args.request_delay,
            response_delay=args.response_delay,
        )
    )


def _run_poll(args: argparse.Namespace) -> int:
    parser: CommandParser = args.parser
    if args.metrics_port is not None and importlib.util.find_spec("prometheus_client") is None:
        parser.error("--metrics-port needs prometheus_client: pip install 'connex-async[prometheus]'")
    fleet = _fleet_options(args)  # how the options combine: checked before any file is read
    try:
        portfolios = load_portfolios(args.credentials)
    except ConfigError as exc:
        parser.error(str(exc))
    options = PollOptions(
        portfolios,
        connex_url=args.base_url or args.connex_url,
        zoomex_url=args.base_url or args.zoomex_url,
        duration=args.duration,
        fmt=args.format,
        assets_every=args.assets_every,
        positions_every=args.positions_every,
        wallet_every=args.wallet_every,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        fleet=fleet,
    )
    if not options.polled_endpoints():
        counts = Counter(VENUE_NAMES[p.venue] for p in portfolios)
        mix = " and ".join(plural(n, f"{venue} portfolio") for venue, n in counts.items())
        parser.error(f"nothing to poll: every endpoint of the {mix} is off")
    return asyncio.run(run_poll(options))


def _fleet_options(args: argparse.Namespace) -> FleetOptions:
    parser: CommandParser = args.parser
    try:
        return FleetOptions.from_args(args)
    except ValueError as exc:
        parser.error(str(exc))


def _add_fleet(sub: argparse._SubParsersAction[CommandParser]) -> None:
    fleet = sub.add_parser(
        "fleet",
        help="look after a fleet of workers sharing limits through Redis",
        description="Commands about a fleet's namespace in Redis (the workers run `connex-async poll --redis`).",
    )
    _verbosity(fleet, "sub_verbose")
    commands = fleet.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND", parser_class=CommandParser)
    status = commands.add_parser(
        "status",
        help="live members, their shares and heartbeats, scopes cooling down, circuits open",
        description="Print the fleet's members (portfolios owned, time since each heartbeat by Redis TIME), the "
        "update stream, and the shared limits that are cooling down or held by a new epoch.",
    )
    _verbosity(status, "sub_verbose")
    add_status_options(status)
    status.set_defaults(run=_run_fleet_status, parser=status)
    init = commands.add_parser(
        "init",
        help="declare that nothing was sent through this namespace for a window: no start-up embargo",
        description="A Redis that starts empty (first use, restart, failover) holds every scope for one full window, "
        "because it cannot know what the venues still count. If you know that nothing was sent for a window "
        "(a new namespace, a fleet that was stopped for a minute), this lets the next admissions go at once.",
    )
    _verbosity(init, "sub_verbose")
    init.add_argument("--redis", metavar="URL", required=True, type=redis_url_type, help="the fleet's Redis")
    init.add_argument(
        "--namespace",
        metavar="NS",
        type=namespace_type,
        default=DEFAULT_NAMESPACE,
        help=f"(default {DEFAULT_NAMESPACE})",
    )
    init.set_defaults(run=_run_fleet_init, parser=init)


def _run_fleet_status(args: argparse.Namespace) -> int:
    from connex_async.fleet.limits_status import limits_section  # noqa: PLC0415 - needs the redis extra

    run = run_fleet_status(args.redis, args.namespace, args.format, sources=(limits_section,))
    return _one_line_errors(args, run)


def _run_fleet_init(args: argparse.Namespace) -> int:
    async def declare() -> int:
        from connex_async.redis_limits import RedisLimiter  # noqa: PLC0415 - needs the redis extra

        async with RedisLimiter(args.redis, namespace=args.namespace) as limiter:
            await limiter.declare_cold_start()
        sys.stdout.write(f"connex-async fleet init: namespace {args.namespace}: no start-up embargo\n")
        return 0

    return _one_line_errors(args, declare())


def _one_line_errors(args: argparse.Namespace, run: Coroutine[Any, Any, int]) -> int:
    """Run ``run``; Redis unreachable is one line (``connex-async fleet <cmd>: ...``) and exit 2."""
    try:
        return asyncio.run(run)
    except (RedisUnavailableError, LimiterUnavailableError) as exc:
        sys.stderr.write(f"{args.parser.prog}: {exc}\n")
        return 2


@contextlib.contextmanager
def _logging(verbosity: int) -> Iterator[None]:
    """The ``connex_async`` logger to stderr: WARNING, INFO (-v) or DEBUG (-vv); removed afterwards."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = logging.DEBUG if verbosity > 1 else logging.INFO if verbosity else logging.WARNING
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: returns the exit status (2 for a usage error, printed as one line)."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # named by the command they were given to: "connex-async poll: unrecognized ..."
            getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        with _logging(args.verbose + args.sub_verbose):
            return run(args)
    except SystemExit as exc:  # a usage error found after parsing (credentials, nothing to poll)
        return exc.code if isinstance(exc.code, int) else 2
    except BrokenPipeError:
        # The reader went away (`connex-async poll --format jsonl | head`): stop quietly, as Unix
        # tools do; point stdout at devnull so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
