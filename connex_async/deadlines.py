"""Call deadlines that cost no timer until they come near.

Every call runs under an ``asyncio.timeout`` (the pool's deadline, 60 s by default), and nearly
every call ends within milliseconds. Arming a loop timer for each one cost 3.4 µs a call on its
own and more under load, where thousands of cancelled timers sit in the loop's heap and every push
compares ``TimerHandle`` objects in Python: the deadline as a whole cost 6-10 µs of a 200-280 µs
request, and arming its timer only when near saves about 4 of them (measured in alternation, in
one process, on this project's machine).

So a call enters ``asyncio.timeout(None)`` (no timer) and hands the scope to a
:class:`DeadlineWatch`. The watch reschedules a scope to its deadline (``Timeout.reschedule``, which
arms the timer) once the deadline is less than ``horizon`` away: at once if it already is, otherwise
from a tick that runs every ``horizon / 2`` while any scope is watched. A call still running near
its deadline so gets the same timer, with the same cancellation semantics, as before; calls that end
sooner never had one. There is one watch per event loop (:func:`loop_watch`), shared by every pool
on it: a bot with a private pool per key still runs one tick, not one per pool.
"""

from __future__ import annotations

import asyncio
import weakref

__all__ = ["DEFAULT_HORIZON", "DeadlineWatch", "loop_watch"]

#: Seconds before its deadline by which a scope has its timer (the tick runs twice as often).
DEFAULT_HORIZON = 1.0


class DeadlineWatch:
    """Arms the timers of ``asyncio.timeout(None)`` scopes when their deadlines come within ``horizon``."""

    __slots__ = ("_loop", "_scopes", "_ticking", "horizon")

    _loop: weakref.ReferenceType[asyncio.AbstractEventLoop] | None

    def __init__(self, horizon: float = DEFAULT_HORIZON) -> None:
        if not horizon > 0:
            raise ValueError("horizon must be > 0 seconds")
        self.horizon = horizon
        self._scopes: dict[asyncio.Timeout, float] = {}  # scope -> its deadline in loop time
        self._ticking = False  # a tick is scheduled
        # Weakly (and no handle kept: it refers to its loop): the loop's entry in _WATCHES must not
        # be kept alive by its own value.
        self._loop = None

    def watch(self, scope: asyncio.Timeout, delay: float) -> None:
        """Make ``scope`` (entered, without a deadline) expire ``delay`` seconds from now."""
        loop = asyncio.get_running_loop()
        if self._loop is None or self._loop() is not loop:  # a new loop: the old one's tick will never run
            self._loop, self._ticking = weakref.ref(loop), False
            self._scopes.clear()
        when = loop.time() + delay
        if delay <= self.horizon:
            scope.reschedule(when)
            return
        self._scopes[scope] = when
        if not self._ticking:
            self._ticking = True
            loop.call_later(self.horizon / 2, self._tick)

    def forget(self, scope: asyncio.Timeout) -> None:
        """``scope``'s call has ended (call it before the scope exits)."""
        self._scopes.pop(scope, None)

    def watched(self) -> int:
        """How many scopes wait for their timer."""
        return len(self._scopes)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()  # the tick runs on the loop it was scheduled on
        soon = loop.time() + self.horizon
        due = [scope for scope, when in self._scopes.items() if when <= soon]
        for scope in due:
            scope.reschedule(self._scopes.pop(scope))
        self._ticking = bool(self._scopes)
        if self._ticking:
            loop.call_later(self.horizon / 2, self._tick)


_WATCHES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DeadlineWatch] = weakref.WeakKeyDictionary()


def loop_watch() -> DeadlineWatch:
    """The running event loop's watch (made on first use, gone with the loop)."""
    loop = asyncio.get_running_loop()
    watch = _WATCHES.get(loop)
    if watch is None:
        watch = _WATCHES[loop] = DeadlineWatch()
    return watch
