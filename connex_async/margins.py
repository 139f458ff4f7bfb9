"""Margins that follow the network: how much round trips to each (venue, host) differ, and what it costs.

The window bound of :mod:`connex_async.rate_limit` holds as long as two requests' delays to the venue
differ by less than the margin. On loopback they differ by a millisecond; over a WAN by tens of
milliseconds, with spikes past 100 ms. Every answer tells us how long its round trip took, so the
limiter backends measure that spread per (venue, host) here and widen each adaptive scope's margin
to :meth:`RateLimit.margin_for <connex_async.rate_limit.RateLimit.margin_for>` of it.

**What is measured.** A round trip runs from the moment aiohttp has written the request
(:class:`~connex_async.send_ticket.DatedRequest`) to the moment the status line and headers of its
answer are parsed (:class:`~connex_async.send_ticket.DatedResponse`): the delay to the venue, the
venue's own time, the delay back and our event loop's lateness in reading it. Connection set-up and
our lateness before the write are not in it (the late-write charge covers those). Only the first of
these parts matters to the venue's window, and it is bounded conservatively by the whole: the other
parts only ever add, so a request whose delay to the venue is ``x`` above its floor has a round trip
at least ``x`` above the round trips' floor. The spread of round trips is therefore at least the
spread of one-way delays, plus what the way back, the venue and our loop add: a safe overestimate,
paid for in throughput (symmetric jitter on the way back doubles it).

**The estimator.** A histogram of round trips per (venue, host): 32 buckets per doubling (2.2%
apart) from 0.1 ms to 105 s, whose weights decay with a half-life of 10 s, so that it describes the
last few tens of seconds at any request rate. From it, ``J`` is the spread from the 1st to the 99th
percentile and ``J_max`` the spread from the 1st percentile to the slowest round trip of about the
last 10 s (while its weight is at least one half). With fewer than 200 recent samples the 99th
percentile is the second slowest and the 1st the fastest of about the last 10 s. Bucket edges are
taken outward, so the buckets never make a spread smaller than it is. With few samples:

- *Before four*, the floor of the round trips is unknown, and the slowest round trip itself (from
  0) is the spread: a delay to the venue is at most its round trip. Wide, but safe from the first
  answer on, and narrowed (see below) once four are in.
- ``J_max`` is scaled up by ``(n + 1) / (n - 1)``: the range of ``n`` uniform samples falls short of
  the spread they come from by that factor on average (5/3 at four samples, 2% at a hundred). A
  process just started, or one that rarely wins its share of a shared scope, has seen only part of
  the spread. ``rate_limit.py`` shows why the two
together are enough: the margin covers ``J_max`` or, if that is wider, ``J`` plus one refill
interval, which no single straggler per window can overrun. Why these choices:

- *A real WAN spike widens it at once.* A single slow round trip raises ``J_max`` at the next
  refresh (every 32 answers or 50 ms, whichever comes first), and a scope's margin follows at its
  next admission, pushing back its bucket for the admissions already made (``limits.py``). A
  request that was late on its way to the venue is therefore covered as soon as its answer is in:
  within the window, for any round trip shorter than the period. A slower route raises ``J`` too,
  within the first 1% of recent samples (a fraction of a second at 20 requests/s).
- *One GC pause does not widen it, and nothing widens it for long.* A pause of our own loop delays
  the reading of every answer in flight. Answers whose round trip overlapped a collection of more
  than 5 ms (``gc.callbacks``) are left out: a collector's timing has nothing to do with the
  network's, so leaving them out biases nothing, and the pause itself does not move arrivals at a
  remote venue. Other stalls of the loop (synchronous work) stay in; ``J`` ignores them while they
  are under 1% of the recent weight, and ``J_max`` forgets one after about 10 s. Whatever widened
  decays: a wider margin costs throughput meanwhile, never safety. Narrowing is published at most
  every 2 s and by at least 5%, so that a quantile flickering between two buckets does not retune
  every bucket (each widening pushes a scope back).

**Cost per answer**: a log2, an exp2, two list updates and a counter (about 0.5 us in CPython),
plus, every 32 answers or 50 ms, a scan over the occupied buckets (a few tens for a WAN route).
Memory: 640 floats per (venue, host). The scopes check the published spread by identity at each
admission and only recompute their margin when it changed.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from connex_async.metrics import MarginSnapshot, PathSnapshot
from connex_async.rate_limit import default_margin

if TYPE_CHECKING:
    from connex_async.rate_limit import RateLimit

__all__ = ["COLLECTIONS", "AdaptiveScope", "HostKey", "Paths", "RoundTrips", "Spread", "follow_all", "limit_label"]

#: (venue, host): one network path, measured on its own (and what a circuit stops).
HostKey = tuple[str, str]

logger = logging.getLogger("connex_async")

#: Buckets per doubling: edges 2.2% apart.
RESOLUTION = 32
#: The lowest bucket's upper edge ... (anything faster falls into bucket 0, whose lower edge is 0)
LOWEST = 0.0001
#: ... and 20 doublings above it (105 s; anything slower falls into the last bucket).
BUCKETS = 20 * RESOLUTION
#: Seconds after which a sample weighs half as much.
HALF_LIFE = 10.0
#: The quantiles of J: 1% at each end ...
TAIL = 0.01
#: ... but never fewer than this many samples' weight beyond a quantile.
MIN_RANK = 2.0
#: J_max reaches up to the slowest sample of at least this weight (one half-life: about 10 s).
TOP_WEIGHT = 0.5
#: Answers whose round trip overlapped a garbage collection longer than this are left out (seconds).
LONG_COLLECTION = 0.005
#: No estimate below this much weight: a scope keeps its floor until then.
MIN_SAMPLES = 4.0
#: Recompute after this many samples ...
RECOMPUTE_EVERY = 32
#: ... or this many seconds, whichever comes first.
RECOMPUTE_INTERVAL = 0.05
#: A narrower spread is published at most this often ...
NARROW_AFTER = 2.0
#: ... and only when it is narrower by this fraction.
NARROW_STEP = 0.05
#: Weights are rescaled once they have grown by 2^this (exp2 stays far from overflow).
_RESCALE_AT = 40.0

#: Bucket i holds (_LOWER[i], _UPPER[i]]: bucket 0 everything up to LOWEST.
_UPPER = [LOWEST * 2 ** (i / RESOLUTION) for i in range(BUCKETS)]
_LOWER = [0.0, *_UPPER[:-1]]
_SCALE = RESOLUTION / math.log(2)
_INV_HALF_LIFE = 1.0 / HALF_LIFE
_log = math.log
_exp2 = math.exp2


class _Collections:
    """Long garbage collections so far (``long``), counted by a ``gc.callbacks`` hook.

    A send ticket notes ``long`` at the write and leaves its round trip out if it changed by the
    answer. The hook costs two ``perf_counter`` calls per collection; it is installed once, by the
    first limiter backend.
    """

    __slots__ = ("began", "installed", "long")

    def __init__(self) -> None:
        self.long = 0
        self.began = 0.0
        self.installed = False

    def install(self) -> None:
        if not self.installed:
            self.installed = True
            gc.callbacks.append(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.began = time.perf_counter()
        elif time.perf_counter() - self.began > LONG_COLLECTION:
            self.long += 1


#: The process's count of long garbage collections (see :class:`_Collections`).
COLLECTIONS = _Collections()


def limit_label(limit: RateLimit) -> str:
    """``"20/1s"``: how metrics name a limit (plus ``burst``, a non-default margin, ``fixed``)."""
    label = f"{limit.count}/{limit.period:g}s"
    if limit.burst != 1:
        label += f" burst {limit.burst}"
    if limit.margin != default_margin(limit.period):
        label += f" margin {limit.margin * 1000:g}ms"
    if not limit.adaptive:
        label += " fixed"
    return label


class Spread:
    """A published estimate: ``spread`` (J, seconds) and ``spread_max`` (J_max), since ``at``.

    Scopes compare the object they last followed by identity: a new object is a change.
    """

    __slots__ = ("at", "spread", "spread_max")

    def __init__(self, spread: float, spread_max: float, at: float) -> None:
        self.spread = spread
        self.spread_max = spread_max
        self.at = at  # time.monotonic()

    def __repr__(self) -> str:
        return f"Spread({self.spread * 1000:.1f} ms, max {self.spread_max * 1000:.1f} ms)"


_NONE = Spread(0.0, 0.0, -math.inf)


class RoundTrips:
    """The round trips to one (venue, host): a decaying histogram and the spread it publishes."""

    __slots__ = (
        "_counts",
        "_due",
        "_hi",
        "_landmark",
        "_lo",
        "_pending",
        "_total",
        "high",
        "host",
        "limits",
        "low",
        "published",
        "samples",
        "venue",
    )

    def __init__(self, venue: str, host: str) -> None:
        self.venue = venue
        self.host = host
        self._counts = [0.0] * BUCKETS
        self._total = 0.0
        self._landmark = 0.0  # time.monotonic() at which a sample weighs 1
        self._lo = BUCKETS  # the occupied buckets are within [_lo, _hi]
        self._hi = -1
        self._pending = 0
        self._due = 0.0
        self.published = _NONE
        self.samples = 0.0  # recent weight: about the samples of the last 14 s (HALF_LIFE / ln 2)
        self.low = 0.0  # 1st percentile, seconds (the lower edge of its bucket)
        self.high = 0.0  # 99th percentile (the upper edge of its bucket)
        self.limits: dict[RateLimit, None] = {}  # the limits of the scopes following this path

    def observe(self, seconds: float, now: float) -> None:
        """Add one round trip of ``seconds`` that ended at ``now`` (``time.monotonic()``)."""
        if self._hi < 0:
            self._landmark = now
        i = int(_log(seconds * (1 / LOWEST)) * _SCALE) + 1 if seconds > LOWEST else 0
        if i >= BUCKETS:
            i = BUCKETS - 1
        weight = _exp2((now - self._landmark) * _INV_HALF_LIFE)
        self._counts[i] += weight
        self._total += weight
        if i > self._hi:  # noqa: PLR1730 - per answer: a comparison is a third of a max() call
            self._hi = i
        if i < self._lo:  # noqa: PLR1730
            self._lo = i
        self._pending += 1
        if self._pending >= RECOMPUTE_EVERY or now >= self._due:
            self.recompute(now)

    def recompute(self, now: float) -> None:
        """Compute J and J_max from the histogram and publish them if they widened (or narrowed enough)."""
        self._pending = 0
        self._due = now + RECOMPUTE_INTERVAL
        if self._hi < 0:
            return
        if (now - self._landmark) * _INV_HALF_LIFE > _RESCALE_AT:
            self._rescale(now)
        scale = _exp2((now - self._landmark) * _INV_HALF_LIFE)
        n = self.samples = self._total / scale
        if n < MIN_SAMPLES:
            # The floor is not known yet. A delay to the venue is at most its round trip, so the
            # slowest round trip bounds the spread (from 0): wide, and safe from the first answer.
            self.low, self.high = 0.0, _UPPER[self._hi]
            self._publish(self.high, self.high, now)
            return
        low_rank = max(TOP_WEIGHT, TAIL * n)  # the fastest of ~10 s, or the 1st percentile
        high_rank = min(max(MIN_RANK, TAIL * n), n / 2)
        low, high, top = self._quantiles(low_rank * scale, high_rank * scale, TOP_WEIGHT * scale)
        self.low, self.high = low, high
        # Few samples show less than the spread there is: n uniform ones span (n - 1) / (n + 1) of
        # it on average, so J_max is scaled back up (5/3 at four samples; 2% at a hundred).
        self._publish(high - low, (top - low) * (n + 1) / (n - 1), now)

    def _quantiles(self, low_rank: float, high_rank: float, top_rank: float) -> tuple[float, float, float]:
        """The lower edge of the bucket at ``low_rank`` from below, the upper edges at the others from above."""
        counts, lo, hi = self._counts, self._lo, self._hi
        seen, i = 0.0, lo
        while i < hi:
            seen += counts[i]
            if seen >= low_rank:
                break
            i += 1
        seen, j, top = 0.0, hi, -1
        while j > lo:
            seen += counts[j]
            if top < 0 and seen >= top_rank:
                top = j
            if seen >= high_rank:
                break
            j -= 1
        if top < 0:
            top = j
        return _LOWER[i], _UPPER[j], _UPPER[top]

    def _publish(self, spread: float, spread_max: float, now: float) -> None:
        old = self.published
        if spread > old.spread or spread_max > old.spread_max:
            # Wider: at once (the other figure, if narrower, waits for the narrowing schedule).
            self.published = Spread(max(spread, old.spread), max(spread_max, old.spread_max), now)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s", self.describe_widening())
        elif now - old.at >= NARROW_AFTER and (
            spread < old.spread * (1 - NARROW_STEP) or spread_max < old.spread_max * (1 - NARROW_STEP)
        ):
            self.published = Spread(spread, spread_max, now)

    def _rescale(self, now: float) -> None:
        """Move the landmark to ``now`` so weights stay small; forget buckets that weigh nothing."""
        factor = _exp2(-(now - self._landmark) * _INV_HALF_LIFE)
        counts = self._counts
        lo, hi = BUCKETS, -1
        for i in range(self._lo, self._hi + 1):
            weight = counts[i] * factor
            if weight < 1e-6:
                weight = 0.0
            elif i < lo:
                lo = i
            if weight:
                hi = i
            counts[i] = weight
        self._total = sum(counts[lo : hi + 1]) if hi >= 0 else 0.0
        self._lo, self._hi = lo, hi
        self._landmark = now

    def register(self, limit: RateLimit) -> None:
        """A scope of ``limit`` follows this path (for metrics and the log line: distinct limits only)."""
        if limit not in self.limits:
            self.limits[limit] = None

    def describe_widening(self) -> str:
        """The DEBUG line of a widening: the round trips and the margins they make."""
        spread = self.published
        margins = ", ".join(
            f"{limit_label(limit)} {limit.margin_for(spread.spread, spread.spread_max) * 1000:.0f} ms"
            for limit in self.limits
            if limit.adaptive
        )
        return (
            f"{self.venue} {self.host}: round trips {self.low * 1000:.1f}-{self.high * 1000:.1f} ms (1%-99% of "
            f"{self.samples:.0f} recent), spread {spread.spread * 1000:.1f} ms, to the slowest "
            f"{spread.spread_max * 1000:.1f} ms: margins widen to {margins or '(no adaptive scope yet)'}"
        )

    def snapshot(self) -> PathSnapshot:
        """The round trips, the published spread and the margin of each limit that follows it."""
        spread = self.published
        margins: dict[str, MarginSnapshot] = {}
        for limit in self.limits:
            margin = limit.margin_for(spread.spread, spread.spread_max)
            label = limit_label(limit)
            if label not in margins or margins[label].margin < margin:
                utilization = limit.with_margin(margin).utilization
                margins[label] = MarginSnapshot(label, limit.margin, margin, utilization)
        return PathSnapshot(
            samples=self.samples,
            round_trip_low=self.low,
            round_trip_high=self.high,
            spread=spread.spread,
            spread_max=spread.spread_max,
            margins=tuple(margins[label] for label in sorted(margins)),
        )


class Paths:
    """One :class:`RoundTrips` per (venue, host), created on first use (hosts are few)."""

    __slots__ = ("_paths",)

    def __init__(self) -> None:
        self._paths: dict[HostKey, RoundTrips] = {}
        COLLECTIONS.install()

    def get(self, circuit: HostKey) -> RoundTrips:
        """The round trips of ``circuit`` (venue, host)."""
        path = self._paths.get(circuit)
        if path is None:
            path = self._paths[circuit] = RoundTrips(*circuit)
        return path

    def snapshot(self) -> dict[tuple[str, str], PathSnapshot]:
        """Every path's :class:`~connex_async.metrics.PathSnapshot`."""
        return {key: path.snapshot() for key, path in self._paths.items()}


class AdaptiveScope:
    """A scope whose margin follows the widest path it is admitted through (mixed into each backend's scope).

    ``limit`` is the configured limit (its margin the floor), ``current`` the limit in effect.
    :meth:`follow` runs when the path's published spread is not the one ``seen`` last: widening
    applies at once, narrowing only when the path followed narrows. A scope admitted through two
    hosts (one key behind two base URLs) follows the wider of them; if that one later narrows below
    the other, the other's next admission widens it again.
    """

    __slots__ = ("current", "path", "seen")

    limit: RateLimit

    def _init_margin(self, limit: RateLimit) -> None:
        self.current = limit
        self.path: RoundTrips | None = None
        self.seen: Spread | None = None

    def follow(self, path: RoundTrips) -> None:
        """Bring the margin in effect to what ``path`` now shows (see the class docstring)."""
        spread = self.seen = path.published
        limit = self.limit
        margin = limit.margin_for(spread.spread, spread.spread_max)  # the floor if not adaptive
        if self.path is not path:
            if self.path is not None and margin <= self.current.margin:
                return  # another host's narrower view: keep the wider
            self.path = path
            path.register(limit)
        if margin != self.current.margin:
            self.retune(limit.with_margin(margin), wider=margin > self.current.margin)

    def retune(self, limit: RateLimit, *, wider: bool) -> None:
        """Put ``limit`` (the same limit with another margin) in effect; the backend's business."""
        raise NotImplementedError

    @property
    def margin(self) -> float:
        """The margin in effect, seconds."""
        return self.current.margin


def follow_all(paths: Paths, scopes: tuple[Any, ...], circuit: HostKey) -> None:
    """Let each scope of one admission follow its path's published spread (an identity check each)."""
    path = paths.get(circuit)
    spread = path.published
    for scope in scopes:
        if scope.seen is not spread:
            scope.follow(path)
