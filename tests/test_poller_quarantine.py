"""Quarantine per (portfolio, endpoint), a pause and a probe, re-adding; unexpected errors logged once.

Against the simulator. Before: one permission error stopped every endpoint of a portfolio, a
ConneX 403 quarantined every portfolio for good, ``add()`` refused them afterwards, and a bug
logged a full traceback on every poll of every portfolio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from poller_helpers import collect
from venue_checks import FAST_RETRY

from connex_async import AuthenticationError, ConnexClient, Credentials, PermissionDeniedError, SessionPool
from connex_async.poller import Poller, Update
from connex_async.testing import Fault, SimulatedVenue


async def until(poller: Poller, condition: Callable[[list[Update]], bool], within: float = 5.0) -> list[Update]:
    """Consume updates until ``condition(updates so far)`` holds (a bound, not a sleep: fast when the machine is)."""
    got: list[Update] = []
    deadline = time.monotonic() + within
    while not condition(got):
        left = deadline - time.monotonic()
        assert left > 0, f"condition not reached within {within}s; quarantined: {poller.quarantined}"
        with contextlib.suppress(TimeoutError):
            got.append(await asyncio.wait_for(anext(aiter(poller)), min(left, 0.05)))
    return got


def of(updates: list[Update], label: str, endpoint: str) -> list[Update]:
    return [u for u in updates if (u.portfolio, u.endpoint) == (label, endpoint)]


async def test_permission_error_pauses_that_endpoint_only() -> None:
    async with SimulatedVenue(connex_portfolios=3, zoomex_accounts=0) as venue, SessionPool(retry=FAST_RETRY) as pool:
        clients = [ConnexClient(c, base_url=venue.base_url, pool=pool) for c in venue.connex_credentials]
        denied = clients[0]
        # HTTP 403 on positions only (an IP rule, a key without that permission): PermissionDeniedError.
        venue.inject(Fault("ip_limit", api_key=denied.credentials.api_key, endpoint="positions"))
        poller = Poller(clients, assets_every=0.1, positions_every=0.1, quarantine_after=2, quarantine_pause=None)
        async with poller:
            await until(poller, lambda _: bool(poller.quarantined))
            later = await collect(poller, 0.5)
        quarantined = poller.quarantined
    assert set(quarantined) == {(denied.label, "positions")}
    assert of(later, denied.label, "assets") and all(u.ok for u in of(later, denied.label, "assets"))
    assert not of(later, denied.label, "positions")  # paused: no more requests, no more updates
    for other in clients[1:]:
        assert of(later, other.label, "assets") and of(later, other.label, "positions")


async def test_venue_wide_403_pauses_then_a_probe_lifts_it() -> None:
    async with SimulatedVenue(connex_portfolios=4, zoomex_accounts=0) as venue, SessionPool(retry=FAST_RETRY) as pool:
        clients = [ConnexClient(c, base_url=venue.base_url, pool=pool) for c in venue.connex_credentials]
        for client in clients:  # the host refuses every key twice (a WAF rule), then recovers
            venue.script(client.credentials.api_key, ["ip_limit", "ip_limit"], endpoint="assets")
        poller = Poller(clients, assets_every=0.1, positions_every=None, quarantine_after=2, quarantine_pause=1.0)
        async with poller:
            # Conditions on what each portfolio went through, not on one moment: on a slow machine
            # the first pause may end before the last portfolio is paused.
            first = await until(poller, lambda got: sum(u.quarantined for u in got) == len(clients))
            later = await until(poller, lambda got: all(any(u.ok for u in of(got, c.label, "assets")) for c in clients))
        after = poller.quarantined
    assert {u.portfolio for u in first if u.quarantined} == {c.label for c in clients}
    assert all(isinstance(u.error, PermissionDeniedError) for u in first if not u.ok)
    assert after == {}
    assert all(u.ok for u in later)  # each probe succeeded: no third refusal, no new pause
    for client in clients:  # the two refusals, then at least the probe
        assert sum(s.requests for s in venue.stats().for_key(client.credentials.api_key)) >= 3


async def test_bad_key_pauses_the_whole_portfolio_and_can_be_re_added() -> None:
    async with SimulatedVenue(connex_portfolios=1, zoomex_accounts=0) as venue, SessionPool(retry=FAST_RETRY) as pool:
        good = venue.connex_credentials[0]
        wrong = Credentials(good.api_key, "a-wrong-secret", label="desk-9")
        client = ConnexClient(wrong, base_url=venue.base_url, pool=pool)
        poller = Poller([client], assets_every=0.1, positions_every=0.1, quarantine_after=2, quarantine_pause=60.0)
        async with poller:
            # Two refusals of either endpoint pause both: the key itself is refused.
            refused = await until(poller, lambda _: len(poller.quarantined) == 2 and not poller.stats().in_flight)
            assert set(poller.quarantined) == {("desk-9", "assets"), ("desk-9", "positions")}
            assert all(isinstance(u.error, AuthenticationError) for u in refused)
            requests = venue.stats().requests
            await collect(poller, 0.3)
            assert venue.stats().requests == requests  # paused: nothing is sent
            # The key is rotated: the same portfolio, re-added with working credentials.
            fixed = Credentials(good.api_key, good.secret, label="desk-9")
            poller.add(ConnexClient(fixed, base_url=venue.base_url, pool=pool))
            await until(
                poller, lambda got: all(any(u.ok for u in of(got, "desk-9", e)) for e in ("assets", "positions"))
            )
        assert poller.quarantined == {}


async def test_unexpected_error_is_logged_once_then_counted(caplog: pytest.LogCaptureFixture) -> None:
    class Buggy(ConnexClient):
        """A user's subclass whose post-processing has a bug (after a real request)."""

        def poll_jobs(self) -> dict[str, Callable[[], Awaitable[Any]]]:
            async def assets() -> Any:
                page = await self.get_assets()
                return page.assets[0].no_such_field  # type: ignore[attr-defined]

            return {"assets": assets}

    async with SimulatedVenue(connex_portfolios=5, zoomex_accounts=0) as venue, SessionPool(retry=FAST_RETRY) as pool:
        clients = [Buggy(c, base_url=venue.base_url, pool=pool) for c in venue.connex_credentials]
        with caplog.at_level(logging.WARNING, logger="connex_async"):
            async with Poller(clients, assets_every=0.1, positions_every=None) as poller:
                updates = await collect(poller, 0.8)
        stats = poller.stats()
    failed = [u for u in updates if not u.ok]
    assert len(failed) >= 10
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, f"{len(tracebacks)} tracebacks for {len(failed)} failed polls"
    assert stats.unexpected_errors == {"AttributeError in connex/assets": stats.polls_failed}
