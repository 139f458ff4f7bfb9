"""``RateLimit``: a venue's "N requests per T seconds" turned into a bucket that never breaks it.

Why not ``AsyncLimiter(N, T)`` as it is: it is a bucket of capacity N draining N/T per second, so
it admits a burst of N and then the drip, up to 2N - 1 requests inside one window of length T.
A venue that counts a strict sliding window answers the N+1st with a 429.

The derivation. Let a bucket hold at most ``b`` tokens (``burst``) and refill at ``r`` tokens/s;
each request spends one. Take N+1 consecutive admissions ``a_i <= ... <= a_{i+N}``. At ``a_i``
at most ``b`` tokens are available (the one ``a_i`` spends included), so the other ``N + 1 - b``
must be refilled before ``a_{i+N}``::

    a_{i+N} - a_i >= (N + 1 - b) / r

Choosing ``r = (N + 1 - b) / (T + m)`` makes any N+1 admissions at least ``T + m`` apart. If the
network (and our own event loop) delays two requests by amounts that differ by less than the
margin ``m``, their arrivals are more than ``T`` apart, so no half-open window ``(t - T, t]`` at
the server ever holds more than N of them. Every extra token of burst costs ``1/N`` of throughput,
which is why ``burst`` defaults to 1 (a steady pacer).

Timer slack. A waiter wakes a little after its token is due (epoll rounds timeouts up to whole
milliseconds, other tasks run first). A bucket that is empty at that moment cannot bank the lost
time, so each admission would cost its lateness: about 2% of 20 req/s, measured. The bucket
therefore holds ``s * r`` extra tokens of capacity (``s`` = ``slack`` seconds). Those count in the
bound above like burst, ``a_{i+N} - a_i >= (N + 1 - b - s*r) / r``, so the refill rate becomes::

    r = (N + 1 - b) / (T + m + s)

which keeps any N+1 admissions ``T + m`` apart exactly as before. Lateness beyond ``s`` costs a
fraction ``r * E[late - s]`` of the rate; the slack itself costs ``s / T``. The best ``s`` is
therefore where ``P(late > s) = 1 / N``: a limit of many requests needs a deep slack, one of a
few does not. A shared 600 / 5 s host limit on a loop at 100% CPU delivered 75 req/s of its
117.6 with 3 ms of slack, 108 with 20 ms and 112 with 50 ms (measured, the Zoomex wallets of the
fan-out benchmark). The default is 0.1 ms per request of the limit, at least 3 ms and at most 1%
of the period: 3 ms for 20 / 1 s, 30 ms for 300 / 60 s, 50 ms for 600 / 5 s.

The default margin is 25 ms or 2% of ``T``, whichever is larger: a 60 s window gives up 2% of its
rate for 1.2 s of room, because over long windows the venue's own queueing, not the network,
dominates the spread of delays. Utilization is ``(N + 1 - b) * T / (N * (T + m + s))``: with the
defaults, 97.3% of 20 req/s, 97.9% of 300 req/60 s and 97.1% of 600 req/5 s.
``AsyncLimiter(b + s*r, (b + s*r) / r)`` is exactly that bucket.

Late writes. The bound is between admissions; the margin covers what happens after. A request that
is written long after its admission (a garbage-collector pass between the two) is charged the
excess (see :mod:`connex_async.send_ticket`), so the bound holds between write times.

Adaptive margin. The margin must cover how much two requests' delays to the venue differ, and over
a WAN that is more than any fixed default: routes to another continent jitter by tens of
milliseconds and spike past 100 ms. Unless ``adaptive=False``, the backends widen each scope's
margin to what the round trips to its host show (:mod:`connex_async.margins` measures them per
venue and host): ``J``, the spread of all but the fastest and the slowest 1% of recent round trips,
and ``J_max``, the spread up to the slowest of about the last 10 s. Either margin keeps the bound:

- ``m >= J_max``: the delays of all requests differ by less than ``m``, the condition above.
- ``m >= J + e``, with ``e = (T + m + s) / n`` the refill interval (``n = N + 1 - b``): the delays
  of all requests but one straggler per window (however late it is) differ by at most ``J``. Any N
  admissions are at least ``T + m - e`` apart (the bound above with one admission fewer), so the N
  others of a window's N + 1 arrivals would arrive more than ``T + m - e - J >= T`` apart: no
  window ``(t - T, t]`` holds them all. Solved for m: ``m >= (n J + T + s) / (n - 1)``.

So the margin is ``max(margin, min(J_max, (n J + T + s) / (n - 1), T))`` (:meth:`RateLimit.margin_for`):
the configured margin stays the floor, and beyond one whole period the path is broken rather than
jittery. It is paid for in the utilization formula above: at 20 / 1 s, 0-120 ms of jitter and rare
250 ms spikes (``J`` = 120 ms, ``J_max`` = 370 ms) give a margin of 179 ms and 84.6% of nominal
(89.0% without the spikes: ``J_max`` = 120 ms); the Zoomex host limit (600 / 5 s) needs only
``J`` + 8 ms = 129 ms there, 96.5% (97.1% at its floor); ConneX positions (300 / 60 s) keep their
1.2 s floor. On loopback ``J_max`` stays under the floor and nothing changes.

Where the bucket lives is the backend's business (:mod:`connex_async.limiter_backend`): aiolimiter
in this process (:mod:`connex_async.limits`) or the same bucket as GCRA in Redis
(:mod:`connex_async.redis_limits`), whose emission interval ``1 / r`` and tolerance ``(b - 1 + s*r) / r``
are :attr:`RateLimit.emission_interval` and :attr:`RateLimit.tolerance`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["RateLimit", "default_margin"]

DEFAULT_MARGIN = 0.025
#: ... or this fraction of the period, if larger: long windows see more of the venue's own queueing.
DEFAULT_MARGIN_FRACTION = 0.02
#: Slack: this much per request of the limit (a deeper bank for limits of many requests) ...
SLACK_PER_REQUEST = 0.0001
#: ... at least this ...
DEFAULT_SLACK = 0.003
#: ... and at most this fraction of the period (what the slack costs in rate).
MAX_SLACK_FRACTION = 0.01


def default_margin(period: float) -> float:
    """The default margin of a limit over ``period`` seconds: 25 ms or 2% of it, whichever is larger."""
    return max(DEFAULT_MARGIN, DEFAULT_MARGIN_FRACTION * period)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` requests in any window of ``period`` seconds, as the venue counts them.

    ``burst`` is how many requests may go back to back after an idle spell; ``margin`` (seconds)
    absorbs network and scheduling jitter between requests (default: 25 ms or 2% of the period,
    whichever is larger); ``slack`` (seconds) of event-loop lateness per admission is not lost
    (default: 0.1 ms per request of the limit, within 3 ms and 1% of the period). ``adaptive``
    lets the margin widen beyond ``margin`` (then the floor) to what the round trips to the host
    show; ``adaptive=False`` keeps it fixed. See the module docstring for the derivation.
    """

    count: int
    period: float
    burst: int = 1
    margin: float = None  # type: ignore[assignment]  # resolved in __post_init__
    slack: float = None  # type: ignore[assignment]  # resolved in __post_init__
    adaptive: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"RateLimit.count must be a positive int, got {self.count!r}")
        if not self.period > 0:
            raise ValueError(f"RateLimit.period must be > 0 seconds, got {self.period!r}")
        if not 1 <= self.burst <= self.count:
            raise ValueError(f"RateLimit.burst must be in 1..count ({self.count}), got {self.burst!r}")
        if self.margin is None:
            object.__setattr__(self, "margin", default_margin(self.period))
        if self.slack is None:
            deep = min(SLACK_PER_REQUEST * self.count, MAX_SLACK_FRACTION * self.period)
            object.__setattr__(self, "slack", max(DEFAULT_SLACK, deep))
        if not self.margin >= 0:
            raise ValueError(f"RateLimit.margin must be >= 0 seconds, got {self.margin!r}")
        if not self.slack >= 0:
            raise ValueError(f"RateLimit.slack must be >= 0 seconds, got {self.slack!r}")

    def margin_for(self, spread: float, spread_max: float) -> float:
        """The margin for round trips whose spread is ``spread`` (J: 1%..99%) and ``spread_max`` (J_max).

        ``max(margin, min(spread_max, (n * spread + T + s) / (n - 1), T))`` with ``n = count + 1 - burst``
        (module docstring, "Adaptive margin"); ``margin`` itself if the limit is not adaptive.
        """
        if not self.adaptive:
            return self.margin
        need = spread_max
        n = self.count + 1 - self.burst
        if n > 1:  # one admission per window: no straggler can be left out
            need = min(need, (n * spread + self.period + self.slack) / (n - 1))
        return max(self.margin, min(need, self.period))

    def with_margin(self, margin: float) -> RateLimit:
        """The same limit with ``margin`` (an adaptive scope's limit in effect)."""
        return self if margin == self.margin else replace(self, margin=margin)

    @property
    def refill_rate(self) -> float:
        """Tokens per second: ``(count + 1 - burst) / (period + margin + slack)``."""
        return (self.count + 1 - self.burst) / (self.period + self.margin + self.slack)

    @property
    def capacity(self) -> float:
        """Bucket capacity in tokens: ``burst`` plus ``slack`` seconds of refill."""
        return self.burst + self.slack * self.refill_rate

    @property
    def utilization(self) -> float:
        """The sustained rate as a fraction of the nominal ``count / period``."""
        return self.refill_rate * self.period / self.count

    @property
    def emission_interval(self) -> float:
        """Seconds per token, ``1 / refill_rate``: GCRA's ``e = (T + m + s) / (N + 1 - b)``."""
        return (self.period + self.margin + self.slack) / (self.count + 1 - self.burst)

    @property
    def tolerance(self) -> float:
        """GCRA's tolerance: how far ahead of now a scope may be booked, ``(b - 1) * e + s``."""
        return (self.burst - 1) * self.emission_interval + self.slack

    @property
    def window(self) -> float:
        """``period + margin``: any ``count + 1`` admissions are at least this far apart."""
        return self.period + self.margin
