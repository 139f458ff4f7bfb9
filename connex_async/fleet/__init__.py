"""Many workers, one fleet: static or automatic sharding, membership leases, a shared update stream.

Modules, one job each (``redis`` is imported only when a connection is made, see
:mod:`connex_async.redis_connection`):

- :mod:`~connex_async.fleet.hashing`: rendezvous hashing, ``owner``, ``Rendezvous``, static ``Shard``
- :mod:`~connex_async.fleet.membership`: a lease per worker in Redis, heartbeats, join / leave
- :mod:`~connex_async.fleet.worker`: ``FleetWorker`` keeps a Poller on this worker's share
- :mod:`~connex_async.fleet.output` / :mod:`~connex_async.fleet.stream`: JSONL, or a Redis Stream
- :mod:`~connex_async.fleet.status`: ``fleet status`` as text or JSON
- :mod:`~connex_async.fleet.cli`: the options and entry points ``connex-async`` wires in
- :mod:`~connex_async.fleet.keys`: the Redis keys of a namespace (``FleetKeys``)
- :mod:`~connex_async.fleet.limits_status`: ``fleet status``'s section on the shared limits

The shared limits themselves are :class:`connex_async.RedisLimiter` (not fleet code: one process
can use them alone).
"""

from __future__ import annotations

from connex_async.fleet.cli import FleetOptions, run_fleet_poll
from connex_async.fleet.hashing import Rendezvous, Shard, owner
from connex_async.fleet.keys import FleetKeys

__all__ = ["FleetKeys", "FleetOptions", "Rendezvous", "Shard", "owner", "run_fleet_poll"]
