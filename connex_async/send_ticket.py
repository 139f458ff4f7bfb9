"""Date a request's rate-limit slot by the moment its bytes are written, not when it was admitted.

The limiter spaces *admissions* so that any N+1 of them are at least ``T + margin`` apart (see
:mod:`connex_async.limits`). The venue counts *arrivals*. Between the two sit our own event loop
and the network, and the margin must cover how much that delay varies from one request to the
next. Most of the time our part is a fraction of a millisecond: admission, signing and the write
run without an await on a kept-alive connection. But a garbage-collector pass or any other
synchronous stall can strike in between, and a full pass over a large heap took 85-125 ms,
measured, in the 1,000-key limiter benchmark: more than a 100 ms margin, and one window violation.

The same holds for a request that has to open a connection first: a TLS handshake to a remote
venue takes longer than any margin.

So every admitted request carries a :class:`SendTicket`. When aiohttp has written the request
(:class:`DatedRequest`), the ticket measures how long after its admission that happened and, past
a small allowance, pushes every scope it was admitted by back by the excess (requests stalled by
the same pause share one charge: :meth:`LimiterBackend.charge_stall`). The limiter's bound then
holds between write times: the margin has to cover only what happens after the write.

With the Redis backend the admission happens in Redis; the ticket is dated when the admission was
*asked for* (before the round trip), so a reply read late by a stalled loop still counts as lag.
And the charge is not always enough there: while this process stalls, *other* processes go on
being admitted, and a request written after the N admissions that follow it would share a window
with all of them, which no later charge undoes. So a shared backend sets ``stale_after`` (half the
tightest scope's window): a request about to be written later than that is not written at all
(:class:`StaleAdmission`) and the pool asks for a new admission. Up to it, the charge keeps any N+1
writes at least ``T + m`` apart, less the slack and the allowance (``redis_limits.py``).

The ticket also dates the answer (:class:`DatedResponse`: status line and headers parsed) and hands
the round trip from the write to it to the limiter backend, whose adaptive margins follow the
spread of those round trips per (venue, host) (:mod:`connex_async.margins`).
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

import aiohttp
from aiohttp.connector import Connection

from connex_async.limiter_backend import CircuitKey, LimiterBackend
from connex_async.margins import COLLECTIONS

__all__ = ["LATE_SEND_ALLOWANCE", "DatedRequest", "DatedResponse", "SendTicket", "StaleAdmission", "sending"]

#: Lateness up to this many seconds is left to the margin (default 25 ms); only the excess is
#: charged. Charging every request its usual 0.1-1 ms would cost up to 2% of a 20/s limit.
LATE_SEND_ALLOWANCE = 0.005


class StaleAdmission(Exception):  # a signal between the request and the pool, not a user-facing error
    """The request was about to be written too long after its admission: it was not written."""


class SendTicket:
    """One admitted attempt on its way to the socket, the scopes that admitted it and its host (``circuit``)."""

    __slots__ = ("admitted_at", "backend", "circuit", "collections", "lag", "scopes", "stale_after")

    def __init__(
        self,
        backend: LimiterBackend,
        scopes: tuple[Any, ...],
        admitted_at: float,
        stale_after: float | None = None,
        circuit: CircuitKey | None = None,
    ) -> None:
        self.admitted_at = admitted_at  # time.monotonic()
        self.backend = backend
        self.scopes = scopes
        self.stale_after = stale_after
        self.circuit = circuit
        self.collections = 0  # long garbage collections so far, at the write
        self.lag: float | None = None  # seconds from admission to write, once written

    def check_fresh(self) -> None:
        """Raise :class:`StaleAdmission` if writing now would come ``stale_after`` s after admission."""
        if self.stale_after is not None and self.lag is None:
            late = time.monotonic() - self.admitted_at
            if late > self.stale_after:
                raise StaleAdmission(f"admitted {late * 1000:.0f} ms ago (limit {self.stale_after * 1000:.0f} ms)")

    def written(self) -> None:
        """The request's bytes are in the socket: charge each scope what exceeds the allowance."""
        if self.lag is not None:  # one attempt, one write: anything after it is not ours to date
            return
        now = time.monotonic()
        self.lag = now - self.admitted_at
        self.collections = COLLECTIONS.long
        if self.lag > LATE_SEND_ALLOWANCE:
            self.backend.charge_stall(self.scopes, self.admitted_at + LATE_SEND_ALLOWANCE, now)

    def answered(self) -> None:
        """The answer's headers are in: report the round trip since the write (once) to the backend.

        Not if a long garbage collection ran meanwhile: that pause would be in it (``margins``).
        """
        if self.lag is None or self.circuit is None or self.collections != COLLECTIONS.long:
            return  # not written through DatedRequest (a mocked session), reported, or paused
        now = time.monotonic()
        self.backend.observe_round_trip(self.circuit, now - self.admitted_at - self.lag, now)
        self.circuit = None

    @property
    def late(self) -> bool:
        """Whether the write came later than the allowance (and the scopes were charged)."""
        return self.lag is not None and self.lag > LATE_SEND_ALLOWANCE


#: The ticket of the attempt being sent by the current task (set around the aiohttp call).
sending: ContextVar[SendTicket | None] = ContextVar("connex_async_sending", default=None)


class DatedRequest(aiohttp.ClientRequest):
    """aiohttp's request, telling the current ticket when it has been written.

    ``ClientRequest.send`` writes a body-less request before it returns (headers and EOF in one
    synchronous write on aiohttp 3.9-3.14), so the moment it returns is the write. The ticket is
    looked up through a context variable because aiohttp builds the request itself, inside the
    caller's task (``ClientSession(request_class=...)`` is the documented way in).
    """

    async def send(self, conn: Connection) -> aiohttp.ClientResponse:
        ticket = sending.get()
        if ticket is not None:
            ticket.check_fresh()  # the last moment before the bytes go: not written if too late
        response = await super().send(conn)
        if ticket is not None:
            ticket.written()
        return response


class DatedResponse(aiohttp.ClientResponse):
    """aiohttp's response, telling the current ticket when its status line and headers are in.

    From the write to here is the round trip the margins follow: the body's transfer, which grows
    with the payload and not with the route, is left out. ``ClientResponse.start`` returns once the
    headers are parsed (aiohttp 3.9-3.14); it runs in the caller's task, under its ticket.
    """

    async def start(self, connection: Connection) -> aiohttp.ClientResponse:
        response = await super().start(connection)
        ticket = sending.get()
        if ticket is not None:
            ticket.answered()
        return response
