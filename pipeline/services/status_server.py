"""The HTTP endpoint of the processes without an API (the worker, the exchange fetcher), on
HMAS_METRICS_HOST:HMAS_METRICS_PORT: `/metrics` (Prometheus, docs/metrics.md), `/status` (200 once
the process is ready, 503 before: a readiness probe) and `/status/live` (200 while it runs: a
liveness probe). The API serves the same three paths on its own port.
"""

from __future__ import annotations

import logging
import threading
from http.server import ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlparse

from prometheus_client import MetricsHandler

log = logging.getLogger(__name__)


def _handler(ready: Callable[[], bool]) -> type[MetricsHandler]:
    class Handler(MetricsHandler):
        def do_GET(self) -> None:
            path = urlparse(self.path).path
            if path == "/status/live":
                self._answer(200, "I-AM-ALIVE")
            elif path == "/status":
                is_ready = ready()
                self._answer(200 if is_ready else 503, "I-AM-ALIVE" if is_ready else "NOT-READY")
            else:
                super().do_GET()

        def _answer(self, status: int, text: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


class StatusServer:
    """Serves /metrics, /status and /status/live on a daemon thread; `port` 0 serves nothing."""

    def __init__(self, host: str, port: int, ready: Callable[[], bool] = lambda: True) -> None:
        self.host, self.port, self.ready = host, port, ready
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> "StatusServer":
        if self.port > 0:
            try:
                self._server = ThreadingHTTPServer((self.host, self.port), _handler(self.ready))
            except OSError as exc:  # the port is taken: the process still runs; its probes will say so
                log.error("metrics and status not served", extra={"host": self.host, "port": self.port,
                                                                  "reason": str(exc)})
                return self
            self._server.daemon_threads = True
            threading.Thread(target=self._server.serve_forever, name="status-server", daemon=True).start()
            log.info("serving metrics and status", extra={"host": self.host, "port": self.port})
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
