"""pytest plugin (entry point ``pytest11``): the ``simulated_venue`` fixture and ``simulated_venue_factory``.

Install ``connex-async[testing]`` (it brings pytest) and the fixtures work in any project, with no
configuration and no other plugin:

- the venue is served from a thread of its own (:class:`~connex_async.testing.threaded.VenueThread`),
  so plain ``def`` tests can use it, and ``async def`` tests on any event loop;
- an ``async def`` test that uses one of these fixtures and that no other plugin runs (no
  pytest-asyncio ``asyncio`` mark or auto mode, no anyio mark) is run here, on a fresh event loop
  (:class:`asyncio.Runner`). Tests that pytest-asyncio or anyio run are left to them.

Configure the venue with the ``simulated_venue`` marker (any :class:`SimulatedVenue` option, plus
``faults``: :class:`Fault` rules injected before the test starts)::

    @pytest.mark.simulated_venue(connex_portfolios=3, zoomex_accounts=1, latency=0.01, jitter=0.005,
                                 seed=42, faults=[Fault("http_503", probability=0.2)])
    async def test_bot(simulated_venue): ...

or build venues in the test with ``simulated_venue_factory(**options)`` (each is stopped at teardown).

Loaded in every pytest run of an environment that has connex-async installed, so it imports
nothing heavy until a fixture is used.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from connex_async.testing.faults import Fault
    from connex_async.testing.server import SimulatedVenue
    from connex_async.testing.threaded import VenueThread

__all__ = ["VenueFactory", "simulated_venue", "simulated_venue_factory"]

MARKER = "simulated_venue"
_FIXTURES = frozenset({"simulated_venue", "simulated_venue_factory"})


class VenueFactory(Protocol):
    """The type of the ``simulated_venue_factory`` fixture: ``factory(**options) -> a started venue``."""

    def __call__(
        self,
        *,
        connex_portfolios: int = 10,
        zoomex_accounts: int = 10,
        seed: int = 0,
        latency: float = 0.0,
        jitter: float = 0.0,
        faults: Iterable[Fault] = (),
        **options: Any,
    ) -> SimulatedVenue:
        """A :class:`SimulatedVenue` with these options and ``faults`` injected, serving until teardown."""
        ...


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker (so that ``--strict-markers`` projects accept it)."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): options of the simulated_venue fixture: connex_portfolios, zoomex_accounts, "
        "latency, jitter, seed, faults=[Fault(...)], or any other SimulatedVenue option",
    )


@pytest.fixture
def simulated_venue_factory() -> Iterator[VenueFactory]:
    """Make started :class:`~connex_async.testing.SimulatedVenue` s: ``simulated_venue_factory(**options)``.

    Options are those of ``SimulatedVenue`` plus ``faults`` (an iterable of
    :class:`~connex_async.testing.Fault`); every venue made is stopped after the test.
    """
    from connex_async.testing.server import SimulatedVenue  # noqa: PLC0415 - keep the plugin light
    from connex_async.testing.threaded import VenueThread  # noqa: PLC0415

    hosts: list[VenueThread[SimulatedVenue]] = []

    def make(*, faults: Iterable[Fault] = (), **options: Any) -> SimulatedVenue:
        venue = SimulatedVenue(**options)
        for fault in faults:
            venue.inject(fault)
        host = VenueThread(venue)
        host.start()
        hosts.append(host)
        return venue

    yield make
    for host in reversed(hosts):
        host.stop()


@pytest.fixture
def simulated_venue(request: pytest.FixtureRequest, simulated_venue_factory: VenueFactory) -> SimulatedVenue:
    """A started :class:`~connex_async.testing.SimulatedVenue` on a free port of 127.0.0.1, stopped afterwards.

    By default 10 ConneX portfolios and 10 Zoomex accounts, seed 0, no latency, no faults, the
    venues' documented limits. Change any of that with ``@pytest.mark.simulated_venue(**options)``.
    """
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None and marker.args:
        pytest.fail(f"@pytest.mark.{MARKER} takes keyword options only, got {marker.args!r}", pytrace=False)
    options = dict(marker.kwargs) if marker is not None else {}
    try:
        return simulated_venue_factory(**options)
    except TypeError as exc:
        pytest.fail(f"@pytest.mark.{MARKER}: {exc}", pytrace=False)


@pytest.hookimpl
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test that uses a venue fixture and that no other plugin runs."""
    test = pyfuncitem.obj
    if not inspect.iscoroutinefunction(test) or not _FIXTURES.intersection(pyfuncitem.fixturenames):
        return None  # not ours; pytest-asyncio / anyio already replaced the coroutine if they run it
    funcargs = pyfuncitem.funcargs
    arguments = {name: funcargs[name] for name in inspect.signature(test).parameters if name in funcargs}
    with asyncio.Runner() as runner:
        runner.run(test(**arguments))
    return True
