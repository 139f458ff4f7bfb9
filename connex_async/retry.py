"""When and how long to wait before trying a request again."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["MIN_COOLDOWN_SPREAD", "RetryPolicy"]

#: Even a hint of 0 s spreads the keys that got it over this many seconds.
MIN_COOLDOWN_SPREAD = 0.1


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries for idempotent GETs: timeouts, resets, 5xx and rate limits; never auth or bad requests.

    The n-th retry waits ``min(backoff_max, backoff_base * 2**(n-1))``, jittered down to half of
    that at random so that thousands of keys failing together do not come back together.
    ``rate_limit_cap`` bounds how long a venue's own reset hint is honoured. A cooldown after a
    rate-limit answer lasts the venue's hint plus a random extra of up to ``cooldown_jitter`` of it
    (at least ``MIN_COOLDOWN_SPREAD`` s): never earlier than the venue asked, and 300 keys told
    ``Retry-After: 1`` together come back spread over half a second instead of in one herd.
    """

    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    rate_limit_cap: float = 60.0
    cooldown_jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not 0 <= self.backoff_base <= self.backoff_max:
            raise ValueError("need 0 <= backoff_base <= backoff_max")
        if not self.cooldown_jitter >= 0:
            raise ValueError("cooldown_jitter must be >= 0")

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** max(0, retry - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def cooldown(self, hint: float | None, retry: int) -> float:
        """How long a rate-limited scope pauses: the venue's hint (clamped) plus jitter, else the backoff."""
        if hint is None:
            return self.backoff(retry)
        pause = min(max(hint, 0.0), self.rate_limit_cap)
        if self.cooldown_jitter == 0:
            return pause
        return pause + random.uniform(0, max(MIN_COOLDOWN_SPREAD, self.cooldown_jitter * pause))
