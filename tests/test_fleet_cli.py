"""The fleet's options in ``connex-async``: one-line errors (exit 2), static shards, status, no redis needed."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from connex_async import ConnexClient, SessionPool
from connex_async.cli import main
from connex_async.client import BaseClient
from connex_async.fleet.cli import FleetOptions, add_fleet_options, run_fleet_poll
from connex_async.fleet.hashing import Shard
from connex_async.redis_connection import RedisUnavailableError
from connex_async.testing import SimulatedVenue


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_fleet_options(parser)
    return parser.parse_args(argv)


def test_defaults_are_one_process_local_limits_jsonl() -> None:
    options = FleetOptions.from_args(parse())
    assert options == FleetOptions()
    assert (options.redis, options.namespace, options.shard, options.output) == (None, "connex-async", None, "jsonl")
    assert (options.lease_ttl, options.heartbeat, options.stream_maxlen) == (10.0, None, 100_000)


def test_every_option_parses() -> None:
    args = parse(
        *("--redis", "unix:///tmp/r.sock", "--namespace", "desk", "--egress-id", "nat-1", "--shard", "auto"),
        *("--heartbeat", "0.5", "--lease-ttl", "2", "--output", "redis-stream", "--stream-maxlen", "500"),
    )
    assert FleetOptions.from_args(args) == FleetOptions(
        "unix:///tmp/r.sock", "desk", "nat-1", "auto", 0.5, 2.0, "redis-stream", 500
    )
    assert parse("--shard", "2/3").shard == Shard(2, 3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--shard", "3/2"], "argument --shard: shard 3/2: the index must be below the count (0 <= i < 2)"),
        (["--shard", "a/b"], "argument --shard: shard must be i/n with whole numbers 0 <= i < n (e.g. 0/3), got"),
        (["--shard", "0/0"], "argument --shard: shard 0/0: the shard count must be at least 1"),
        (["--shard=-1/2"], "argument --shard: shard -1/2: the index must be >= 0"),
        (["--shard", "-1/2"], "argument --shard: expected one argument"),  # argparse takes it for an option
        (["--shard", "auto"], "--shard auto needs --redis URL (the live workers are found in Redis)"),
        (["--output", "redis-stream"], "--output redis-stream needs --redis URL"),
        (["--output", "kafka"], "argument --output: invalid choice: 'kafka'"),
        (["--redis", "http://x"], "argument --redis: Redis URL must start with redis://, rediss:// or unix://"),
        (["--redis", "redis://:pw@x", "--shard", "auto", "--heartbeat", "4", "--lease-ttl", "3"], "--heartbeat (4 s)"),
        (["--lease-ttl", "0"], "argument --lease-ttl: expected seconds (a number > 0), got '0'"),
        (["--heartbeat", "nan"], "argument --heartbeat: expected seconds (a number > 0), got 'nan'"),
        (["--stream-maxlen", "0"], "argument --stream-maxlen: expected a whole number >= 1, got '0'"),
        (["--namespace", "a b"], "argument --namespace: namespace must be 1-100 characters without spaces"),
        (["--egress-id", ""], "argument --egress-id: egress id must be 1-100 characters without spaces"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        code = main(["poll", "--credentials", "/nonexistent.json", *argv])
        raise SystemExit(code)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("connex-async poll: ") and err.count("\n") == 1, err
    assert message in err, err
    assert "pw" not in err


def test_an_unreachable_redis_is_one_line_exit_2_without_the_password(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps([{"label": "a", "venue": "connex", "api_key": "k" * 16, "secret": "s" * 32}]))
    url = "redis://:hunter2@127.0.0.1:1/0"
    for command, prog in (
        (["fleet", "status"], "connex-async fleet status"),
        (["poll", "--credentials", str(creds), "--shard", "auto"], "connex-async poll"),
        (["poll", "--credentials", str(creds), "--output", "redis-stream"], "connex-async poll"),
        (["poll", "--credentials", str(creds), "--shard", "1/2"], "connex-async poll"),  # for the limits
    ):
        assert main([*command, "--redis", url]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{prog}: cannot reach Redis at redis://:***@127.0.0.1:1/0: "), err
        assert err.count("\n") == 1 and "hunter2" not in err


async def test_unreachable_redis_at_poll_start_raises_one_line() -> None:
    options = FleetOptions(redis="redis://:hunter2@127.0.0.1:1/0", shard="auto")
    err = io.StringIO()
    with pytest.raises(RedisUnavailableError) as info:
        await run_fleet_poll([], options, duration=1, out=io.StringIO(), err=err)
    assert str(info.value).startswith("cannot reach Redis at redis://:***@127.0.0.1:1/0: ")
    assert "hunter2" not in str(info.value) + err.getvalue()


async def test_static_shards_split_the_portfolios_and_warn_about_local_limits() -> None:
    async with SimulatedVenue(connex_portfolios=30, zoomex_accounts=0) as venue, SessionPool() as pool:
        clients: list[BaseClient] = [
            ConnexClient(c, base_url=venue.base_url, pool=pool) for c in venue.connex_credentials
        ]
        seen: list[set[str]] = []
        for i in range(2):
            out, err = io.StringIO(), io.StringIO()
            code = await run_fleet_poll(
                clients,
                FleetOptions(shard=Shard(i, 2)),
                poller_options={"assets_every": 0.3, "positions_every": None},
                duration=1.0,
                out=out,
                err=err,
            )
            assert code == 0
            lines = [json.loads(line) for line in out.getvalue().splitlines()]
            assert all(row["ok"] for row in lines)
            seen.append({row["portfolio"] for row in lines})
            expected = set(Shard(i, 2).select([c.label for c in clients]))
            assert seen[-1] == expected
            log = err.getvalue().splitlines()
            assert (
                log[0]
                == "connex-async poll: warning: --shard without --redis: per-IP and per-key limits are per process"
            )
            assert log[-1].startswith(f"connex-async poll: done: {len(lines)} updates written, 0 dropped, ")
        assert seen[0] | seen[1] == {c.label for c in clients} and not seen[0] & seen[1]
        assert venue.violations == 0


def test_the_fleet_cli_imports_and_parses_without_redis_installed() -> None:
    script = (
        "import sys; sys.modules['redis'] = None\n"  # `import redis` now raises ImportError
        "import connex_async, connex_async.fleet.cli as c, argparse, asyncio\n"
        "from connex_async.fleet.membership import Membership\n"
        "p = argparse.ArgumentParser(); c.add_fleet_options(p)\n"
        "print(c.FleetOptions.from_args(p.parse_args(['--shard', '1/3'])).shard)\n"
        "try:\n"
        "    asyncio.run(Membership('redis://localhost').join())\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True)
    assert proc.stdout.splitlines() == [
        "1/3",
        "RedisUnavailableError Redis needs the redis package: pip install 'connex-async[redis]'",
    ]
