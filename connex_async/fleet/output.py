"""Where a worker's updates go: the :class:`Sink` interface and JSON lines on a text stream.

Every sink encodes an update with :func:`connex_async.jsonl.update_to_json` (amounts as exact
strings), so a JSONL line and a Redis stream entry of the same update are the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TextIO

from connex_async.jsonl import update_to_json
from connex_async.poller import Update

__all__ = ["JsonlSink", "Sink", "update_encoder"]


def update_encoder() -> Callable[[Update[Any]], bytes]:
    """The one JSON encoding of an update (:func:`connex_async.jsonl.update_to_json`)."""
    return update_to_json


class Sink(Protocol):
    """A destination for updates: ``write`` never blocks, ``close`` delivers what is pending."""

    written: int
    dropped: int

    def write(self, update: Update[Any]) -> None:
        """Take one update (without waiting)."""

    async def close(self) -> None:
        """Deliver what is pending, then release resources."""


class JsonlSink:
    """One JSON object per line on ``out`` (stdout by default in the CLI); never drops."""

    __slots__ = ("_encode", "dropped", "out", "written")

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._encode = update_encoder()
        self.written = 0
        self.dropped = 0

    def write(self, update: Update[Any]) -> None:
        """Write ``update`` as one line."""
        self.out.write(self._encode(update).decode() + "\n")
        self.written += 1

    async def close(self) -> None:
        """Flush ``out``."""
        self.out.flush()
