"""A :class:`~connex_async.testing.SimulatedVenue` served from its own thread and event loop.

The pytest fixtures use it, so that one venue serves any test: a plain ``def`` test (a CLI run, a
``requests`` call), and an ``async def`` test on whichever loop runs it (the plugin's own,
pytest-asyncio's, anyio's). While a venue is hosted, its public methods called from another thread
(``inject``, ``script``, ``stats``, ...) run on the venue's thread, the only one that touches its
state; plain attributes such as ``clock_skew`` or ``latency`` can be set from anywhere.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Servable", "VenueThread"]

R = TypeVar("R")


class Servable(Protocol):
    """What :class:`VenueThread` serves (a :class:`~connex_async.testing.SimulatedVenue`): a server
    that starts and stops on a loop, and learns which thread hosts it (to route its calls there)."""

    _host: Any

    async def start(self) -> None:
        """Listen."""

    async def stop(self) -> None:
        """Stop listening and close every connection."""


V = TypeVar("V", bound=Servable)


class VenueThread(Generic[V]):
    """Serve ``venue`` on a new event loop in a daemon thread, from :meth:`start` to :meth:`stop`."""

    def __init__(self, venue: V, timeout: float = 10.0) -> None:
        self.venue = venue
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> V:
        """Start the thread and the venue's server; returns the venue, listening."""
        if self._thread is not None:
            raise RuntimeError("this VenueThread has already been started")
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=f"simulated-venue-{id(self):x}", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.venue.start(), loop).result(self.timeout)
        except BaseException:
            self._halt()
            raise
        self.venue._host = self
        return self.venue

    def stop(self) -> None:
        """Stop the venue's server, then the loop and the thread (idempotent)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        self.venue._host = None
        try:
            asyncio.run_coroutine_threadsafe(self.venue.stop(), loop).result(self.timeout)
        finally:
            self._halt()

    def _halt(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(self.timeout)

    def _serve(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def owns_current_thread(self) -> bool:
        """True on the thread that serves the venue."""
        return self._thread is not None and threading.current_thread() is self._thread

    def call(self, function: Callable[[], R]) -> R:
        """``function()`` on the venue's thread (directly if already there); its result or exception."""
        if self.owns_current_thread():
            return function()
        loop = self._loop
        if loop is None or loop.is_closed():
            return function()  # stopped: nothing else touches the venue any more
        future: concurrent.futures.Future[R] = concurrent.futures.Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function())
                except BaseException as exc:
                    future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(self.timeout)

    def __enter__(self) -> V:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "serving" if self.venue._host is self else "stopped"
        return f"VenueThread({self.venue!r}, {state})"
