"""Strict sliding-window arrival counters, the simulator's ground truth for rate limits.

A request arriving at time ``t`` is a *violation* when the window ``(t - period, t]``, counting
that request, holds more than ``count`` arrivals of its scope. Every arrival is counted, rejected
ones included, exactly as a venue that counts each request it receives.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Limit", "SlidingWindow", "WindowRegistry"]


class Limit:
    """``count`` requests per ``period`` seconds."""

    __slots__ = ("count", "period")

    count: int
    period: float

    def __init__(self, count: int, period: float) -> None:
        if count < 1:
            raise ValueError("Limit.count must be >= 1")
        if period <= 0:
            raise ValueError("Limit.period must be > 0")
        self.count = int(count)
        self.period = float(period)

    def __repr__(self) -> str:
        return f"Limit({self.count}, {self.period})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Limit):
            return NotImplemented
        return (self.count, self.period) == (other.count, other.period)

    def __hash__(self) -> int:
        return hash((self.count, self.period))


class SlidingWindow:
    """Arrival times of one scope within the last ``period`` seconds (amortized O(1) per hit)."""

    __slots__ = ("_arrivals", "count", "period")

    count: int
    period: float

    def __init__(self, count: int, period: float) -> None:
        self.count = count
        self.period = period
        self._arrivals: deque[float] = deque()

    def hit(self, now: float) -> int:
        """Record an arrival at ``now``; return how many arrivals ``(now - period, now]`` holds."""
        arrivals = self._arrivals
        edge = now - self.period
        while arrivals and arrivals[0] <= edge:
            arrivals.popleft()
        arrivals.append(now)
        return len(arrivals)

    def occupancy(self, now: float) -> int:
        """How many arrivals the window ending at ``now`` holds, without recording one."""
        arrivals = self._arrivals
        edge = now - self.period
        while arrivals and arrivals[0] <= edge:
            arrivals.popleft()
        return len(arrivals)

    def remaining(self, now: float) -> int:
        """How many more arrivals at ``now`` would still be within the limit."""
        return max(0, self.count - self.occupancy(now))

    def reset_after(self, now: float) -> float:
        """Seconds from ``now`` until one more arrival would be within the limit (0 if it already is)."""
        n = self.occupancy(now)
        if n < self.count:
            return 0.0
        # Admitting one more needs at most count - 1 arrivals in the window: the oldest
        # n - count + 1 of them must have left it.
        return max(0.0, self._arrivals[n - self.count] + self.period - now)

    def next_expiry(self, now: float) -> float:
        """Seconds from ``now`` until the oldest arrival leaves the window (0 if it is empty)."""
        n = self.occupancy(now)
        return 0.0 if n == 0 else max(0.0, self._arrivals[0] + self.period - now)


class WindowRegistry:
    """One :class:`SlidingWindow` per scope key, created on first use."""

    __slots__ = ("_windows",)

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str, str], SlidingWindow] = {}

    def window(self, scope: tuple[str, str, str], limit: Limit) -> SlidingWindow:
        """The window for ``scope``, created with ``limit`` if it does not exist yet."""
        w = self._windows.get(scope)
        if w is None:
            w = SlidingWindow(limit.count, limit.period)
            self._windows[scope] = w
        return w

    def drop(self, prefix: tuple[str, str]) -> None:
        """Forget the windows whose scope starts with ``prefix`` (after a limit change)."""
        for key in [k for k in self._windows if k[:2] == prefix]:
            del self._windows[key]

    def clear(self) -> None:
        """Forget every window."""
        self._windows.clear()

    def __len__(self) -> int:
        return len(self._windows)
