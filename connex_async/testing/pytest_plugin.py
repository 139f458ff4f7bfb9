"""pytest plugin (entry point ``pytest11``): the ``simulated_venue`` fixture.

Loaded in every pytest run, so it imports nothing heavy until the fixture is used, and it defines
the fixture only when pytest-asyncio is installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connex_async.testing.server import SimulatedVenue

__all__ = ["simulated_venue"]

if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def simulated_venue() -> AsyncIterator[SimulatedVenue]:
        """A started :class:`~connex_async.testing.SimulatedVenue` (10 ConneX portfolios, 10 Zoomex
        accounts, seed 0, no latency, default limits) on a free port; stopped afterwards."""
        from connex_async.testing.server import SimulatedVenue  # noqa: PLC0415 - keep the plugin light

        venue = SimulatedVenue()
        await venue.start()
        try:
            yield venue
        finally:
            await venue.stop()
