"""The ``simulated_venue`` fixtures: configured by a marker or a factory, usable from any test, in any project.

The first tests use the fixtures inside this suite (pytest-asyncio in auto mode, as configured in
pyproject.toml). The last ones run pytest in a subprocess on a user's test file in an empty
directory, with no configuration at all, with pytest-asyncio in its default strict mode and in auto
mode. Without pytest-asyncio (what a user has after ``pip install 'connex-async[testing]'``),
tests/test_wheel_install.py runs the same file from the wheel in a fresh virtualenv.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from connex_async import ConnexClient, Poller, SessionPool, ZoomexClient
from connex_async.testing import Fault, SimulatedVenue, VenueFactory, VenueStats
from connex_async.testing.stats import StatsBook


@pytest.mark.simulated_venue(
    connex_portfolios=3,
    zoomex_accounts=1,
    seed=42,
    latency=0.02,
    jitter=0.01,
    faults=[Fault("http_503", times=1, venue="connex")],
)
async def test_the_marker_sets_portfolios_accounts_seed_latency_jitter_and_faults(
    simulated_venue: SimulatedVenue,
) -> None:
    venue = simulated_venue
    expected = SimulatedVenue(connex_portfolios=3, zoomex_accounts=1, seed=42)
    assert venue.connex_credentials == expected.connex_credentials
    assert venue.zoomex_credentials == expected.zoomex_credentials
    assert (venue.latency, venue.jitter) == (0.02, 0.01)
    assert [f.kind for f in venue.faults] == ["http_503"]
    async with SessionPool() as pool:
        client = ConnexClient(venue.connex_credentials[0], base_url=venue.base_url, pool=pool)
        await client.get_positions()  # the 503 first, then a retry that succeeds
        started = time.perf_counter()
        await client.get_positions()
        assert time.perf_counter() - started >= 0.02  # the latency
    assert venue.faults[0].fired == 1
    assert pool.metrics.snapshot().retries == 1


def test_a_plain_test_can_use_the_venue_which_serves_from_its_own_thread(simulated_venue: SimulatedVenue) -> None:
    with urllib.request.urlopen(f"{simulated_venue.base_url}/_sim/stats", timeout=5) as response:
        assert json.load(response)["violations"] == 0
    assert len(simulated_venue.connex_credentials) == 10  # the defaults
    assert len(simulated_venue.zoomex_credentials) == 10


async def test_the_factory_makes_several_venues_and_methods_are_safe_while_polling(
    simulated_venue_factory: VenueFactory,
) -> None:
    quiet = simulated_venue_factory(connex_portfolios=2, zoomex_accounts=0, seed=1)
    busy = simulated_venue_factory(connex_portfolios=0, zoomex_accounts=3, seed=2)
    assert quiet.base_url != busy.base_url
    async with SessionPool() as pool:
        clients = [ZoomexClient(c, base_url=busy.base_url, pool=pool) for c in busy.zoomex_credentials]
        async with Poller(clients, wallet_every=0.05) as poller:
            seen = 0
            async for update in poller:
                assert update.ok, update.error
                busy.inject(Fault("latency", probability=0.0))  # the venue's thread applies these calls
                busy.reset_stats()
                assert busy.stats().violations == 0
                seen += 1
                if seen == 30:
                    break
    assert len(busy.faults) == 30


def test_the_venues_methods_run_on_its_thread_when_called_from_another(
    simulated_venue: SimulatedVenue, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    snapshot = StatsBook.snapshot

    def recording(book: StatsBook) -> VenueStats:
        threads.append(threading.current_thread().name)
        return snapshot(book)

    monkeypatch.setattr(StatsBook, "snapshot", recording)
    simulated_venue.stats()
    assert threads and threads[0].startswith("simulated-venue-")
    assert threading.current_thread().name == "MainThread"


# -- in a user's project: no configuration, no other plugin --------------------------------------

USER_TESTS = """
import pytest

from connex_async import ConnexClient, Poller, SessionPool, ZoomexClient
from connex_async.testing import Fault


async def test_unmarked_async_test(simulated_venue):
    async with SessionPool() as pool:
        client = ConnexClient(simulated_venue.connex_credentials[0], base_url=simulated_venue.base_url, pool=pool)
        assert await client.get_all_assets()
    assert simulated_venue.stats().violations == 0


@pytest.mark.simulated_venue(connex_portfolios=2, zoomex_accounts=2, seed=9, latency=0.005, jitter=0.005,
                             faults=[Fault("http_502_html", times=2)])
async def test_configured_by_the_marker(simulated_venue):
    assert len(simulated_venue.connex_credentials) == 2
    async with SessionPool() as pool:
        clients = [ZoomexClient(c, base_url=simulated_venue.base_url, pool=pool)
                   for c in simulated_venue.zoomex_credentials]
        updates = []
        async with Poller(clients, wallet_every=0.1) as poller:
            async for update in poller:
                updates.append(update)
                if len(updates) == 6:
                    break
    assert simulated_venue.faults[0].fired == 2
    assert all(u.ok for u in updates)


async def test_the_factory(simulated_venue_factory):
    venue = simulated_venue_factory(connex_portfolios=1, zoomex_accounts=0, seed=3)
    async with ConnexClient(venue.connex_credentials[0], base_url=venue.base_url) as client:
        assert isinstance(await client.get_positions(), list)


def test_plain(simulated_venue):
    assert simulated_venue.base_url.startswith("http://127.0.0.1:")
"""

MARKED_FOR_PYTEST_ASYNCIO = """

@pytest.mark.asyncio
async def test_marked_for_pytest_asyncio(simulated_venue):
    async with ZoomexClient(simulated_venue.zoomex_credentials[0], base_url=simulated_venue.base_url) as client:
        assert (await client.get_wallet_balance()).accounts
"""


def run_user_pytest(directory: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("case", "options"),
    [  # with connex-async[testing] alone (no pytest-asyncio): tests/test_wheel_install.py runs USER_TESTS
        ("pytest-asyncio, strict mode", ()),
        ("pytest-asyncio, auto mode", ("-o", "asyncio_mode=auto")),
    ],
)
def test_a_users_project_with_no_configuration(tmp_path: Path, case: str, options: tuple[str, ...]) -> None:
    tests = USER_TESTS + MARKED_FOR_PYTEST_ASYNCIO
    (tmp_path / "test_bot.py").write_text(tests)
    assert not [p.name for p in tmp_path.iterdir() if p.name != "test_bot.py"]  # no pytest.ini, conftest, ...
    proc = run_user_pytest(tmp_path, *options)
    assert "5 passed" in proc.stdout, f"{case}:\n{proc.stdout}\n{proc.stderr}"
    assert "failed" not in proc.stdout and "error" not in proc.stdout.lower(), proc.stdout
    assert "not natively supported" not in proc.stdout


def test_a_wrong_marker_option_fails_the_test_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "test_typo.py").write_text(
        "import pytest\n\n@pytest.mark.simulated_venue(portfolios=3)\ndef test_typo(simulated_venue):\n    pass\n"
    )
    proc = run_user_pytest(tmp_path, "-p", "no:asyncio")
    assert "1 error" in proc.stdout, proc.stdout
    assert (
        "@pytest.mark.simulated_venue: SimulatedVenue.__init__() got an unexpected keyword argument 'portfolios'"
        in (proc.stdout)
    )
