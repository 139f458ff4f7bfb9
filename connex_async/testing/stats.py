"""Request counters per (venue, endpoint, api key) and their snapshots."""

from __future__ import annotations

from typing import Any

__all__ = ["EndpointStats", "StatsBook", "VenueStats"]

_COUNTERS = (
    "requests",
    "accepted",
    "rejected_rate_limit",
    "rejected_ip",
    "rejected_auth",
    "rejected_clock",
    "rejected_other",
    "faults_injected",
    "violations",
    "peak",
)


class EndpointStats:
    """Counters of one (venue, endpoint, api_key) scope.

    ``requests`` counts every arrival; each arrival ends in exactly one of ``accepted``,
    ``rejected_*`` or ``faults_injected`` (a ``latency`` fault only delays, so such a request also
    counts its real outcome). ``violations`` counts arrivals that found the key's window over its
    limit; ``peak`` is the largest window occupancy seen (compare it with ``limit``).
    """

    __slots__ = (
        "accepted",
        "api_key",
        "endpoint",
        "faults_injected",
        "label",
        "limit",
        "peak",
        "rejected_auth",
        "rejected_clock",
        "rejected_ip",
        "rejected_other",
        "rejected_rate_limit",
        "requests",
        "venue",
        "violations",
    )

    venue: str
    endpoint: str
    api_key: str
    label: str | None
    limit: tuple[int, float] | None
    requests: int
    accepted: int
    rejected_rate_limit: int
    rejected_ip: int
    rejected_auth: int
    rejected_clock: int
    rejected_other: int
    faults_injected: int
    violations: int
    peak: int

    def __init__(
        self,
        venue: str,
        endpoint: str,
        api_key: str,
        label: str | None = None,
        limit: tuple[int, float] | None = None,
    ) -> None:
        self.venue = venue
        self.endpoint = endpoint
        self.api_key = api_key
        self.label = label
        self.limit = limit
        for name in _COUNTERS:
            setattr(self, name, 0)

    def copy(self) -> EndpointStats:
        """An independent copy."""
        other = EndpointStats(self.venue, self.endpoint, self.api_key, self.label, self.limit)
        for name in _COUNTERS:
            setattr(other, name, getattr(self, name))
        return other

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out: dict[str, Any] = {
            "venue": self.venue,
            "endpoint": self.endpoint,
            "api_key": self.api_key,
            "label": self.label,
            "limit": list(self.limit) if self.limit else None,
        }
        for name in _COUNTERS:
            out[name] = getattr(self, name)
        return out

    def __repr__(self) -> str:
        return (
            f"EndpointStats({self.venue}/{self.endpoint} {self.label or self.api_key[:8]}: "
            f"requests={self.requests} accepted={self.accepted} violations={self.violations})"
        )


class VenueStats:
    """A snapshot of all counters: ``endpoints`` keyed by ``(venue, endpoint, api_key)`` plus totals.

    Host-wide (Zoomex IP) window violations are counted in ``ip_violations`` and included in
    ``violations``.
    """

    __slots__ = ("endpoints", "ip_peak", "ip_violations")

    endpoints: dict[tuple[str, str, str], EndpointStats]
    ip_violations: int
    ip_peak: int

    def __init__(
        self,
        endpoints: dict[tuple[str, str, str], EndpointStats],
        ip_violations: int = 0,
        ip_peak: int = 0,
    ) -> None:
        self.endpoints = endpoints
        self.ip_violations = ip_violations
        self.ip_peak = ip_peak

    def _sum(self, name: str) -> int:
        return sum(int(getattr(row, name)) for row in self.endpoints.values())

    @property
    def requests(self) -> int:
        """Total arrivals."""
        return self._sum("requests")

    @property
    def accepted(self) -> int:
        """Total successful answers."""
        return self._sum("accepted")

    @property
    def violations(self) -> int:
        """Total window violations: per-key scopes plus host-wide scopes."""
        return self._sum("violations") + self.ip_violations

    @property
    def rejected_rate_limit(self) -> int:
        """Total per-key rate-limit rejections (HTTP 429 / retCode 10006)."""
        return self._sum("rejected_rate_limit")

    @property
    def rejected_ip(self) -> int:
        """Total host-wide rate-limit rejections (HTTP 403)."""
        return self._sum("rejected_ip")

    @property
    def rejected_auth(self) -> int:
        """Total rejections for unknown keys, bad signatures or missing headers."""
        return self._sum("rejected_auth")

    @property
    def rejected_clock(self) -> int:
        """Total rejections for nonce / timestamp outside the window (7000 / 10002)."""
        return self._sum("rejected_clock")

    @property
    def rejected_other(self) -> int:
        """Total rejections for bad parameters or a GET with a body."""
        return self._sum("rejected_other")

    @property
    def faults_injected(self) -> int:
        """Total injected faults."""
        return self._sum("faults_injected")

    def get(self, venue: str, endpoint: str, api_key: str) -> EndpointStats | None:
        """The counters of one scope, if it saw any request."""
        return self.endpoints.get((venue, endpoint, api_key))

    def for_key(self, api_key: str) -> list[EndpointStats]:
        """Every scope of ``api_key``."""
        return [row for key, row in self.endpoints.items() if key[2] == api_key]

    def by_endpoint(self, venue: str, endpoint: str) -> EndpointStats:
        """The counters of one endpoint summed over keys (``peak`` is the largest)."""
        total = EndpointStats(venue, endpoint, "*")
        for (v, e, _), row in self.endpoints.items():
            if v == venue and e == endpoint:
                for name in _COUNTERS:
                    if name == "peak":
                        total.peak = max(total.peak, row.peak)
                    else:
                        setattr(total, name, getattr(total, name) + getattr(row, name))
                total.limit = row.limit
        return total

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: totals and one entry per scope."""
        return {
            "requests": self.requests,
            "accepted": self.accepted,
            "violations": self.violations,
            "ip_violations": self.ip_violations,
            "ip_peak": self.ip_peak,
            "rejected_rate_limit": self.rejected_rate_limit,
            "rejected_ip": self.rejected_ip,
            "rejected_auth": self.rejected_auth,
            "rejected_clock": self.rejected_clock,
            "rejected_other": self.rejected_other,
            "faults_injected": self.faults_injected,
            "endpoints": [row.to_dict() for row in self.endpoints.values()],
        }

    def __repr__(self) -> str:
        return (
            f"VenueStats(requests={self.requests}, accepted={self.accepted}, "
            f"violations={self.violations}, scopes={len(self.endpoints)})"
        )


class StatsBook:
    """The live, mutable counters a running venue updates."""

    __slots__ = ("ip_peak", "ip_violations", "rows")

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], EndpointStats] = {}
        self.ip_violations = 0
        self.ip_peak = 0

    def row(
        self,
        venue: str,
        endpoint: str,
        api_key: str,
        label: str | None,
        limit: tuple[int, float] | None,
    ) -> EndpointStats:
        """The live counters of one scope, created on first use."""
        key = (venue, endpoint, api_key)
        row = self.rows.get(key)
        if row is None:
            row = EndpointStats(venue, endpoint, api_key, label, limit)
            self.rows[key] = row
        return row

    def snapshot(self) -> VenueStats:
        """An immutable-by-convention copy of every counter."""
        return VenueStats(
            {k: r.copy() for k, r in self.rows.items()},
            self.ip_violations,
            self.ip_peak,
        )

    def violations(self) -> int:
        """Total violations so far (cheap: no copy)."""
        return sum(r.violations for r in self.rows.values()) + self.ip_violations

    def reset(self) -> None:
        """Zero every counter."""
        self.rows.clear()
        self.ip_violations = 0
        self.ip_peak = 0
