"""``connex-async demo|poll|serve`` as a user runs them: subprocesses, pipes, credentials files, a fake TTY."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connex_async.cli import run_demo

ANSI = re.compile(r"\x1b\[")
_SCRIPT = Path(sys.executable).with_name("connex-async")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "connex_async.cli"]
SECRET_MARK = "s3cr3t-never-printed"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any venue keys (so that a developer's own keys never leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNEX_", "ZOOMEX_"))}
    env.update(extra)
    return env


def cli(*args: str, timeout: float = 30, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False, env=env or clean_env()
    )


async def acli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """:func:`cli` for async tests (the event loop stays free while the command runs), bounded to 20 s.

    A command that overruns gets SIGINT first, so that its traceback shows where it was stuck.
    """
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or clean_env()
    )
    assert proc.stdout is not None and proc.stderr is not None
    reads = asyncio.gather(proc.stdout.read(), proc.stderr.read())
    try:
        out, err = await asyncio.wait_for(asyncio.shield(reads), 20)
        await asyncio.wait_for(proc.wait(), 5)
    except TimeoutError:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 3)
        if proc.returncode is None:
            proc.kill()
        out, err = await reads
        await proc.wait()
        pytest.fail(
            f"connex-async {args[0]} did not exit within 20 s ({len(out.splitlines())} stdout lines); "
            f"stderr after SIGINT:\n{err.decode()[-3000:]}"
        )
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


# -- demo --------------------------------------------------------------------------------------


def test_demo_plain_lines_when_not_a_tty() -> None:
    proc = cli("demo", "--portfolios", "40", "--zoomex", "10", "--duration", "3")
    assert proc.returncode == 0, proc.stderr
    assert not ANSI.search(proc.stdout)
    # The summary ends the output, but for a line on margins the round trips widened (a loaded run).
    lines = [line for line in proc.stdout.splitlines() if line and not line.startswith("margins: ")]
    progress = (
        r"\[\s*\d+\.\ds\] \d+ of 50 portfolios polled \(40 ConneX \+ 10 Zoomex\): [\d,]+ updates?, 0 errors, "
        r"p50 [\d.]+ ms"
    )
    assert re.fullmatch(progress, lines[0]), lines[0]
    assert re.fullmatch(r"\[\s*\d+\.\ds\] 50 of 50 portfolios polled .*", lines[-2]), lines[-2]
    assert not re.search(r"\b1 (portfolios|updates)\b", proc.stdout)  # "1 update", never "1 updates"
    summary = lines[-1]
    assert summary.startswith("summary: ")
    assert "errors 0," in summary
    assert summary.endswith("simulator violations 0")
    assert "Traceback" not in proc.stderr


def test_demo_jsonl_stdout_is_json_only() -> None:
    proc = cli("demo", "--portfolios", "40", "--zoomex", "10", "--duration", "3", "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    rows = json_lines(proc.stdout)  # every stdout line is JSON: nothing else is mixed in
    assert {r["portfolio"] for r in rows if r["endpoint"] == "assets"} == {f"cx-{i:04d}" for i in range(1, 41)}
    assert {r["portfolio"] for r in rows if r["endpoint"] == "wallet"} == {f"zx-{i:04d}" for i in range(1, 11)}
    assert all(r["ok"] for r in rows)
    assert "summary: " in proc.stderr
    assert "simulator violations 0" in proc.stderr


# The demo against a simulator stricter than the venues' real limits (1 assets request per 10 s a
# key, while the demo polls them every second): the simulator counts violations, and `make demo`
# must fail. Only the simulator's table of limits is changed; the command runs as a user runs it.
STRICT_DEMO = """
import sys
from connex_async.testing import server
server.DEFAULT_LIMITS["connex.assets"] = (1, 10.0)
from connex_async.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_demo_exits_1_when_the_simulator_counts_a_violation() -> None:
    args = ("demo", "--portfolios", "20", "--zoomex", "0", "--duration", "2.5")
    proc = subprocess.run(
        [sys.executable, "-c", STRICT_DEMO, *args], capture_output=True, text=True, timeout=60, check=False
    )
    # The summary line, then (when the round trips widened them) a line on the margins.
    summary = next(line for line in reversed(proc.stdout.splitlines()) if line.startswith("summary: "))
    violations = int(re.fullmatch(r".*simulator violations (\d+)", summary)[1])  # type: ignore[index]
    assert violations > 0, summary
    assert proc.returncode == 1, (proc.returncode, summary, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr


async def test_demo_renders_a_live_table_on_a_tty() -> None:
    class FakeTTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = FakeTTY()
    assert await run_demo(portfolios=20, zoomex=5, duration=2.0, out=out) == 0
    text = out.getvalue()
    assert "\x1b[H\x1b[2J" in text
    assert re.search(r"^portfolio\s+venue\s+equity", text, re.MULTILINE)
    assert "cx-0001" in text
    assert "zx-0001" in text  # Zoomex accounts get rows too, not only the first labels
    assert "simulator violations 0" in text


# -- serve + poll ------------------------------------------------------------------------------


@dataclass
class Served:
    base_url: str
    credentials: Path
    rows: list[dict[str, str]]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """``connex-async serve`` in a subprocess; stopped with SIGINT, which must exit 0."""
    creds = tmp_path / "creds.json"
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--portfolios",
        "5",
        "--zoomex",
        "2",
        "--port",
        "0",
        "--credentials-out",
        str(creds),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    try:
        assert proc.stdout is not None
        base_url = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode().strip()
        assert base_url.startswith("http://127.0.0.1:"), base_url
        yield Served(base_url, creds, json.loads(creds.read_text()))
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, err.decode()
        assert "Traceback" not in err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def assert_every_portfolio_polled(rows: list[dict[str, Any]], labels: list[str]) -> None:
    assert {r["portfolio"] for r in rows} == set(labels)
    for r in rows:
        assert r["ok"], r["error"]
        expected = {"assets", "positions"} if r["venue"] == "connex" else {"wallet"}
        assert r["endpoint"] in expected
    for venue, endpoints in (("connex", {"assets", "positions"}), ("zoomex", {"wallet"})):
        for label in {r["portfolio"] for r in rows if r["venue"] == venue}:
            assert {r["endpoint"] for r in rows if r["portfolio"] == label} == endpoints, label


POLL = ("--format", "jsonl", "--positions-every", "1.5")


async def test_poll_json_credentials_against_serve(served: Served) -> None:
    rc, out, err = await acli(
        "poll", "--credentials", str(served.credentials), "--base-url", served.base_url, *POLL, "--duration", "3"
    )
    assert rc == 0, err
    rows = json_lines(out)
    assert_every_portfolio_polled(rows, [r["label"] for r in served.rows])
    # amounts are strings, exactly as the venue sent them
    asset = next(r for r in rows if r["endpoint"] == "assets")["data"][0]
    assert isinstance(asset["balance"], str)
    assert "Traceback" not in err


def toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of plain text is a valid TOML basic string


async def test_poll_toml_credentials_against_serve(served: Served, tmp_path: Path) -> None:
    toml = tmp_path / "creds.toml"
    toml.write_text(
        "".join(
            f"[[portfolio]]\nlabel = {toml_string(r['label'])}\nvenue = {toml_string(r['venue'])}\n"
            f"api_key = {toml_string(r['api_key'])}\nsecret = {toml_string(r['secret'])}\n\n"
            for r in served.rows
        )
    )
    rc, out, err = await acli(
        "poll", "--credentials", str(toml), "--base-url", served.base_url, *POLL, "--duration", "3"
    )
    assert rc == 0, err
    assert_every_portfolio_polled(json_lines(out), [r["label"] for r in served.rows])


async def test_poll_environment_variables_against_serve(served: Served) -> None:
    cx = next(r for r in served.rows if r["venue"] == "connex")
    zx = next(r for r in served.rows if r["venue"] == "zoomex")
    env = clean_env(
        CONNEX_API_KEY=cx["api_key"],
        CONNEX_API_SECRET=cx["secret"],
        ZOOMEX_API_KEY=zx["api_key"],
        ZOOMEX_API_SECRET=zx["secret"],
    )
    rc, out, err = await acli("poll", "--base-url", served.base_url, *POLL, "--duration", "2.5", env=env)
    assert rc == 0, err
    assert_every_portfolio_polled(json_lines(out), ["connex", "zoomex"])  # labels default to the venue


# -- credentials errors: the entry at fault is named, nothing starts ---------------------------


def entry(i: int, **override: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"label": f"p{i}", "venue": "connex", "api_key": f"key-{i}", "secret": f"{SECRET_MARK}-{i}"}
    row.update(override)
    return {k: v for k, v in row.items() if v is not None}


def entries(third: Any) -> str:
    return json.dumps([entry(1), entry(2), third, entry(4)], indent=1)


BAD_FILES = {
    "missing secret": ("creds.json", entries(entry(3, secret=None)), ["entry 3", "missing secret"]),
    "unknown venue": ("creds.json", entries(entry(3, venue="binance")), ["entry 3", "venue must be one of"]),
    "duplicate label": ("creds.json", entries(entry(3, label="p1")), ["entry 3", "'p1'", "entry 1"]),
    "unknown field": ("creds.json", entries(entry(3, passphrase=SECRET_MARK)), ["entry 3", "passphrase"]),
    "non-string key": ("creds.json", entries(entry(3, api_key=12345)), ["entry 3", "api_key"]),
    "non-string secret": ("creds.json", entries(entry(3, secret=12345)), ["entry 3", "secret"]),
    "entry not an object": ("creds.json", entries(["p3"]), ["entry 3", "expected a table/object"]),
    "bad JSON": (
        "creds.json",
        "[\n"
        f' {{"label": "p1", "venue": "connex", "api_key": "k1", "secret": "{SECRET_MARK}"}},\n'
        f' {{"label": "p2", "venue": "connex", "api_key": "k2", "secret": "{SECRET_MARK}"}}\n'
        f' {{"label": "p3", "venue": "connex", "api_key": "k3", "secret": "{SECRET_MARK}"}}\n'
        "]\n",
        ["invalid JSON at line 4 column 2"],
    ),
    "empty secret": ("creds.json", entries(entry(3, secret="")), ["entry 3", "secret must not be empty"]),
    "empty list": ("creds.json", "[]", ["non-empty list"]),
    "TOML missing secret": (
        "creds.toml",
        "".join(
            f'[[portfolio]]\nlabel = "p{i}"\nvenue = "zoomex"\napi_key = "k{i}"\n'
            + (f'secret = "{SECRET_MARK}-{i}"\n' if i != 3 else "")
            for i in range(1, 5)
        ),
        ["entry 3", "missing secret"],
    ),
    "TOML syntax": ("creds.toml", f'[[portfolio]]\nlabel = "p1\nsecret = "{SECRET_MARK}"\n', ["invalid TOML", "line"]),
    "missing file": ("absent.json", None, ["cannot read"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_credentials_file_is_reported_and_nothing_starts(case: str, tmp_path: Path) -> None:
    name, text, expected = BAD_FILES[case]
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    # port 9 (discard) would fail every poll: a run that starts at all shows up as errors or a hang
    proc = cli("poll", "--credentials", str(path), "--base-url", "http://127.0.0.1:9", "--duration", "2", timeout=15)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert SECRET_MARK not in proc.stderr
    assert proc.stderr.startswith("connex-async poll: ")
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    for fragment in expected:
        assert fragment in proc.stderr, proc.stderr


def test_poll_without_any_credentials_explains_what_to_do() -> None:
    proc = cli("poll", "--duration", "1", timeout=15)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert "--credentials" in proc.stderr
    assert "CONNEX_API_KEY" in proc.stderr


def test_poll_with_half_an_environment_key_names_the_missing_variable() -> None:
    proc = cli("poll", "--duration", "1", timeout=15, env=clean_env(CONNEX_API_KEY="abc"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "CONNEX" in proc.stderr
    assert "secret" in proc.stderr


def test_load_portfolios_reads_the_file_else_the_environment_and_refuses_none(tmp_path: Path) -> None:
    from connex_async.config import ConfigError, load_portfolios

    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"venue": "zoomex", "api_key": "ZK", "secret": "ZS", "label": "z"}]))
    environ = {"CONNEX_API_KEY": "CK", "CONNEX_API_SECRET": "CS"}
    assert [p.venue for p in load_portfolios(keys, environ)] == ["zoomex"]  # the file wins
    assert [p.venue for p in load_portfolios(None, environ)] == ["connex"]
    with pytest.raises(ConfigError, match="--credentials FILE"):
        load_portfolios(None, {})


# -- poll --metrics-port: Prometheus, scraped from a running poll --------------------------------


async def test_poll_serves_prometheus_metrics_while_it_runs(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from connex_async.testing import Fault, SimulatedVenue
    from connex_async.testing.cli import write_credentials

    async with SimulatedVenue(connex_portfolios=4, zoomex_accounts=2, seed=5) as venue:
        venue.inject(Fault("http_503", times=2, venue="connex"))
        creds = tmp_path / "creds.json"
        write_credentials(venue, str(creds))
        proc = await asyncio.create_subprocess_exec(
            *CLI,
            "poll",
            "--credentials",
            str(creds),
            "--base-url",
            venue.base_url,
            "--format",
            "jsonl",
            "--assets-every",
            "0.2",
            "--metrics-port",
            "0",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=clean_env(),
        )
        try:
            assert proc.stderr is not None
            first = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
            found = re.fullmatch(r"connex-async poll: Prometheus metrics at (http://127\.0\.0\.1:\d+/metrics)\n", first)
            assert found, first
            await asyncio.sleep(1.5)
            async with aiohttp.ClientSession() as session, session.get(found[1]) as response:
                assert response.status == 200
                text = await response.text()
            proc.send_signal(signal.SIGINT)
            err = (await asyncio.wait_for(proc.stderr.read(), 20)).decode()
            assert await asyncio.wait_for(proc.wait(), 10) == 0, err
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("summary: ")
    samples = {family.name: family.samples for family in text_string_to_metric_families(text)}
    for family in (
        "connex_async_requests",
        "connex_async_request_errors",
        "connex_async_retries",
        "connex_async_cooldowns",
        "connex_async_late_sends",
        "connex_async_request_latency_seconds",
        "connex_async_limiter_wait_seconds",
        "connex_async_staleness_seconds",
    ):
        assert samples.get(family), f"{family} missing from:\n{text}"
    errors = {(s.labels["endpoint"], s.labels["error"]): s.value for s in samples["connex_async_request_errors"]}
    assert sum(errors.values()) == 2 and {error for _, error in errors} == {"ServerError"}
    assert {s.labels["endpoint"] for s in samples["connex_async_staleness_seconds"]} == {
        "assets",
        "positions",
        "wallet",
    }
    requests = {(s.labels["venue"], s.labels["endpoint"]): s.value for s in samples["connex_async_requests"]}
    assert requests[("connex", "assets")] >= 4 and requests[("zoomex", "wallet")] >= 2
