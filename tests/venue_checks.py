"""Venue-side signature checks written from the references (not from connex_async.signing)."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl

from connex_async import RetryPolicy

FAST_RETRY = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_max=0.04)


def connex_signature_ok(secret: str, raw_query: str, headers: dict[str, str]) -> bool:
    """What the ConneX server does: decode the query, sort, join raw, append the nonce, HMAC."""
    pairs = sorted(parse_qsl(raw_query, keep_blank_values=True))
    message = "&".join(f"{k}={v}" for k, v in pairs) + "&" + headers["nonce"]
    expected = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["signature"])


def zoomex_signature_ok(key: str, secret: str, raw_query: str, headers: dict[str, str]) -> bool:
    """What Zoomex does: timestamp + key + recv_window + the query exactly as received."""
    message = headers["X-BAPI-TIMESTAMP"] + key + headers["X-BAPI-RECV-WINDOW"] + raw_query
    expected = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-BAPI-SIGN"])
