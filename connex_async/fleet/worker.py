"""A fleet worker: keep a :class:`~connex_async.poller.Poller` polling exactly this worker's share.

The share is what rendezvous hashing over the live members gives this member. On every change of
the live set the worker adds the portfolios it gained (``Poller.add``: each at a fresh random
phase, so a takeover of hundreds of portfolios never fires them in the same instant) and removes
those it lost (``Poller.remove``: a poll in flight still ends in its one update).

Ownership is only efficiency, never what keeps a limit: every request is admitted by the limiter
(through Redis, across the fleet) on all its scopes. While the live set changes, two workers may
both poll a portfolio for a moment (the old owner until it sees the change, at most one heartbeat;
the new one from its first poll); they then share that key's budget and never exceed it. A worker
that loses Redis keeps polling what it owns (its requests fail closed at the Redis limiter anyway)
and its membership resumes when Redis answers again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from connex_async.client import BaseClient
from connex_async.fleet.hashing import Rendezvous
from connex_async.fleet.membership import Membership
from connex_async.poller import Poller

__all__ = ["FleetWorker"]

logger = logging.getLogger("connex_async.fleet")


class FleetWorker:
    """Keep ``poller``'s portfolios equal to this member's rendezvous share of ``clients``.

    ``clients`` is the whole fleet's portfolio list (every worker is given the same list); the
    worker never polls a client outside its share. :meth:`start` joins the fleet (raising
    :class:`~connex_async.redis_connection.RedisUnavailableError` if Redis does not answer);
    :meth:`stop` leaves it at once, so the survivors take over without waiting for the lease,
    and leaves the poller running: stop it afterwards to let its polls in flight end.
    """

    __slots__ = ("_clients", "_owned", "_rendezvous", "membership", "poller", "rebalances")

    def __init__(self, clients: Sequence[BaseClient], poller: Poller, membership: Membership) -> None:
        self._clients = {client.label: client for client in clients}
        self._rendezvous = Rendezvous(client.label for client in clients)  # raises on duplicate labels
        self._owned: set[str] = set()
        self.poller = poller
        self.membership = membership
        self.rebalances = 0
        membership.subscribe(self._apply)

    @property
    def owned(self) -> frozenset[str]:
        """The labels this worker polls now."""
        return frozenset(self._owned)

    async def start(self) -> Self:
        """Join the fleet and start polling this worker's share."""
        await self.membership.join()
        self._apply(self.membership.members)  # idempotent: join() may have reported this view already
        return self

    async def stop(self) -> None:
        """Leave the fleet at once; the poller keeps running (stop it next)."""
        await self.membership.leave()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _apply(self, members: tuple[str, ...]) -> None:
        """Add the portfolios this member gained, remove those it lost."""
        me = self.membership.member_id
        if me not in members:  # cannot happen: each heartbeat re-adds us; never drop work on a partial view
            return
        share = set(self._rendezvous.owned_by(me, members))
        lost = self._owned - share
        gained = share - self._owned
        for label in lost:
            self.poller.remove(label)
        for label in gained:
            try:
                self.poller.add(self._clients[label])
            except ValueError as exc:  # already polled under that label (two clients, one label)
                logger.warning("fleet: not polling %s: %s", label, exc)
                share.discard(label)
        self._owned = share
        if lost or gained:
            self.rebalances += 1
            logger.info(
                "fleet: %s owns %d portfolios of %d over %d members (+%d -%d)",
                me,
                len(share),
                len(self._clients),
                len(members),
                len(gained),
                len(lost),
            )
        self.membership.set_info(owned=len(share))
