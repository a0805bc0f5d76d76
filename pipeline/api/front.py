"""Lookups answered ahead of aiohttp: `GET /m/lookup` and `GET /m/raw_lookup` of a signal.

Why: these two routes are what a platform calls thousands of times a second, and aiohttp's request
machinery (its request and response objects, router and middleware chain) costs about 50 us of CPU
per request on a 2-core machine, where a bare protocol answers in under 10 (BENCHMARKS.md, "The
HTTP API"). So every connection starts with `LookupFront`: it reads each request head itself and
answers a plain HTTP/1.1 GET of one of those routes, with no body, through the same admission
(tokens and roles), rate limits, metrics, error answers and lookup functions as the aiohttp routes.
The first request that is anything else (another route or method, a lookup by URL, a body,
HTTP/1.0, a head it does not read plainly) hands the connection over, with every byte not yet
answered, to aiohttp's own protocol for good: aiohttp answers it exactly as without this front.

Requests on one connection are answered in order (pipelined ones too); an idle connection is
closed after aiohttp's keep-alive time, as aiohttp does.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import parse_qsl

from pipeline.api.auth import bearer_token
from pipeline.api.http import Route, json_bytes
from pipeline.api.limits import RateLimits, kind_of

MAX_HEAD = 8190  # bytes of a request line and headers read here; a longer head goes to aiohttp (its 4xx)
KEEPALIVE_S = 75.0  # aiohttp's keepalive_timeout: an idle connection is closed after this
MAX_QUEUED = 32  # pipelined requests read ahead of their answers; past this, reading pauses
SPECIAL_HEADERS = (b"content-length", b"transfer-encoding", b"expect", b"upgrade")  # aiohttp's to handle


@dataclass(frozen=True)
class FrontRoute:
    """A route the front answers: its table entry (role, rate kind, metrics name) and its answer."""

    route: Route
    answer: Callable[[Mapping[str, str]], Awaitable[Any]]


@dataclass(frozen=True)
class FrontServices:
    """What the front needs of the API process (pipeline/api/app.py builds it)."""

    routes: dict[bytes, FrontRoute]
    client_of: Callable[[Route, str, str | None], str]  # admission: the client, or ApiError 401/403
    limits: RateLimits
    counted: Callable[[Route, int, float], None]  # metrics of an answered request
    failure: Callable[[Exception, str, str], tuple[int, dict[str, str], dict[str, str]]]


@dataclass(frozen=True)
class _Request:
    path: str
    entry: FrontRoute
    query: dict[str, str]
    authorization: str
    close: bool


class FrontFactory:
    """The listening socket's protocol factory: a LookupFront per connection, handing over to
    `fallback` (aiohttp's protocol factory) when a request is not one of its own."""

    def __init__(self, services: FrontServices, fallback: Callable[[], asyncio.Protocol]) -> None:
        self.services = services
        self.fallback = fallback
        self.connections: set[LookupFront] = set()

    def __call__(self) -> "LookupFront":
        return LookupFront(self)

    def close_all(self) -> None:
        """Close the connections still served here (at shutdown; aiohttp closes its own)."""
        for connection in list(self.connections):
            connection.close()


class LookupFront(asyncio.Protocol):
    def __init__(self, factory: FrontFactory) -> None:
        self._factory = factory
        self._services = factory.services
        self._transport: asyncio.Transport | None = None
        self._remote: str | None = None
        self._buffer = bytearray()
        self._queue: deque[_Request] = deque()
        self._serving: asyncio.Task | None = None
        self._handing_over = False  # a request of aiohttp's is buffered: hand over once the queue is answered
        self._paused = False
        self._eof = False
        self._active_at = 0.0
        self._idle: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self._remote = peer[0] if isinstance(peer, (tuple, list)) and peer else None
        self._factory.connections.add(self)
        loop = asyncio.get_running_loop()
        self._active_at = loop.time()
        self._idle = loop.call_later(KEEPALIVE_S, self._close_if_idle)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._read_requests()

    def eof_received(self) -> bool:
        self._eof = True
        if self._serving is None and not self._queue:
            self._hand_over_or_close()
        return True  # the transport stays open until what was asked is answered (then closed here or by aiohttp)

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        if self._serving is not None:
            self._serving.cancel()
        self._queue.clear()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- reading -----------------------------------------------------------------------------------
    def _read_requests(self) -> None:
        while not self._handing_over:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD:
                    self._handing_over = True
                break
            request = self._parse(bytes(self._buffer[:end]))
            if request is None:
                self._handing_over = True
                break
            del self._buffer[: end + 4]
            self._queue.append(request)
            if len(self._queue) >= MAX_QUEUED and not self._paused and self._transport is not None:
                self._transport.pause_reading()
                self._paused = True
                break
        if self._queue and self._serving is None:
            self._serving = asyncio.get_running_loop().create_task(self._serve())
        elif self._handing_over and self._serving is None:
            self._hand_over_or_close()

    def _parse(self, head: bytes) -> _Request | None:
        """A request of the front's own, or None for one to hand over."""
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[0] != b"GET" or parts[2] != b"HTTP/1.1":
            return None
        path, _, raw_query = parts[1].partition(b"?")
        entry = self._services.routes.get(path)
        if entry is None:
            return None
        authorization, close = "", False
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name[:1] in b" \t" or name[-1:] in b" \t":
                return None
            name = name.lower()
            if name in SPECIAL_HEADERS and not (name == b"content-length" and value.strip() == b"0"):
                return None
            if name == b"authorization":
                authorization = value.strip().decode("latin-1")
            elif name == b"connection":
                close = b"close" in value.lower()
        try:
            text = raw_query.decode("ascii")
        except UnicodeDecodeError:
            return None
        query: dict[str, str] = {}
        for key, value in parse_qsl(text, keep_blank_values=True):
            query.setdefault(key, value)
        if "url" in query:  # fetches and hashes content: aiohttp's route
            return None
        return _Request(path.decode("ascii"), entry, query, authorization, close)

    # -- answering -------------------------------------------------------------------------------
    async def _serve(self) -> None:
        try:
            while self._queue:
                request = self._queue.popleft()
                if self._paused and len(self._queue) < MAX_QUEUED // 2 and self._transport is not None:
                    self._transport.resume_reading()
                    self._paused = False
                    self._read_requests()  # what was read before the pause is still buffered
                answer = await self._answer(request)
                if self._transport is None:
                    return
                self._transport.write(answer)
                if request.close:
                    self._transport.close()
                    return
            self._active_at = asyncio.get_running_loop().time()
        finally:
            self._serving = None
        if self._handing_over or self._eof:
            self._hand_over_or_close()

    async def _answer(self, request: _Request) -> bytes:
        services, route = self._services, request.entry.route
        started = time.perf_counter()
        try:
            client = services.client_of(route, bearer_token(request.authorization), self._remote)
            kind = kind_of(route.rate, request.query)
            if kind:
                services.limits.take(kind, client)
        except Exception as exc:  # 401, 403, 429: answered before the route (not in its metrics)
            return _response(*services.failure(exc, request.path, "GET"), close=request.close)
        try:
            status, body, headers = 200, await request.entry.answer(request.query), {}
        except Exception as exc:
            status, body, headers = services.failure(exc, request.path, "GET")
        services.counted(route, status, started)
        return _response(status, body, headers, close=request.close)

    # -- handing over ----------------------------------------------------------------------------
    def _hand_over_or_close(self) -> None:
        """aiohttp's protocol takes the connection and what is buffered; at the end of the input
        with nothing buffered, the connection is closed instead."""
        transport = self._transport
        if transport is None:
            return
        if not self._handing_over and not self._buffer:
            transport.close()
            return
        self._forget()
        protocol = self._factory.fallback()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._paused:
            transport.resume_reading()
        if self._buffer:
            protocol.data_received(bytes(self._buffer))
        if self._eof:
            protocol.eof_received()

    def _forget(self) -> None:
        self._factory.connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._transport, transport = None, self._transport
        del transport

    def _close_if_idle(self) -> None:
        loop = asyncio.get_running_loop()
        if self._transport is None:
            return
        idle_for = loop.time() - self._active_at
        if self._serving is None and not self._queue and idle_for >= KEEPALIVE_S:
            self._transport.close()
            return
        self._idle = loop.call_later(max(KEEPALIVE_S - idle_for, 1.0), self._close_if_idle)


_DATE: list[Any] = [0, ""]  # the second and its Date header value: one formatdate a second


def _date() -> str:
    now = int(time.time())
    if _DATE[0] != now:
        _DATE[0], _DATE[1] = now, formatdate(now, usegmt=True)
    return _DATE[1]


def _response(status: int, body: Any, headers: Mapping[str, str], close: bool) -> bytes:
    payload = json_bytes(body)
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Content-Type: application/json; charset=utf-8",
            f"Content-Length: {len(payload)}", f"Date: {_date()}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload
