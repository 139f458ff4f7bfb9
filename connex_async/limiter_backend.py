"""The one seam between the request loop and wherever rate-limit state lives.

:class:`~connex_async.pool.SessionPool` admits every attempt through a :class:`LimiterBackend` and
cannot tell which one it talks to:

- :class:`~connex_async.limits.LimiterRegistry`: this process's buckets (the default);
- :class:`~connex_async.redis_limits.RedisLimiter`: buckets in Redis, shared by every process and
  machine that uses the same namespace, dated by Redis ``TIME`` alone.

The contract, in the pool's words: *take one slot of every scope of this request in one instant,
or tell me how long to wait; hold nothing while I wait*. Plus the server's feedback: cooldowns
(a 429 pauses a whole scope), circuits (a ban signal stops a whole host, with a half-open probe to
find out early that it is over) and the late-write charge (:mod:`connex_async.send_ticket`).

The backends also keep the round trips to each (venue, host) (:mod:`connex_async.margins`): the
pool reports every answer's (:meth:`LimiterBackend.observe_round_trip`, through the send ticket),
and each admission brings its adaptive scopes' margins up to date with them, before deciding.

A circuit is half-open after ``probe_after`` seconds: the next admission of its host is the one
probe (fleet-wide with Redis), every other request still fails fast. The probe's outcome closes
the circuit (any answer that is not a ban signal), opens it again (a ban signal, the pause
doubling up to the circuit's length) or gives the probe back (no answer at all).
"""

from __future__ import annotations

import abc
from typing import Any, Final

from connex_async.margins import HostKey, Paths
from connex_async.metrics import PathSnapshot
from connex_async.rate_limit import RateLimit

__all__ = ["ADMITTED", "PROBE", "CircuitKey", "LimiterBackend", "ScopeKey", "Verdict"]

#: (venue, limit group or "host", endpoint or host): what one rate limit counts.
ScopeKey = tuple[str, str, str]
#: (venue, host): what a ban signal stops (one network path of :mod:`connex_async.margins`).
CircuitKey = HostKey


class Verdict:
    """The answer to one admission: admitted (maybe as a circuit's probe), wait, or circuit open.

    ``wait`` is seconds until the ``blocking`` scope could admit (a duration: no clock is
    compared); ``circuit_remaining`` is set when the host's circuit is open and the request must
    fail fast instead of waiting.
    """

    __slots__ = ("admitted", "blocking", "circuit_remaining", "probe", "wait")

    def __init__(
        self,
        admitted: bool,
        *,
        probe: bool = False,
        wait: float = 0.0,
        blocking: object | None = None,
        circuit_remaining: float | None = None,
    ) -> None:
        self.admitted = admitted
        self.probe = probe
        self.wait = wait
        self.blocking = blocking
        self.circuit_remaining = circuit_remaining

    def __repr__(self) -> str:
        if self.admitted:
            return "Verdict(probe)" if self.probe else "Verdict(admitted)"
        if self.circuit_remaining is not None:
            return f"Verdict(circuit open {self.circuit_remaining:.3f}s)"
        return f"Verdict(wait {self.wait:.4f}s)"


#: Shared answers: the common path allocates nothing.
ADMITTED: Final = Verdict(True)
PROBE: Final = Verdict(True, probe=True)


class LimiterBackend(abc.ABC):
    """Where the pool takes its rate-limit slots (see the module docstring for the contract).

    Scope handles are opaque to the pool: it gets them from :meth:`scope` and hands them back.
    A subclass calls ``super().__init__()`` (it creates :attr:`paths`, the round trips per host).
    """

    def __init__(self) -> None:
        self.paths = Paths()

    def observe_round_trip(self, circuit: CircuitKey, seconds: float, now: float) -> None:
        """An answer from ``circuit``'s host came ``seconds`` after the write, at ``now`` (``time.monotonic()``)."""
        self.paths.get(circuit).observe(seconds, now)

    def network_snapshot(self) -> dict[CircuitKey, PathSnapshot]:
        """Round trips, spread and margins per (venue, host), for :meth:`Metrics.snapshot`."""
        return self.paths.snapshot()

    @abc.abstractmethod
    def scope(self, key: ScopeKey, limit: RateLimit) -> Any:
        """The handle of one limit scope; the first limit given for a key wins."""

    @abc.abstractmethod
    async def try_admit(self, scopes: tuple[Any, ...], circuit: CircuitKey | None) -> Verdict:
        """Take one slot of every scope in one instant (and pass the circuit), or take nothing.

        On ``admitted`` the caller must send exactly one request; if it is the circuit's probe it
        must report the outcome (:meth:`close_circuit`, :meth:`open_circuit` or
        :meth:`release_probe`).
        """

    @abc.abstractmethod
    async def wait_ready(self, scopes: tuple[Any, ...], verdict: Verdict, max_wait: float | None) -> None:
        """Wait, holding nothing, until the scopes could admit; then the caller tries again.

        Raises :class:`~connex_async.errors.LimiterTimeoutError` when ``max_wait`` seconds pass.
        """

    @abc.abstractmethod
    def cool_down(self, scope: Any, seconds: float) -> None:
        """Admit nothing in ``scope`` for ``seconds`` from now (only ever extends a cooldown)."""

    @abc.abstractmethod
    def charge_stall(self, scopes: tuple[Any, ...], start: float, end: float) -> None:
        """A request admitted by ``scopes`` was written late: push them back by ``[start, end]``.

        ``start`` / ``end`` are this process's ``time.monotonic()``; only the part of the interval
        not charged to a scope yet counts (requests stalled by one pause share one charge).
        """

    @abc.abstractmethod
    def open_circuit(self, circuit: CircuitKey, seconds: float, probe_after: float | None) -> None:
        """Fail every request to the host fast for ``seconds``; probe after ``probe_after`` s."""

    @abc.abstractmethod
    def close_circuit(self, circuit: CircuitKey) -> None:
        """The probe got an answer that is not a ban signal: let everything through again."""

    @abc.abstractmethod
    def release_probe(self, circuit: CircuitKey) -> None:
        """The probe got no answer (reset, timeout): the next request may probe instead."""

    @abc.abstractmethod
    def open_circuits(self) -> dict[CircuitKey, float]:
        """``circuit -> seconds until it closes`` for every circuit known open (locally)."""

    def stale_after(self, scopes: tuple[Any, ...]) -> float | None:
        """How late after its admission a request may still be written (``None``: any time).

        A local backend needs no limit: a stall of this process also stops its admissions, and the
        late-write charge restores the bound. A shared one does (:mod:`connex_async.send_ticket`).
        """
        return None

    @abc.abstractmethod
    def discard(self, key: ScopeKey) -> None:
        """Forget one scope's local handle (its state, if shared, stays where it lives)."""
