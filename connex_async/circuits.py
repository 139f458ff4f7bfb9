"""Host circuits of one process: fail fast after a ban signal, probe once to find out it is over.

The Redis backend keeps the same three states in its script (:mod:`connex_async.redis_limits`);
this is the local bookkeeping of :class:`~connex_async.limits.LimiterRegistry`. Times are
``time.monotonic()``.

- **open** until ``until``: every request fails fast (:class:`~connex_async.errors.CircuitOpenError`);
- **half-open** from ``probe_at``: one request at a time goes out as the probe; the others still
  fail fast. Its answer closes the circuit, or opens it again with the pause to the next probe
  doubled (a ban that lasts is probed less and less often);
- **closed**: the entry is gone.
"""

from __future__ import annotations

import time

from connex_async.limiter_backend import CircuitKey

__all__ = ["PROBE_LEASE", "CircuitTable"]

#: A probe that never reports back (its task was cancelled) blocks the next probe at most this long.
PROBE_LEASE = 60.0


class _Circuit:
    __slots__ = ("pause", "probe_at", "probing_until", "until")

    def __init__(self, until: float, pause: float | None) -> None:
        self.until = until
        self.pause = pause
        self.probe_at = float("inf") if pause is None else time.monotonic() + pause
        self.probing_until = 0.0


class CircuitTable:
    """Open and half-open circuits by (venue, host)."""

    __slots__ = ("_circuits",)

    def __init__(self) -> None:
        self._circuits: dict[CircuitKey, _Circuit] = {}

    def check(self, key: CircuitKey) -> float | None:
        """``None`` if a request may go (closed, or it is the probe); else seconds it stays open.

        A request that may go while the circuit is half-open *is* the probe: :meth:`is_probing`
        tells the caller so.
        """
        circuit = self._circuits.get(key)
        if circuit is None:
            return None
        now = time.monotonic()
        if now >= circuit.until:
            del self._circuits[key]
            return None
        if now >= circuit.probe_at and now >= circuit.probing_until:
            circuit.probing_until = now + PROBE_LEASE
            return None
        return circuit.until - now

    def is_probing(self, key: CircuitKey) -> bool:
        """Whether ``key`` has a probe out (the request just let through by :meth:`check`)."""
        circuit = self._circuits.get(key)
        return circuit is not None and circuit.probing_until > time.monotonic()

    def open(self, key: CircuitKey, seconds: float, probe_after: float | None) -> None:
        """Open (or re-open after a failed probe) for ``seconds``; the next probe after a pause.

        Re-opening doubles the previous pause, up to the circuit's length.
        """
        previous = self._circuits.get(key)
        until = time.monotonic() + seconds
        if previous is not None and not self.is_probing(key):
            # More ban signals from requests that were already in flight: the same opening.
            previous.until = max(previous.until, until)
            return
        pause = probe_after
        if previous is not None and previous.pause is not None and probe_after is not None:
            pause = min(max(probe_after, 2 * previous.pause), seconds)  # the probe was refused
        self._circuits[key] = _Circuit(until, pause)

    def close(self, key: CircuitKey) -> None:
        """The probe was answered: the host is reachable again."""
        self._circuits.pop(key, None)

    def release_probe(self, key: CircuitKey) -> None:
        """The probe got no answer: let the next request probe."""
        circuit = self._circuits.get(key)
        if circuit is not None:
            circuit.probing_until = 0.0

    def remaining(self) -> dict[CircuitKey, float]:
        """Seconds left of every open circuit."""
        now = time.monotonic()
        return {key: c.until - now for key, c in self._circuits.items() if c.until > now}
