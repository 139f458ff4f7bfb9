"""API credentials that never reveal their secret."""

from __future__ import annotations

import hashlib

__all__ = ["Credentials"]


class Credentials:
    """One API key and its secret; a key selects exactly one (sub-)portfolio.

    ``label`` names the portfolio in logs, updates and errors (it defaults to a short,
    non-reversible fingerprint of the key). ``limit_group`` is the scope that rate limits
    are counted in; it defaults to one per key (``key:`` and a 128-bit digest of the key, never
    the key itself: limiter scopes show up in dumps and metrics), and keys that the venue counts
    together can share one group.

    The secret is never part of ``repr``, ``str``, logs or exception text.
    """

    __slots__ = ("_secret", "api_key", "label", "limit_group")

    api_key: str
    label: str
    limit_group: str

    def __init__(
        self,
        api_key: str,
        secret: str,
        label: str | None = None,
        limit_group: str | None = None,
    ) -> None:
        _require_text("api_key", api_key)
        _require_text("secret", secret)
        if label is not None:
            _require_text("label", label)
        if limit_group is not None:
            _require_text("limit_group", limit_group)
        self.api_key = api_key
        self._secret = secret
        self.label = label if label is not None else f"key-{self.fingerprint}"
        self.limit_group = limit_group if limit_group is not None else f"key:{self.digest}"

    @property
    def secret(self) -> str:
        """The API secret; used only by the signers."""
        return self._secret

    @property
    def fingerprint(self) -> str:
        """A short hash of the API key, safe to log."""
        return self.digest[:10]

    @property
    def digest(self) -> str:
        """A 128-bit hash of the API key (32 hex digits), safe to log and unique in practice:
        among 100,000 keys the chance of any two sharing one is about 1.5e-29."""
        return hashlib.sha256(self.api_key.encode()).hexdigest()[:32]

    def __repr__(self) -> str:
        return f"Credentials(label={self.label!r}, key={self.fingerprint}…, secret=***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Credentials):
            return NotImplemented
        return (self.api_key, self._secret, self.label, self.limit_group) == (
            other.api_key,
            other._secret,
            other.label,
            other.limit_group,
        )

    def __hash__(self) -> int:
        return hash((self.api_key, self.label))

    def __reduce__(self) -> str | tuple[object, ...]:
        # Pickling would write the secret to wherever the pickle goes.
        raise TypeError("Credentials cannot be pickled: the secret would leave the process")


def _require_text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise ValueError(f"Credentials.{name} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"Credentials.{name} must not be empty")
    if value != value.strip() or any(ord(c) < 0x20 for c in value):
        raise ValueError(f"Credentials.{name} must not contain whitespace padding or control characters")
