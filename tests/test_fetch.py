"""URL fetching: timeouts, size cap, redirects re-checked, non-public addresses refused."""

import http.server
import socket
import threading
import time

import pytest

from connectors import fetch
from connectors.fetch import FetchError, fetch_url
from pipeline.config import Settings

HOST = "127.0.0.2"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        routes = {
            "/ok": (200, {}, b"x" * 1000),
            "/big-declared": (200, {}, b"x" * 5000),
            "/redirect-ok": (302, {"Location": "/ok"}, b""),
            "/redirect-loopback": (302, {"Location": "http://127.0.0.1:9/secret"}, b""),
            "/redirect-metadata": (301, {"Location": "http://169.254.169.254/latest/meta-data"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
            "/ping": (302, {"Location": "/pong"}, b""),
            "/pong": (307, {"Location": f"http://{self.headers['Host']}/ping"}, b""),
        }
        HOSTS_SEEN.append(self.headers["Host"])
        if self.path.startswith("/trickle"):
            self._trickle(headers_too=self.path == "/trickle-headers")
            return
        if self.path == "/slow":
            time.sleep(3)  # a server slower than the 1 s fetch timeout: what the test is about
        if self.path == "/chunked-big":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(10):
                self.wfile.write(b"400\r\n" + b"y" * 1024 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        status, headers, body = routes.get(self.path, (404, {}, b"nope"))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except BrokenPipeError:
            pass

    def _trickle(self, headers_too: bool) -> None:
        """A byte every 50 ms for up to a minute (of headers, or of a declared 3,000-byte body):
        far past the fetch's deadline unless the client hangs up."""
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        if not headers_too:
            self.wfile.write(b"Content-Length: 3000\r\n\r\n")
        try:
            for _ in range(1200):
                self.wfile.write(b"X" if not headers_too else b"x-a: b\r\n"[:1])
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    def log_message(self, *args):
        pass


HOSTS_SEEN: list[str] = []


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://{HOST}:{srv.server_address[1]}"
    srv.shutdown()


ALLOW = Settings(fetch_allow_hosts=(HOST,), fetch_timeout_s=1.0, fetch_max_bytes=4096)


def fails(url, settings=ALLOW) -> str:
    with pytest.raises(FetchError) as info:
        fetch_url(url, settings)
    return str(info.value)


def test_fetches_and_follows_checked_redirects(server):
    assert fetch_url(f"{server}/ok", ALLOW) == b"x" * 1000
    assert fetch_url(f"{server}/redirect-ok", ALLOW) == b"x" * 1000


def test_http_errors_timeouts_and_size_cap(server):
    assert "HTTP 404" in fails(f"{server}/missing")
    assert "timed out" in fails(f"{server}/slow")
    assert "size cap" in fails(f"{server}/big-declared")
    assert "size cap" in fails(f"{server}/chunked-big")
    assert "redirects" in fails(f"{server}/loop")
    assert "redirects" in fails(f"{server}/ping")  # a loop of two, one of them absolute


@pytest.mark.parametrize("path", ["/trickle-headers", "/trickle-body"])
def test_a_server_answering_a_byte_at_a_time_is_cut_at_the_deadline(server, path):
    """Each byte comes well within the socket timeout; only the fetch's one deadline ends it."""
    assert "timed out after 1s" in fails(server + path)


def test_the_address_connected_to_is_the_one_checked(server, monkeypatch):
    """DNS rebinding: a resolver that answers an allowed address first and a refused one after.
    The fetch resolves once and connects to what it checked."""
    real = socket.getaddrinfo
    answers = []

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        answers.append(HOST if not answers else "127.0.0.1")
        return real(answers[-1], port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    port = server.rsplit(":", 1)[1]
    HOSTS_SEEN.clear()
    assert fetch_url(f"http://rebind.test:{port}/ok", ALLOW) == b"x" * 1000
    assert answers == [HOST] and HOSTS_SEEN == [f"rebind.test:{port}"]
    # a redirect is a new hop: resolved again, and this time refused
    assert "rebind.test resolves to 127.0.0.1, a loopback address" in fails(f"http://rebind.test:{port}/redirect-ok")


def test_the_peer_of_the_connection_is_checked():
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        with pytest.raises(FetchError, match="connected to 127.0.0.1, a loopback address"):
            fetch._connect_checked("example.org", "127.0.0.1", listener.getsockname()[1], 1.0, Settings())
    finally:
        listener.close()


def test_redirects_to_refused_addresses_are_refused(server):
    assert "127.0.0.1, a loopback address" in fails(f"{server}/redirect-loopback")
    assert "169.254.169.254, a link-local address" in fails(f"{server}/redirect-metadata")


@pytest.mark.parametrize("url, kind", [
    ("http://127.0.0.1/", "loopback"), ("http://10.0.0.1/", "private"), ("http://192.168.1.1/", "private"),
    ("http://169.254.169.254/latest/meta-data", "link-local"), ("http://[::1]/", "loopback"),
    ("http://0.0.0.0/", "unspecified"), ("http://[::ffff:127.0.0.1]/", "loopback"), ("http://224.0.0.1/", "multicast"),
])
def test_non_public_addresses_are_refused_without_an_allow_list(url, kind):
    assert f"a {kind} address" in fails(url, Settings())


@pytest.mark.parametrize("url, reason", [
    ("file:///etc/passwd", "scheme 'file'"), ("ftp://example.org/x", "scheme 'ftp'"),
    ("gopher://example.org/", "scheme 'gopher'"), ("http://", "no host"), ("http://[::1/", "malformed"),
    ("not a url", "scheme"),
])
def test_bad_urls(url, reason):
    assert reason in fails(url, Settings())
