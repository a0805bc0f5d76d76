"""Fetching upload content by URL, safely: the hasher follows links that users control.

- http and https only; every redirect hop is checked again (at most `fetch_max_redirects`);
- the host name is resolved once and the connection goes to the checked address (no second DNS
  answer between check and connect: DNS rebinding), with the original Host header and TLS server
  name; the peer address of the connection made is checked again;
- loopback, private, link-local (cloud metadata), multicast, reserved and other non-public
  addresses are refused unless the host or a CIDR holding the address is in `fetch_allow_hosts`;
- one deadline (`fetch_timeout_s`) covers connecting, the headers and the whole body: a watchdog
  shuts the socket when it passes, so a server answering a byte at a time cannot hold a fetch;
- bodies larger than `fetch_max_bytes` are refused, by Content-Length or while reading.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from urllib.parse import urljoin, urlsplit

from pipeline.config import Settings

CHUNK = 64 * 1024
REDIRECTS = {301, 302, 303, 307, 308}
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchError(ValueError):
    """Content that could not be fetched; the message says why, `reason` names the kind (a metric
    label: dns, refused_address, redirect, bad_url, http_status, too_large, timeout, connection,
    other)."""

    def __init__(self, message: str, reason: str = "other") -> None:
        super().__init__(message)
        self.reason = reason


def _kind_of(ip: Address) -> str | None:
    """Why an address is refused, or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _kind_of(ip.ipv4_mapped)
    for attr, kind in (("is_loopback", "loopback"), ("is_link_local", "link-local"), ("is_multicast", "multicast"),
                       ("is_unspecified", "unspecified"), ("is_private", "private"), ("is_reserved", "reserved")):
        if getattr(ip, attr):
            return kind
    return None if ip.is_global else "non-public"


def _allowed(host: str, ip: Address, allow: tuple[str, ...]) -> bool:
    for entry in allow:
        if entry.lower() == host.lower():
            return True
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def _check(host: str, address: str, settings: Settings, what: str) -> None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    kind = _kind_of(ip)
    if kind is not None and not _allowed(host, ip, settings.fetch_allow_hosts):
        raise FetchError(f"refused: {host} {what} {ip}, a {kind} address", "refused_address")


def resolve_checked(host: str, port: int, settings: Settings) -> str:
    """The address to connect to, after the private-address guard (every address of the answer)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve host {host!r}: {exc.strerror}", "dns") from None
    for *_, sockaddr in infos:
        _check(host, sockaddr[0], settings, "resolves to")
    return infos[0][4][0]


def _connect_checked(host: str, address: str, port: int, timeout: float, settings: Settings) -> socket.socket:
    """A connection to the checked address, its peer checked again: the guard holds for the
    address actually connected to, whatever a resolver answers later."""
    sock = socket.create_connection((address, port), timeout)
    try:
        _check(host, sock.getpeername()[0], settings, "connected to")
    except FetchError:
        sock.close()
        raise
    return sock


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float, settings: Settings) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address, self._settings = address, settings

    def connect(self) -> None:
        self.sock = _connect_checked(self.host, self._address, self.port, self.timeout, self._settings)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float, settings: Settings) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address, self._settings = address, settings

    def connect(self) -> None:
        sock = _connect_checked(self.host, self._address, self.port, self.timeout, self._settings)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _Watchdog:
    """Shuts a connection's socket at the deadline: socket timeouts bound each read, not their sum."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float) -> None:
        self.conn = conn
        self.expired = False
        self._timer = threading.Timer(max(0.0, seconds), self._cut)
        self._timer.daemon = True
        self._timer.start()

    def _cut(self) -> None:
        self.expired = True
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


def fetch_url(url: str, settings: Settings) -> bytes:
    deadline = time.monotonic() + settings.fetch_timeout_s
    for _ in range(settings.fetch_max_redirects + 1):
        status, location, body = _fetch_once(url, settings, deadline)
        if status in REDIRECTS:
            if not location:
                raise FetchError(f"HTTP {status} redirect without a Location from {_short(url)}", "redirect")
            url = urljoin(url, location)
            continue
        return body
    raise FetchError(f"more than {settings.fetch_max_redirects} redirects", "redirect")


def _fetch_once(url: str, settings: Settings, deadline: float) -> tuple[int, str | None, bytes]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"malformed URL: {exc}", "bad_url") from None
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"URL scheme {parts.scheme or '(none)'!r} is not allowed; use http or https", "bad_url")
    if not parts.hostname:
        raise FetchError("URL has no host", "bad_url")
    host = parts.hostname
    port = port or (443 if parts.scheme == "https" else 80)
    address = resolve_checked(host, port, settings)
    remaining = deadline - time.monotonic()
    conn_type = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    conn = conn_type(host, port, address, timeout=max(0.1, remaining), settings=settings)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    timed_out = FetchError(f"timed out after {settings.fetch_timeout_s:g}s fetching {_short(url)}", "timeout")
    watchdog = _Watchdog(conn, remaining)
    try:
        conn.request("GET", path, headers={"User-Agent": "hma-streams", "Accept": "*/*"})
        response = conn.getresponse()
        if response.status in REDIRECTS:
            return response.status, response.getheader("Location"), b""
        if not 200 <= response.status < 300:
            raise FetchError(f"HTTP {response.status} {response.reason} from {_short(url)}", "http_status")
        length = response.getheader("Content-Length")
        if length and length.isdigit() and int(length) > settings.fetch_max_bytes:
            raise FetchError(f"content of {length} bytes is over the size cap of {settings.fetch_max_bytes} bytes", "too_large")
        body = _read_capped(response, settings.fetch_max_bytes, deadline, conn)
        if watchdog.expired:  # the body ended because the watchdog cut it
            raise timed_out
        return response.status, None, body
    except (socket.timeout, TimeoutError):
        raise timed_out from None
    except (OSError, http.client.HTTPException) as exc:
        if watchdog.expired:
            raise timed_out from None
        raise FetchError(f"fetching {_short(url)} failed: {exc}", "connection") from None
    finally:
        watchdog.cancel()
        conn.close()


def _read_capped(response: http.client.HTTPResponse, cap: int, deadline: float, conn: http.client.HTTPConnection) -> bytes:
    chunks, size = [], 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if conn.sock is not None:
            conn.sock.settimeout(remaining)
        chunk = response.read1(CHUNK) if hasattr(response, "read1") else response.read(CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > cap:
            raise FetchError(f"content is over the size cap of {cap} bytes", "too_large")
        chunks.append(chunk)


def _short(url: str) -> str:
    """The URL without its query (which may hold tokens), for messages and logs."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
