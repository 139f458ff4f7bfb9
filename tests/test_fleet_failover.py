"""Worker processes (``connex-async poll --redis URL --shard auto``) over the simulator and a real
redis-server: kill -9, restart, SIGTERM, and the stream against the simulator's counts.

Every time here is Redis TIME: a stream entry's id starts with the Redis time of its XADD, and the
test reads ``TIME`` when it kills or signals a worker. Leases and intervals are short so that each
test takes seconds; the bounds leave about a second of slack for a slow, shared machine.
Every request of every worker is admitted through the Redis limiter (``--redis``), the namespace
declared cold first (``connex-async fleet init``: nothing was sent through it before).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from fleet_helpers import Entry, read_stream, redis_now_ms

from connex_async.fleet.hashing import Rendezvous
from connex_async.fleet.keys import FleetKeys
from connex_async.testing import SimulatedVenue
from connex_async.testing.cli import write_credentials

_SCRIPT = Path(sys.executable).with_name("connex-async")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "connex_async.cli"]
LEASE = 3.0
HEARTBEAT = 0.5
INTERVAL = 0.5
_JOINED = re.compile(r"^connex-async poll: fleet member (\S+) in ")


class Worker:
    """One worker process; its stderr is collected as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process, member_id: str) -> None:
        self.proc = proc
        self.member_id = member_id
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.lines.append(line.decode().rstrip("\n"))

    async def stop(self, sig: int = signal.SIGTERM, within: float = 15.0) -> int:
        """Send ``sig`` and wait for the exit status."""
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), within)
        await self._reader
        return code

    @property
    def summary(self) -> str:
        return next((line for line in self.lines if " updates written, " in line), "")


async def start_worker(creds: Path, base_url: str, redis_url: str, interval: float = INTERVAL) -> Worker:
    proc = await asyncio.create_subprocess_exec(
        *(*CLI, "poll", "--credentials", str(creds), "--base-url", base_url),
        *("--redis", redis_url, "--shard", "auto", "--lease-ttl", str(LEASE), "--heartbeat", str(HEARTBEAT)),
        *("--assets-every", str(interval), "--wallet-every", str(interval), "--positions-every", "60"),
        *("--output", "redis-stream"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    first = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
    match = _JOINED.match(first)
    if match is None:
        proc.kill()
        rest = await proc.stderr.read()
        pytest.fail(f"worker did not join: {first}{rest.decode()[-2000:]}")
    return Worker(proc, match[1])


async def fleet_init(redis_url: str) -> None:
    """``connex-async fleet init``: the namespace is new, so the shared limits start without an embargo."""
    proc = await asyncio.create_subprocess_exec(
        *CLI, "fleet", "init", "--redis", redis_url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith("connex-async fleet init: namespace connex-async: no start-up embargo")


@contextlib.asynccontextmanager
async def workers_cleanup() -> AsyncIterator[list[Worker]]:
    started: list[Worker] = []
    try:
        yield started
    finally:
        for w in started:
            if w.proc.returncode is None:
                w.proc.kill()
                await w.proc.wait()


def first_after(entries: Iterable[Entry], labels: set[str], workers: set[str], after_ms: int) -> dict[str, int]:
    """For each label: the Redis time (ms) of its first update by one of ``workers`` after ``after_ms``."""
    found: dict[str, int] = {}
    for e in entries:
        label = e.update["portfolio"]
        if label in labels and label not in found and e.worker in workers and e.ms > after_ms:
            found[label] = e.ms
    return found


def longest_double_polling(entries: list[Entry], interval: float) -> tuple[float, str]:
    """The longest time (s) any two workers both kept polling one portfolio, and where.

    A worker polls a portfolio during each run of its updates of it that follow one another within
    two intervals; double polling is where two workers' runs of one portfolio overlap. (Runs, not a
    worker's first-to-last span: a portfolio can go A -> B -> A without ever being polled twice.)
    """
    runs: dict[tuple[str, str], list[list[int]]] = defaultdict(list)
    for e in entries:
        if e.update["endpoint"] not in ("assets", "wallet"):  # the endpoints polled every `interval`
            continue
        worker_runs = runs[e.update["portfolio"], e.worker]
        if worker_runs and e.ms - worker_runs[-1][1] <= 2 * interval * 1000:
            worker_runs[-1][1] = e.ms
        else:
            worker_runs.append([e.ms, e.ms])
    worst, where = 0, "nowhere"
    for (label, worker_a), a_runs in runs.items():
        for (other, worker_b), b_runs in runs.items():
            if other != label or worker_b <= worker_a:
                continue
            for a in a_runs:
                for b in b_runs:
                    overlap = min(a[1], b[1]) - max(a[0], b[0])
                    if overlap > worst:
                        worst, where = overlap, f"{label}: {worker_a} {a} and {worker_b} {b} (Redis ms)"
    return worst / 1000, where


def test_double_polling_is_measured_by_runs_not_spans() -> None:
    def entry(ms: int, worker: str) -> Entry:
        return Entry(ms, worker, {"portfolio": "p", "endpoint": "assets"})

    handover_and_back = [entry(t, "a") for t in (0, 500)] + [entry(t, "b") for t in range(1000, 5000, 500)]
    handover_and_back += [entry(t, "a") for t in (5200, 5700)]
    assert longest_double_polling(handover_and_back, 0.5) == (0.0, "nowhere")
    both = [entry(t, "a") for t in range(0, 3000, 500)] + [entry(t, "b") for t in range(1250, 4000, 500)]
    assert longest_double_polling(sorted(both, key=lambda e: e.ms), 0.5)[0] == 1.25  # b from 1.25 s, a until 2.5 s


async def test_kill_9_restart_and_sigterm(redis_url: str, tmp_path: Path) -> None:
    creds = tmp_path / "creds.json"
    async with (
        SimulatedVenue(connex_portfolios=24, zoomex_accounts=4, latency=0.005) as venue,
        workers_cleanup() as started,
    ):
        write_credentials(venue, str(creds))
        labels = [c.label for c in venue.connex_credentials + venue.zoomex_credentials]
        table = Rendezvous(labels)
        client = aioredis.Redis.from_url(redis_url)
        entries: list[Entry] = []

        async def refresh() -> None:
            entries[:] = await read_stream(client)

        async def wait_until_taken(share: set[str], by: set[str], after_ms: int, within: float, what: str) -> float:
            """Seconds (Redis time) from ``after_ms`` until every portfolio of ``share`` had an update by ``by``."""
            found: dict[str, int] = {}
            deadline = asyncio.get_running_loop().time() + within
            while set(found) != share:
                if asyncio.get_running_loop().time() > deadline:
                    pytest.fail(f"{what}: {sorted(share - set(found))} not taken over within {within} s")
                await asyncio.sleep(0.1)
                await refresh()
                found = first_after(entries, share, by, after_ms)
            return (max(found.values()) - after_ms) / 1000

        try:
            await fleet_init(redis_url)
            w1, w2, w3 = await asyncio.gather(*(start_worker(creds, venue.base_url, redis_url) for _ in range(3)))
            started += [w1, w2, w3]
            ids = {w.member_id for w in (w1, w2, w3)}
            members = FleetKeys("connex-async").members
            shares = table.assign(ids)
            assert all(shares[i] for i in ids)  # each of the three owns some portfolios
            now = await redis_now_ms(client)
            await wait_until_taken(set(shares[w3.member_id]), {w3.member_id}, now, 5.0, "w3 polls its share")

            # kill -9: w3's lease runs out; the survivors take its share within a lease and an interval.
            t_kill = await redis_now_ms(client)
            w3.proc.send_signal(signal.SIGKILL)
            assert await w3.stop(signal.SIGKILL) == -signal.SIGKILL
            share3 = set(shares[w3.member_id])
            takeover_kill = await wait_until_taken(
                share3, {w1.member_id, w2.member_id}, t_kill, LEASE + INTERVAL + 5, "after kill -9"
            )
            assert LEASE - HEARTBEAT - 0.2 <= takeover_kill <= LEASE + INTERVAL + 1.0, takeover_kill
            assert {m.decode() for m in await client.zrange(members, 0, -1)} == {w1.member_id, w2.member_id}

            # Restart: a new worker joins and takes its share; the others hand it over at once.
            w4 = await start_worker(creds, venue.base_url, redis_url)
            started.append(w4)
            t_join = await redis_now_ms(client)
            live = {w1.member_id, w2.member_id, w4.member_id}
            share4 = set(table.owned_by(w4.member_id, live))
            assert share4
            await wait_until_taken(share4, {w4.member_id}, t_join - 2000, 5.0, "the restarted worker")

            # SIGTERM: w1 leaves at once (no lease to wait for), finishes its polls and exits 0.
            share1 = set(table.owned_by(w1.member_id, live))
            t_term = await redis_now_ms(client)
            assert await w1.stop(signal.SIGTERM) == 0
            takeover_term = await wait_until_taken(share1, {w2.member_id, w4.member_id}, t_term, 5.0, "after SIGTERM")
            assert takeover_term <= INTERVAL + 1.0 < LEASE - HEARTBEAT, takeover_term
            started_n, ended_n = re.search(r"polls started (\d+) ended (\d+)", w1.summary).groups()  # type: ignore[union-attr]
            assert started_n == ended_n, w1.summary

            for w in (w2, w4):
                assert await w.stop(signal.SIGTERM) == 0, w.lines
            await refresh()
            double, where = longest_double_polling(entries, INTERVAL)
            # The bound is one lease; a handover is announced at once, so even without the
            # announcement the old owner stops within a heartbeat.
            assert double <= HEARTBEAT < LEASE, where
            assert venue.violations == 0
            print(
                f"\nfleet failover: kill -9 takeover {takeover_kill:.2f} s (lease {LEASE} s, interval {INTERVAL} s), "
                f"SIGTERM takeover {takeover_term:.2f} s, longest double polling {double:.2f} s, "
                f"{len(entries)} stream entries, simulator violations {venue.violations}"
            )
        finally:
            await client.aclose()


async def test_the_stream_holds_every_update_of_the_run(redis_url: str, tmp_path: Path) -> None:
    creds = tmp_path / "creds.json"
    # 0.2 s of latency on 0.25 s intervals: polls are in flight whenever a worker is told to stop.
    async with (
        SimulatedVenue(connex_portfolios=16, zoomex_accounts=4, latency=0.2) as venue,
        workers_cleanup() as started,
    ):
        write_credentials(venue, str(creds))
        await fleet_init(redis_url)
        w1, w2 = await asyncio.gather(*(start_worker(creds, venue.base_url, redis_url, 0.25) for _ in range(2)))
        started += [w1, w2]
        await asyncio.sleep(2.5)
        assert await w1.stop(signal.SIGTERM) == 0  # w2 takes over w1's share mid-run
        await asyncio.sleep(1.0)
        assert await w2.stop(signal.SIGTERM) == 0
        client = aioredis.Redis.from_url(redis_url)
        try:
            entries = await read_stream(client)
        finally:
            await client.aclose()
        stats = venue.stats()
        assert all(e.update["ok"] for e in entries)
        written = 0
        for w in (w1, w2):
            m = re.search(
                r"(\d+) updates written, 0 dropped, polls started (\d+) ended \2 \((\d+) in flight", w.summary
            )
            assert m is not None, w.lines
            written += int(m[1])
            assert int(m[1]) == int(m[2])  # every poll of the worker ended in one update, written
        assert int(re.search(r"\((\d+) in flight", w1.summary)[1]) >= 1  # type: ignore[index]
        # Each update in the stream is one request the simulator accepted, and nothing is missing.
        per_key: dict[tuple[str, str], int] = defaultdict(int)
        for e in entries:
            per_key[e.update["portfolio"], e.update["endpoint"]] += 1
        accepted = {
            (row.label, endpoint): row.accepted
            for (venue_name, endpoint, _), row in stats.endpoints.items()
            if endpoint in ("assets", "positions", "wallet") and row.label is not None
        }
        assert per_key == accepted
        assert len(entries) == written == sum(accepted.values())
        assert stats.violations == 0
        print(
            f"\nfleet stream: {len(entries)} stream entries, {sum(accepted.values())} requests accepted by the "
            f"simulator (assets, positions, wallet), {stats.violations} violations"
        )
