"""Simulated ConneX and Zoomex venues over real sockets, for tests, demos and benchmarks.

::

    from connex_async.testing import SimulatedVenue, Fault

    async with SimulatedVenue(connex_portfolios=300, zoomex_accounts=50, seed=7) as venue:
        venue.base_url                  # one server for both venues
        venue.connex_credentials        # deterministic keys from the seed
        venue.inject(Fault("http_503", probability=0.1))
        ...
        assert venue.violations == 0

The simulator verifies signatures with its own implementation of the documented algorithms (never the
client's signer), counts every arrival in strict sliding windows per (venue, endpoint, key) plus the
Zoomex host-wide window, and reports violations in :meth:`SimulatedVenue.stats` and ``GET /_sim/stats``.
A WAN: ``SimulatedVenue(request_delay=Delay.parse("0-120ms,250ms@0.5%"))`` (:mod:`connex_async.testing.network`).

With pytest, the ``simulated_venue`` fixture gives a started venue (``pip install
'connex-async[testing]'``; see :mod:`connex_async.testing.pytest_plugin`).

Names are imported lazily so that the pytest plugin (loaded in every pytest run) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connex_async.testing.faults import FAULT_KINDS, Fault
    from connex_async.testing.network import Delay, Route
    from connex_async.testing.pytest_plugin import VenueFactory
    from connex_async.testing.redis_server import RedisServer
    from connex_async.testing.server import DEFAULT_LIMITS, SimulatedVenue
    from connex_async.testing.stats import EndpointStats, VenueStats
    from connex_async.testing.threaded import VenueThread
    from connex_async.testing.window import Limit, SlidingWindow

    SimLimits = DEFAULT_LIMITS

__all__ = [
    "DEFAULT_LIMITS",
    "FAULT_KINDS",
    "Delay",
    "EndpointStats",
    "Fault",
    "Limit",
    "RedisServer",
    "Route",
    "SimLimits",
    "SimulatedVenue",
    "SlidingWindow",
    "VenueFactory",
    "VenueStats",
    "VenueThread",
]

_WHERE = {
    "DEFAULT_LIMITS": ("server", "DEFAULT_LIMITS"),
    "SimLimits": ("server", "DEFAULT_LIMITS"),
    "SimulatedVenue": ("server", "SimulatedVenue"),
    "RedisServer": ("redis_server", "RedisServer"),
    "FAULT_KINDS": ("faults", "FAULT_KINDS"),
    "Fault": ("faults", "Fault"),
    "Delay": ("network", "Delay"),
    "Route": ("network", "Route"),
    "EndpointStats": ("stats", "EndpointStats"),
    "VenueStats": ("stats", "VenueStats"),
    "Limit": ("window", "Limit"),
    "SlidingWindow": ("window", "SlidingWindow"),
    "VenueFactory": ("pytest_plugin", "VenueFactory"),
    "VenueThread": ("threaded", "VenueThread"),
}


def __getattr__(name: str) -> Any:
    """Import public names on first use."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where[0]}"), where[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
