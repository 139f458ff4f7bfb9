"""Turning response bytes into typed Structs, or into a :class:`DecodeError` that says where and why.

What is tolerated (decoded exactly) and what is an error:

========================================  =======================================================
tolerated                                 why
========================================  =======================================================
an amount as a JSON number (``1.5``)      msgspec parses the digits, not a float: still exact
``""`` or ``null`` for an optional amount  the venues say "not applicable": ``None``
``"200000"`` for a code, ``"1776…"`` ms   lax mode: numeric strings become ``int``
unknown fields                            venues add fields without notice
========================================  =======================================================

Errors: malformed or truncated JSON, empty or non-UTF-8 bodies, HTML or text where JSON was
expected, wrong types, missing required fields, ``"NaN"`` / ``"Infinity"`` / ``"sNaN"`` amounts
(they are not amounts), ``data: null`` on success, bodies over ``max_bytes``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from itertools import chain
from operator import attrgetter
from typing import Any, Generic, TypeVar

import msgspec

from connex_async.errors import DecodeError

__all__ = ["DEFAULT_MAX_BODY_BYTES", "FiniteRows", "PayloadDecoder", "check_finite", "snippet", "try_decode"]

T = TypeVar("T")

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024

_PATH = re.compile(r" - at `(?P<path>[^`]*)`$")
# `"key": ""` -> `"key":null`. Inside a JSON string a quote is always escaped, so `:""` (with
# optional whitespace) can only be a member whose value is the empty string. A literal replacement:
# a group reference would make `re` expand a template on every match (15% of a wallet decode).
_EMPTY_MEMBER = re.compile(rb':[ \t\r\n]*""')
_NULL_MEMBER = b":null"
_is_finite = Decimal.is_finite


def check_finite(*amounts: Decimal | None) -> None:
    """Raise ``ValueError`` if an amount is NaN or infinite (``Decimal`` accepts both from text)."""
    for amount in amounts:
        if amount is not None and not amount.is_finite():
            raise ValueError("amount is not a finite number")


class FiniteRows:
    """Checks every ``Decimal`` field of many rows of one Struct type in a single C-level pass.

    For the big lists (1,000 asset rows) a ``__post_init__`` per row costs a Python call each;
    this walks all amounts with ``map`` instead, and locates the bad row only when there is one.
    """

    __slots__ = ("_amounts", "fields")

    def __init__(self, row_type: type[msgspec.Struct]) -> None:
        self.fields = tuple(f.name for f in msgspec.structs.fields(row_type) if f.type in (Decimal, Decimal | None))
        self._amounts = attrgetter(*self.fields)

    def first_bad(self, rows: Sequence[Any]) -> int | None:
        """Index of the first row holding NaN or an infinity, or ``None``."""
        # filter(None, ...) drops None (and zeros, which are finite anyway).
        if all(map(_is_finite, filter(None, chain.from_iterable(map(self._amounts, rows))))):
            return None
        for index, row in enumerate(rows):
            if not all(map(_is_finite, filter(None, self._amounts(row)))):
                return index
        return None  # pragma: no cover - the fast pass said there was one


def snippet(body: bytes, limit: int = 160) -> str:
    """A short, printable start of ``body`` for error messages."""
    return body[:limit].decode("utf-8", errors="replace")


def try_decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T | None:
    """``decoder.decode(body)``, or ``None`` if the body does not fit (any reason)."""
    try:
        return decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
        return None


class PayloadDecoder(Generic[T]):
    """One reused msgspec decoder per response type.

    ``empty_is_null`` chooses how ``""`` amounts are read: ``"always"`` rewrites them to ``null``
    before decoding (Zoomex, where they are everywhere); ``"fallback"`` decodes first and rewrites
    only if that failed (ConneX, where they are rare, so the common path pays nothing).
    """

    __slots__ = ("_decoder", "check", "empty_is_null", "endpoint", "max_bytes", "venue")

    def __init__(
        self,
        type_: type[T],
        *,
        venue: str,
        endpoint: str,
        empty_is_null: str = "fallback",
        max_bytes: int = DEFAULT_MAX_BODY_BYTES,
        check: Callable[[T], str | None] | None = None,
    ) -> None:
        if empty_is_null not in ("always", "fallback"):
            raise ValueError("empty_is_null must be 'always' or 'fallback'")
        self._decoder = msgspec.json.Decoder(type_, strict=False)
        self.venue = venue
        self.endpoint = endpoint
        self.empty_is_null = empty_is_null
        self.max_bytes = max_bytes
        #: Runs on every decoded value; returns the JSON path of a non-finite amount, or None.
        self.check = check

    def decode(self, body: bytes, *, status: int | None = None, portfolio: str | None = None) -> T:
        """Decode ``body`` or raise :class:`DecodeError` naming the JSON path of the bad value."""
        if len(body) > self.max_bytes:
            raise self.error(f"body of {len(body)} bytes exceeds {self.max_bytes}", body, status, portfolio)
        if not body or body.isspace():  # isspace stops at the first "{": no copy of the body
            raise self.error("empty body", body, status, portfolio)
        if self.empty_is_null == "always":
            body = _EMPTY_MEMBER.sub(_NULL_MEMBER, body)
        try:
            return self._checked(self._decoder.decode(body), body, status, portfolio)
        except msgspec.ValidationError as exc:
            if self.empty_is_null == "fallback" and b'""' in body:
                return self.decode_lenient(body, status=status, portfolio=portfolio)
            raise self._from_msgspec(exc, body, status, portfolio) from exc
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec lets bad UTF-8 through as is
            raise self._from_msgspec(exc, body, status, portfolio) from exc

    def decode_lenient(self, body: bytes, *, status: int | None = None, portfolio: str | None = None) -> T:
        """Decode with every ``""`` member read as ``null``."""
        try:
            decoded = self._decoder.decode(_EMPTY_MEMBER.sub(_NULL_MEMBER, body))
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise self._from_msgspec(exc, body, status, portfolio) from exc
        return self._checked(decoded, body, status, portfolio)

    def _checked(self, decoded: T, body: bytes, status: int | None, portfolio: str | None) -> T:
        if self.check is not None and (path := self.check(decoded)) is not None:
            raise self.error("amount is not a finite number", body, status, portfolio, path)
        return decoded

    def _from_msgspec(self, exc: Exception, body: bytes, status: int | None, portfolio: str | None) -> DecodeError:
        text = str(exc)
        match = _PATH.search(text)
        message = text[: match.start()] if match else text
        if isinstance(exc, msgspec.ValidationError):
            path = match["path"] if match else "$"  # msgspec names no path for the root value
        else:
            path, message = None, f"malformed JSON: {message}"
        return self.error(message, body, status, portfolio, path)

    def error(
        self,
        message: str,
        body: bytes,
        status: int | None,
        portfolio: str | None,
        path: str | None = None,
    ) -> DecodeError:
        """A :class:`DecodeError` naming this decoder's venue and endpoint, with a snippet of ``body``."""
        return DecodeError(
            message,
            path=path,
            snippet=snippet(body),
            status=status,
            venue=self.venue,
            endpoint=self.endpoint,
            portfolio=portfolio,
        )
