"""Keeping tests on loopback: a connect guard, stub DNS and a trusted origin server.

The guard records every ``connect`` made in this process (the local API runs
in this process, on threads) and refuses any that is not loopback; name
lookups must be numeric.  URLs with made-up names (``*.example.test``)
resolve through :class:`StubResolver`, installed in
``pictrace.catalog.sources``.  The one server the API may fetch from listens
on 127.0.0.2, an address no refused case uses, and :class:`TrustOrigin` lifts
exactly that address on top of the production rules.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address, IPv6Address
from urllib.parse import parse_qs, urlsplit

import pytest

from pictrace.adapters.fetch import FetchPolicy
from tests.hostile.corpus import cut, photo, png

ORIGIN_ADDRESS = "127.0.0.2"
ORIGIN_HOST = "images.example.test"
UNICODE_HOST = "bücher.example.test"
# What the stub resolver answers; any other name fails the request loudly.
DNS = {
    ORIGIN_HOST: [ORIGIN_ADDRESS],
    "xn--bcher-kva.example.test": [ORIGIN_ADDRESS],
    "internal.example.test": ["10.1.2.3"],
    "metadata.example.test": ["169.254.169.254"],
    "mixed.example.test": ["10.0.0.7", "fd00::7"],
    "loopback.example.test": ["127.0.0.1"],
}
ORIGIN_IMAGE = png(photo("coffee", 120, 90))


class TrustOrigin(FetchPolicy):
    """Production rules, except that the test origin's address is allowed."""

    def check_address(self, ip: IPv4Address | IPv6Address) -> None:
        if ip != IPv4Address(ORIGIN_ADDRESS):
            super().check_address(ip)


@dataclass
class StubResolver:
    """``resolve(host, port)`` from :data:`DNS`; records every name asked for."""

    table: dict[str, list[str]] = field(default_factory=lambda: dict(DNS))
    calls: list[str] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.table:
            raise AssertionError(f"stub resolver asked for unknown name {host!r}")
        return self.table[host]


@dataclass
class Connects:
    """Outgoing connections seen while the guard was on."""

    attempts: list[tuple] = field(default_factory=list)
    forbidden: list[tuple] = field(default_factory=list)


@contextmanager
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[Connects]:
    """Refuse every non-loopback connect and every non-numeric lookup in this process."""
    seen = Connects()
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo
    lock = threading.Lock()

    def guarded_connect(sock: socket.socket, address) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            with lock:
                seen.attempts.append(address[:2])
            if not ipaddress.ip_address(address[0]).is_loopback:
                with lock:
                    seen.forbidden.append(address[:2])
                raise PermissionError(f"test tried to connect to {address}")
        return real_connect(sock, address)

    def numeric_getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
        if host is not None:
            ipaddress.ip_address(host if isinstance(host, str) else host.decode())
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", numeric_getaddrinfo)
    yield seen


@dataclass
class Origin:
    """A web server on 127.0.0.2 that the API may fetch from; ``hits`` lists request paths."""

    port: int
    hits: list[str] = field(default_factory=list)

    def url(self, path: str, host: str = ORIGIN_HOST) -> str:
        return f"http://{host}:{self.port}{path}"


# path -> (status, Content-Type, body); any other *.png path is ORIGIN_IMAGE.
PAGES: dict[str, tuple[int, str, bytes]] = {
    "/corrupt.png": (200, "image/png", cut(ORIGIN_IMAGE, 0.5)),
    "/notes.txt": (200, "text/plain", b"just some text, not an image"),
    "/drawing.svg": (200, "image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"></svg>'),
    "/empty-page": (200, "text/html", b"<!doctype html><html><body><p>no pictures</p></body></html>"),
    "/huge-page": (200, "text/html", b"<!doctype html><html><body>" + b"<p>padding</p>" * 200_000),
    "/gone": (404, "text/plain", b"not here"),
}


def _handler(origin: Origin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            origin.hits.append(self.path)
            parts = urlsplit(self.path)
            if parts.path == "/redirect":
                target = parse_qs(parts.query)["to"][0]
                return self._send(302, "text/plain", b"moved", {"Location": target})
            if parts.path.endswith(".png") and parts.path not in PAGES:
                return self._send(200, "image/png", ORIGIN_IMAGE)
            self._send(*PAGES.get(parts.path, (404, "text/plain", b"no such page")))

        def _send(self, status: int, ctype: str, body: bytes, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def serve_origin() -> Iterator[Origin]:
    """Run the origin server on 127.0.0.2 (any free port) until the block ends."""
    origin = Origin(port=0)
    server = ThreadingHTTPServer((ORIGIN_ADDRESS, 0), _handler(origin))
    server.daemon_threads = True
    origin.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield origin
    finally:
        server.shutdown()
        server.server_close()
