"""Envelopes and small response helpers shared by the simulator's handlers and faults."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from aiohttp import web

__all__ = ["JSON", "connex_body", "json_response", "text_response", "zoomex_body"]

JSON = "application/json"

_ENCODE = msgspec.json.encode


def connex_body(code: int | str, message: str, data: bytes = b"null") -> bytes:
    """A ConneX envelope ``{"code":..,"message":..,"data":..}`` with pre-encoded ``data``."""
    return b'{"code":' + _ENCODE(code) + b',"message":' + _ENCODE(message) + b',"data":' + data + b"}"


def zoomex_body(ret_code: int, ret_msg: str, time_ms: int, result: bytes = b"{}") -> bytes:
    """A Zoomex envelope with pre-encoded ``result``."""
    return (
        b'{"retCode":'
        + str(ret_code).encode()
        + b',"retMsg":'
        + _ENCODE(ret_msg)
        + b',"result":'
        + result
        + b',"retExtInfo":{},"time":'
        + str(time_ms).encode()
        + b"}"
    )


def json_response(body: bytes, headers: Mapping[str, str], status: int = 200) -> web.Response:
    """An ``application/json`` response."""
    return web.Response(body=body, status=status, headers=headers, content_type=JSON)


def text_response(text: str, headers: Mapping[str, str], status: int, content_type: str = "text/plain") -> web.Response:
    """A plain-text (or HTML) response."""
    return web.Response(text=text, status=status, headers=headers, content_type=content_type)
