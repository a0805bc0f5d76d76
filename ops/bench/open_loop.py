"""Requests at a fixed rate over keep-alive HTTP/1.1 connections, each request's latency counted
from the time it was due, not from when a connection was free to send it (as wrk2 does).

wrk (which `hmas bench api` also runs) sends a connection's next request only when its last one
is answered: it finds the most the API can answer, and a stall delays the requests that would
have been sent during it instead of counting them late ("coordinated omission"). Here requests
fall due at the rate whatever the answers do; one that waits for a free connection waits on its
own clock, so a 50 ms stall shows in every request it held up. The answer to "how long do
lookups take while the API serves 4,000 a second" is measured here.

Run as `python -m ops.bench.open_loop URL PATHS --rate R --connections C --seconds S`: one JSON
line, with the rate reached, latency percentiles (requests due in the first `--warmup` seconds
are sent but not counted), errors, answers other than 2xx, and what was still waiting at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from urllib.parse import urlsplit

TICK_S = 0.001  # how often due requests are handed to free connections (a shorter sleep spins on uvloop)


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, load: "OpenLoop") -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.due_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes, due_at: float) -> None:
        self.due_at = due_at
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).split(b"\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        status = int(head[0].split()[1])
        self.load.answered(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.lost(self)


class OpenLoop:
    """Requests due every 1/rate seconds, cycling through `paths`, over `connections` connections."""

    def __init__(self, url: str, paths: list[str], rate: float, connections: int, seconds: float,
                 warmup_s: float = 1.0) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        head = f" HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
        self.requests = [b"GET " + path.encode() + head for path in paths]
        self.rate, self.connections, self.seconds, self.warmup_s = rate, connections, seconds, warmup_s
        # free connections, longest idle first: requests go round all of them, as wrk's do (a server
        # of several processes gets each connection's share; reusing the last one freed would
        # send most requests down the few connections of whichever process answers fastest)
        self.free: collections.deque[_Connection] = collections.deque()
        self.waiting: collections.deque[float] = collections.deque()  # due times not yet sent
        self.latencies: list[float] = []
        self.late: list[float] = []  # how long after it was due each request was sent (this generator's share)
        self.sent = self.answered_count = self.non_2xx = self.errors = 0
        self.started = 0.0

    async def run(self) -> dict:
        loop = asyncio.get_running_loop()  # not its clock for latencies: uvloop's moves in whole milliseconds
        for _ in range(self.connections):
            _, conn = await loop.create_connection(lambda: _Connection(self), self.host, self.port)
            self.free.append(conn)
        self.started = time.perf_counter()
        due = 0
        while (now := time.perf_counter()) - self.started < self.seconds:
            while due < int((now - self.started) * self.rate):
                self.waiting.append(self.started + due / self.rate)
                due += 1
            self._dispatch()
            await asyncio.sleep(TICK_S)
        ended = time.perf_counter()
        in_flight = self.connections - len(self.free) - self.errors
        counted = sorted(self.latencies)
        late = sorted(self.late)

        def pct(p: float, values: list[float] = counted) -> float:
            return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000 if values else 0.0

        return {
            "offered_per_s": self.rate, "due": due, "answered": self.answered_count,
            "answered_per_s": round(self.answered_count / (ended - self.started)),
            "counted": len(counted), "p50_ms": round(pct(50), 2), "p90_ms": round(pct(90), 2),
            "p99_ms": round(pct(99), 2), "max_ms": round(counted[-1] * 1000, 1) if counted else 0.0,
            "sent_late_p50_ms": round(pct(50, late), 2), "sent_late_p99_ms": round(pct(99, late), 2),
            "non_2xx": self.non_2xx, "errors": self.errors,
            "not_sent_at_end": len(self.waiting), "in_flight_at_end": in_flight,
        }

    def _dispatch(self) -> None:
        while self.waiting and self.free:
            conn = self.free.popleft()
            self.sent += 1
            due_at = self.waiting.popleft()
            if due_at >= self.started + self.warmup_s:
                self.late.append(time.perf_counter() - due_at)
            conn.send(self.requests[self.sent % len(self.requests)], due_at)

    def answered(self, conn: _Connection, status: int) -> None:
        now = time.perf_counter()
        self.answered_count += 1
        if not 200 <= status < 300:
            self.non_2xx += 1
        if conn.due_at >= self.started + self.warmup_s:
            self.latencies.append(now - conn.due_at)
        self.free.append(conn)
        self._dispatch()

    def lost(self, conn: _Connection) -> None:
        """A connection the server closed: counted as an error, its request unanswered."""
        self.errors += 1
        if conn in self.free:
            self.free.remove(conn)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("paths", help="a file of request paths, one a line")
    parser.add_argument("--rate", type=float, required=True, help="requests a second")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of requests sent but not counted")
    args = parser.parse_args(argv)
    with open(args.paths) as fh:
        paths = [line.strip() for line in fh if line.strip()]
    result = asyncio.run(OpenLoop(args.url, paths, args.rate, args.connections, args.seconds, args.warmup).run())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
