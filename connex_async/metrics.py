"""Counters and latency distributions per venue and endpoint, with a hook for exporters.

The SDK depends on no metrics library: :meth:`Metrics.subscribe` hands every attempt to a callback
that can feed Prometheus or OpenTelemetry, and :meth:`Metrics.snapshot` gives a plain picture,
including the round trips to each (venue, host) and the margins they make (:mod:`connex_async.margins`).
"""

from __future__ import annotations

import bisect
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "AttemptEvent",
    "EndpointSnapshot",
    "Histogram",
    "HistogramSnapshot",
    "MarginSnapshot",
    "Metrics",
    "MetricsSnapshot",
    "PathSnapshot",
]

logger = logging.getLogger("connex_async")

# Bucket upper bounds in seconds: 0.1 ms .. ~100 s, four per doubling (each ~19% above the last).
_BOUNDS = tuple(0.0001 * 2 ** (i / 4) for i in range(81))


class Histogram:
    """Fixed exponential buckets: constant memory, quantiles within ~19% of the truth."""

    __slots__ = ("count", "counts", "max", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BOUNDS) + 1)
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def observe(self, seconds: float) -> None:
        """Record one value."""
        self.counts[bisect.bisect_left(_BOUNDS, seconds)] += 1
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)

    def quantile(self, q: float) -> float:
        """The upper bound of the bucket holding quantile ``q`` (0 if empty)."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= rank and n:
                return min(_BOUNDS[i], self.max) if i < len(_BOUNDS) else self.max
        return self.max

    def snapshot(self) -> HistogramSnapshot:
        """A frozen copy of the bucket counts."""
        return HistogramSnapshot(tuple(self.counts), self.count, self.total)


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """Bucket counts of a :class:`Histogram` at one moment (``counts[i]``: values in ``(b[i-1], b[i]]``)."""

    counts: tuple[int, ...]
    count: int
    total: float
    """The sum of every value, in seconds."""

    def cumulative(self, every: int = 4) -> list[tuple[float, int]]:
        """``(upper bound, values <= it)`` for every ``every``-th bound, then ``(inf, count)``.

        Exact, not interpolated: each bound is one of the histogram's own. ``every=4`` gives the
        powers of two from 0.1 ms to 105 s (21 bounds), what a Prometheus histogram wants.
        """
        out: list[tuple[float, int]] = []
        seen = 0
        for i, n in enumerate(self.counts[: len(_BOUNDS)]):
            seen += n
            if i % every == 0:
                out.append((_BOUNDS[i], seen))
        out.append((float("inf"), self.count))
        return out


_EMPTY = HistogramSnapshot((), 0, 0.0)


@dataclass(frozen=True, slots=True)
class AttemptEvent:
    """One HTTP attempt, as handed to subscribers. Carries the label, never the key."""

    venue: str
    endpoint: str
    portfolio: str | None
    attempt: int
    status: int | None
    latency: float
    limiter_wait: float
    error: str | None


@dataclass(slots=True)
class _EndpointStats:
    requests: int = 0
    successes: int = 0
    retries: int = 0
    cooldowns: int = 0
    late_sends: int = 0
    send_lag_max: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    latency: Histogram = field(default_factory=Histogram)
    limiter_wait: Histogram = field(default_factory=Histogram)


@dataclass(frozen=True, slots=True)
class EndpointSnapshot:
    """Totals for one (venue, endpoint) at one moment."""

    requests: int
    successes: int
    retries: int
    cooldowns: int
    errors: dict[str, int]
    latency_p50: float
    latency_p99: float
    limiter_wait_p50: float
    limiter_wait_p99: float
    late_sends: int = 0
    """Attempts written more than ``send_ticket.LATE_SEND_ALLOWANCE`` after their admission."""
    send_lag_max: float = 0.0
    """The longest of those admission-to-write delays, in seconds (a stalled event loop)."""
    latency: HistogramSnapshot = _EMPTY
    """Every HTTP attempt's latency (for exporters; ``latency_p50`` / ``latency_p99`` summarize it)."""
    limiter_wait: HistogramSnapshot = _EMPTY
    """Every attempt's wait for its rate-limit slots."""


@dataclass(frozen=True, slots=True)
class MarginSnapshot:
    """The margin in effect for every scope of one limit through one host."""

    limit: str
    """The limit, e.g. ``"20/1s"`` (with ``burst``, a non-default margin or ``fixed`` when they apply)."""
    floor: float
    """The configured margin, seconds: the adaptive margin never goes below it."""
    margin: float
    """The margin in effect, seconds."""
    utilization: float
    """The sustained rate it allows, as a fraction of the nominal ``count / period``."""


@dataclass(frozen=True, slots=True)
class PathSnapshot:
    """The round trips to one (venue, host), their spread and the margins it makes."""

    samples: float
    """Recent samples (weights decaying with a 10 s half-life: about the last 14 s' worth)."""
    round_trip_low: float
    """1st percentile of recent round trips, seconds."""
    round_trip_high: float
    """99th percentile."""
    spread: float
    """The published spread J (1st to 99th percentile) the margins follow."""
    spread_max: float
    """The published spread up to the slowest round trip of about the last 10 s (J_max)."""
    margins: tuple[MarginSnapshot, ...] = ()
    """One per distinct limit of the scopes admitted through this host."""


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Per ``(venue, endpoint)`` snapshots plus grand totals, and per ``(venue, host)`` round trips."""

    endpoints: dict[tuple[str, str], EndpointSnapshot]
    paths: dict[tuple[str, str], PathSnapshot] = field(default_factory=dict)
    """Round trips and margins per (venue, host) (:mod:`connex_async.margins`)."""

    @property
    def requests(self) -> int:
        """HTTP attempts, retries included."""
        return sum(e.requests for e in self.endpoints.values())

    @property
    def retries(self) -> int:
        """Attempts that were retries."""
        return sum(e.retries for e in self.endpoints.values())

    @property
    def errors(self) -> int:
        """Failed attempts, all classes."""
        return sum(sum(e.errors.values()) for e in self.endpoints.values())

    @property
    def cooldowns(self) -> int:
        """Rate-limit cooldowns imposed by the venues."""
        return sum(e.cooldowns for e in self.endpoints.values())

    @property
    def late_sends(self) -> int:
        """Attempts written late after their admission (each charged to its rate-limit scopes)."""
        return sum(e.late_sends for e in self.endpoints.values())


class Metrics:
    """Live counters of one pool; ``paths`` gives the round trips and margins (the limiter's) at snapshot time."""

    __slots__ = ("_paths", "_stats", "_subscribers")

    def __init__(self, paths: Callable[[], dict[tuple[str, str], PathSnapshot]] | None = None) -> None:
        self._stats: dict[tuple[str, str], _EndpointStats] = {}
        self._subscribers: list[Callable[[AttemptEvent], None]] = []
        self._paths = paths

    def subscribe(self, callback: Callable[[AttemptEvent], None]) -> Callable[[], None]:
        """Call ``callback`` after every attempt; returns a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def _of(self, venue: str, endpoint: str) -> _EndpointStats:
        stats = self._stats.get((venue, endpoint))
        if stats is None:
            stats = self._stats[(venue, endpoint)] = _EndpointStats()
        return stats

    def record(self, event: AttemptEvent) -> None:
        """Count one attempt and pass it to the subscribers."""
        stats = self._of(event.venue, event.endpoint)
        stats.requests += 1
        if event.attempt > 1:
            stats.retries += 1
        if event.error is None:
            stats.successes += 1
        else:
            stats.errors[event.error] += 1
        stats.latency.observe(event.latency)
        stats.limiter_wait.observe(event.limiter_wait)
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception:  # an exporter's bug must not fail a request
                logger.exception("metrics subscriber failed")

    def record_cooldown(self, venue: str, endpoint: str) -> None:
        """Count a cooldown imposed by the venue's rate-limit answer."""
        self._of(venue, endpoint).cooldowns += 1

    def record_late_send(self, venue: str, endpoint: str, lag: float) -> None:
        """Count an attempt written ``lag`` seconds after its admission (its scopes were charged)."""
        stats = self._of(venue, endpoint)
        stats.late_sends += 1
        stats.send_lag_max = max(stats.send_lag_max, lag)

    def snapshot(self) -> MetricsSnapshot:
        """A consistent copy of every counter."""
        return MetricsSnapshot(
            {
                key: EndpointSnapshot(
                    requests=s.requests,
                    successes=s.successes,
                    retries=s.retries,
                    cooldowns=s.cooldowns,
                    errors=dict(s.errors),
                    latency_p50=s.latency.quantile(0.5),
                    latency_p99=s.latency.quantile(0.99),
                    limiter_wait_p50=s.limiter_wait.quantile(0.5),
                    limiter_wait_p99=s.limiter_wait.quantile(0.99),
                    late_sends=s.late_sends,
                    send_lag_max=s.send_lag_max,
                    latency=s.latency.snapshot(),
                    limiter_wait=s.limiter_wait.snapshot(),
                )
                for key, s in self._stats.items()
            },
            self._paths() if self._paths is not None else {},
        )
