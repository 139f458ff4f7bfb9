"""Adaptive margins, piece by piece: the round-trip estimator, the margin it makes, the bucket's retune,
the send ticket's sampling, the Redis script's widest margin, and where they show (metrics, log).

Every test runs on a fake clock or on Redis's own answers, in well under a second; the margins
against the simulator's WAN are in ``test_wan_margins.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from redis_helpers import redis_limiters

import connex_async.limits
from connex_async.limits import LimiterRegistry, WindowSafeLimiter
from connex_async.margins import COLLECTIONS, NARROW_AFTER, Paths, RoundTrips
from connex_async.rate_limit import RateLimit
from connex_async.redis_limits import RedisLimiter, RedisScope, load_script
from connex_async.send_ticket import SendTicket

PATH = ("connex", "api.test")


def feed(path: RoundTrips, rng: random.Random, low: float, high: float, n: int, start: float, rate: float) -> float:
    """``n`` round trips uniform in [low, high], ``rate`` per second from ``start``; returns the end time."""
    now = start
    for _ in range(n):
        now += 1 / rate
        path.observe(rng.uniform(low, high), now)
    return now


# -- the estimator ------------------------------------------------------------------------------


def test_the_spread_covers_the_round_trips_and_overestimates_by_a_bucket_at_most() -> None:
    path, rng = RoundTrips(*PATH), random.Random(1)
    feed(path, rng, 0.05, 0.17, 400, 0.0, 20.0)  # 0-120 ms of jitter on a 50 ms route
    spread = path.published
    assert 0.115 <= spread.spread <= 0.12 * 1.05  # 1st..99th percentile: 117.6 ms, bucket edges outward
    assert 0.119 <= spread.spread_max <= 0.12 * 1.05
    assert 0.05 * 0.97 <= path.low <= 0.0512 and 0.168 <= path.high <= 0.17 * 1.03


def test_before_four_samples_the_slowest_round_trip_bounds_the_spread() -> None:
    path = RoundTrips(*PATH)
    path.observe(0.08, 1.0)
    assert 0.08 <= path.published.spread_max == path.published.spread <= 0.08 * 1.03  # the floor may be 0
    path.observe(0.2, 1.1)
    path.observe(0.1, 1.2)
    assert 0.2 <= path.published.spread_max <= 0.2 * 1.03
    for i, seconds in enumerate((0.12, 0.1, 0.09)):  # from the fourth a floor (80 ms) is known ...
        path.observe(seconds, 1.3 + i * 0.1)
    assert path.published.spread_max >= 0.2  # ... but narrowing waits 2 s after the last change
    path.observe(0.1, 1.1 + NARROW_AFTER)
    assert path.published.spread_max == pytest.approx((0.2 - 0.08) * 8 / 6, rel=0.05)  # 7 samples: x 8/6


def test_a_few_samples_are_taken_for_part_of_the_spread() -> None:
    path, rng = RoundTrips(*PATH), random.Random(9)
    seen = [rng.uniform(0.05, 0.17) for _ in range(8)]
    for i, seconds in enumerate(seen):
        path.observe(seconds, 1.0 + i * 0.001)
    path.recompute(1.01)
    n = path.samples  # ~8: barely decayed
    # the fastest and the slowest of 8 uniform ones span 7/9 of the spread on average: scaled back up
    assert path.published.spread_max == pytest.approx((max(seen) - min(seen)) * (n + 1) / (n - 1), rel=0.05)


def test_one_slow_round_trip_widens_at_once_and_is_forgotten_within_seconds() -> None:
    path, rng = RoundTrips(*PATH), random.Random(2)
    now = feed(path, rng, 0.05, 0.07, 200, 0.0, 20.0)
    before = path.published
    path.observe(0.45, now + 0.05)  # a 380 ms spike: the next refresh is due (50 ms)
    widened = path.published
    assert widened is not before and widened.spread_max >= 0.39  # J_max takes it at once
    assert widened.spread == pytest.approx(before.spread)  # one in 200 does not move the 99th percentile
    now = feed(path, rng, 0.05, 0.07, 240, now + 0.05, 20.0)  # 12 s later: its weight fell below one half
    assert path.published.spread_max < 0.03


def test_a_slower_route_moves_the_99th_percentile_within_a_second_and_leaves_it_slowly() -> None:
    path, rng = RoundTrips(*PATH), random.Random(3)
    now = feed(path, rng, 0.05, 0.07, 400, 0.0, 20.0)
    assert path.published.spread < 0.025
    now = feed(path, rng, 0.05, 0.27, 20, now, 20.0)  # the route starts jittering by 220 ms
    assert path.published.spread > 0.15
    wide = path.published
    now = feed(path, rng, 0.05, 0.07, 20 * 5, now, 20.0)  # quiet again: 5 s later still wide
    assert path.published.spread > 0.15
    feed(path, rng, 0.05, 0.07, 20 * 60, now, 20.0)  # a minute later, narrowed
    assert path.published.spread < 0.03 and path.published.at - wide.at >= NARROW_AFTER


def test_narrowing_waits_and_a_flickering_quantile_does_not_republish() -> None:
    path, rng = RoundTrips(*PATH), random.Random(4)
    now = feed(path, rng, 0.05, 0.17, 400, 0.0, 20.0)
    published, changes = path.published, 0
    for _ in range(20 * 30):
        now += 0.05
        path.observe(rng.uniform(0.05, 0.17), now)
        if path.published is not published:
            published, changes = path.published, changes + 1
    assert changes <= 8  # 30 s of the same distribution: a handful of one-bucket steps, not 600


def test_weights_are_rescaled_without_losing_the_estimate() -> None:
    path, rng = RoundTrips(*PATH), random.Random(5)
    now = feed(path, rng, 0.05, 0.17, 200, 0.0, 20.0)
    now = feed(path, rng, 0.05, 0.17, 200, now + 1000.0, 20.0)  # 1,000 s later: landmark moved, weights sane
    assert 0.115 <= path.published.spread <= 0.126
    # 10 s at 20/s: the weights of the last half-life and its halves, 20 * 10 / ln 2 * (1 - 1/2)
    assert path.samples == pytest.approx(20 * 10 / 0.6931 / 2, rel=0.05)


# -- the margin ---------------------------------------------------------------------------------


def test_the_margin_is_the_floor_the_whole_spread_or_the_spread_plus_one_interval() -> None:
    limit = RateLimit(20, 1.0)
    assert limit.margin_for(0.003, 0.010) == limit.margin  # loopback: the floor
    assert limit.margin_for(0.12, 0.12) == 0.12  # no straggler: the whole spread
    straggler = (20 * 0.12 + 1.0 + limit.slack) / 19
    assert limit.margin_for(0.12, 0.37) == pytest.approx(straggler)  # one straggler per window
    assert limit.with_margin(straggler).utilization == pytest.approx(0.846, abs=0.001)
    assert limit.margin_for(2.0, 5.0) == 1.0  # at most one period
    assert RateLimit(20, 1.0, adaptive=False).margin_for(0.12, 0.37) == 0.025
    assert RateLimit(1, 1.0).margin_for(0.1, 0.3) == 0.3  # one per window: no straggler can be left out


# -- the local bucket's retune ------------------------------------------------------------------


class FakeLoop:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def is_closed(self) -> bool:
        return False


def greedy_admissions(monkeypatch: pytest.MonkeyPatch, seed: int) -> tuple[RateLimit, list[tuple[float, float]]]:
    """Admit as early as allowed for 40 s on a fake clock while the margin jumps around; (time, margin) each."""
    loop, rng = FakeLoop(), random.Random(seed)
    monkeypatch.setattr(connex_async.limits, "time", SimpleNamespace(monotonic=loop.time))
    monkeypatch.setattr(connex_async.limits, "random", rng)
    limit = RateLimit(5, 1.0, margin=0.025)
    limiter = WindowSafeLimiter(limit)
    limiter._bucket._event_loop = loop  # type: ignore[assignment]
    admitted: list[tuple[float, float]] = []
    while loop.now < 1040.0:
        loop.now += 0.001
        if rng.random() < 0.004:  # every quarter of a second or so: a margin between the floor and 0.6 s
            margin = rng.choice((0.025, 0.05, 0.2, 0.35, 0.6, rng.uniform(0.025, 0.6)))
            limiter.retune(limit.with_margin(margin), wider=margin > limiter.margin)
        if limiter.try_acquire():
            limiter.committed()
            admitted.append((loop.now, limiter.margin))
    return limit, admitted


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_n_plus_1_admissions_are_a_window_apart_with_the_margin_in_effect(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    limit, admitted = greedy_admissions(monkeypatch, seed)
    assert len(admitted) > 60
    n = limit.count
    short = [
        (round(t - admitted[j - n][0], 4), margin)
        for j, (t, margin) in enumerate(admitted)
        if j >= n and t - admitted[j - n][0] < limit.period + margin - 1e-9
    ]
    assert not short, f"N+1 admissions closer than T + m: {short[:5]}"


def test_a_widening_without_the_push_breaks_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    # The harness above can fail: re-expressing the booked time at the new rate alone is not enough.
    retune = connex_async.limits.RefundableBucket.retune
    monkeypatch.setattr(
        connex_async.limits.RefundableBucket,
        "retune",
        lambda self, capacity, rate, push: retune(self, capacity, rate, 0),
    )
    limit, admitted = greedy_admissions(monkeypatch, 1)
    n = limit.count
    assert any(t - admitted[j - n][0] < limit.period + m - 1e-9 for j, (t, m) in enumerate(admitted) if j >= n)


def test_a_retune_keeps_the_time_already_booked() -> None:
    limiter = WindowSafeLimiter(RateLimit(20, 1.0))
    bucket, loop = limiter._bucket, FakeLoop()
    bucket._event_loop = loop  # type: ignore[assignment]
    bucket._last_check = loop.now
    for _ in range(3):
        bucket._level += 1  # three admissions just now: their time is booked at the old rate
    booked = bucket._level / bucket._rate_per_sec
    narrower = RateLimit(20, 1.0).with_margin(0.01)
    bucket.retune(narrower.capacity, narrower.refill_rate, 0.0)
    assert bucket._level / bucket._rate_per_sec == pytest.approx(booked)  # nothing given back ...
    wider = RateLimit(20, 1.0).with_margin(0.3)
    bucket.retune(wider.capacity, wider.refill_rate, 0.25)
    assert bucket._level / bucket._rate_per_sec == pytest.approx(booked + 0.25)  # ... nor lost, plus the push
    assert bucket.max_rate == wider.capacity


async def test_a_registry_scope_follows_its_host_and_a_fixed_one_does_not() -> None:
    registry = LimiterRegistry()
    adaptive = registry.scope(("connex", "k1", "assets"), RateLimit(20, 1.0))
    fixed = registry.scope(("connex", "k2", "assets"), RateLimit(20, 1.0, adaptive=False))
    path = registry.paths.get(PATH)
    feed(path, random.Random(6), 0.05, 0.17, 100, time.monotonic() - 10, 20.0)
    assert (await registry.try_admit((adaptive,), PATH)).admitted
    assert (await registry.try_admit((fixed,), PATH)).admitted
    assert adaptive.margin == pytest.approx(path.published.spread_max) and adaptive.margin > 0.11
    assert fixed.margin == 0.025
    other = registry.paths.get(("connex", "api2.test"))  # the same key through a quieter host: keeps the wider
    feed(other, random.Random(7), 0.05, 0.06, 100, time.monotonic() - 10, 20.0)
    await registry.try_admit((adaptive,), ("connex", "api2.test"))
    assert adaptive.margin > 0.11
    snapshot = registry.network_snapshot()[PATH]
    assert [(m.limit, m.margin) for m in snapshot.margins] == [
        ("20/1s", pytest.approx(adaptive.margin)),
        ("20/1s fixed", 0.025),
    ]


# -- the send ticket ----------------------------------------------------------------------------


def test_a_round_trip_that_overlapped_a_long_collection_is_left_out() -> None:
    class Backend(LimiterRegistry):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[float] = []

        def observe_round_trip(self, circuit: Any, seconds: float, now: float) -> None:
            self.seen.append(seconds)

    backend = Backend()
    for collect in (False, True):
        ticket = SendTicket(backend, (), time.monotonic(), None, PATH)
        ticket.written()
        if collect:  # a collection of 6 ms, as the gc callback sees one
            COLLECTIONS._on_collection("start", {})
            time.sleep(0.006)
            COLLECTIONS._on_collection("stop", {})
        ticket.answered()
        ticket.answered()  # once per attempt
    assert len(backend.seen) == 1


# -- Redis: the widest margin wins ----------------------------------------------------------------


@pytest.fixture
async def two_processes(redis_url: str) -> AsyncIterator[list[RedisLimiter]]:
    async with redis_limiters(redis_url, 2, "m") as made:
        yield made


async def admit(limiter: RedisLimiter, scope: RedisScope) -> float:
    while True:
        verdict = await limiter.try_admit((scope,), None)
        if verdict.admitted:
            return time.monotonic()
        await limiter.wait_ready((scope,), verdict, None)


async def gaps_of(limiter: RedisLimiter, scope: RedisScope, n: int) -> list[float]:
    times = [await admit(limiter, scope) for _ in range(n + 1)]
    return [b - a for a, b in itertools.pairwise(times)]


LIMIT = RateLimit(4, 0.4, margin=0.01, slack=0.0)  # e = 102.5 ms at its floor, 150 ms at a 200 ms margin
KEY = ("connex", "k", "assets")


async def test_the_widest_margin_any_process_sends_books_the_shared_scope(two_processes: list[RedisLimiter]) -> None:
    wide, narrow = (limiter.scope(KEY, LIMIT) for limiter in two_processes)
    wide.retune(LIMIT.with_margin(0.2), wider=True)  # a process on a bad route
    await admit(two_processes[0], wide)
    gaps = await gaps_of(two_processes[1], narrow, 4)  # within 2T (0.8 s) of it: spaced for the bad route
    assert min(gaps[1:]) > 0.14, gaps
    await asyncio.sleep(4 * LIMIT.period + 0.1)  # the bad route's process said nothing for 4T: forgotten
    gaps = await gaps_of(two_processes[1], narrow, 5)
    assert max(gaps[1:]) < 0.125, gaps


async def test_without_the_widest_margin_each_process_books_its_own(
    two_processes: list[RedisLimiter], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connex_async.redis_limits, "load_script", widest_wins_disabled)
    limiters = [RedisLimiter(two_processes[0].url, namespace="m2"), RedisLimiter(two_processes[0].url, namespace="m2")]
    try:
        for limiter in limiters:
            await limiter.open()
        await limiters[0].declare_cold_start()
        wide, narrow = (limiter.scope(KEY, LIMIT) for limiter in limiters)
        wide.retune(LIMIT.with_margin(0.2), wider=True)
        await admit(limiters[0], wide)
        gaps = await gaps_of(limiters[1], narrow, 6)
        assert max(gaps[1:]) < 0.125, gaps  # the test above can fail
    finally:
        for limiter in limiters:
            await limiter.aclose()


def widest_wins_disabled() -> str:
    """The admission script with "the widest wins" cut out: each admission booked with its own margin,
    nothing remembered between them (so no push either: the script as it was before margins adapted)."""
    source = load_script()
    begin, end = source.index("  -- [widest wins]"), source.index("  -- [/widest wins]")
    return source[:begin] + "  local M = p.m\n  me = nil\n" + source[end:]


async def test_a_refused_admission_widens_the_shared_scope_too(two_processes: list[RedisLimiter]) -> None:
    # A process starved of admissions (the others always win the race) still has requests in
    # flight: its margin must reach the scope with its refused asks, not with an admission later.
    a, b = two_processes
    wide, narrow = a.scope(KEY, LIMIT), b.scope(KEY, LIMIT)
    await admit(a, wide)  # one request of A's in flight, booked at the floor
    for _ in range(4):
        await admit(b, narrow)
    before = await b.try_admit((narrow,), None)
    wide.retune(LIMIT.with_margin(0.2), wider=True)  # its answer showed the route: ask again, refused
    assert not (await a.try_admit((wide,), None)).admitted
    after = await b.try_admit((narrow,), None)
    push = LIMIT.count * (LIMIT.with_margin(0.2).emission_interval - LIMIT.emission_interval)
    assert after.wait - before.wait == pytest.approx(push, abs=0.02)


async def test_a_widening_pushes_the_shared_scope_back_by_n_intervals(two_processes: list[RedisLimiter]) -> None:
    a, _ = two_processes
    scope = a.scope(KEY, LIMIT)
    for _ in range(4):  # a saturated scope: the next admission is due one interval on
        await admit(a, scope)
    before = await a.try_admit((scope,), None)
    scope.retune(LIMIT.with_margin(0.2), wider=True)
    after = await a.try_admit((scope,), None)
    push = LIMIT.count * (LIMIT.with_margin(0.2).emission_interval - LIMIT.emission_interval)  # 190 ms
    assert not before.admitted and not after.admitted
    assert after.wait - before.wait == pytest.approx(push, abs=0.02)


# -- where it shows -----------------------------------------------------------------------------


def test_a_widening_logs_one_debug_line_per_host(caplog: pytest.LogCaptureFixture) -> None:
    paths = Paths()
    path = paths.get(PATH)
    path.register(RateLimit(20, 1.0))
    path.register(RateLimit(600, 5.0))
    with caplog.at_level(logging.DEBUG, logger="connex_async"):
        feed(path, random.Random(8), 0.05, 0.17, 100, 0.0, 20.0)
    lines = [r.getMessage() for r in caplog.records if "margins widen" in r.getMessage()]
    assert lines and "connex api.test: round trips" in lines[-1]
    assert "20/1s 12" in lines[-1] and "600/5s 1" in lines[-1]  # 20/1s at ~120 ms; 600/5s at its 100 ms floor
