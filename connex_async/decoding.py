"""Turning response bytes into typed Structs, or into a :class:`DecodeError` that says where and why.

What is tolerated (decoded exactly) and what is an error:

========================================  =======================================================
tolerated                                 why
========================================  =======================================================
an amount as a JSON number (``1.5``)      msgspec parses the digits, not a float: still exact
``""`` or ``null`` for an optional amount  the venues say "not applicable": ``None``
``"200000"`` for a code, ``"1776…"`` ms   lax mode: numeric strings become ``int``
unknown fields                            venues add fields without notice
a UTF-8 byte order mark before the JSON   RFC 8259 lets a parser ignore it; it changes no value
``null`` for a list the venue documents   ``tpslOrder``: "may be absent", and null says the same
as optional (``null_lists``)
========================================  =======================================================

Errors: malformed or truncated JSON, JSON nested deeper than the interpreter's recursion limit,
empty or non-UTF-8 bodies, HTML or text where JSON was expected, wrong types, missing required
fields, amounts that are not plain decimal text (``"1_000"``, ``" 12 "``, non-ASCII digits: ``Decimal``
reads them, no venue writes them), ``"NaN"`` / ``"Infinity"`` / ``"sNaN"`` amounts and amounts
beyond ``10**±AMOUNT_EXPONENT_LIMIT`` (they are not amounts), ``data: null`` on success, bodies
over ``max_bytes``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Context, Decimal
from itertools import chain, repeat
from operator import attrgetter, getitem
from typing import Any, Generic, TypeVar

import msgspec
import msgspec.inspect as mi

from connex_async.errors import DecodeError

__all__ = [
    "AMOUNT_EXPONENT_LIMIT",
    "DEFAULT_MAX_BODY_BYTES",
    "FiniteRows",
    "PayloadDecoder",
    "all_sane",
    "amount_ok",
    "check_finite",
    "first_bad_path",
    "first_unplain_amount",
    "may_hold_unplain_amount",
    "snippet",
    "try_decode",
]

T = TypeVar("T")

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024

_PATH = re.compile(r" - at `(?P<path>[^`]*)`$")
# `"key": ""` -> `"key":null`. Inside a JSON string a quote is always escaped, so `:""` (with
# optional whitespace) can only be a member whose value is the empty string. A literal replacement:
# a group reference would make `re` expand a template on every match (15% of a wallet decode).
_EMPTY_MEMBER = re.compile(rb':[ \t\r\n]*""')
_NULL_MEMBER = b":null"
_BOM = b"\xef\xbb\xbf"

#: An amount's magnitude must lie within ``10**-LIMIT <= |x| < 10**(LIMIT + 1)`` (or be zero). No
#: balance or price comes near it, every such amount converts to a finite, non-zero float, and it
#: keeps ``Decimal("1e999999999")`` out: that decodes, and then ``balance + 1`` raises
#: ``decimal.Overflow`` in the caller's code.
AMOUNT_EXPONENT_LIMIT = 300
# One C-level call rejects NaN, the infinities and the too small (zeros are filtered out before it):
# `is_normal` is False below the context's Emin. The too large need `adjusted()`, which is 0 for NaN.
_is_normal = Context(Emin=-AMOUNT_EXPONENT_LIMIT, Emax=AMOUNT_EXPONENT_LIMIT).is_normal
_adjusted = Decimal.adjusted
_astuple = msgspec.structs.astuple
_AMOUNT_PROBLEM = f"amount is not a finite number within 1e±{AMOUNT_EXPONENT_LIMIT}"


def amount_ok(amount: Decimal) -> bool:
    """Whether a non-``None`` amount is finite and within ``1e±AMOUNT_EXPONENT_LIMIT`` (or zero)."""
    return not amount or (_is_normal(amount) and _adjusted(amount) <= AMOUNT_EXPONENT_LIMIT)


def check_finite(*amounts: Decimal | None) -> None:
    """Raise ``ValueError`` if an amount is NaN, infinite or beyond ``1e±AMOUNT_EXPONENT_LIMIT``."""
    for amount in amounts:
        if amount is not None and not amount_ok(amount):
            raise ValueError(_AMOUNT_PROBLEM)


def all_sane(amounts: Iterable[Decimal]) -> bool:
    """Whether every amount (``None`` and zeros already dropped) is finite and within 1e±LIMIT.

    Two C-level passes: ``is_normal`` under a context whose Emin is the limit rejects NaN, the
    infinities and the too small in the one call ``is_finite`` cost before; ``max(adjusted)``
    bounds the too large. Nothing else would be cheaper: no ``Decimal`` predicate looks at Emax.
    """
    values = list(amounts)
    return all(map(_is_normal, values)) and (not values or max(map(_adjusted, values)) <= AMOUNT_EXPONENT_LIMIT)


class FiniteRows:
    """Checks every ``Decimal`` field of many rows of one Struct type with C-level passes.

    For the big lists (1,000 asset rows) a ``__post_init__`` per row costs a Python call each;
    this walks all amounts with ``map`` instead (:func:`all_sane`), and locates the bad row only
    when there is one. When a row's amounts are consecutive fields (Asset, Position and the
    wallet's are, by design), one slice of ``msgspec.structs.astuple`` extracts them: a third
    cheaper than ``attrgetter``'s one lookup per field.
    """

    __slots__ = ("_amounts", "_window", "fields")

    def __init__(self, row_type: type[msgspec.Struct]) -> None:
        every = msgspec.structs.fields(row_type)
        at = [i for i, f in enumerate(every) if f.type in (Decimal, Decimal | None)]
        if len(at) < 2:  # attrgetter of one name returns the value, not a tuple
            raise ValueError(f"{row_type.__name__} has fewer than two Decimal fields: check them in __post_init__")
        self.fields = tuple(every[i].name for i in at)
        self._amounts = attrgetter(*self.fields)
        consecutive = at == list(range(at[0], at[-1] + 1))
        self._window = slice(at[0], at[-1] + 1) if consecutive else None

    def amounts(self, rows: Iterable[Any]) -> Iterator[Decimal]:
        """Every non-zero amount of ``rows`` (``filter(None, ...)`` drops ``None`` and zeros)."""
        if self._window is None:
            per_row: Iterable[Iterable[Decimal]] = map(self._amounts, rows)
        else:
            per_row = map(getitem, map(_astuple, rows), repeat(self._window))
        return filter(None, chain.from_iterable(per_row))

    def first_bad(self, rows: Sequence[Any]) -> int | None:
        """Index of the first row holding NaN, an infinity or an amount out of range, or ``None``."""
        if all_sane(self.amounts(rows)):
            return None
        return self.locate(rows)

    def locate(self, rows: Sequence[Any]) -> int | None:
        """Index of the first bad row (the slow half of :meth:`first_bad`)."""
        for index, row in enumerate(rows):
            if not all(map(amount_ok, filter(None, self._amounts(row)))):
                return index
        return None


def first_bad_path(
    rows: Sequence[Any],
    row_amounts: FiniteRows,
    path: str,
    children: Callable[[Any], Sequence[Any]],
    child_amounts: FiniteRows,
    child_name: str,
) -> str | None:
    """JSON path of the first row, or row of a row's ``children``, holding a bad amount; ``None`` if none.

    One C-level pass over every amount of both levels (:func:`all_sane`); only when it finds one are
    the rows walked, parents first (``$.data[3]``, then ``$.data[3].tpslOrder[0]``).
    """
    kids = list(chain.from_iterable(map(children, rows)))
    if all_sane(chain(row_amounts.amounts(rows), child_amounts.amounts(kids))):
        return None
    index = row_amounts.locate(rows)
    if index is not None:
        return f"{path}[{index}]"
    for index, row in enumerate(rows):
        child = child_amounts.locate(children(row))
        if child is not None:
            return f"{path}[{index}].{child_name}[{child}]"
    return None  # pragma: no cover - all_sane said there was one


def snippet(body: bytes, limit: int = 160) -> str:
    """A short, printable start of ``body`` for error messages."""
    return body[:limit].decode("utf-8", errors="replace")


# Every way msgspec (or the interpreter, for JSON nested 100,000 deep) can refuse a body.
_REFUSALS = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def try_decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T | None:
    """``decoder.decode(body)``, or ``None`` if the body does not fit (any reason)."""
    if body.startswith(_BOM):
        body = body[3:]
    try:
        return decoder.decode(body)
    except _REFUSALS:
        return None


#: An amount as the venues write it: ASCII sign, ASCII digits, one point, an ASCII exponent.
_PLAIN_AMOUNT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_UNDERSCORE_DIGIT = re.compile(rb"_[0-9]")
_UNPLAIN_PROBLEM = "amount is not plain decimal text (ASCII sign, digits, point, exponent)"


def may_hold_unplain_amount(body: bytes) -> bool:
    """Whether a string in ``body`` could be a number ``Decimal`` reads but no venue writes.

    msgspec hands an amount string to ``Decimal(text)``, which also accepts ``"1_000"``,
    ``" 12 "`` and digits of any script. Each of those needs a non-ASCII byte, an escape, a space
    next to a quote or an underscore before a digit somewhere in the body (JSON forbids raw control
    characters inside strings). Single-byte scans run at memchr speed and clear a compact venue
    body in about 1% of its decode; the two-byte and regex tests run only when those find something,
    and only a body that fails them all is walked field by field.
    """
    return (
        not body.isascii()
        or b"\\" in body
        or (b" " in body and (b'" ' in body or b' "' in body))
        or (b"_" in body and _UNDERSCORE_DIGIT.search(body) is not None)
    )


def first_unplain_amount(info: mi.Type, value: Any, path: str = "$") -> str | None:
    """JSON path of the first ``Decimal`` field in ``value`` (untyped JSON) whose text is not plain.

    ``info`` describes the expected type (:func:`msgspec.inspect.type_info`); ``""`` is skipped
    (it means "not applicable"), JSON numbers are plain by construction (msgspec parses them).
    """
    if isinstance(info, mi.DecimalType):
        return path if isinstance(value, str) and value and not _PLAIN_AMOUNT.fullmatch(value) else None
    if isinstance(info, mi.UnionType):
        for member in info.types:
            if (found := first_unplain_amount(member, value, path)) is not None:
                return found
    elif isinstance(info, mi.StructType) and isinstance(value, dict):
        for field in info.fields:
            if field.encode_name in value:
                child = f"{path}.{field.encode_name}"
                if (found := first_unplain_amount(field.type, value[field.encode_name], child)) is not None:
                    return found
    elif isinstance(info, mi.ListType) and isinstance(value, list):
        for index, item in enumerate(value):
            if (found := first_unplain_amount(info.item_type, item, f"{path}[{index}]")) is not None:
                return found
    return None


class PayloadDecoder(Generic[T]):
    """One reused msgspec decoder per response type.

    ``empty_is_null`` chooses how ``""`` amounts are read: ``"always"`` rewrites them to ``null``
    before decoding (Zoomex, where they are everywhere); ``"fallback"`` decodes first and rewrites
    only if that failed (ConneX, where they are rare, so the common path pays nothing).
    ``null_lists`` names list members whose ``null`` means empty (read as ``[]``, also only after
    a first decode failed).
    """

    __slots__ = ("_decoder", "_info", "_null_lists", "check", "empty_is_null", "endpoint", "max_bytes", "venue")

    def __init__(
        self,
        type_: type[T],
        *,
        venue: str,
        endpoint: str,
        empty_is_null: str = "fallback",
        max_bytes: int = DEFAULT_MAX_BODY_BYTES,
        check: Callable[[T], str | None] | None = None,
        null_lists: Sequence[str] = (),
    ) -> None:
        if empty_is_null not in ("always", "fallback"):
            raise ValueError("empty_is_null must be 'always' or 'fallback'")
        self._decoder = msgspec.json.Decoder(type_, strict=False)
        self._info: mi.Type = mi.type_info(type_)
        names = b"|".join(re.escape(name.encode()) for name in null_lists)
        self._null_lists = re.compile(b'"(' + names + rb')"[ \t\r\n]*:[ \t\r\n]*null') if null_lists else None
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
        if body.startswith(_BOM):
            body = body[3:]
        if not body or body.isspace():  # isspace stops at the first "{": no copy of the body
            raise self.error("empty body", body, status, portfolio)
        if self.empty_is_null == "always":
            body = _EMPTY_MEMBER.sub(_NULL_MEMBER, body)
        try:
            decoded = self._decoder.decode(body)
        except msgspec.ValidationError as exc:
            rewritten = self._rewritten(body)
            if rewritten is None:
                raise self._from_msgspec(exc, body, status, portfolio) from exc
            return self._decode_rewritten(rewritten, body, status, portfolio)
        except _REFUSALS as exc:  # msgspec lets bad UTF-8 through as is
            raise self._from_msgspec(exc, body, status, portfolio) from exc
        return self._checked(decoded, body, status, portfolio)

    def decode_lenient(self, body: bytes, *, status: int | None = None, portfolio: str | None = None) -> T:
        """Decode with every ``""`` member read as ``null`` and every ``null_lists`` member as ``[]``."""
        return self._decode_rewritten(self._rewritten(body, force=True) or body, body, status, portfolio)

    def _rewritten(self, body: bytes, *, force: bool = False) -> bytes | None:
        """``body`` with the tolerated spellings normalised, or ``None`` if none applies."""
        rewritten = body
        if (force or self.empty_is_null == "fallback") and b'""' in rewritten:
            rewritten = _EMPTY_MEMBER.sub(_NULL_MEMBER, rewritten)
        if self._null_lists is not None:
            rewritten = self._null_lists.sub(rb'"\1":[]', rewritten)
        return None if rewritten == body else rewritten

    def _decode_rewritten(self, rewritten: bytes, body: bytes, status: int | None, portfolio: str | None) -> T:
        try:
            decoded = self._decoder.decode(rewritten)
        except _REFUSALS as exc:
            raise self._from_msgspec(exc, body, status, portfolio) from exc
        return self._checked(decoded, body, status, portfolio)

    def _checked(self, decoded: T, body: bytes, status: int | None, portfolio: str | None) -> T:
        if self.check is not None and (path := self.check(decoded)) is not None:
            raise self.error(_AMOUNT_PROBLEM, body, status, portfolio, path)
        if may_hold_unplain_amount(body) and (path := self._unplain_amount(body)) is not None:
            raise self.error(_UNPLAIN_PROBLEM, body, status, portfolio, path)
        return decoded

    def _unplain_amount(self, body: bytes) -> str | None:
        """The slow, exact half of the amount-text check: walk the body untyped, by the schema."""
        try:
            untyped = msgspec.json.decode(body)
        except _REFUSALS:  # pragma: no cover - the typed decode of the same body succeeded
            return None
        return first_unplain_amount(self._info, untyped)

    def _from_msgspec(self, exc: Exception, body: bytes, status: int | None, portfolio: str | None) -> DecodeError:
        if isinstance(exc, RecursionError):
            return self.error("malformed JSON: nested too deeply", body, status, portfolio)
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
