"""Each example runs for a few seconds against its built-in simulator, so that they never rot."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from connex_async import ConnexClient, Poller, SessionPool
from connex_async.testing import SimulatedVenue

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--duration", "3", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    return proc


def test_every_example_is_tested() -> None:
    names = {p.name for p in EXAMPLES.glob("*.py")}
    assert names == {"equity_alert_bot.py", "fanout_jsonl.py", "fleet_consumer.py", "throughput.py"}


def test_equity_alert_bot_triggers() -> None:
    proc = run_example("equity_alert_bot.py")
    alerts = [line for line in proc.stdout.splitlines() if line.startswith("ALERT ")]
    assert any(line.startswith("ALERT cx-0001 (connex): equity ") for line in alerts), proc.stdout
    assert " < threshold " in alerts[0]
    assert "WARNING" in proc.stderr  # the bot logs as well as calling the hook
    assert proc.stdout.rstrip().endswith(f"done: {len(alerts)} alert(s) in 3 s")


def test_fanout_jsonl() -> None:
    proc = run_example("fanout_jsonl.py", "--portfolios", "60", "--zoomex", "6")
    lines = proc.stdout.splitlines()
    assert lines
    keys = {"portfolio", "venue", "endpoint", "ok", "fetched_at", "latency_ms", "attempts", "error", "data"}
    seen: set[tuple[str, str]] = set()
    for line in lines:
        row = json.loads(line)
        assert set(row) == keys
        assert row["ok"] and row["error"] is None, row["error"]
        seen.add((row["portfolio"], row["endpoint"]))
        if row["endpoint"] == "assets":
            for asset in row["data"]:
                assert isinstance(asset["balance"], str)
                Decimal(asset["balance"])
        elif row["endpoint"] == "wallet":
            account = row["data"]["list"][0]
            assert isinstance(account["totalEquity"], str)
            Decimal(account["totalEquity"])
    assert {p for p, e in seen if e == "assets"} == {f"cx-{i:04d}" for i in range(1, 61)}
    assert {p for p, e in seen if e == "wallet"} == {f"zx-{i:04d}" for i in range(1, 7)}
    summary = proc.stderr.strip().splitlines()[-1]
    assert summary.startswith(f"summary: {len(lines)} updates ")
    assert "from 66 portfolios, 0 errors," in summary
    assert " superseded, " in summary
    assert summary.endswith("simulator violations 0")


def test_throughput() -> None:
    proc = run_example("throughput.py", "--portfolios", "100", "--zoomex", "10")
    out = proc.stdout
    # The exposition text comes from connex_async.prometheus (the exporter `poll --metrics-port` serves).
    families = {family.name: family for family in text_string_to_metric_families(out.split("\n\n")[0])}
    requests = {(s.labels["venue"], s.labels["endpoint"]): s.value for s in families["connex_async_requests"].samples}
    assert requests[("connex", "assets")] > 0 and requests[("zoomex", "wallet")] > 0
    assert 'connex_async_request_latency_seconds_count{endpoint="wallet",venue="zoomex"} ' in out
    assert "connex_async_staleness_seconds" in families
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("throughput: 110 portfolios, ")
    assert " requests/s), latency p50 <= " in summary
    assert " retries " in summary
    assert summary.endswith("simulator violations 0")


def test_fleet_consumer_reads_and_acknowledges_the_whole_stream(redis_url: str) -> None:
    import redis

    proc = run_example("fleet_consumer.py", "--demo", "--redis", redis_url, "--group", "risk")
    lines = proc.stdout.splitlines()
    summary = lines[-1]
    m = re.fullmatch(
        r"summary: (\d+) updates consumed and acknowledged from 1 worker\(s\), 25 portfolios, pending 0", summary
    )
    assert m is not None, summary
    assert len(lines) - 1 == int(m[1]) > 25
    for line in lines[:-1]:
        if " equity " in line:
            Decimal(line.rsplit(" ", 1)[1])  # an exact decimal, never a float's repr
        assert " ERROR " not in line
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.xlen("connex-async:fleet:updates") == int(m[1])  # every entry, exactly once
        (group,) = client.xinfo_groups("connex-async:fleet:updates")
        assert (group["name"], group["pending"], group["lag"]) == (b"risk", 0, 0)
    finally:
        client.close()
    assert "updates written, 0 dropped" in proc.stderr


async def test_leaving_the_update_loop_early_stops_the_poller() -> None:
    """The most natural consumer: ``break`` out of ``async for`` and stop the poller.

    Regression: on Python 3.11 ``asyncio.wait_for`` in the scheduler swallowed stop()'s cancellation when
    a poll finished in the same loop iteration (CPython gh-86296), and stop() never returned.
    """
    async with SimulatedVenue(connex_portfolios=100, zoomex_accounts=0) as venue, SessionPool() as pool:
        clients = [ConnexClient(c, base_url=venue.base_url, pool=pool) for c in venue.connex_credentials]
        for _ in range(3):
            poller = Poller(clients, assets_every=1.0, positions_every=5.0)
            await poller.start()
            seen = 0
            async for _update in poller:
                seen += 1
                if seen == 50:
                    break
            stop = asyncio.create_task(poller.stop())
            done, _ = await asyncio.wait({stop}, timeout=3)
            if not done:  # clean up the stuck scheduler (a second cancel is not swallowed) before failing
                assert poller._scheduler is not None
                poller._scheduler.cancel()
                await stop
            assert done, "Poller.stop() hung after the consumer left the loop"
