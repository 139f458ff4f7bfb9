"""Test-wide setup: an aioresponses shim for aiohttp >= 3.14, replayable randomness, timing tests
kept apart under xdist, and a real redis-server for the Redis tests."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import aioresponses.core
from aiohttp import ClientResponse


class _CompatClientResponse(ClientResponse):
    """aioresponses 0.7.9 builds responses without the `stream_writer` that aiohttp >= 3.14 requires
    (aioresponses issue #289, open upstream). A response it builds was never written, so an empty
    writer is the truth."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


if "stream_writer" in inspect.signature(ClientResponse.__init__).parameters:
    aioresponses.core.ClientResponse = _CompatClientResponse  # type: ignore[misc]


# -- a real redis-server for the Redis-backed limits and the fleet (never a mock) ----------------

import os  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from connex_async.testing.redis_server import RedisServer, RedisServerUnavailable  # noqa: E402


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server per test session (per xdist worker), on a unix socket.

    Locally without any server binary the Redis tests skip with the reason; under CI (``CI`` set)
    they fail instead, so a CI run can never pass by skipping them.
    """
    try:
        server = RedisServer()
    except RedisServerUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Redis tests: {exc}")
        pytest.skip(str(exc))
    with server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's server, running and emptied for this test."""
    import redis  # the test extra has it; only Redis tests pay the import

    redis_server.start()  # a test that stopped it leaves it stopped
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


# -- replayable randomness -----------------------------------------------------------------------
#
# Backoff jitter, the limiters' first-admission phases, Poller.add's phases and the test servers'
# jitter all draw from the `random` module. Every test starts from a seed derived from the session's
# seed and its own id, so that a failure can be replayed exactly (the seed is printed with it), and
# a test's draws do not depend on which tests ran before it on its worker.

import random  # noqa: E402

SEED_VARIABLE = "CONNEX_TEST_SEED"


def pytest_configure(config: pytest.Config) -> None:
    # The controller picks the session's seed; xdist workers inherit it through the environment.
    if not os.environ.get(SEED_VARIABLE):
        os.environ[SEED_VARIABLE] = str(random.SystemRandom().randrange(10**9))


def pytest_report_header(config: pytest.Config) -> str:
    return f"random seed: {SEED_VARIABLE}={os.environ[SEED_VARIABLE]}"


@pytest.fixture(autouse=True)
def _seeded_random(request: pytest.FixtureRequest) -> None:
    random.seed(f"{os.environ[SEED_VARIABLE]}:{request.node.nodeid}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.failed:
        seed = os.environ[SEED_VARIABLE]
        report.sections.append(("random seed", f"replay with: {SEED_VARIABLE}={seed} pytest '{item.nodeid}'"))
    return report


# -- timing tests: one at a time under xdist -----------------------------------------------------
#
# Most of the suite sleeps (user CPU is about a quarter of its wall time), so `make test` runs it on
# several xdist workers. A test marked `timing` asserts arrival times or window violations at a
# server in its own process: every such test goes to one worker (`--dist loadgroup`), so that no
# two of them ever load the machine at the same time; each still has the other workers' sleeping
# tests beside it, which is the noise their margins are sized for.


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.get_closest_marker("timing") is not None:
            item.add_marker(pytest.mark.xdist_group("timing"))
