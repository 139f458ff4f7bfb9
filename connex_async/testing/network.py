"""One-way network delays for the simulator: a WAN's jitter and spikes, per direction.

:class:`Delay` is one direction's distribution: a fixed ``base``, uniform ``jitter`` on top, and
with probability ``spike_rate`` a spike of ``spike`` seconds, or, with a Pareto ``tail`` shape,
a heavy-tailed one of at least ``spike`` (capped at ``max_spike``). The simulator sleeps a sample
of the request direction before it counts a request's arrival, and one of the response direction
after it has decided the answer, before sending it: the client's round trip holds both, the
venue's windows only the first. :class:`Route` pairs them; one venue can listen on several routes
(``SimulatedVenue(routes=...)``), so two clients reach the same windows over different paths.

On the command line (``connex-async serve --request-delay SPEC``) a delay is terms joined by
commas: ``20ms`` (fixed), ``0-120ms`` (uniform between the two), ``250ms@0.5%`` (a spike of 250 ms
for 0.5% of requests) and ``pareto1.5`` (spikes heavy-tailed with that shape); units ``ms`` or
``s``, a bare number is seconds. ``0-120ms,250ms@0.5%`` is the WAN of the adaptive-margin tests.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

__all__ = ["Delay", "Route"]

_AMOUNT = r"(\d+(?:\.\d*)?|\.\d+)"
_UNIT = r"(ms|s)?"
_RANGE = re.compile(rf"{_AMOUNT}{_UNIT}-{_AMOUNT}{_UNIT}$")
_SPIKE = re.compile(rf"{_AMOUNT}{_UNIT}@{_AMOUNT}(%?)$")
_FIXED = re.compile(rf"{_AMOUNT}{_UNIT}$")
_TAIL = re.compile(rf"pareto{_AMOUNT}$")


def _seconds(amount: str, unit: str | None) -> float:
    return float(amount) / (1000.0 if unit == "ms" else 1.0)


@dataclass(frozen=True, slots=True)
class Delay:
    """One direction's delay: ``base`` + uniform ``[0, jitter]`` + with probability ``spike_rate`` a spike.

    A spike is ``spike`` seconds, or with ``tail`` (a Pareto shape, e.g. 1.5: smaller is heavier)
    ``spike`` times a Pareto variate (at least 1), at most ``max_spike`` seconds.
    """

    base: float = 0.0
    jitter: float = 0.0
    spike: float = 0.0
    spike_rate: float = 0.0
    tail: float | None = None
    max_spike: float = 5.0

    def __post_init__(self) -> None:
        for name in ("base", "jitter", "spike", "max_spike"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"Delay.{name} must be a finite number of seconds >= 0, got {value!r}")
        if not 0 <= self.spike_rate <= 1:
            raise ValueError(f"Delay.spike_rate must be within 0..1, got {self.spike_rate!r}")
        if self.tail is not None and not self.tail > 0:
            raise ValueError(f"Delay.tail must be a Pareto shape > 0, got {self.tail!r}")

    def sample(self, rng: random.Random) -> float:
        """One delay, seconds."""
        delay = self.base
        if self.jitter:
            delay += rng.random() * self.jitter
        if self.spike_rate and rng.random() < self.spike_rate:
            spike = self.spike if self.tail is None else self.spike * rng.paretovariate(self.tail)
            delay += min(spike, self.max_spike)
        return delay

    @property
    def worst(self) -> float:
        """The longest delay it can give (base + jitter + the largest spike)."""
        spike = 0.0
        if self.spike_rate:
            spike = self.spike if self.tail is None else self.max_spike
        return self.base + self.jitter + spike

    @classmethod
    def parse(cls, text: str) -> Delay:
        """``"0-120ms,250ms@0.5%"`` and the like (see the module docstring); raises ``ValueError``."""
        base = jitter = spike = rate = 0.0
        tail: float | None = None
        for raw in text.split(","):
            term = raw.strip().lower()
            if match := _RANGE.match(term):
                low = _seconds(match[1], match[2] or match[4])
                high = _seconds(match[3], match[4])
                if high < low:
                    raise ValueError(f"delay range {raw.strip()!r} runs backwards")
                base, jitter = base + low, jitter + round(high - low, 9)  # whole nanoseconds: 50 - 20 ms is 30 ms
            elif match := _SPIKE.match(term):
                spike = _seconds(match[1], match[2])
                rate = float(match[3]) / (100.0 if match[4] else 1.0)
            elif match := _TAIL.match(term):
                tail = float(match[1])
            elif match := _FIXED.match(term):
                base += _seconds(match[1], match[2])
            else:
                raise ValueError(
                    f"cannot read delay term {raw.strip()!r}: expected e.g. 20ms, 0-120ms, 250ms@0.5% or pareto1.5"
                )
        return cls(base, jitter, spike, rate, tail)

    def __str__(self) -> str:
        terms = []
        if self.jitter:
            terms.append(f"{self.base * 1000:g}-{(self.base + self.jitter) * 1000:g}ms")
        elif self.base:
            terms.append(f"{self.base * 1000:g}ms")
        if self.spike_rate:
            terms.append(f"{self.spike * 1000:g}ms@{self.spike_rate * 100:g}%")
            if self.tail is not None:
                terms.append(f"pareto{self.tail:g}")
        return ",".join(terms) or "0ms"


@dataclass(frozen=True, slots=True)
class Route:
    """A network path to the simulator: the delay ``request`` (before arrival) and ``response`` (after)."""

    request: Delay | None = None
    response: Delay | None = None
