"""The Redis keys of one fleet namespace (connections: :mod:`connex_async.redis_connection`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FleetKeys"]


@dataclass(frozen=True, slots=True)
class FleetKeys:
    """Every Redis key and channel of one fleet namespace.

    - ``members``: sorted set, member id -> end of its lease in Redis ``TIME`` milliseconds
    - ``info``: hash, member id -> JSON (host, pid, egress id, portfolios owned, lease, heartbeat)
    - ``events``: pub/sub channel, a nudge on every join, leave and expiry
    - ``updates``: stream, one entry per update (fields ``update``: the JSON line, ``worker``: member id)
    - ``latest``: hash, ``"<portfolio>|<endpoint>"`` -> the newest update's JSON line
    """

    namespace: str

    @property
    def members(self) -> str:
        return f"{self.namespace}:fleet:members"

    @property
    def info(self) -> str:
        return f"{self.namespace}:fleet:info"

    @property
    def events(self) -> str:
        return f"{self.namespace}:fleet:events"

    @property
    def updates(self) -> str:
        return f"{self.namespace}:fleet:updates"

    @property
    def latest(self) -> str:
        return f"{self.namespace}:fleet:latest"
