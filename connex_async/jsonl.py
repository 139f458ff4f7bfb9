"""Updates as JSON lines: what ``connex-async poll --format jsonl`` prints, one object per update."""

from __future__ import annotations

from typing import Any

import msgspec

from connex_async.poller import Update

__all__ = ["update_to_json"]

_JSON = msgspec.json.Encoder(decimal_format="string")


def update_to_json(update: Update[Any]) -> bytes:
    """One update as a JSON object (no newline): amounts as strings, an error as its type and message.

    Keys: ``portfolio``, ``venue``, ``endpoint``, ``ok``, ``fetched_at`` (Unix seconds),
    ``latency_ms``, ``attempts``, ``error`` (``null`` or ``{"type", "message"}``) and ``data``
    (the venue's field names, e.g. ``totalEquity``).
    """
    error = None
    if update.error is not None:
        error = {"type": type(update.error).__name__, "message": str(update.error)}
    return _JSON.encode(
        {
            "portfolio": update.portfolio,
            "venue": update.venue,
            "endpoint": update.endpoint,
            "ok": update.ok,
            "fetched_at": update.fetched_at,
            "latency_ms": round(update.latency * 1000, 3),
            "attempts": update.attempts,
            "error": error,
            "data": update.data,
        }
    )
