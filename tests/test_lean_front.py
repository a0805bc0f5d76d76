"""The API's lean front (pipeline/api/lean_front.py): which requests it answers itself, how it
answers them over a real socket, and how it hands everything else to aiohttp on the same connection.
The API's own tests (test_api*.py) drive the whole API through it."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

import pytest
from aiohttp import web

from pipeline.api.auth import READ, ApiTokens
from pipeline.api.gate import Gate
from pipeline.api.http import ApiError, Route, reply
from pipeline.api.lean_front import LEAN_KEY, LeanRoutes, parse_head
from pipeline.api.limits import LOOKUP, RateLimits
from pipeline.api.serve import run_server

TOKEN = "reader-token"


async def echo(params: Mapping[str, str]) -> Any:
    """A query-only route: its answer is its query; `fail` raises what a lookup can raise."""
    if params.get("fail") == "bad":
        raise ApiError(400, "bad signal")
    if params.get("fail") == "crash":
        raise RuntimeError("boom")
    if params.get("wait"):
        await asyncio.sleep(float(params["wait"]))
    return {"params": dict(params)}


ROUTE = Route.answering("/m/echo", echo, "echo", "Test", rate=LOOKUP)
ROUTES = {ROUTE.path: ROUTE}


def head(lines: list[str]) -> bytes:
    return "\r\n".join(lines).encode("latin-1")


def test_lookups_are_parsed_with_aiohttps_query_rules():
    request = parse_head(head(["GET /m/echo?a=1&b=x+y&c=%2Fz&a=2&blank=&bare HTTP/1.1", "Host: h",
                               "Authorization: Bearer  tok "]), ROUTES)
    assert request is not None and request.route is ROUTE and request.keep_alive
    assert request.params == {"a": "1", "b": "x y", "c": "/z", "blank": "", "bare": ""}  # the first of a name wins
    assert request.authorization == "Bearer  tok"
    closing = parse_head(head(["GET /m/echo HTTP/1.1", "Connection: Close"]), ROUTES)
    assert closing is not None and not closing.keep_alive
    assert parse_head(head(["GET /m/echo HTTP/1.1", "Content-Length: 0"]), ROUTES) is not None


@pytest.mark.parametrize("lines", [
    ["POST /m/echo HTTP/1.1"],  # another method
    ["GET /m/other HTTP/1.1"],  # another route
    ["GET /m/echo/ HTTP/1.1"],
    ["GET /m/%65cho HTTP/1.1"],  # an encoded path: aiohttp decides what it means
    ["GET /m/echo HTTP/1.0"],  # another version
    ["GET /m/echo HTTP/1.1", "Content-Length: 4"],  # a body
    ["GET /m/echo HTTP/1.1", "Transfer-Encoding: chunked"],
    ["GET /m/echo HTTP/1.1", "Connection: Upgrade", "Upgrade: websocket"],
    ["GET /m/echo HTTP/1.1", "Expect: 100-continue"],
    ["GET /m/echo HTTP/1.1", "X-A: 1", " folded"],  # an obsolete folded header
    ["GET /m/echo HTTP/1.1", "Bad Header : 1"],
    ["GET /m/echo HTTP/1.1", "no colon"],
    ["GET /m/\xe9 HTTP/1.1"],  # not ASCII
    ["GARBAGE"],
])
def test_anything_else_goes_to_aiohttp(lines):
    assert parse_head(head(lines), ROUTES) is None


@contextmanager
def serving(tokens: ApiTokens, open_reads: bool = True, lookup_rate: float = 0):
    """The front and aiohttp behind it, as `hmas api` runs them, on a loopback port of its own."""
    async def posted(request: web.Request) -> web.Response:
        return reply({"posted": (await request.read()).decode()})

    async def aiohttp_get(request: web.Request) -> web.Response:
        return reply({"aiohttp": dict(request.query)})

    app = web.Application()
    app.router.add_post("/m/echo", posted)
    app.router.add_get("/m/echo", aiohttp_get)  # what aiohttp answers for requests handed to it
    app[LEAN_KEY] = LeanRoutes(Gate(tokens, open_reads, RateLimits(lookup_rate, 0)), ROUTES)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=run_server, args=(app, "127.0.0.1", port, loop),
                              kwargs={"signals": False}, daemon=True)
    thread.start()
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def read_answer(sock: socket.socket, pending: bytearray) -> tuple[int, dict[str, str], Any]:
    """One HTTP answer off the socket (status, headers, JSON body); later bytes stay in `pending`."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before an answer")
        pending += chunk
    end = pending.index(b"\r\n\r\n")
    lines = bytes(pending[:end]).decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers["content-length"])
    while len(pending) < end + 4 + length:
        pending += sock.recv(65536)
    body = bytes(pending[end + 4: end + 4 + length])
    del pending[: end + 4 + length]
    is_json = headers.get("content-type", "").startswith("application/json")
    return int(lines[0].split()[1]), headers, json.loads(body) if is_json else body


def get(path: str, *extra: str) -> bytes:
    return head([f"GET {path} HTTP/1.1", "Host: test", *extra]) + b"\r\n\r\n"


def test_pipelined_and_fragmented_requests_are_answered_in_order():
    with serving(ApiTokens([])) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        pending = bytearray()
        # the first request waits, so the next two queue behind it on this connection
        sock.sendall(get("/m/echo?n=1&wait=0.2") + get("/m/echo?n=2") + get("/m/echo?n=3"))
        for n in ("1", "2", "3"):
            status, headers, body = read_answer(sock, pending)
            assert status == 200 and body["params"]["n"] == n and headers["server"] == "hma-streams"
            assert headers["content-type"] == "application/json; charset=utf-8"
        for byte in get("/m/echo?n=4"):  # one byte a send
            sock.sendall(bytes([byte]))
        assert read_answer(sock, pending)[2] == {"params": {"n": "4"}}


def test_a_connection_is_handed_to_aiohttp_with_the_bytes_not_yet_answered():
    with serving(ApiTokens([])) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        pending = bytearray()
        post = head(["POST /m/echo HTTP/1.1", "Host: test", "Content-Length: 5"]) + b"\r\n\r\nhello"
        sock.sendall(get("/m/echo?n=1&wait=0.1") + post + get("/m/echo?n=2"))
        assert read_answer(sock, pending)[2] == {"params": {"n": "1", "wait": "0.1"}}
        assert read_answer(sock, pending)[2] == {"posted": "hello"}
        status, headers, body = read_answer(sock, pending)  # aiohttp's from then on
        assert body == {"aiohttp": {"n": "2"}} and headers["server"] != "hma-streams"


def test_errors_are_json_answers_and_the_connection_goes_on():
    with serving(ApiTokens([])) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        pending = bytearray()
        sock.sendall(get("/m/echo?fail=bad") + get("/m/echo?fail=crash") + get("/m/echo?n=1"))
        assert read_answer(sock, pending)[::2] == (400, {"message": "bad signal"})
        assert read_answer(sock, pending)[::2] == (500, {"message": "internal error; see the API log"})
        assert read_answer(sock, pending)[::2] == (200, {"params": {"n": "1"}})


def test_connection_close_is_honoured():
    with serving(ApiTokens([])) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        pending = bytearray()
        sock.sendall(get("/m/echo?n=1", "Connection: close"))
        status, headers, _ = read_answer(sock, pending)
        assert status == 200 and headers["connection"] == "close"
        assert sock.recv(10) == b""  # closed by the server


def test_the_gate_applies_roles_and_rates():
    tokens = ApiTokens([(TOKEN, READ)])
    with serving(tokens, open_reads=False, lookup_rate=1) as port, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        pending = bytearray()
        sock.sendall(get("/m/echo?n=1"))
        status, headers, body = read_answer(sock, pending)
        assert status == 401 and headers["www-authenticate"] == "Bearer" and "Bearer" in body["message"]
        sock.sendall(get("/m/echo?n=1", "Authorization: Bearer wrong"))
        assert read_answer(sock, pending)[0] == 401
        answers = []
        for n in range(4):  # a burst of 2 at 1/s, then 429
            sock.sendall(get(f"/m/echo?n={n}", f"Authorization: Bearer {TOKEN}"))
            answers.append(read_answer(sock, pending))
        assert [a[0] for a in answers[:2]] == [200, 200]
        assert answers[-1][0] == 429 and int(answers[-1][1]["retry-after"]) >= 1


def test_an_oversized_head_is_aiohttps_to_refuse():
    with serving(ApiTokens([])) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(get("/m/echo?x=" + "a" * 9000))
        status, _, _ = read_answer(sock, bytearray())
        assert status in (400, 414, 431)
