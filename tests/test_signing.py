"""Both signers against every vector in the references, and sent == signed for arbitrary params."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connex_async import Credentials
from connex_async.signing import connex_message, normalize_params, sign_connex, sign_zoomex

CONNEX = Credentials("connex-key", "xyz")
ZOOMEX = Credentials("TEST_API_KEY", "TEST_SECRET_DO_NOT_USE")


@pytest.mark.parametrize(
    ("params", "message", "signature"),
    [
        ({}, "&1712345678", "48e81949ffa16684f840dc3e49a12acf20de28796fbfe4da5c8bd97197e319a5"),
        (
            {"exchangeType": "BINANCE", "page": 1, "pageSize": 1000},
            "exchangeType=BINANCE&page=1&pageSize=1000&1712345678",
            "5e14e59a89e936e2aea6272826597693ff4b7571dce97c7d0799fe6210b25cb0",
        ),
        (
            {"sym": "BINANCE_PERP_BTC_USDT", "exchange": "BINANCE"},
            "exchange=BINANCE&sym=BINANCE_PERP_BTC_USDT&1712345678",
            "9210f37acb2990f657db300e26ecc1bf16a319bf731d5bea47bbe7ffafabd48c",
        ),
    ],
)
def test_connex_reference_vectors(params: dict[str, object], message: str, signature: str) -> None:
    assert connex_message(normalize_params(params), 1712345678) == message  # type: ignore[arg-type]
    signed = sign_connex(params, CONNEX, 1712345678)  # type: ignore[arg-type]
    assert signed.headers["signature"] == signature
    assert signed.headers["nonce"] == "1712345678"
    assert signed.headers["X-MBX-APIKEY"] == "connex-key"


@pytest.mark.parametrize(
    ("params", "query", "signature"),
    [
        (
            {"accountType": "CONTRACT"},
            "accountType=CONTRACT",
            "2a63aae20f193d8854009e7621785732b4b33813a356cb7069a5022e9020acbd",
        ),
        (
            {"accountType": "UNIFIED", "coin": "BTC,USDT"},
            "accountType=UNIFIED&coin=BTC,USDT",
            "c3f5dc2eff251ce69a8f9f48da67d0163a9e54fb7f02866a388dcce9a6c9dcca",
        ),
        ({}, "", "f20e6b65ebd75cf35e8a5bbbfa0d582b1c14b8b4ffd9600f379ff19845cd8a1c"),
    ],
)
def test_zoomex_reference_vectors(params: dict[str, str], query: str, signature: str) -> None:
    signed = sign_zoomex(params, ZOOMEX, 1672125440406, 5000)
    assert signed.query == query
    assert signed.headers["X-BAPI-SIGN"] == signature
    assert signed.headers["X-BAPI-TIMESTAMP"] == "1672125440406"
    assert signed.headers["X-BAPI-RECV-WINDOW"] == "5000"
    assert signed.headers["X-BAPI-SIGN-TYPE"] == "2"


def test_none_dropped_booleans_lowercase_decimal_exact() -> None:
    pairs = normalize_params({"b": None, "zeroFilter": True, "a": False, "x": Decimal("0.10")})
    assert pairs == [("a", "false"), ("x", "0.10"), ("zeroFilter", "true")]
    with pytest.raises(TypeError):
        normalize_params({"f": 1.5})  # type: ignore[dict-item]


def test_signature_never_depends_on_dict_order() -> None:
    a = sign_connex({"page": 1, "exchangeType": "OKX"}, CONNEX, 1)
    b = sign_connex({"exchangeType": "OKX", "page": 1}, CONNEX, 1)
    assert a == b


keys = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
values = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20),
    st.sampled_from(["a b", "a&b=c", "BTC,USDT", "100%", "+", "é€", "?#/"]),
    st.integers(),
    st.booleans(),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=6))
def test_connex_query_sent_decodes_to_exactly_what_was_signed(params: dict[str, object]) -> None:
    signed = sign_connex(params, CONNEX, 1712345678)  # type: ignore[arg-type]
    # The server decodes the query it receives and signs the raw pairs in sorted order.
    received = parse_qsl(signed.query, keep_blank_values=True, strict_parsing=bool(signed.query))
    message = "&".join(f"{k}={v}" for k, v in sorted(received)) + "&1712345678"
    expected = hmac.new(b"xyz", message.encode(), hashlib.sha256).hexdigest()
    assert signed.headers["signature"] == expected


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=6))
def test_zoomex_signs_the_query_byte_for_byte(params: dict[str, object]) -> None:
    signed = sign_zoomex(params, ZOOMEX, 1672125440406)  # type: ignore[arg-type]
    wire = signed.query.encode("ascii")  # what goes on the wire is plain ASCII, so nothing re-encodes it
    message = b"1672125440406TEST_API_KEY5000" + wire
    expected = hmac.new(b"TEST_SECRET_DO_NOT_USE", message, hashlib.sha256).hexdigest()
    assert signed.headers["X-BAPI-SIGN"] == expected
    assert dict(parse_qsl(signed.query, keep_blank_values=True)) == {
        k: ("true" if v is True else "false" if v is False else str(v)) for k, v in params.items() if v is not None
    }
