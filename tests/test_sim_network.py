"""The simulator's WAN: one-way delay distributions per direction, routes, and their command-line specs."""

from __future__ import annotations

import asyncio
import random
import statistics
import time

import aiohttp
import pytest

from connex_async.testing import SimulatedVenue
from connex_async.testing.cli import build_parser
from connex_async.testing.network import Delay, Route
from connex_async.testing.server import ZOOMEX_TIME


def test_a_delay_spec_reads_and_prints_back() -> None:
    wan = Delay.parse("0-120ms,250ms@0.5%")
    assert wan == Delay(base=0.0, jitter=0.12, spike=0.25, spike_rate=0.005)
    assert str(wan) == "0-120ms,250ms@0.5%"
    heavy = Delay.parse("20ms, 0-30ms, 0.1s@0.01, pareto1.5")
    assert heavy == Delay(base=0.02, jitter=0.03, spike=0.1, spike_rate=0.01, tail=1.5)
    assert Delay.parse(str(heavy)) == heavy
    for bad in ("fast", "120-0ms", "250ms@", "-5ms"):
        with pytest.raises(ValueError):
            Delay.parse(bad)
    with pytest.raises(ValueError, match="spike_rate"):
        Delay(spike=0.1, spike_rate=2.0)


def test_samples_follow_the_distribution() -> None:
    rng = random.Random(1)
    uniform = [Delay(base=0.01, jitter=0.12).sample(rng) for _ in range(20_000)]
    assert min(uniform) >= 0.01 and max(uniform) <= 0.13
    assert statistics.mean(uniform) == pytest.approx(0.07, abs=0.002)
    spikes = [Delay(spike=0.25, spike_rate=0.005).sample(rng) for _ in range(40_000)]
    assert set(spikes) == {0.0, 0.25} and sum(spikes) / 0.25 == pytest.approx(200, rel=0.25)
    heavy = Delay(spike=0.1, spike_rate=1.0, tail=1.5, max_spike=2.0)
    tail = [heavy.sample(rng) for _ in range(20_000)]
    assert min(tail) >= 0.1 and max(tail) == 2.0  # Pareto: some beyond 20x the minimum, capped
    assert statistics.median(tail) == pytest.approx(0.1 * 2 ** (1 / 1.5), rel=0.05)
    assert heavy.worst == 2.0 and Delay(base=0.01, jitter=0.12, spike=0.25, spike_rate=0.1).worst == 0.38


async def round_trip(session: aiohttp.ClientSession, url: str) -> float:
    started = time.monotonic()
    async with session.get(url + ZOOMEX_TIME) as resp:
        assert resp.status == 200
        await resp.read()
    return time.monotonic() - started


async def test_each_direction_and_each_route_has_its_own_delay() -> None:
    slow_in, slow_out = Delay(base=0.15), Delay(base=0.1)
    async with (
        SimulatedVenue(
            connex_portfolios=0,
            zoomex_accounts=0,
            response_delay=Delay(base=0.05),
            routes={"far": Route(request=slow_in, response=slow_out)},
        ) as venue,
        aiohttp.ClientSession() as session,
    ):
        near = await round_trip(session, venue.base_url)
        far = await round_trip(session, venue.route_url("far"))
        assert venue.route_url("far") != venue.base_url
        counted = venue.stats().requests
    assert 0.05 <= near < 0.1
    assert 0.25 <= far < 0.35
    assert counted == 2  # one venue, two routes to it


async def test_the_request_delay_comes_before_the_arrival_is_counted() -> None:
    async with (
        SimulatedVenue(connex_portfolios=0, zoomex_accounts=0, request_delay=Delay(base=0.3)) as venue,
        aiohttp.ClientSession() as session,
    ):
        sent = asyncio.create_task(round_trip(session, venue.base_url))
        await asyncio.sleep(0.15)
        assert venue.stats().requests == 0  # on its way in: not arrived yet
        assert await sent >= 0.3
        assert venue.stats().requests == 1


def test_serve_takes_delay_specs_and_says_what_is_wrong_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["--request-delay", "0-120ms,250ms@0.5%", "--response-delay", "0-10ms"])
    assert args.request_delay == Delay(jitter=0.12, spike=0.25, spike_rate=0.005)
    assert args.response_delay == Delay(jitter=0.01)
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--request-delay", "soon"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read delay term 'soon'" in err
