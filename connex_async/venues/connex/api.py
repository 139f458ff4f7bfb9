"""ConneX wire knowledge: endpoints, signing binding, envelope codes, clock source."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from connex_async.credentials import Credentials
from connex_async.decoding import PayloadDecoder
from connex_async.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConnexAsyncError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TimestampError,
)
from connex_async.rate_limit import RateLimit
from connex_async.signing import ParamValue, SignedRequest, sign_connex
from connex_async.venues.base import (
    CodeRule,
    Endpoint,
    RawResponse,
    Requester,
    Venue,
    parse_http_date,
    retry_after_seconds,
)
from connex_async.venues.connex.models import (
    AssetsPage,
    ConnexEnvelope,
    ConnexHead,
    Position,
    bad_asset_path,
    check_positions,
)

__all__ = ["ASSETS", "CONNEX_CODES", "POSITIONS", "SUCCESS_CODES", "ConnexVenue", "retry_after_seconds"]

T = TypeVar("T")

VENUE = "connex"
SUCCESS_CODES = frozenset({200, 200000})

#: Documented business codes (reference: connex-api.md, "Envelope and errors").
CONNEX_CODES: dict[int, CodeRule] = {
    2000: CodeRule(AuthenticationError),  # signature check failed
    2001: CodeRule(PermissionDeniedError),  # IP not on the key's whitelist
    2002: CodeRule(AuthenticationError),  # authorization invalid
    2003: CodeRule(PermissionDeniedError),  # no permission
    7000: CodeRule(TimestampError),  # nonce outside +-60 s
    100018: CodeRule(AuthenticationError),  # API key not found
    405001: CodeRule(AuthenticationError),  # API key not found
    100041: CodeRule(AuthenticationError),  # API key frozen
    100429: CodeRule(RateLimitError),  # too many requests
    500: CodeRule(ServerError),
    501: CodeRule(ServerError),
    40000: CodeRule(ServerError),
    50001: CodeRule(ServerError),
    **{code: CodeRule(BadRequestError, retryable=False) for code in range(400000, 400011)},
    # 400011..400013: service busy, loading, timed out: worth another try.
    **{code: CodeRule(BadRequestError, retryable=True) for code in range(400011, 400014)},
}

ASSETS: Endpoint[AssetsPage] = Endpoint(
    venue=VENUE,
    name="assets",
    method="GET",
    path="/api/v1/trading/portfolio/assets",
    decoder=PayloadDecoder(ConnexEnvelope[AssetsPage], venue=VENUE, endpoint="assets", check=bad_asset_path),
    default_limit=RateLimit(20, 1.0),
    result_type=AssetsPage,
)
POSITIONS: Endpoint[list[Position]] = Endpoint(
    venue=VENUE,
    name="positions",
    method="GET",
    path="/api/v1/trading/position",
    decoder=PayloadDecoder(
        ConnexEnvelope[list[Position]],
        venue=VENUE,
        endpoint="positions",
        check=check_positions,
        null_lists=("tpslOrder",),  # documented as optional: null, like absent, means no orders
    ),
    default_limit=RateLimit(300, 60.0),
)

# Reads only `code` and `message` of an answer whose `data` did not fit the endpoint's schema.
_HEAD = msgspec.json.Decoder(ConnexHead, strict=False)


class ConnexVenue(Venue):
    """ConneX / LiquidityTech RapidX: nonce in seconds, ``{code, message, data}`` envelope."""

    name = VENUE

    def sign(self, params: Mapping[str, ParamValue], credentials: Credentials, now: float) -> SignedRequest:
        """Sign with a nonce of whole seconds of venue time."""
        return sign_connex(params, credentials, int(now))

    head_decoder = _HEAD
    payload_field = "data"
    code_member = b'"code"'
    # check_http: the base class's. HTTP 429 is a rate limit whatever the body says (the official
    # SDKs do not read it), with its Retry-After.

    def code_of(self, envelope: ConnexEnvelope[Any] | ConnexHead) -> tuple[int, str | None]:
        """``code`` and ``message``."""
        return envelope.code, envelope.message

    def is_success(self, code: int) -> bool:
        """200 and 200000 both mean success."""
        return code in SUCCESS_CODES

    def error_for_code(
        self,
        code: int,
        message: str | None,
        endpoint: Endpoint[Any],
        response: RawResponse,
        portfolio: str | None,
    ) -> APIError:
        """Map a documented ConneX code (or an unknown one) onto the error tree."""
        rule = CONNEX_CODES.get(code)
        kwargs = self.error_kwargs(endpoint, response, portfolio)
        text = message or "no message"
        if rule is None:
            kind: type[APIError] = ServerError if response.status >= 500 else APIError
            return kind(text, code=code, **kwargs)
        if rule.error is RateLimitError:
            return RateLimitError(text, code=code, retry_after=retry_after_seconds(response.headers), **kwargs)
        return rule.error(text, code=code, retryable=rule.retryable, **kwargs)

    async def measure_clock_offset(
        self, pool: Requester, base_url: str, error: ConnexAsyncError | None
    ) -> float | None:
        """ConneX has no time endpoint: read the ``Date`` header of the answer that rejected us."""
        if not isinstance(error, APIError):
            return None
        server_time = parse_http_date(error.headers.get("Date") or error.headers.get("date"))
        return None if server_time is None else server_time - time.time()
