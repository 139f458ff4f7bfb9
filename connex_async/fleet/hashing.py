"""Rendezvous (highest random weight) hashing: which member of a fleet polls which portfolio.

Each (member, label) pair gets a weight from a stable hash; a label belongs to the member with the
highest weight. When a member leaves, only its own labels move (each to its runner-up); when one
joins, it takes about ``1/n`` of the labels and nothing else moves. The hash is BLAKE2b, never
Python's ``hash()``, which is salted per process: every worker on every machine must agree.

Static shards (``--shard i/n``) are the same thing over the members ``"0" .. "n-1"``, so that going
from ``n`` to ``n+1`` shards moves about ``1/(n+1)`` of the portfolios, not most of them as
``hash(label) % n`` would.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Rendezvous", "Shard", "owner", "weight"]

_SHARD = re.compile(r"(-?[0-9]+)/(-?[0-9]+)")


def weight(member: str, label: str) -> int:
    """The 64-bit rendezvous weight of ``label`` for ``member`` (the same in every process)."""
    # The member's length first, so that ("ab", "c") and ("a", "bc") never hash the same bytes.
    data = f"{len(member)}:{member}{label}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def owner(label: str, members: Iterable[str]) -> str | None:
    """The member that owns ``label`` (``None`` if there is no member). Ties go to the larger id."""
    return max(members, key=lambda member: (weight(member, label), member), default=None)


class Rendezvous:
    """The assignment of a fixed list of labels to changing members, with each member's weights cached.

    A membership change costs one hash per label for each member not seen before, plus a pass
    over the cached weights (10,000 labels over 4 members: a few milliseconds).
    """

    __slots__ = ("_weights", "labels")

    def __init__(self, labels: Iterable[str]) -> None:
        self.labels: tuple[str, ...] = tuple(labels)
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("portfolio labels must be unique")
        self._weights: dict[str, list[int]] = {}

    def assign(self, members: Iterable[str]) -> dict[str, list[str]]:
        """Every member's labels (each label goes to exactly one member; a member may get none)."""
        ranked = sorted(set(members), reverse=True)  # ties go to the larger id, as in owner()
        if not ranked:
            return {}
        for gone in set(self._weights) - set(ranked):  # ids of dead workers are never reused
            del self._weights[gone]
        columns = [self._column(member) for member in ranked]
        result: dict[str, list[str]] = {member: [] for member in ranked}
        for i, label in enumerate(self.labels):
            best = 0
            best_weight = columns[0][i]
            for j in range(1, len(columns)):
                if columns[j][i] > best_weight:
                    best, best_weight = j, columns[j][i]
            result[ranked[best]].append(label)
        return result

    def owned_by(self, member: str, members: Iterable[str]) -> list[str]:
        """The labels ``member`` owns among ``members``."""
        return self.assign(members).get(member, [])

    def _column(self, member: str) -> list[int]:
        column = self._weights.get(member)
        if column is None:
            column = self._weights[member] = [weight(member, label) for label in self.labels]
        return column


@dataclass(frozen=True, slots=True)
class Shard:
    """Static shard ``index`` of ``count``: the labels rendezvous hashing gives member ``str(index)``
    among ``"0" .. str(count - 1)``. ``Shard(0, 1)`` owns everything."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"shard {self.index}/{self.count}: the shard count must be at least 1")
        if self.index < 0:
            raise ValueError(f"shard {self.index}/{self.count}: the index must be >= 0")
        if self.index >= self.count:
            raise ValueError(
                f"shard {self.index}/{self.count}: the index must be below the count (0 <= i < {self.count})"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"`` -> ``Shard(i, n)``; anything else is a ``ValueError`` saying what is expected."""
        match = _SHARD.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"shard must be i/n with whole numbers 0 <= i < n (e.g. 0/3), got {text!r}")
        return cls(int(match[1]), int(match[2]))

    @property
    def members(self) -> tuple[str, ...]:
        """The members the shards are hashed over: ``"0" .. "n-1"``."""
        return tuple(str(i) for i in range(self.count))

    def owns(self, label: str) -> bool:
        """Whether ``label`` belongs to this shard."""
        return self.count == 1 or owner(label, self.members) == str(self.index)

    def select(self, labels: Sequence[str]) -> list[str]:
        """The labels of this shard, in their given order."""
        if self.count == 1:
            return list(labels)
        mine = set(Rendezvous(labels).owned_by(str(self.index), self.members))
        return [label for label in labels if label in mine]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
