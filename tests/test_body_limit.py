"""The body cap holds while the body is read, on decompressed bytes, for every transfer encoding.

A hostile venue sends 16 MiB (as it would 400 MB) to a pool capped at 256 KiB: plain with a
Content-Length, plain chunked (no length at all), gzip with the small compressed length (a bomb:
16 KB on the wire), deflate chunked. The call ends in one ``DecodeError`` after one attempt, and the
client never holds the body: tracemalloc's peak over the call stays within a few chunks of the cap.
"""

from __future__ import annotations

import asyncio
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from hostile import ASSETS_PATH, CREDS, HostileVenue, asset_row, assets_body

from connex_async import ConnexClient, DecodeError, RetryPolicy, SessionPool

CAP = 256 * 1024
BODY = 16 * 1024 * 1024
CHUNK = 64 * 1024
PEAK_ALLOWED = 4 * 1024 * 1024  # the cap, aiohttp's buffers and decompressor (2.4 MiB measured); never the body

RETRY = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_max=0.02)


def padded_json() -> bytes:
    """A valid assets envelope padded with whitespace to ``BODY`` bytes (whitespace compresses ~1000:1)."""
    head = assets_body([asset_row()])
    return head + b" " * (BODY - len(head))


def compressed(body: bytes, wbits: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return packer.compress(body) + packer.flush()


async def with_length(request: web.Request, body: bytes, encoding: str | None = None) -> web.StreamResponse:
    """``Content-Length`` of the (compressed) body, written a chunk at a time as the client reads."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    return await stream(request, response, body, encoding)


async def chunked(request: web.Request, body: bytes, encoding: str | None = None) -> web.StreamResponse:
    """``Transfer-Encoding: chunked``: no length announced at all."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    return await stream(request, response, body, encoding)


async def stream(
    request: web.Request, response: web.StreamResponse, body: bytes, encoding: str | None
) -> web.StreamResponse:
    # Written with backpressure, so that the server side holds a chunk, not the body: tracemalloc
    # sees this process's server and client together, and the client is what is measured.
    if encoding:
        response.headers["Content-Encoding"] = encoding
    await response.prepare(request)
    try:
        for start in range(0, len(body), CHUNK):
            await response.write(body[start : start + CHUNK])
        await response.write_eof()
    except (ConnectionResetError, RuntimeError):  # the client stopped reading: as it should
        pass
    return response


Case = tuple[Callable[[web.Request, bytes, str | None], Awaitable[web.StreamResponse]], str | None, int | None]
CASES: dict[str, Case] = {
    "identity-content-length": (with_length, None, None),
    "identity-chunked": (chunked, None, None),
    "gzip-content-length": (with_length, "gzip", 16 + zlib.MAX_WBITS),
    "deflate-chunked": (chunked, "deflate", zlib.MAX_WBITS),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_over_limit_body_is_refused_while_reading_and_not_retried(case: str) -> None:
    send, encoding, wbits = CASES[case]
    plain = padded_json()
    wire = plain if wbits is None else compressed(plain, wbits)
    del plain

    async def handler(request: web.Request) -> web.StreamResponse:
        return await send(request, wire, encoding)

    async with HostileVenue(handler) as venue, SessionPool(retry=RETRY, max_body_bytes=CAP) as pool:
        client = ConnexClient(CREDS, base_url=venue.base_url, pool=pool)
        tracemalloc.start()
        try:
            with pytest.raises(DecodeError, match="exceeds max_body_bytes") as info:
                async with asyncio.timeout(10):
                    await client.get_assets()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    err = info.value
    assert err.attempts == 1 and not err.retryable
    assert len(venue.hits(ASSETS_PATH)) == 1, "an over-long body must not be asked for again"
    if case != "identity-content-length":  # refused on its declared length, before a byte was read
        assert err.snippet.startswith('{"code":200000'), err.snippet
    assert peak < PEAK_ALLOWED, f"peak {peak / 2**20:.1f} MiB while reading a body capped at {CAP / 2**20:.2f} MiB"


async def test_body_under_the_cap_still_decodes_whatever_the_encoding() -> None:
    plain = assets_body([asset_row(f"C{i}") for i in range(100)])  # about 60 KiB
    gz = compressed(plain, 16 + zlib.MAX_WBITS)

    async def handler(request: web.Request) -> web.StreamResponse:
        return await chunked(request, gz, "gzip")

    async with HostileVenue(handler) as venue, SessionPool(max_body_bytes=len(plain)) as pool:
        page = await ConnexClient(CREDS, base_url=venue.base_url, pool=pool).get_assets()
    assert len(page.assets) == 100
