"""The fleet's command-line pieces, for ``connex-async poll`` and ``connex-async fleet status``.

``connex_async.cli`` wires these into ``connex-async poll`` and ``connex-async fleet``:

- :func:`add_fleet_options` adds ``--redis``, ``--namespace``, ``--egress-id``, ``--shard``,
  ``--heartbeat``, ``--lease-ttl``, ``--output`` and ``--stream-maxlen`` to a parser;
  :meth:`FleetOptions.from_args` checks how they combine (``ValueError``, one line).
- :func:`run_fleet_poll` polls the share of the given clients that this process owns (a static
  ``--shard i/n``, or ``--shard auto``: rendezvous hashing over the live members) and writes every
  update to JSONL or the Redis stream, until ``duration``, SIGINT or SIGTERM; it leaves the fleet
  first, then lets polls in flight end (one update each), then delivers what is pending.
- :func:`add_status_options` / :func:`run_fleet_status`: ``fleet status`` as text or JSON.

Nothing here imports ``redis`` at module level: parsing works without the optional extra.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TextIO

from connex_async.client import BaseClient
from connex_async.config import PortfolioConfig
from connex_async.fleet.hashing import Shard
from connex_async.fleet.membership import DEFAULT_LEASE_TTL, Membership, default_member_id
from connex_async.fleet.output import JsonlSink, Sink
from connex_async.fleet.status import StatusSource, read_status, render_json, render_text
from connex_async.fleet.stream import DEFAULT_MAXLEN, RedisStreamSink
from connex_async.fleet.worker import FleetWorker
from connex_async.poller import Poller
from connex_async.pool import SessionPool
from connex_async.redis_connection import (
    DEFAULT_NAMESPACE,
    RedisUnavailableError,
    bounded,
    connect,
    describe,
    ensure_reachable,
    redact,
    redis_errors,
    validate_namespace,
    validate_url,
)

if TYPE_CHECKING:
    from connex_async.redis_limits import RedisLimiter

__all__ = [
    "OUTPUTS",
    "FleetOptions",
    "add_fleet_options",
    "add_status_options",
    "build_clients",
    "namespace_type",
    "open_limiter",
    "redis_url_type",
    "run_fleet_poll",
    "run_fleet_status",
    "static_share",
]

OUTPUTS = ("jsonl", "redis-stream")
ShardChoice = Shard | Literal["auto"] | None


# -- argument types: each raises argparse.ArgumentTypeError with a one-line message -------------


def _argument_type(check: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = check.__name__.lstrip("_")  # argparse names the type in some messages
    return convert


def _shard(text: str) -> Shard | Literal["auto"]:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise ValueError(f"{exc} (or auto)") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected seconds (a number > 0), got {text!r}") from None
    if not 0 < value < float("inf"):
        raise ValueError(f"expected seconds (a number > 0), got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise ValueError(f"expected a whole number >= 1, got {text!r}")
    return value


def _egress_id(text: str) -> str:
    if not text or len(text) > 100 or any(c.isspace() for c in text):
        raise ValueError(f"egress id must be 1-100 characters without spaces, got {text!r}")
    return text


shard_type = _argument_type(_shard)
seconds_type = _argument_type(_seconds)
count_type = _argument_type(_count)
redis_url_type = _argument_type(validate_url)
namespace_type = _argument_type(validate_namespace)
egress_id_type = _argument_type(_egress_id)


def add_fleet_options(parser: argparse.ArgumentParser) -> None:
    """Add the fleet options (defaults: one process, local limits, JSONL) to ``parser``."""
    group = parser.add_argument_group("fleet", "run as one of several workers sharing limits and portfolios")
    group.add_argument(
        "--redis",
        metavar="URL",
        type=redis_url_type,
        help="admit every request through Redis (redis://, rediss:// or unix://): every process of the "
        "namespace shares one budget per key and per IP; Redis unreachable: nothing is sent",
    )
    group.add_argument(
        "--namespace",
        metavar="NS",
        type=namespace_type,
        default=DEFAULT_NAMESPACE,
        help=f"key prefix in Redis: processes share limits and portfolios within one (default {DEFAULT_NAMESPACE})",
    )
    group.add_argument(
        "--egress-id",
        metavar="ID",
        type=egress_id_type,
        help="the public IP this machine's requests leave from, for per-IP limits (default: one id for all "
        "machines, the safe choice; set it only for machines behind different addresses)",
    )
    group.add_argument(
        "--shard",
        metavar="i/n|auto",
        type=shard_type,
        help="poll shard i of n (rendezvous hashing), or auto: share with the live workers (needs --redis)",
    )
    group.add_argument("--heartbeat", metavar="S", type=seconds_type, help="seconds between heartbeats (lease/3)")
    group.add_argument(
        "--lease-ttl", metavar="S", type=seconds_type, default=DEFAULT_LEASE_TTL, help="membership lease (10 s)"
    )
    group.add_argument("--output", choices=OUTPUTS, default="jsonl", help="jsonl on stdout, or the Redis stream")
    group.add_argument(
        "--stream-maxlen", metavar="N", type=count_type, default=DEFAULT_MAXLEN, help="approximate stream length"
    )


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """The fleet options, checked together (each mistake is a one-line ``ValueError``)."""

    redis: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    egress_id: str | None = None
    shard: ShardChoice = None
    heartbeat: float | None = None
    lease_ttl: float = DEFAULT_LEASE_TTL
    output: str = "jsonl"
    stream_maxlen: int = DEFAULT_MAXLEN

    @property
    def runs_fleet(self) -> bool:
        """Whether the fleet runner polls (``--shard auto`` or ``--output redis-stream``)."""
        return self.shard == "auto" or self.output == "redis-stream"

    def __post_init__(self) -> None:
        if self.shard == "auto" and self.redis is None:
            raise ValueError("--shard auto needs --redis URL (the live workers are found in Redis)")
        if self.output not in OUTPUTS:
            raise ValueError(f"--output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")
        if self.output == "redis-stream" and self.redis is None:
            raise ValueError("--output redis-stream needs --redis URL")
        if self.heartbeat is not None and self.heartbeat >= self.lease_ttl:
            raise ValueError(
                f"--heartbeat ({self.heartbeat:g} s) must be shorter than --lease-ttl ({self.lease_ttl:g} s)"
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FleetOptions:
        """The options :func:`add_fleet_options` parsed into ``args``."""
        return cls(
            redis=args.redis,
            namespace=args.namespace,
            egress_id=args.egress_id,
            shard=args.shard,
            heartbeat=args.heartbeat,
            lease_ttl=args.lease_ttl,
            output=args.output,
            stream_maxlen=args.stream_maxlen,
        )


def build_clients(
    portfolios: Sequence[PortfolioConfig], connex_url: str, zoomex_url: str, pool: SessionPool
) -> list[BaseClient]:
    """One client per configured portfolio, all on ``pool``."""
    from connex_async.venues.connex.client import ConnexClient  # noqa: PLC0415 - keeps parsing light
    from connex_async.venues.zoomex.client import ZoomexClient  # noqa: PLC0415

    clients: list[BaseClient] = []
    for p in portfolios:
        if p.venue == "connex":
            clients.append(ConnexClient(p.credentials, base_url=connex_url, pool=pool))
        else:
            clients.append(ZoomexClient(p.credentials, base_url=zoomex_url, pool=pool, account_type=p.account_type))
    return clients


# -- the sharded poll ----------------------------------------------------------------------------


async def run_fleet_poll(
    clients: Sequence[BaseClient],
    options: FleetOptions,
    *,
    poller_options: Mapping[str, Any] | None = None,
    duration: float | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stop: asyncio.Event | None = None,
    prog: str = "connex-async poll",
) -> int:
    """Poll this process's share of ``clients`` until ``duration`` s, ``stop`` or SIGINT/SIGTERM; 0.

    ``clients`` is every portfolio of the fleet (the same list in every worker). ``poller_options``
    go to :class:`~connex_async.poller.Poller` (``assets_every``, ...). Without ``stop`` the
    function handles SIGINT and SIGTERM itself. With ``options.redis`` set, Redis must answer at
    start, else :class:`~connex_async.redis_connection.RedisUnavailableError` (one line, no
    password): the caller prints it and exits 2.
    """
    out, err = out or sys.stdout, err or sys.stderr
    if options.redis is not None:  # whatever uses it (limits, membership, stream): fail now, in one line
        await _check_reachable(options.redis)
    member_id = default_member_id()
    clients = static_share(clients, options, err, prog)
    sink = _sink(options, member_id, out)
    poller = Poller(() if options.shard == "auto" else clients, **(poller_options or {}))
    worker = FleetWorker(clients, poller, _membership(options, member_id)) if options.shard == "auto" else None
    signals: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if stop is None:
        stop = asyncio.Event()
        signals = _signals_set(stop)
    with signals:
        in_flight = await _run(poller, sink, worker, stop, duration, err, prog, len(clients))
    stats = poller.stats()
    err.write(
        f"{prog}: {'member ' + member_id if worker else 'done'}: {sink.written} updates written, "
        f"{sink.dropped} dropped, polls started {stats.polls_started} ended {stats.polls_ended} "
        f"({in_flight} in flight at stop)" + (f", {worker.rebalances} rebalances" if worker else "") + "\n"
    )
    return 0


def static_share(clients: Sequence[BaseClient], options: FleetOptions, err: TextIO, prog: str) -> list[BaseClient]:
    """The clients of a static ``--shard i/n`` (all of them otherwise), with a one-line warning when
    the shards do not share their limits (no ``--redis``)."""
    shard = options.shard
    if not isinstance(shard, Shard):
        return list(clients)
    chosen = set(shard.select([c.label for c in clients]))
    if options.redis is None and shard.count > 1:
        err.write(f"{prog}: warning: --shard without --redis: per-IP and per-key limits are per process\n")
    return [c for c in clients if c.label in chosen]


@contextlib.asynccontextmanager
async def open_limiter(options: FleetOptions) -> AsyncIterator[RedisLimiter | None]:
    """The Redis limiter of ``--redis`` (opened, closed afterwards), or ``None``: local limits.

    Redis must answer now: :class:`~connex_async.errors.LimiterUnavailableError` (one line) if not.
    """
    if options.redis is None:
        yield None
        return
    from connex_async.redis_limits import RedisLimiter  # noqa: PLC0415 - the redis extra, only when asked

    limiter = RedisLimiter(options.redis, namespace=options.namespace, egress_id=options.egress_id or "default")
    try:
        await limiter.open()
        yield limiter
    finally:
        await limiter.aclose()


def _sink(options: FleetOptions, member_id: str, out: TextIO) -> Sink:
    if options.output != "redis-stream":
        return JsonlSink(out)
    assert options.redis is not None  # FleetOptions checked it
    return RedisStreamSink(options.redis, worker=member_id, namespace=options.namespace, maxlen=options.stream_maxlen)


def _membership(options: FleetOptions, member_id: str) -> Membership:
    assert options.redis is not None  # FleetOptions checked it
    return Membership(
        options.redis,
        namespace=options.namespace,
        member_id=member_id,
        lease_ttl=options.lease_ttl,
        heartbeat=options.heartbeat,
        info={"egress_id": options.egress_id} if options.egress_id else None,
    )


async def _check_reachable(url: str) -> None:
    redis = connect(url)
    try:
        await ensure_reachable(redis, url)
    finally:
        await redis.aclose()


async def _run(
    poller: Poller,
    sink: Sink,
    worker: FleetWorker | None,
    stop: asyncio.Event,
    duration: float | None,
    err: TextIO,
    prog: str,
    portfolios: int,
) -> int:
    """Start, pump updates until told to stop, then stop in the order that loses nothing.

    Returns how many polls were in flight when the stop began (each still ends in one update)."""
    in_flight = 0
    try:
        if isinstance(sink, RedisStreamSink):
            await sink.start()
        if worker is not None:
            await worker.start()
            membership = worker.membership
            err.write(
                f"{prog}: fleet member {membership.member_id} in {membership.keys.namespace}: "
                f"{len(worker.owned)} of {portfolios} portfolios, {len(membership.members)} live members\n"
            )
            err.flush()
        await poller.start()
        await _pump(poller, sink, stop, duration)
    finally:
        in_flight = poller.stats().in_flight
        if worker is not None:
            await worker.stop()  # first: the survivors take over now, while our polls finish
        await poller.stop()  # polls in flight finish (or are cancelled): one update each
        for update in poller.drain():
            sink.write(update)
        await sink.close()
    return in_flight


async def _pump(poller: Poller, sink: Sink, stop: asyncio.Event, duration: float | None) -> None:
    """Hand every update to ``sink`` until ``stop`` is set or ``duration`` s have passed."""
    deadline = None if duration is None else time.monotonic() + duration
    updates = aiter(poller)
    stopped = asyncio.ensure_future(stop.wait())
    next_update: asyncio.Future[Any] = asyncio.ensure_future(anext(updates))
    try:
        while not stop.is_set():
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                break
            done, _ = await asyncio.wait({next_update, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if next_update not in done:
                break  # stop or deadline
            try:
                sink.write(next_update.result())
            except StopAsyncIteration:
                break
            for update in poller.drain():  # whatever else is ready, without a task each
                sink.write(update)
            next_update = asyncio.ensure_future(anext(updates))
    finally:
        for future in (next_update, stopped):
            future.cancel()
        await asyncio.gather(next_update, stopped, return_exceptions=True)
        if next_update.done() and not next_update.cancelled() and next_update.exception() is None:
            sink.write(next_update.result())  # it completed just as we stopped: still one update


@contextlib.contextmanager
def _signals_set(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` while inside (where the loop can handle signals)."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


# -- fleet status ----------------------------------------------------------------------------------


def add_status_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--redis URL`` (required), ``--namespace NS`` and ``--format text|json`` to ``parser``."""
    parser.add_argument("--redis", metavar="URL", type=redis_url_type, required=True, help="the fleet's Redis")
    parser.add_argument("--namespace", metavar="NS", type=namespace_type, default=DEFAULT_NAMESPACE)
    parser.add_argument("--format", choices=("text", "json"), default="text")


async def run_fleet_status(
    url: str,
    namespace: str = DEFAULT_NAMESPACE,
    fmt: str = "text",
    out: TextIO | None = None,
    sources: Sequence[StatusSource] = (),
) -> int:
    """Print the fleet's status; :class:`~connex_async.redis_connection.RedisUnavailableError` if
    Redis does not answer. ``sources`` add sections (e.g. the limiter's cooling scopes)."""
    out = out or sys.stdout
    redis = connect(url)
    try:
        await ensure_reachable(redis, url)
        try:
            status = await bounded(read_status(redis, namespace, sources), 10.0)
        except redis_errors() as exc:
            raise RedisUnavailableError(
                f"cannot read the fleet status at {redact(url)}: {describe(exc, url)}"
            ) from None
    finally:
        await redis.aclose()
    out.write(render_json(status) if fmt == "json" else render_text(status))
    out.flush()
    return 0
