"""The fixed-rate load generator of `hmas bench api` (ops/bench/open_loop.py) against a real
aiohttp server on loopback: requests go out at the rate, and a server stall counts for every
request that fell due during it, not only for those already sent."""

from __future__ import annotations

import asyncio
import threading
import time

from aiohttp import web

from ops.bench.open_loop import OpenLoop
from ops.kafka.broker import free_port


class _Server:
    """An aiohttp server on its own thread and loop; `stall(s)` blocks that loop once (as a long
    pause of the server process would)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests = 0
        self._stall_s = 0.0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        async def handler(request: web.Request) -> web.Response:
            self.requests += 1
            if self._stall_s:
                stall, self._stall_s = self._stall_s, 0.0
                time.sleep(stall)  # the whole server stops, not only this request
            status = 404 if request.path == "/missing" else 200
            return web.json_response({"matches": []}, status=status)

        async def main() -> None:
            app = web.Application()
            app.router.add_get("/{tail:.*}", handler)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()

        asyncio.run(main())

    def __enter__(self) -> "_Server":
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def stall(self, seconds: float) -> None:
        self._stall_s = seconds


def _run(load: OpenLoop, stall: tuple[_Server, float, float] | None = None) -> dict:
    async def main() -> dict:
        if stall is not None:
            server, at_s, seconds = stall
            asyncio.get_running_loop().call_later(at_s, server.stall, seconds)
        return await load.run()

    return asyncio.run(main())


def test_requests_fall_due_at_the_rate_and_are_answered():
    with _Server() as server:
        load = OpenLoop(f"http://127.0.0.1:{server.port}", ["/a?x=1", "/a?x=2"], rate=200, connections=4,
                        seconds=1.5, warmup_s=0.25)
        result = _run(load)
    assert 290 <= result["due"] <= 301
    assert result["answered"] >= 0.9 * result["due"]
    assert server.requests == result["answered"] + result["in_flight_at_end"]
    assert result["non_2xx"] == 0 and result["errors"] == 0
    assert result["counted"] < result["answered"]  # the warm-up's requests are sent, not counted
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]


def test_a_stall_counts_for_every_request_due_during_it():
    """200 requests/s and a 0.5 s stall of the server: about 100 fall due while it stands still,
    four of them already sent. Those due in its first 0.3 s waited at least 0.2 s each, whether
    a connection was free to send them or not."""
    with _Server() as server:
        load = OpenLoop(f"http://127.0.0.1:{server.port}", ["/a"], rate=200, connections=4, seconds=2.0,
                        warmup_s=0.0)
        result = _run(load, stall=(server, 0.8, 0.5))
    late = [x for x in load.latencies if x >= 0.2]
    assert len(late) >= 40, result
    assert result["max_ms"] >= 400
    assert result["p90_ms"] < result["max_ms"]


def test_answers_other_than_2xx_are_counted():
    with _Server() as server:
        load = OpenLoop(f"http://127.0.0.1:{server.port}", ["/missing", "/a"], rate=100, connections=2,
                        seconds=1.0, warmup_s=0.0)
        result = _run(load)
    assert result["non_2xx"] >= 0.4 * result["answered"] > 0
