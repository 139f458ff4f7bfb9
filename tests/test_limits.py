"""RateLimit arithmetic and the limiter's refund/cancellation mechanics (the socket tests are elsewhere)."""

from __future__ import annotations

import asyncio
import time

import pytest

from connex_async.limits import LimiterRegistry, RateLimit, RefundableBucket, WindowSafeLimiter


def test_derivation_figures() -> None:
    limit = RateLimit(20, 1.0)
    assert limit.refill_rate == pytest.approx(20 / 1.028)
    assert limit.utilization == pytest.approx(1 / 1.028)
    assert limit.capacity == pytest.approx(1 + 0.003 * limit.refill_rate)
    # Any N+1 admissions are at least period + margin apart: (N + 1 - capacity) / r.
    assert (20 + 1 - limit.capacity) / limit.refill_rate == pytest.approx(1.025)
    burst = RateLimit(20, 1.0, burst=5, margin=0.0, slack=0.0)
    assert burst.refill_rate == pytest.approx(16.0)


@pytest.mark.parametrize(
    ("count", "period", "slack"),
    [
        (20, 1.0, 0.003),  # few requests: the 3 ms floor
        (300, 60.0, 0.030),  # 0.1 ms per request
        (600, 5.0, 0.050),  # capped at 1% of the period
        (5, 5.0, 0.003),
    ],
)
def test_default_slack_deepens_with_the_count_within_one_percent_of_the_period(
    count: int, period: float, slack: float
) -> None:
    limit = RateLimit(count, period)
    assert limit.slack == pytest.approx(slack)
    # Whatever the slack, any N+1 admissions stay period + margin apart.
    assert (count + 1 - limit.capacity) / limit.refill_rate == pytest.approx(period + limit.margin)
    assert RateLimit(count, period, slack=0.001).slack == 0.001  # an explicit value wins


@pytest.mark.parametrize(
    "kwargs",
    [
        {"count": 0, "period": 1.0},
        {"count": 5, "period": 0},
        {"count": 5, "period": 1.0, "burst": 6},
        {"count": 5, "period": 1.0, "margin": -1},
        {"count": 5, "period": 1.0, "slack": -0.1},
    ],
)
def test_invalid_limits(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RateLimit(**kwargs)  # type: ignore[arg-type]


async def test_try_take_and_refund_wake_waiters() -> None:
    bucket = RefundableBucket(1, 10.0)  # one token per 10 s
    assert bucket.try_take()
    assert not bucket.try_take() and not bucket.has_capacity()
    waiter = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    bucket.refund()
    await asyncio.wait_for(waiter, 0.5)  # the refund woke it, long before the 10 s drip


async def test_buckets_share_one_waiter_counter_and_keep_their_own_fifo_order() -> None:
    a, b = RefundableBucket(1, 0.05), RefundableBucket(1, 0.05)
    assert a._next_count is b._next_count  # one counter, not two objects per bucket
    assert a.try_take() and b.try_take()
    order: list[str] = []

    async def wait(bucket: RefundableBucket, name: str) -> None:
        await bucket.acquire()
        order.append(name)

    waiters = [(a, "a1"), (b, "b1"), (a, "a2"), (b, "b2"), (a, "a3")]
    tasks = []
    for bucket, name in waiters:
        tasks.append(asyncio.create_task(wait(bucket, name)))
        await asyncio.sleep(0)  # queue in this order
    await asyncio.wait_for(asyncio.gather(*tasks), 1.0)
    assert [n for n in order if n[0] == "a"] == ["a1", "a2", "a3"]
    assert [n for n in order if n[0] == "b"] == ["b1", "b2"]


async def test_cooldown_blocks_then_admits() -> None:
    limiter = WindowSafeLimiter(RateLimit(100, 1.0))
    limiter.cool_down(0.2)
    started = time.monotonic()
    await limiter.acquire()
    assert time.monotonic() - started >= 0.19
    assert limiter.cooldowns == 1


async def test_tokens_are_not_held_across_a_wait_for_another_scope() -> None:
    registry = LimiterRegistry()
    key = registry.get("key", RateLimit(1, 10.0, margin=0.0, slack=0.0))
    host = registry.get("host", RateLimit(1, 0.3, margin=0.0, slack=0.0))
    await registry.acquire((key, host), None)  # both spent: host refills in < 0.6 s, key in 10 s
    # The next request of this key waits for the key (10 s) and times out, holding no host slot.
    with pytest.raises(Exception, match="max_queue_wait"):
        await registry.acquire((key, host), 0.5)
    other_key = registry.get("key2", RateLimit(1, 10.0, margin=0.0, slack=0.0))
    await asyncio.sleep(0.2)  # host's refill (0.3 s) plus its first-admission phase (< 0.3 s) are over
    # The host slot that refilled meanwhile was not taken: another key has it right now. (Asked
    # without waiting: a stopwatch around an "immediate" acquire fails on a garbage-collector pass.)
    assert registry.try_acquire_all((other_key, host))


async def test_admission_is_one_instant_for_both_scopes() -> None:
    registry = LimiterRegistry()
    key = registry.get("key", RateLimit(1, 0.2, margin=0.0, slack=0.0))
    host = registry.get("host", RateLimit(1, 0.5, margin=0.0, slack=0.0))
    await registry.acquire((key, host), None)  # first admissions also shift each scope's phase
    await asyncio.sleep(1.1)
    await registry.acquire((key, host), None)
    started = time.monotonic()
    await registry.acquire((key, host), None)  # key free after 0.2 s, host after 0.5 s
    waited = time.monotonic() - started
    assert 0.45 <= waited < 0.7
    # The key slot was taken at the end (with the host's), not at 0.2 s: it is spent right now.
    assert not key.try_acquire()


async def test_cancelled_multi_scope_acquire_holds_nothing() -> None:
    registry = LimiterRegistry()
    a = registry.get("a", RateLimit(1, 0.1, margin=0.0, slack=0.0))
    b = registry.get("b", RateLimit(1, 5.0, margin=0.0, slack=0.0))
    await a.acquire()  # the first admission of a scope also shifts its phase by < 1 interval
    await asyncio.sleep(0.25)  # ... after which a has its slot again
    await b.acquire()  # b is empty for 5 s
    tasks = [asyncio.create_task(registry.acquire((a, b), None)) for _ in range(1000)]
    await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert a.try_acquire()  # a's slot is still there: no cancelled waiter kept it


async def test_a_stall_delays_the_next_admission_even_once_the_bucket_has_drained() -> None:
    limiter = WindowSafeLimiter(RateLimit(10, 1.0))  # one token every ~0.1 s
    assert limiter.try_acquire()
    limiter.committed()  # the first admission's random phase: at most one interval
    await asyncio.sleep(0.35)  # fully drained: the next admission would be immediate
    now = time.monotonic()
    limiter.charge_stall(now - 0.2, now)  # a charge added on top of a stale level would leak away unseen
    assert not limiter.try_acquire()
    started = time.monotonic()
    await limiter.acquire()
    assert 0.15 <= time.monotonic() - started <= 0.4


async def test_requests_stalled_by_the_same_pause_share_one_charge() -> None:
    limiter = WindowSafeLimiter(RateLimit(10, 1.0))
    await asyncio.sleep(0)
    now = time.monotonic()
    for admitted in (now - 0.4, now - 0.3, now - 0.2):  # three requests caught by one 0.4 s pause
        limiter.charge_stall(admitted, now)
    started = time.monotonic()
    await limiter.acquire()
    assert 0.35 <= time.monotonic() - started <= 0.7  # one 0.4 s charge, not 0.9 s of them


async def test_a_swept_limiter_that_a_request_still_holds_is_taken_back_not_made_twice() -> None:
    # A request gets its scope's limiter, then waits for a connection; meanwhile the registry grows
    # and sweeps: a limiter not admitted through yet looks drained. Asked for again, the scope must
    # be the same limiter, or the key would have two budgets.
    registry = LimiterRegistry()
    limit = RateLimit(5, 5.0)
    held = registry.get("key:held", limit)
    for i in range(200):  # grows past the sweep threshold: the held scope is swept
        registry.get(f"key:{i}", limit)
    assert registry.find("key:held") is None
    assert registry.get("key:held", limit) is held
    assert held.try_acquire()
    held.committed()
    assert not registry.get("key:held", limit).try_acquire()  # one budget: the next must wait
    # Nobody holds a swept limiter any more: it is gone, and a new one starts fresh.
    registry.sweep()
    gone = registry.find("key:0")
    assert gone is None and "key:0" not in registry._swept
    del held
