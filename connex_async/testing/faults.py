"""Fault injection: what can go wrong, when it fires, and how it looks on the wire.

Kinds (``params`` in brackets):

- ``latency`` (``seconds``, default 1.0): extra delay before the request *arrives*; then served normally.
- ``http_500`` / ``http_503``: that status with a JSON envelope (ConneX code 500, Zoomex retCode 10016).
- ``http_502_html``: 502 with a ``text/html`` error page.
- ``reset``: the connection is aborted (TCP RST) without any response.
- ``truncated``: valid headers, ``Content-Length`` of the whole body, half the body, then close.
- ``text_400``: HTTP 400 ``text/plain``.
- ``rate_limit`` (``retry_after`` seconds, optional): ConneX HTTP 429 + code 100429 (``Retry-After``
  header only when given); Zoomex HTTP 200 + retCode 10006 with ``X-Bapi-Limit*`` headers, resetting
  ``retry_after`` (default 1 s) from now.
- ``ip_limit``: HTTP 403 ``text/plain`` "access too frequent" (the Zoomex host-wide answer).
- ``slow_body`` (``seconds``, default 2.0; ``chunks``, default 10): headers at once, then the valid
  body trickled over ``seconds``.
- ``malformed_json``: HTTP 200 ``application/json`` whose body is not valid JSON.
- ``auth_error``: ConneX code 2000 / Zoomex retCode 10004 (HTTP 200).
- ``clock_error``: ConneX code 7000 / Zoomex retCode 10002 (HTTP 200), as if the clock were off.

Clock skew itself is not a fault: set ``SimulatedVenue.clock_skew``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections import deque
from collections.abc import Iterable, Mapping

from aiohttp import web

from connex_async.testing.wire import JSON, connex_body, json_response, text_response, zoomex_body

__all__ = ["FAULT_KINDS", "Fault", "FaultPlan", "respond_with_fault"]

FAULT_KINDS = frozenset(
    {
        "latency",
        "http_500",
        "http_503",
        "http_502_html",
        "reset",
        "truncated",
        "text_400",
        "rate_limit",
        "ip_limit",
        "slow_body",
        "malformed_json",
        "auth_error",
        "clock_error",
    }
)

_HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


class Fault:
    """One fault rule: fires with ``probability`` on matching requests, at most ``times`` times.

    ``api_key``, ``endpoint`` (``"assets"``, ``"positions"``, ``"wallet"``, ``"time"`` or the full
    path) and ``venue`` (``"connex"``/``"zoomex"``) narrow which requests match; ``None`` matches
    all. ``times=None`` means unlimited. ``fired`` counts how often it fired.
    """

    __slots__ = ("api_key", "endpoint", "fired", "kind", "params", "probability", "times", "venue")

    kind: str
    probability: float
    times: int | None
    api_key: str | None
    endpoint: str | None
    venue: str | None
    params: dict[str, float | int | str]
    fired: int

    def __init__(
        self,
        kind: str,
        probability: float = 1.0,
        times: int | None = None,
        api_key: str | None = None,
        endpoint: str | None = None,
        venue: str | None = None,
        **params: float | int | str,
    ) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if not 0.0 <= probability <= 1.0:
            raise ValueError("Fault.probability must be within [0, 1]")
        if times is not None and times < 0:
            raise ValueError("Fault.times must be >= 0 or None")
        if venue not in (None, "connex", "zoomex"):
            raise ValueError("Fault.venue must be 'connex', 'zoomex' or None")
        self.kind = kind
        self.probability = probability
        self.times = times
        self.api_key = api_key
        self.endpoint = endpoint
        self.venue = venue
        self.params = dict(params)
        self.fired = 0

    @property
    def exhausted(self) -> bool:
        """True once it fired ``times`` times."""
        return self.times is not None and self.fired >= self.times

    def matches(self, venue: str, endpoint: str, path: str, api_key: str | None) -> bool:
        """Whether this rule applies to a request (ignoring probability and exhaustion)."""
        return (
            (self.venue is None or self.venue == venue)
            and (self.endpoint is None or self.endpoint in (endpoint, path))
            and (self.api_key is None or self.api_key == api_key)
        )

    def param(self, name: str, default: float) -> float:
        """A numeric parameter."""
        return float(self.params.get(name, default))

    def __repr__(self) -> str:
        scope = "".join(
            f", {k}={v!r}"
            for k, v in (("api_key", self.api_key), ("endpoint", self.endpoint), ("venue", self.venue))
            if v
        )
        return f"Fault({self.kind!r}, p={self.probability}, times={self.times}, fired={self.fired}{scope})"


class _Script:
    __slots__ = ("endpoint", "steps")

    def __init__(self, steps: Iterable[str | Fault], endpoint: str | None) -> None:
        self.endpoint = endpoint
        self.steps: deque[Fault | None] = deque(
            None if s == "ok" else s if isinstance(s, Fault) else Fault(s) for s in steps
        )


class FaultPlan:
    """The active rules and per-key scripts; picks at most one fault per request (seeded RNG)."""

    __slots__ = ("_faults", "_rng", "_scripts")

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"faults:{seed}")
        self._faults: list[Fault] = []
        self._scripts: dict[str, list[_Script]] = {}

    def add(self, fault: Fault) -> Fault:
        """Activate ``fault``; rules are tried in insertion order."""
        self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        """Deactivate ``fault`` (no error if it is not active)."""
        if fault in self._faults:
            self._faults.remove(fault)

    def script(self, api_key: str, steps: Iterable[str | Fault], endpoint: str | None = None) -> None:
        """Queue ``steps`` (fault kinds, :class:`Fault` objects or ``"ok"``) for ``api_key``.

        Each request of that key (on ``endpoint`` if given) consumes one step; ``"ok"`` is served
        normally, skipping the global rules. Scripts take precedence over rules.
        """
        steps = list(steps)
        for s in steps:
            if not isinstance(s, Fault) and s != "ok" and s not in FAULT_KINDS:
                raise ValueError(f"unknown script step {s!r}")
        self._scripts.setdefault(api_key, []).append(_Script(steps, endpoint))

    def clear(self) -> None:
        """Drop every rule and script."""
        self._faults.clear()
        self._scripts.clear()

    @property
    def faults(self) -> list[Fault]:
        """The active rules (a copy)."""
        return list(self._faults)

    def pending_script_steps(self, api_key: str) -> int:
        """How many script steps are still queued for ``api_key``."""
        return sum(len(s.steps) for s in self._scripts.get(api_key, ()))

    def pick(self, venue: str, endpoint: str, path: str, api_key: str | None) -> Fault | None:
        """The fault to inject into this request, if any (consumes a script step or a ``times``)."""
        if api_key is not None and self._scripts:
            scripts = self._scripts.get(api_key)
            if scripts:
                for script in scripts:
                    if script.endpoint is None or script.endpoint in (endpoint, path):
                        step = script.steps.popleft()
                        if not script.steps:
                            scripts.remove(script)
                            if not scripts:
                                del self._scripts[api_key]
                        if step is not None:
                            step.fired += 1
                        return step
        for fault in self._faults:
            if fault.exhausted or not fault.matches(venue, endpoint, path, api_key):
                continue
            if fault.probability >= 1.0 or self._rng.random() < fault.probability:
                fault.fired += 1
                return fault
        return None


def _abort(request: web.BaseRequest, rst: bool) -> None:
    transport = request.transport
    if transport is None:
        return
    if rst:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


async def respond_with_fault(
    fault: Fault,
    request: web.BaseRequest,
    venue: str,
    *,
    headers: Mapping[str, str],
    now_ms: int,
    sample_body: bytes,
) -> web.StreamResponse:
    """The response that realizes ``fault`` (``latency`` is handled by the caller).

    ``sample_body`` is a valid success body used by ``truncated``, ``slow_body`` and
    ``malformed_json``.
    """
    kind = fault.kind
    cx = venue == "connex"
    if kind in ("http_500", "http_503"):
        status = 500 if kind == "http_500" else 503
        body = connex_body(500, "Internal Server Error") if cx else zoomex_body(10016, "Internal server error.", now_ms)
        return json_response(body, headers, status)
    if kind == "http_502_html":
        return text_response(_HTML_502, headers, 502, "text/html")
    if kind == "text_400":
        return text_response("Bad Request", headers, 400)
    if kind == "ip_limit":
        return text_response("access too frequent", headers, 403)
    if kind == "auth_error":
        body = (
            connex_body(2000, "signature check failed")
            if cx
            else zoomex_body(10004, "error sign! origin_string[]", now_ms)
        )
        return json_response(body, headers)
    if kind == "clock_error":
        body = (
            connex_body(7000, "nonce invalid")
            if cx
            else zoomex_body(10002, "invalid request, please check your server timestamp or recv_window param", now_ms)
        )
        return json_response(body, headers)
    if kind == "rate_limit":
        extra = dict(headers)
        if cx:
            if "retry_after" in fault.params:
                extra["Retry-After"] = str(fault.params["retry_after"])
            return json_response(connex_body(100429, "Too many requests"), extra, 429)
        reset_ms = now_ms + int(fault.param("retry_after", 1.0) * 1000)
        extra.update({"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(reset_ms)})
        return json_response(zoomex_body(10006, "Too many visits!", now_ms), extra)
    if kind == "malformed_json":
        return json_response(sample_body[: max(1, len(sample_body) // 2)] + b',"oops', headers)
    if kind == "reset":
        _abort(request, rst=True)
        return web.Response(status=204)  # never written: the transport is gone
    if kind in ("truncated", "slow_body"):
        resp = web.StreamResponse(status=200, headers=headers)
        resp.content_type = JSON
        resp.content_length = len(sample_body)
        try:
            await resp.prepare(request)
            if kind == "truncated":
                await resp.write(sample_body[: len(sample_body) // 2])
                _abort(request, rst=False)
            else:
                chunks = max(1, int(fault.param("chunks", 10)))
                pause = fault.param("seconds", 2.0) / chunks
                size = -(-len(sample_body) // chunks)
                for i in range(0, len(sample_body), size):
                    await asyncio.sleep(pause)
                    await resp.write(sample_body[i : i + size])
        except ConnectionError:
            pass
        return resp
    raise ValueError(f"fault kind {kind!r} has no response")  # pragma: no cover - latency
