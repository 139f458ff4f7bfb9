"""What the Poller tests share: reading the Update stream for a while, as a consumer would."""

from __future__ import annotations

import asyncio
import time

from connex_async.poller import Poller, Update


async def collect(poller: Poller, seconds: float) -> list[Update]:
    """Every update the poller yields within ``seconds``, read as it comes (the stream's end too)."""
    got: list[Update] = []
    deadline = time.monotonic() + seconds
    updates = aiter(poller)
    while (left := deadline - time.monotonic()) > 0:
        try:
            got.append(await asyncio.wait_for(anext(updates), left))
        except (TimeoutError, StopAsyncIteration):
            break
    return got
