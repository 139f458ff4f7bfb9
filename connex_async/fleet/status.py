"""``fleet status``: the live members, what each owns, how long since each heartbeat; text or JSON.

Every age is a difference of Redis ``TIME`` values (the heartbeat's and the one read here), never
of two machines' clocks. The report is a list of :class:`Section` objects: :func:`read_status`
always collects the members and the update stream; other parts of the SDK add their own by passing
``sources`` (each a :data:`StatusSource`: ``async (redis, keys, now_ms) -> Section``), e.g. the
Redis limiter's scopes that are cooling down or embargoed. Text and JSON render every section the
same way, so a new source needs no change here.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connex_async.fleet.keys import FleetKeys

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "FleetStatus",
    "MemberStatus",
    "Section",
    "StatusSource",
    "members_section",
    "read_status",
    "render_json",
    "render_text",
    "stream_section",
]


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """One live member: ``since_heartbeat`` and ``lease_left`` in seconds of Redis time."""

    member: str
    host: str
    pid: int | None
    egress_id: str | None
    owned: int | None
    since_heartbeat: float
    lease_left: float
    lease_ttl: float


@dataclass(frozen=True, slots=True)
class Section:
    """One part of the report: a table for the text form and ``data`` (JSON-ready) for the JSON form."""

    name: str
    title: str
    columns: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    data: Any
    empty: str = "none"


StatusSource = Callable[["Redis", FleetKeys, int], Awaitable[Section]]
"""Collects one :class:`Section` from Redis; ``now_ms`` is the report's Redis ``TIME``."""


@dataclass(frozen=True, slots=True)
class FleetStatus:
    """The whole report: namespace, Redis ``TIME`` it was read at, the members and every section."""

    namespace: str
    redis_time_ms: int
    members: list[MemberStatus]
    sections: list[Section] = field(default_factory=list)


async def read_status(redis: Redis, namespace: str, sources: Sequence[StatusSource] = ()) -> FleetStatus:
    """Read the fleet's state in namespace ``namespace``, plus a section from each of ``sources``."""
    keys = FleetKeys(namespace)
    async with redis.pipeline(transaction=True) as pipe:  # one consistent instant, one Redis TIME
        pipe.time()
        pipe.zrange(keys.members, 0, -1, withscores=True)
        pipe.hgetall(keys.info)
        (seconds, micros), ranked, infos = await pipe.execute()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    members = [
        _member(_text(member), int(deadline), _info(infos, member), now_ms)
        for member, deadline in ranked
        if int(deadline) > now_ms  # a lease that ended is dead even if no heartbeat pruned it yet
    ]
    sections = [members_section(members), await stream_section(redis, keys, now_ms)]
    for source in sources:
        sections.append(await source(redis, keys, now_ms))
    return FleetStatus(namespace, now_ms, members, sections)


def _member(member: str, deadline: int, info: dict[str, Any], now_ms: int) -> MemberStatus:
    lease_ms = int(info.get("lease_ms", 0))
    return MemberStatus(
        member=member,
        host=str(info.get("host", "?")),
        pid=info.get("pid"),
        egress_id=info.get("egress_id"),
        owned=info.get("owned"),
        since_heartbeat=max(0, now_ms - (deadline - lease_ms)) / 1000,
        lease_left=(deadline - now_ms) / 1000,
        lease_ttl=lease_ms / 1000,
    )


def _info(infos: dict[Any, Any], member: bytes | str) -> dict[str, Any]:
    raw = infos.get(member)
    try:
        value = json.loads(raw) if raw is not None else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def members_section(members: Sequence[MemberStatus]) -> Section:
    """The live members: id, host, pid, egress id, portfolios owned, heartbeat age, lease left."""
    rows = [
        (
            m.member,
            m.host,
            "-" if m.pid is None else str(m.pid),
            m.egress_id or "-",
            "-" if m.owned is None else str(m.owned),
            f"{m.since_heartbeat:.1f}s ago",
            f"{m.lease_left:.1f}s of {m.lease_ttl:.0f}s",
        )
        for m in members
    ]
    total = sum(m.owned or 0 for m in members)
    return Section(
        name="members",
        title=f"members: {len(members)} live, {total} portfolios owned",
        columns=("member", "host", "pid", "egress", "owned", "heartbeat", "lease left"),
        rows=rows,
        data=[
            {
                "member": m.member,
                "host": m.host,
                "pid": m.pid,
                "egress_id": m.egress_id,
                "owned": m.owned,
                "since_heartbeat_s": round(m.since_heartbeat, 3),
                "lease_left_s": round(m.lease_left, 3),
                "lease_ttl_s": m.lease_ttl,
            }
            for m in members
        ],
        empty="no live members",
    )


async def stream_section(redis: Redis, keys: FleetKeys, now_ms: int) -> Section:
    """The update stream: its length, the age of its newest entry, and each consumer group's backlog."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xlen(keys.updates)
        pipe.xrevrange(keys.updates, count=1)
        pipe.hlen(keys.latest)
        length, newest, latest = await pipe.execute()
    groups: list[dict[str, Any]] = []
    if length:
        for group in await redis.xinfo_groups(keys.updates):
            groups.append(
                {
                    "group": _text(group["name"]),
                    "consumers": int(group["consumers"]),
                    "pending": int(group["pending"]),
                    "lag": None if group.get("lag") is None else int(group["lag"]),
                }
            )
    age = None
    if newest:
        entry_ms = int(_text(newest[0][0]).split("-", 1)[0])  # a stream id starts with Redis TIME in ms
        age = max(0, now_ms - entry_ms) / 1000
    data = {
        "stream": keys.updates,
        "entries": int(length),
        "newest_age_s": age,
        "latest": int(latest),
        "groups": groups,
    }
    rows = [
        (g["group"], str(g["consumers"]), str(g["pending"]), "-" if g["lag"] is None else str(g["lag"])) for g in groups
    ]
    newest_text = "no entries" if age is None else f"newest {age:.1f}s ago"
    title = (
        f"stream {keys.updates}: {int(length)} entries, {newest_text}; latest of {int(latest)} (portfolio, endpoint)"
    )
    return Section(
        name="stream",
        title=title,
        columns=("consumer group", "consumers", "pending", "lag"),
        rows=rows,
        data=data,
        empty="no consumer groups",
    )


def render_text(status: FleetStatus) -> str:
    """Plain text: a heading per section and an aligned table (or the section's ``empty`` line)."""
    lines = [f"fleet {status.namespace} (Redis time {status.redis_time_ms} ms)"]
    for section in status.sections:
        lines.append("")
        lines.append(section.title)
        if not section.rows:
            lines.append(f"  {section.empty}")
            continue
        table = [section.columns, *section.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(section.columns))]
        for row in table:
            lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


def render_json(status: FleetStatus) -> str:
    """One JSON object: namespace, Redis time, and each section's ``data`` under its name."""
    body: dict[str, Any] = {"namespace": status.namespace, "redis_time_ms": status.redis_time_ms}
    for section in status.sections:
        body[section.name] = section.data
    return json.dumps(body, indent=2) + "\n"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
