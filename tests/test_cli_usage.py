"""``connex-async`` in-process (``main([...])``): usage errors, help, version, -v, and what ``poll`` reports.

Every invalid value is one line on stderr, ``connex-async <command>: <message>``, exit status 2, and
nothing starts. ``poll`` runs against the ``simulated_venue`` fixture (served from its own thread, so
that ``main`` can run its own event loop here).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import json
import re
import socket
from pathlib import Path

import pytest

from connex_async.cli import PollOptions, build_parser, main, run_poll
from connex_async.config import load_file
from connex_async.dashboard import Dashboard
from connex_async.errors import AuthenticationError
from connex_async.poller import AssetsUpdate, WalletUpdate
from connex_async.testing import SimulatedVenue
from connex_async.testing.cli import write_credentials

ENV_VARS = ("CONNEX_API_KEY", "CONNEX_API_SECRET", "CONNEX_LABEL", "ZOOMEX_API_KEY", "ZOOMEX_API_SECRET")


@pytest.fixture(autouse=True)
def no_venue_keys_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own keys never leak into these runs."""
    for name in (*ENV_VARS, "ZOOMEX_LABEL"):
        monkeypatch.delenv(name, raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# -- invalid values: one line, exit 2 ----------------------------------------------------------

INVALID: dict[str, tuple[list[str], str]] = {
    "base URL not a URL": (["poll", "--base-url", "notaurl"], "argument --base-url: expected a URL starting with"),
    "base URL ftp": (["poll", "--base-url", "ftp://example.com"], "starting with http:// or https://"),
    "base URL without host": (["poll", "--base-url", "https://"], "argument --base-url: expected a URL with a host"),
    "ConneX URL": (["poll", "--connex-url", "api.connex.trade"], "argument --connex-url: expected a URL"),
    "Zoomex URL bad port": (["poll", "--zoomex-url", "https://h:x"], "argument --zoomex-url: not a valid URL"),
    "assets every 0": (["poll", "--assets-every", "0"], "argument --assets-every: expected seconds > 0 or 'off'"),
    "assets every -1": (["poll", "--assets-every", "-1"], "argument --assets-every: expected seconds > 0"),
    "assets every nan": (["poll", "--assets-every", "nan"], "argument --assets-every: expected seconds > 0"),
    "assets every inf": (["poll", "--assets-every", "inf"], "argument --assets-every: expected seconds > 0"),
    "assets every text": (["poll", "--assets-every", "often"], "got 'often'"),
    "positions every 0": (["poll", "--positions-every", "0"], "argument --positions-every: expected seconds > 0"),
    "wallet every -2": (["poll", "--wallet-every", "-2"], "argument --wallet-every: expected seconds > 0"),
    "duration -5": (["poll", "--duration", "-5"], "argument --duration: must be > 0, got '-5'"),
    "duration 0": (["poll", "--duration", "0"], "argument --duration: must be > 0, got '0'"),
    "duration nan": (["poll", "--duration", "nan"], "argument --duration: expected a finite number"),
    "metrics port too big": (["poll", "--metrics-port", "70000"], "argument --metrics-port: must be a port"),
    "metrics port text": (["poll", "--metrics-port", "http"], "argument --metrics-port: expected a port number"),
    "unknown poll option": (["poll", "--asset-every", "1"], "unrecognized arguments: --asset-every"),
    "serve portfolios -3": (["serve", "--portfolios", "-3"], "argument --portfolios: must be >= 0, got '-3'"),
    "serve zoomex text": (["serve", "--zoomex", "ten"], "argument --zoomex: expected a whole number"),
    "serve port": (["serve", "--port", "65536"], "argument --port: must be a port in 0-65535"),
    "serve latency": (["serve", "--latency", "-0.1"], "argument --latency: must be >= 0"),
    "serve jitter": (["serve", "--jitter", "nan"], "argument --jitter: expected a finite number"),
    "demo nothing": (["demo", "--portfolios", "0", "--zoomex", "0"], "nothing to poll: --portfolios and --zoomex"),
    "demo portfolios -1": (["demo", "--portfolios", "-1"], "argument --portfolios: must be >= 0"),
    "demo duration 0": (["demo", "--duration", "0"], "argument --duration: must be > 0"),
    "demo format": (["demo", "--format", "csv"], "argument --format: invalid choice: 'csv'"),
    "unknown command": (["pol"], "argument COMMAND: invalid choice: 'pol'"),
    "no command": ([], "the following arguments are required: COMMAND"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_an_invalid_value_is_one_line_on_stderr_and_exit_2(capsys: pytest.CaptureFixture[str], case: str) -> None:
    argv, fragment = INVALID[case]
    status, out, err = run(capsys, *argv)
    assert status == 2, err
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    command = argv[0] if argv and argv[0] in ("demo", "poll", "serve") else None
    assert err.startswith(f"connex-async {command}: " if command else "connex-async: "), err
    assert fragment in err, err


def test_nothing_to_poll_when_every_endpoint_is_off(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNEX_API_KEY", "k")
    monkeypatch.setenv("CONNEX_API_SECRET", "s")
    status, out, err = run(capsys, "poll", "--assets-every", "off", "--positions-every", "OFF")
    assert (status, out) == (2, "")
    assert err == "connex-async poll: nothing to poll: every endpoint of the 1 ConneX portfolio is off\n"


def test_metrics_without_prometheus_client_says_what_to_install(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "prometheus_client" else find_spec(name, *a)
    )
    status, out, err = run(capsys, "poll", "--metrics-port", "9464")
    assert (status, out) == (2, "")
    assert err == (
        "connex-async poll: --metrics-port needs prometheus_client: pip install 'connex-async[prometheus]'\n"
    )


# -- version, -v, help -------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--version") == (0, "connex-async 0.1.0\n", "")


def test_verbose_counts_before_and_after_the_subcommand() -> None:
    args = build_parser().parse_args(["-v", "poll", "-vv", "--duration", "1"])
    assert args.verbose + args.sub_verbose == 3
    for command in ("demo", "poll", "serve"):
        assert build_parser().parse_args([command, "-v"]).sub_verbose == 1


def parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"connex-async": parser, **{f"connex-async {name}": p for name, p in subparsers.choices.items()}}


@pytest.mark.parametrize("prog", list(parsers()))
def test_every_option_has_help_without_markup(prog: str) -> None:
    parser = parsers()[prog]
    for action in parser._actions:
        if action.option_strings:
            assert action.help and action.help != argparse.SUPPRESS, f"{prog} {action.option_strings} has no help"
    text = parser.format_help()
    for markup in ("``", ":class:", ":func:", ":meth:", ":mod:"):
        assert markup not in text, f"{prog} --help shows reST markup {markup!r}"


@pytest.mark.parametrize("argv", [["--help"], ["poll", "--help"]])
def test_help_names_the_environment_variables(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    status, out, _ = run(capsys, *argv)
    assert status == 0
    for name in (*ENV_VARS, "ZOOMEX_LABEL"):
        assert name in out, f"{name} missing from connex-async {' '.join(argv)}"
    assert "--credentials" in out


# -- poll against the simulated venue ------------------------------------------------------------


def credentials_file(venue: SimulatedVenue, tmp_path: Path, wrong_secret: tuple[str, ...] = ()) -> Path:
    path = tmp_path / "creds.json"
    write_credentials(venue, str(path))
    rows = json.loads(path.read_text())
    for row in rows:
        if row["label"] in wrong_secret:
            row["secret"] = "not-the-secret"
    path.write_text(json.dumps(rows))
    return path


@pytest.mark.simulated_venue(connex_portfolios=3, zoomex_accounts=2)
def test_piped_poll_ends_with_a_summary_line_and_logs_debug_with_v_after_the_command(
    simulated_venue: SimulatedVenue, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    creds = credentials_file(simulated_venue, tmp_path)
    url = simulated_venue.base_url
    status, out, err = run(capsys, "poll", "--credentials", str(creds), "--base-url", url, "--duration", "1.5", "-vv")
    assert status == 0, err
    lines = out.strip().splitlines()
    assert re.fullmatch(r"\[\s*[\d.]+s\] \d of 5 portfolios polled \(3 ConneX \+ 2 Zoomex\): .*", lines[0]), lines[0]
    assert lines[-1].startswith("summary: ") and "errors 0," in lines[-1], lines[-1]
    assert lines[-1].endswith(", quarantined 0")
    debug = [line for line in err.splitlines() if " DEBUG connex_async: " in line and " attempt=1 " in line]
    assert debug, err  # -vv after the subcommand: one DEBUG line per attempt


@pytest.mark.simulated_venue(connex_portfolios=2, zoomex_accounts=1)
def test_positions_every_off_skips_that_endpoint(
    simulated_venue: SimulatedVenue, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    creds = credentials_file(simulated_venue, tmp_path)
    argv = ["poll", "--credentials", str(creds), "--base-url", simulated_venue.base_url, "--format", "jsonl"]
    status, out, err = run(capsys, *argv, "--duration", "1.2", "--positions-every", "off", "--assets-every", "0.3")
    assert status == 0, err
    endpoints = {json.loads(line)["endpoint"] for line in out.splitlines()}
    assert endpoints == {"assets", "wallet"}
    assert simulated_venue.stats().by_endpoint("connex", "positions").requests == 0
    assert err.strip().splitlines()[-1].startswith("summary: ")  # JSONL: the summary goes to stderr


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_poll_exits_1_and_says_why_when_every_poll_fails(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNEX_API_KEY", "k")
    monkeypatch.setenv("CONNEX_API_SECRET", "s")
    port = closed_port()
    argv = ["poll", "--base-url", f"http://127.0.0.1:{port}", "--positions-every", "off"]
    status, out, err = run(capsys, *argv, "--duration", "5")  # a failing poll takes <= 3.5 s of backoff
    assert status == 1
    assert "failing: connex (ConneX): TransportError: ClientConnectorError" in out  # the reason, per portfolio
    assert out.strip().splitlines()[-1].startswith("summary: ")
    last = err.strip().splitlines()[-1]
    assert last.startswith("connex-async poll: every poll failed (TransportError "), last
    assert f"last: TransportError: ClientConnectorError: Cannot connect to host 127.0.0.1:{port}" in last


def test_poll_exits_1_when_no_poll_finished(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNEX_API_KEY", "k")
    monkeypatch.setenv("CONNEX_API_SECRET", "s")
    status, _, err = run(capsys, "poll", "--base-url", f"http://127.0.0.1:{closed_port()}", "--duration", "0.3")
    assert status == 1
    assert re.search(r"^connex-async poll: no poll finished within 0\.\ds$", err, re.MULTILINE), err


@pytest.mark.simulated_venue(connex_portfolios=3, zoomex_accounts=2)
def test_quarantine_is_reported_once_and_failing_portfolios_say_why(
    simulated_venue: SimulatedVenue, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    creds = credentials_file(simulated_venue, tmp_path, wrong_secret=("cx-0002", "zx-0001"))
    argv = ["poll", "--credentials", str(creds), "--base-url", simulated_venue.base_url, "--duration", "2"]
    status, out, err = run(capsys, *argv, "--assets-every", "0.2", "--wallet-every", "0.2")
    assert status == 0, err  # the other portfolios succeed
    for label in ("cx-0002", "zx-0001"):
        assert len([line for line in err.splitlines() if label in line and "quarantined" in line]) == 1, err
    assert "failing: cx-0002 (ConneX): quarantined: AuthenticationError: HTTP 200, code 2000: signature" in out
    assert "failing: zx-0001 (Zoomex): quarantined: AuthenticationError: HTTP 200, code 10004" in out
    assert out.strip().endswith("quarantined 2")


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.simulated_venue(connex_portfolios=30, zoomex_accounts=5)
def test_the_live_table_shows_why_portfolios_fail_and_the_zoomex_accounts(
    simulated_venue: SimulatedVenue, tmp_path: Path
) -> None:
    portfolios = load_file(credentials_file(simulated_venue, tmp_path, wrong_secret=("cx-0017",)))
    url = simulated_venue.base_url
    options = PollOptions(portfolios, connex_url=url, zoomex_url=url, duration=2.5, assets_every=0.3)
    out, err = FakeTTY(), io.StringIO()
    status = asyncio.run(run_poll(options, out, err))
    assert status == 0
    table = out.getvalue().split("\x1b[H\x1b[2J")[-1]
    rows = table.splitlines()
    assert re.search(r"^cx-0017 .* AuthenticationError: HTTP 200, code 2000: signature check failed", table, re.M), (
        table
    )
    assert rows.index(next(r for r in rows if r.startswith("cx-0017"))) < rows.index(
        next(r for r in rows if r.startswith("cx-0001"))
    )  # failing portfolios first
    assert any(r.startswith("zx-0001") for r in rows), table
    assert "Zoomex: 5 portfolios, equity ≈" in table


def test_the_table_shares_its_rows_between_venues() -> None:
    dashboard = Dashboard(expected={"connex": 300, "zoomex": 50})
    for i in range(1, 301):
        error = AuthenticationError("bad key", status=401) if i == 250 else None
        dashboard.apply(AssetsUpdate(f"cx-{i:04d}", "connex", "assets", None if error else [], error, 0.0, 0.01, 1))
    for i in range(1, 51):
        dashboard.apply(WalletUpdate(f"zx-{i:04d}", "zoomex", "wallet", None, None, 0.0, 0.01, 1))
    rows = dashboard.table(limit=20).splitlines()
    labels = [r.split()[0] for r in rows[2:22]]
    assert labels[0] == "cx-0250" and "AuthenticationError: HTTP 401: bad key" in rows[2]
    assert sum(label.startswith("zx-") for label in labels) == 9  # 1 failing, then 10 ConneX and 9 Zoomex
    assert "... and 330 more portfolios (289 ConneX, 41 Zoomex)" in rows
    assert "ConneX: 300 portfolios, equity ≈0.00 USD, 1 failing" in rows
    assert dashboard.progress_line().endswith(
        "350 of 350 portfolios polled (300 ConneX + 50 Zoomex): 350 updates, 1 error (AuthenticationError 1), "
        "p50 10.0 ms"
    )


def test_metrics_port_in_use_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNEX_API_KEY", "k")
    monkeypatch.setenv("CONNEX_API_SECRET", "s")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status, out, err = run(capsys, "poll", "--base-url", "http://127.0.0.1:9", "--metrics-port", str(port))
    assert (status, out) == (1, "")
    assert re.fullmatch(rf"connex-async poll: cannot serve metrics on 127\.0\.0\.1:{port}: .*\n", err), err
