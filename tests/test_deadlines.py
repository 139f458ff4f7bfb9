"""The deadline watch (connex_async.deadlines): a scope gets its timer when its deadline is near.

No timing bounds here: what is checked is whether and when a scope's timer is set
(``Timeout.when()``), which the watch decides, not how fast the machine runs. The end-to-end
promise (a call hanging past a far deadline still ends at it, typed) is in
``test_deadline_and_lifecycle.py``.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from connex_async.deadlines import DeadlineWatch, loop_watch


async def test_a_deadline_within_the_horizon_is_armed_at_once() -> None:
    watch = DeadlineWatch(horizon=1.0)
    async with asyncio.timeout(None) as scope:
        before = asyncio.get_running_loop().time()
        watch.watch(scope, 0.5)
        assert scope.when() == pytest.approx(before + 0.5, abs=0.05)
        assert watch.watched() == 0
        await asyncio.sleep(0)


async def test_a_far_deadline_waits_for_the_tick_and_a_finished_call_is_forgotten() -> None:
    watch = DeadlineWatch(horizon=0.1)  # ticks every 50 ms
    async with asyncio.timeout(None) as far, asyncio.timeout(None) as farther:
        now = asyncio.get_running_loop().time()
        watch.watch(far, 0.15)
        watch.watch(farther, 30.0)
        assert far.when() is None and farther.when() is None and watch.watched() == 2
        await asyncio.sleep(0.12)  # at least two ticks: `far` is now within the horizon
        assert far.when() == pytest.approx(now + 0.15, abs=0.05)
        assert farther.when() is None and watch.watched() == 1
        watch.forget(farther)
        assert watch.watched() == 0


def test_a_new_event_loop_gets_a_tick_of_its_own() -> None:
    # A tick scheduled on a loop that has since closed never runs: the watch must not wait for it.
    watch = DeadlineWatch(horizon=0.1)

    async def leave_a_far_scope() -> None:
        async with asyncio.timeout(None) as scope:
            watch.watch(scope, 30.0)
            await asyncio.sleep(0)

    async def far_scope_armed_by_a_tick() -> float | None:
        async with asyncio.timeout(None) as scope:
            watch.watch(scope, 0.15)
            await asyncio.sleep(0.12)
            armed = scope.when()
            watch.forget(scope)
            return armed

    asyncio.run(leave_a_far_scope())
    assert asyncio.run(far_scope_armed_by_a_tick()) is not None


def test_every_pool_on_a_loop_shares_its_watch() -> None:
    # One tick per event loop however many pools (a bot may give every key a private pool).
    async def twice() -> tuple[DeadlineWatch, DeadlineWatch]:
        return loop_watch(), loop_watch()

    first, again = asyncio.run(twice())
    assert first is again
    assert asyncio.run(twice())[0] is not first  # another loop, another watch


def test_a_finished_event_loop_is_not_kept_alive_by_its_watch() -> None:
    # The per-loop map is weak: a watch that held its loop strongly would keep every loop ever
    # used (pytest makes one per test, a bot one per asyncio.run) alive with its selector.
    async def use_the_watch() -> weakref.ref[asyncio.AbstractEventLoop]:
        watch = loop_watch()
        async with asyncio.timeout(None) as scope:
            watch.watch(scope, 30.0)  # also schedules the tick
            await asyncio.sleep(0)
            watch.forget(scope)
        return weakref.ref(asyncio.get_running_loop())

    loop = asyncio.run(use_the_watch())
    gc.collect()
    assert loop() is None


def test_the_horizon_must_be_positive() -> None:
    with pytest.raises(ValueError, match="horizon"):
        DeadlineWatch(horizon=0)
