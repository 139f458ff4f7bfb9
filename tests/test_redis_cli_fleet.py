"""``connex-async poll --redis URL --shard i/n`` processes against one simulator, counted on arrival.

What a desk would run: several processes, each its own interpreter, sharing only Redis and the
venue's IP. The simulator (in this test's process) counts strict windows per key and per IP; the
real Zoomex limit of 600 requests per 5 s per IP applies unscaled.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connex_async.testing import SimulatedVenue
from connex_async.testing.cli import write_credentials

_SCRIPT = Path(sys.executable).with_name("connex-async")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "connex_async.cli"]
IP_RATE = 600 / 5.0


@contextlib.asynccontextmanager
async def polling(argv_per_process: list[list[str]]) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Start one ``connex-async poll`` per argv; kill whatever is still running at the end."""
    procs = [
        await asyncio.create_subprocess_exec(
            *CLI, "poll", *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        for argv in argv_per_process
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


async def fleet_init(redis_url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *CLI, "fleet", "init", "--redis", redis_url, "--namespace", "desk", stdout=asyncio.subprocess.DEVNULL
    )
    assert await asyncio.wait_for(proc.wait(), 30) == 0


async def steady_rate(venue: SimulatedVenue, settle: float, steady: float) -> tuple[float, int]:
    """Accepted requests per second between ``settle`` and ``settle + steady`` s from now."""
    await asyncio.sleep(settle)
    before, started = venue.stats().accepted, time.monotonic()
    await asyncio.sleep(steady)
    return (venue.stats().accepted - before) / (time.monotonic() - started), venue.stats().violations


@pytest.mark.timing
@pytest.mark.parametrize("shared", [True, False], ids=["redis", "local-limits"])
async def test_three_shards_on_one_ip_hold_the_zoomex_ip_limit(redis_url: str, tmp_path: Path, shared: bool) -> None:
    # 240 accounts polled every second: twice the IP's 120/s, split over three processes.
    creds = tmp_path / "creds.json"
    async with SimulatedVenue(connex_portfolios=0, zoomex_accounts=240, seed=11, jitter=0.005) as venue:
        write_credentials(venue, str(creds))
        common = ["--credentials", str(creds), "--base-url", venue.base_url, "--format", "jsonl", "--duration", "12"]
        fleet = ["--redis", redis_url, "--namespace", "desk"] if shared else []
        if shared:
            await fleet_init(redis_url)
        argvs = [[*common, *fleet, "--shard", f"{i}/3"] for i in range(3)]
        async with polling(argvs) as procs:
            rate, violations = await steady_rate(venue, 4.0, 6.0 if shared else 2.0)
            stats = venue.stats()
            if shared:
                codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), 30)
                errors = [(await p.stderr.read()).decode()[-500:] for p in procs if p.stderr is not None]
    print(
        f"\n3 shards {'through Redis' if shared else 'with local limits'}: {rate:.1f}/s ({rate / IP_RATE:.1%}), "
        f"IP violations {stats.ip_violations}, peak {stats.ip_peak}/600"
    )
    if not shared:
        assert stats.ip_violations > 0  # each process keeps the IP limit alone; together they break it
        return
    assert violations == 0 and stats.ip_violations == 0
    assert rate >= 0.95 * IP_RATE, f"the fleet used {rate / IP_RATE:.1%} of the IP limit"
    assert codes == [0, 0, 0], errors


@pytest.mark.timing
async def test_two_processes_on_the_same_shard_share_each_keys_budget(redis_url: str, tmp_path: Path) -> None:
    # A misconfiguration: both processes poll every key. Each key's 20/s still holds, and is used.
    creds = tmp_path / "creds.json"
    async with SimulatedVenue(connex_portfolios=4, zoomex_accounts=0, seed=12, jitter=0.005) as venue:
        write_credentials(venue, str(creds))
        await fleet_init(redis_url)
        argv = ["--credentials", str(creds), "--base-url", venue.base_url, "--format", "jsonl"]
        argv += ["--redis", redis_url, "--namespace", "desk", "--shard", "0/1", "--duration", "7"]
        argv += ["--assets-every", "0.02", "--positions-every", "off"]  # asks for 50/s per key
        async with polling([argv, argv]):
            rate, violations = await steady_rate(venue, 2.5, 3.5)
    per_key = rate / 4
    print(f"\ntwo processes, same keys: {per_key:.1f}/s per key ({per_key / 20:.1%} of 20/s), violations {violations}")
    assert violations == 0
    assert per_key >= 0.95 * 20
