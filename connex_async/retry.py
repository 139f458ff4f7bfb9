"""When and how long to wait before trying a request again."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries for idempotent GETs: timeouts, resets, 5xx and rate limits; never auth or bad requests.

    The n-th retry waits ``min(backoff_max, backoff_base * 2**(n-1))``, jittered down to half of
    that at random so that thousands of keys failing together do not come back together.
    ``rate_limit_cap`` bounds how long a venue's own reset hint is honoured.
    """

    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    rate_limit_cap: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not 0 <= self.backoff_base <= self.backoff_max:
            raise ValueError("need 0 <= backoff_base <= backoff_max")

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** max(0, retry - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def cooldown(self, hint: float | None, retry: int) -> float:
        """How long a rate-limited scope pauses: the venue's hint (clamped), else the backoff."""
        if hint is None:
            return self.backoff(retry)
        return min(max(hint, 0.0), self.rate_limit_cap)
