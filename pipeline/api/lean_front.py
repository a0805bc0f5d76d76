"""The API's socket front: lookups answered without aiohttp's per-request machinery.

A GET of a route whose answer follows from its query alone (`Route.answering`: `/m/lookup` and
`/m/raw_lookup`) is parsed and answered here, through the same gate (role, rate), errors and
metrics as every other route (pipeline/api/gate.py). aiohttp's request, middleware, router and
response objects cost about 90 us of CPU a request on the reference machine, more than a search
of a million signals; this front costs a fraction of it (BENCHMARKS.md, "The HTTP API").

Anything else (another route or method, a body, an upgrade, HTTP/1.0, a header this parser does not
take apart) is handed to aiohttp with the bytes as they arrived, and the connection is aiohttp's
from then on. Requests on one connection are answered one at a time, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from pipeline.api.gate import Gate, error_answer, observe
from pipeline.api.http import Route

log = logging.getLogger(__name__)
MAX_HEAD = 8190  # request line and headers (aiohttp's own line limit); longer heads go to aiohttp
KEEPALIVE_S = 75.0  # an idle connection is closed after this long (aiohttp's default too)
HANDED_OVER = (b"transfer-encoding", b"upgrade", b"expect")  # headers whose requests aiohttp takes


@dataclass(frozen=True)
class LeanRoutes:
    """What the front serves: path -> a route with an `answer`, behind the API's gate."""

    gate: Gate
    routes: dict[str, Route]


LEAN_KEY = web.AppKey("lean_routes", LeanRoutes)


@dataclass(frozen=True)
class LeanRequest:
    route: Route
    params: dict[str, str]  # the query, first value of each name (as aiohttp's request.query.get)
    authorization: str
    keep_alive: bool


def parse_head(head: bytes, routes: Mapping[str, Route]) -> LeanRequest | None:
    """The request of a head (request line and headers, without the blank line) when this front
    serves it; None hands it to aiohttp."""
    lines = head.split(b"\r\n")
    method, _, rest = lines[0].partition(b" ")
    target, _, version = rest.partition(b" ")
    if method != b"GET" or version != b"HTTP/1.1" or not target.isascii():
        return None
    path, _, raw_query = target.partition(b"?")
    route = routes.get(path.decode("ascii"))
    if route is None:
        return None
    authorization, keep_alive = "", True
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name[-1:] in b" \t" or line[:1] in b" \t":
            return None  # malformed, or folded: aiohttp answers it
        name = name.lower()
        if name == b"authorization":
            authorization = value.strip().decode("latin-1")
        elif name == b"connection":
            tokens = value.lower()
            if b"upgrade" in tokens:
                return None
            keep_alive = b"close" not in tokens
        elif name == b"content-length":
            if value.strip() != b"0":
                return None
        elif name in HANDED_OVER:
            return None
    params: dict[str, str] = {}
    for key, value in parse_qsl(raw_query.decode("ascii"), keep_blank_values=True):
        params.setdefault(key, value)
    return LeanRequest(route, params, authorization, keep_alive)


class _Date:
    """The Date header's value, formatted once a second."""

    second, value = -1, b""

    @classmethod
    def now(cls) -> bytes:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.value = second, formatdate(second, usegmt=True).encode()
        return cls.value


def response_bytes(status: int, body: bytes, headers: Mapping[str, str], keep_alive: bool) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    if not keep_alive:
        extra += "Connection: close\r\n"
    return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n"
            b"Date: %s\r\nServer: hma-streams\r\n%s\r\n%s") % (
        status, HTTPStatus(status).phrase.encode(), len(body), _Date.now(), extra.encode("latin-1"), body)


class LeanConnection(asyncio.Protocol):
    """One client connection, until a request of it goes to aiohttp."""

    def __init__(self, lean: LeanRoutes, aiohttp_server: web.Server, site: "LeanSite") -> None:
        self.lean, self.aiohttp_server, self.site = lean, aiohttp_server, site
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.buffer = bytearray()
        self.busy = False  # a request is being answered; the next ones wait in the buffer
        self.paused = False  # the client does not read its answers
        self.ended = False  # the client sent its last request, or the API is stopping
        self.idle_since = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else None
        self.site.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.site.connections.discard(self)
        self.ended = True

    def eof_received(self) -> bool:
        self.ended = True
        return self.busy  # keep the socket open for the answer under way

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if not self.busy:
            self._next()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        """Start answering the next whole request in the buffer, or hand the connection over."""
        if self.paused or self.transport is None or self.transport.is_closing():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                self._hand_over()
            return
        request = parse_head(bytes(self.buffer[:end]), self.lean.routes) if end <= MAX_HEAD else None
        if request is None:
            self._hand_over()
            return
        del self.buffer[: end + 4]
        self.busy = True
        asyncio.get_running_loop().create_task(self._answer(request))

    async def _answer(self, request: LeanRequest) -> None:
        started = time.perf_counter()
        status, headers = 200, {}
        try:
            self.lean.gate.admit(request.route, request.authorization, self.peer, request.params)
            body = orjson.dumps(await request.route.answer(request.params), option=orjson.OPT_NON_STR_KEYS)
        except Exception as exc:
            status, message, headers = error_answer(exc, "GET", request.route.path) or (
                500, {"message": "internal error; see the API log"}, {})
            body = orjson.dumps(message)
        observe(request.route, status, time.perf_counter() - started)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        keep_alive = request.keep_alive and not self.ended
        transport.write(response_bytes(status, body, headers, keep_alive))
        self.busy = False
        self.idle_since = time.monotonic()
        if not keep_alive:
            transport.close()
        elif self.buffer:
            self._next()

    def _hand_over(self) -> None:
        """aiohttp's own protocol takes the connection, starting with the bytes not yet answered."""
        self.site.connections.discard(self)
        handler = self.aiohttp_server()
        transport = self.transport
        assert transport is not None
        transport.set_protocol(handler)
        handler.connection_made(transport)
        pending, self.buffer = bytes(self.buffer), bytearray()
        self.transport = None
        if pending:
            handler.data_received(pending)
        if self.ended:
            handler.eof_received()

    def close_if_idle(self, now: float, idle_s: float) -> None:
        if not self.busy and not self.buffer and now - self.idle_since >= idle_s and self.transport is not None:
            self.transport.close()

    def stop(self) -> None:
        """The API is stopping: close now when idle, else after the answer under way."""
        self.ended = True
        if not self.busy and self.transport is not None:
            self.transport.close()


class LeanSite(web.TCPSite):
    """aiohttp's TCP site, with this front on each accepted connection."""

    def __init__(self, runner: web.AppRunner, lean: LeanRoutes, host: str, port: int, reuse_port: bool = False) -> None:
        super().__init__(runner, host, port, reuse_port=reuse_port)
        self.lean = lean
        self.connections: set[LeanConnection] = set()
        self._sweeper: asyncio.Task | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            lambda: LeanConnection(self.lean, server, self), self._host, self._port,
            backlog=self._backlog, reuse_address=self._reuse_address, reuse_port=self._reuse_port)
        self._sweeper = asyncio.create_task(self._sweep(), name="lean-front-keepalive")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S / 5)
            now = time.monotonic()
            for connection in list(self.connections):
                connection.close_if_idle(now, KEEPALIVE_S)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        await super().stop()
        for connection in list(self.connections):
            connection.stop()
