"""The guarded fetcher against a real aiohttp server on 127.0.0.1.

Made-up names (``*.example.test``) resolve through a stub that records every
lookup and fails the test on any name it does not know, so nothing here asks
real DNS. To reach the loopback server at all, most tests use
:class:`TrustLoopback`, a policy that allows exactly 127.0.0.1 on top of the
production rules; ``test_loopback_is_refused_without_the_test_hook`` shows the
production policy refuses it. An autouse guard records every outgoing
``connect`` and fails the test if one is not loopback.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import http.server
import ipaddress
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from urllib.parse import quote

import aiohttp
import cv2
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from pictrace.adapters.fetch import (
    FetchBudget,
    FetchPolicy,
    fetch,
    fetch_many,
    fetch_sync,
    harvest_images,
    open_session,
    sniff_kind,
)
from pictrace.catalog import sources
from pictrace.config import Config
from pictrace.errors import BlockedURL, BudgetExceeded, FetchError, PayloadTooLarge

HOST = "images.example.test"
IMAGE = cv2.imencode(
    ".png", np.random.default_rng(3).integers(0, 255, (40, 60, 3), dtype=np.uint8)
)[1].tobytes()
PAGE = b'<!doctype html><html><head><meta property="og:image" content="/image"></head></html>'


class TrustLoopback(FetchPolicy):
    """Production rules, except that 127.0.0.1 (the test server) is allowed."""

    def check_address(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        if ip != IPv4Address("127.0.0.1"):
            super().check_address(ip)


class UnknownName(AssertionError):
    """A test tried to resolve a name its stub does not define."""


@dataclass
class StubResolver:
    """``resolve(host, port)`` from a fixed table; records every call."""

    table: dict[str, list[str]]
    calls: list[tuple[str, int]] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.table:
            raise UnknownName(f"stub resolver has no entry for {host!r}")
        return self.table[host]


@dataclass
class Connects:
    """Outgoing connect() calls seen during a test."""

    attempts: list[tuple[str, int]] = field(default_factory=list)
    forbidden: list[tuple[str, int]] = field(default_factory=list)


@pytest.fixture(autouse=True)
def connects(monkeypatch: pytest.MonkeyPatch) -> Iterator[Connects]:
    """Let sockets connect only to loopback and forbid real name lookups."""
    seen = Connects()
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def guarded_connect(sock: socket.socket, address: tuple) -> None:
        seen.attempts.append(address[:2])
        if not ipaddress.ip_address(address[0]).is_loopback:
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
    assert seen.forbidden == []


@dataclass
class Origin:
    """What the test server saw, and an event that lets hanging handlers finish."""

    hits: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    def url(self, path: str, host: str = HOST) -> str:
        return f"http://{host}:{self.port}{path}"


def _app(origin: Origin) -> web.Application:
    @web.middleware
    async def record(request: web.Request, handler):  # type: ignore[no-untyped-def]
        origin.hits.append(request.path_qs)
        origin.hosts.append(request.host)
        return await handler(request)

    async def hang() -> None:
        await asyncio.wait_for(origin.release.wait(), 30)

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=IMAGE, content_type="text/html")  # deliberately wrong

    async def page(request: web.Request) -> web.Response:
        return web.Response(body=PAGE, content_type="image/jpeg")  # deliberately wrong

    async def redirect(request: web.Request) -> web.Response:
        left = int(request.match_info["left"])
        if left == 0:
            return await image(request)
        raise web.HTTPFound(f"/redirect/{left - 1}")

    async def to(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["location"])

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="nope")

    async def declared(request: web.Request) -> web.StreamResponse:
        # Announces a large body, sends a little, then stalls: only a client
        # that trusts the header up front fails with PayloadTooLarge.
        response = web.StreamResponse(headers={"Content-Length": request.match_info["size"]})
        await response.prepare(request)
        await response.write(b"x" * 1024)
        await hang()
        return response

    async def stream(request: web.Request) -> web.StreamResponse:
        # Chunked, no length; with ?hang the body never ends, so only a client
        # that stops at its cap fails with PayloadTooLarge instead of timing out.
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        remaining = int(request.match_info["size"])
        while remaining:
            piece = min(remaining, 8192)
            await response.write(b"y" * piece)
            remaining -= piece
        if "hang" in request.query:
            await hang()
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        await response.write(IMAGE[:100])
        await hang()
        return response

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            while not origin.release.is_set():
                await response.write(b"z")
                await asyncio.sleep(0.02)
        except ConnectionError:
            pass
        return response

    async def compressed(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(IMAGE), headers={"Content-Encoding": "gzip"})

    app = web.Application(middlewares=[record])
    app.add_routes(
        [
            web.get("/image", image),
            web.get("/page", page),
            web.get("/redirect/{left:\\d+}", redirect),
            web.get("/to", to),
            web.get("/status/{code:\\d+}", status),
            web.get("/declared/{size:\\d+}", declared),
            web.get("/stream/{size:\\d+}", stream),
            web.get("/slow", slow),
            web.get("/drip", drip),
            web.get("/gzip", compressed),
            web.get("/secret", image),
        ]
    )
    return app


@asynccontextmanager
async def serve() -> AsyncIterator[Origin]:
    origin = Origin()
    server = TestServer(_app(origin), host="127.0.0.1")
    await server.start_server()
    origin.port = server.port
    try:
        yield origin
    finally:
        origin.release.set()
        await server.close()


def stub_for(*names: str, address: str = "127.0.0.1") -> StubResolver:
    return StubResolver({name: [address] for name in (HOST, *names)})


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


# --- the allowed path ----------------------------------------------------------


def test_fetch_connects_to_the_checked_address_and_keeps_the_host_name(connects: Connects) -> None:
    async def scenario() -> None:
        async with serve() as origin:
            stub = stub_for()
            fetched = await fetch(origin.url("/image"), TrustLoopback(), resolve=stub)
            assert fetched.body == IMAGE
            assert fetched.status == 200
            assert fetched.url == origin.url("/image")
            assert stub.calls == [(HOST, origin.port)]
            assert connects.attempts == [("127.0.0.1", origin.port)]
            assert origin.hosts == [f"{HOST}:{origin.port}"]

    run(scenario())


def test_sniffing_ignores_a_lying_content_type() -> None:
    async def scenario() -> None:
        async with serve() as origin:
            policy, stub = TrustLoopback(), stub_for()
            image = await fetch(origin.url("/image"), policy, resolve=stub)
            page = await fetch(origin.url("/page"), policy, resolve=stub)
            assert (image.content_type, sniff_kind(image.body)) == ("text/html", "image")
            assert (page.content_type, sniff_kind(page.body)) == ("image/jpeg", "html")
            assert harvest_images(page.body, page.url) == [origin.url("/image")]

    run(scenario())


def test_only_allowed_addresses_of_a_name_are_connected_to(connects: Connects) -> None:
    async def scenario() -> None:
        async with serve() as origin:
            stub = StubResolver({HOST: ["10.0.0.1", "169.254.169.254", "127.0.0.1"]})
            fetched = await fetch(origin.url("/image"), TrustLoopback(), resolve=stub)
            assert fetched.body == IMAGE
            assert connects.attempts == [("127.0.0.1", origin.port)]

    run(scenario())


def test_three_redirects_are_followed() -> None:
    async def scenario() -> None:
        async with serve() as origin:
            fetched = await fetch(origin.url("/redirect/3"), TrustLoopback(), resolve=stub_for())
            assert fetched.url == origin.url("/redirect/0")
            assert fetched.body == IMAGE
            assert origin.hits == ["/redirect/3", "/redirect/2", "/redirect/1", "/redirect/0"]

    run(scenario())


def test_a_session_from_open_session_is_reused() -> None:
    async def scenario() -> None:
        async with serve() as origin:
            policy = TrustLoopback()
            async with open_session(policy, stub_for()) as session:
                first = await fetch(origin.url("/image"), policy, session=session)
                second = await fetch(origin.url("/page"), policy, session=session)
            assert (first.body, second.body) == (IMAGE, PAGE)

    run(scenario())


# --- refusals ------------------------------------------------------------------


def test_loopback_is_refused_without_the_test_hook(connects: Connects) -> None:
    async def scenario() -> None:
        async with serve() as origin:
            stub = stub_for()
            with pytest.raises(BlockedURL, match="loopback"):
                await fetch(origin.url("/image"), FetchPolicy(), resolve=stub)
            # The name was looked up once, then refused before any connection.
            assert stub.calls == [(HOST, origin.port)]
            assert connects.attempts == []
            assert origin.hits == []

    run(scenario())


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "2130706433", "0177.0.0.1", "0x7f.1", "127.1", "[::ffff:127.0.0.1]", "[::1]",
     "localhost", "localhost.", "LOCALHOST"],
)
def test_loopback_spellings_are_refused_without_lookup_or_connection(
    host: str, connects: Connects
) -> None:
    async def scenario() -> None:
        async with serve() as origin:
            stub = stub_for()
            with pytest.raises(BlockedURL):
                await fetch(origin.url("/image", host=host), FetchPolicy(), resolve=stub)
            assert stub.calls == []
            assert connects.attempts == []
            assert origin.hits == []

    run(scenario())


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "gopher://images.example.test/_x", "ftp://images.example.test/a.png",
     "data:image/png;base64,iVBORw0KGgo=", "http://user:secret@images.example.test/a.png"],
)
def test_other_schemes_and_credentials_are_refused(url: str, connects: Connects) -> None:
    stub = stub_for()
    with pytest.raises(BlockedURL):
        run(fetch(url, TrustLoopback(), resolve=stub))
    assert stub.calls == [] and connects.attempts == []


@pytest.mark.parametrize(
    "target, stub_address",
    [
        ("http://metadata.example.test/latest/meta-data/", "169.254.169.254"),
        ("http://internal.example.test:{port}/secret", "10.0.0.1"),
        ("http://internal.example.test:{port}/secret", "100.64.1.1"),
        ("http://internal.example.test:{port}/secret", "::ffff:10.0.0.1"),
        ("http://10.0.0.1/secret", None),
        ("http://169.254.169.254/latest/meta-data/", None),
        ("http://2852039166/", None),
        ("http://[::ffff:169.254.169.254]/", None),
        ("http://[64:ff9b::a00:1]/", None),
        ("http://[2002:a9fe:a9fe::]/", None),
        ("file:///etc/passwd", None),
        ("http://user:pw@images.example.test:{port}/secret", None),
    ],
)
def test_redirect_to_a_refused_target_is_refused_before_connecting(
    target: str, stub_address: str | None, connects: Connects
) -> None:
    async def scenario() -> None:
        async with serve() as origin:
            location = target.format(port=origin.port)
            names = {HOST: ["127.0.0.1"]}
            if stub_address is not None:
                names[URL(location).host] = [stub_address]
            stub = StubResolver(names)
            start = f"/to?location={quote(location, safe='')}"
            with pytest.raises(BlockedURL, match="redirect|refused"):
                await fetch(origin.url(start), TrustLoopback(), resolve=stub)
            assert len(origin.hits) == 1 and origin.hits[0].startswith("/to?")
            assert connects.attempts == [("127.0.0.1", origin.port)]
            expected_lookups = 2 if stub_address is not None else 1
            assert len(stub.calls) == expected_lookups

    run(scenario())


def test_more_than_three_redirects_fail(connects: Connects) -> None:
    async def scenario() -> None:
        async with serve() as origin:
            with pytest.raises(FetchError, match="more than 3 redirects") as raised:
                await fetch(origin.url("/redirect/4"), TrustLoopback(), resolve=stub_for())
            assert not isinstance(raised.value, BlockedURL)
            assert origin.hits == ["/redirect/4", "/redirect/3", "/redirect/2", "/redirect/1"]

    run(scenario())


def test_max_redirects_zero_refuses_any_redirect() -> None:
    async def scenario() -> None:
        async with serve() as origin:
            with pytest.raises(FetchError, match="more than 0 redirects"):
                policy = TrustLoopback(max_redirects=0)
                await fetch(origin.url("/redirect/1"), policy, resolve=stub_for())

    run(scenario())


# --- sizes, timeouts, statuses --------------------------------------------------


def test_declared_content_length_over_the_cap_is_refused_up_front() -> None:
    async def scenario() -> None:
        async with serve() as origin:
            policy = TrustLoopback(max_bytes=64 * 1024, read_timeout=5, total_timeout=10)
            with pytest.raises(PayloadTooLarge, match=str(10 * 2**20)):
                await fetch(origin.url(f"/declared/{10 * 2**20}"), policy, resolve=stub_for())

    run(scenario())


def test_streamed_body_stops_as_soon_as_it_crosses_the_cap() -> None:
    async def scenario() -> None:
        async with serve() as origin:
            policy = TrustLoopback(max_bytes=64 * 1024, read_timeout=5, total_timeout=10)
            with pytest.raises(PayloadTooLarge):
                await fetch(origin.url(f"/stream/{100 * 1024}?hang"), policy, resolve=stub_for())

    run(scenario())


def test_a_body_exactly_at_the_cap_is_accepted() -> None:
    async def scenario() -> None:
        async with serve() as origin:
            policy = TrustLoopback(max_bytes=64 * 1024)
            fetched = await fetch(origin.url(f"/stream/{64 * 1024}"), policy, resolve=stub_for())
            assert fetched.body == b"y" * (64 * 1024)
            with pytest.raises(PayloadTooLarge):
                await fetch(origin.url(f"/stream/{64 * 1024 + 1}"), policy, resolve=stub_for())

    run(scenario())


def test_a_stalled_server_hits_the_read_timeout() -> None:
    async def scenario() -> None:
        async with serve() as origin:
            policy = TrustLoopback(read_timeout=0.3, total_timeout=30)
            with pytest.raises(FetchError, match="timed out") as raised:
                await fetch(origin.url("/slow"), policy, resolve=stub_for())
            assert type(raised.value) is FetchError

    run(scenario())


def test_a_dripping_server_hits_the_total_timeout() -> None:
    async def scenario() -> None:
        async with serve() as origin:
            policy = TrustLoopback(read_timeout=10, total_timeout=0.5)
            with pytest.raises(FetchError, match="longer than 0.5s"):
                await fetch(origin.url("/drip"), policy, resolve=stub_for())

    run(scenario())


@pytest.mark.parametrize("code", [404, 410, 500, 503])
def test_http_errors_carry_their_status(code: int) -> None:
    async def scenario() -> None:
        async with serve() as origin:
            with pytest.raises(FetchError, match=f"HTTP {code}") as raised:
                await fetch(origin.url(f"/status/{code}"), TrustLoopback(), resolve=stub_for())
            assert raised.value.details["status"] == code
            assert raised.value.status == 502

    run(scenario())


def test_compressed_responses_are_refused() -> None:
    async def scenario() -> None:
        async with serve() as origin:
            with pytest.raises(FetchError, match="gzip"):
                await fetch(origin.url("/gzip"), TrustLoopback(), resolve=stub_for())

    run(scenario())


def test_connection_refused_is_a_fetch_error() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(FetchError, match="could not fetch"):
        run(fetch(f"http://{HOST}:{port}/x", TrustLoopback(), resolve=stub_for()))


def test_a_name_that_does_not_resolve_is_a_fetch_error(connects: Connects) -> None:
    def nxdomain(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(FetchError, match="could not resolve") as raised:
        run(fetch("http://nowhere.example.test/x", TrustLoopback(), resolve=nxdomain))
    assert not isinstance(raised.value, BlockedURL)
    assert connects.attempts == []


def test_foreign_sessions_are_rejected() -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as plain:
            with pytest.raises(ValueError, match="open_session"):
                await fetch(f"http://{HOST}/x", FetchPolicy(), session=plain)
        async with open_session(FetchPolicy(), stub_for()) as guarded:
            with pytest.raises(ValueError, match="same policy"):
                await fetch(f"http://{HOST}/x", TrustLoopback(), session=guarded)

    run(scenario())


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for HOST that no trust store knows."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_sends_the_host_name_for_sni_and_verifies_the_certificate(
    tmp_path: Path, connects: Connects
) -> None:
    server_names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*_self_signed(tmp_path))
    context.sni_callback = lambda _socket, name, _context: server_names.append(name)

    async def scenario() -> None:
        server = await asyncio.start_server(
            lambda _reader, writer: writer.close(), "127.0.0.1", 0, ssl=context
        )
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(FetchError, match="(?i)certificate"):
                await fetch(f"https://{HOST}:{port}/a.png", TrustLoopback(), resolve=stub_for())
        finally:
            server.close()
            await server.wait_closed()
        assert connects.attempts == [("127.0.0.1", port)]

    run(scenario())
    assert server_names == [HOST]


# --- many and sync ---------------------------------------------------------------


def test_fetch_many_returns_results_and_errors_in_order() -> None:
    async def scenario() -> None:
        async with serve() as origin:
            urls = [
                origin.url("/image"),
                origin.url("/status/404"),
                "http://169.254.169.254/latest/meta-data/",
                origin.url(f"/stream/{200 * 1024}"),
                origin.url("/page"),
            ]
            policy = TrustLoopback(max_bytes=100 * 1024)
            results = await fetch_many(urls, policy, concurrency=2, resolve=stub_for())
            assert [type(r).__name__ for r in results] == [
                "Fetched", "FetchError", "BlockedURL", "PayloadTooLarge", "Fetched"
            ]
            assert results[0].body == IMAGE and results[4].body == PAGE
            assert "404" in results[1].message

    run(scenario())


def test_fetch_many_needs_positive_concurrency() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        run(fetch_many([f"http://{HOST}/a.png"], TrustLoopback(), concurrency=0, resolve=stub_for()))


@contextmanager
def threaded_origin() -> Iterator[int]:
    """A stdlib HTTP server on 127.0.0.1 in a thread, for code that runs its own loop."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(IMAGE)))
            self.end_headers()
            self.wfile.write(IMAGE)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_sync_runs_its_own_loop() -> None:
    with threaded_origin() as port:
        fetched = fetch_sync(f"http://{HOST}:{port}/a.png", TrustLoopback(), resolve=stub_for())
        assert fetched.body == IMAGE and fetched.content_type is None
        with pytest.raises(BlockedURL):
            fetch_sync(f"http://{HOST}:{port}/a.png", resolve=stub_for())


# --- one request's budget ----------------------------------------------------------


def test_a_budget_bounds_the_bytes_all_fetches_hold_together() -> None:
    async def scenario() -> None:
        async with serve() as origin:
            budget = FetchBudget(max_bytes=100 * 1024, max_images=10, seconds=30)
            urls = [origin.url(f"/stream/{40 * 1024}")] * 3
            # One at a time, so which fetch meets the cap is fixed.
            results = await fetch_many(urls, TrustLoopback(), concurrency=1, resolve=stub_for(), budget=budget)
            assert [type(r).__name__ for r in results] == ["Fetched", "Fetched", "BudgetExceeded"]
            assert results[2].details["limit"] == "request_bytes"
            # The cut-off fetch gave back what it had read; the kept bodies stay charged.
            assert budget.held == 80 * 1024
            budget.refund(40 * 1024)
            again = await fetch(urls[0], TrustLoopback(), resolve=stub_for(), budget=budget)
            assert len(again.body) == 40 * 1024 and budget.held == 80 * 1024

    run(scenario())


def test_no_fetch_starts_after_the_budget_deadline(connects: Connects) -> None:
    async def scenario() -> None:
        async with serve() as origin:
            budget = FetchBudget(max_bytes=2**20, max_images=10, seconds=0)
            results = await fetch_many([origin.url("/image")] * 3, TrustLoopback(), resolve=stub_for(), budget=budget)
            assert [r.details["limit"] for r in results] == ["request_time"] * 3
            assert origin.hits == [] and connects.attempts == []

    run(scenario())


def test_a_fetch_still_running_at_the_budget_deadline_is_cut_off() -> None:
    async def scenario() -> None:
        async with serve() as origin:
            budget = FetchBudget(max_bytes=2**20, max_images=10, seconds=0.3)
            policy = TrustLoopback(read_timeout=30, total_timeout=30)  # only the budget can end it
            with pytest.raises(BudgetExceeded) as raised:
                await fetch(origin.url("/slow"), policy, resolve=stub_for(), budget=budget)
            assert raised.value.details["limit"] == "request_time"
            assert budget.held == 0

    run(scenario())


# --- a request's images, through pictrace.catalog.sources --------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_png(seed: str, size: int) -> bytes:
    """Bytes that sniff as a PNG, distinct per ``seed`` (nothing here decodes them)."""
    head = PNG_MAGIC + seed.encode() + b"\0"
    return head + b"p" * (size - len(head))


@dataclass
class SiteServer:
    """A threaded web site for code that runs its own event loop; ``hits`` lists paths."""

    port: int = 0
    hits: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"


def gallery(first: int, count: int, extra: str = "") -> bytes:
    """A page of ``count`` images ``/img/<n>`` from ``first``, plus ``extra`` markup."""
    imgs = "".join(f'<img src="/img/{n}">' for n in range(first, first + count))
    return f"<!doctype html><html><body>{extra}{imgs}</body></html>".encode()


@contextmanager
def site() -> Iterator[SiteServer]:
    """/img/<n>[?size=] distinct images, /same/<name> one image under many names,
    /gallery/<first>/<count> pages (each also showing /logo), /hang never answers."""
    state = SiteServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            state.hits.append(self.path)
            path, _, query = self.path.partition("?")
            parts = path.strip("/").split("/")
            size = int(query.removeprefix("size=")) if query.startswith("size=") else 2048
            if parts[0] == "img":
                return self._send(fake_png(parts[1], size))
            if parts[0] in ("same", "logo"):
                return self._send(fake_png("same", 2048))
            if parts[0] == "gallery":
                return self._send(gallery(int(parts[1]), int(parts[2]), '<img src="/logo">'))
            if parts[0] == "hang":
                state.release.wait(30)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _send(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    # A short poll keeps shutdown() from waiting half a second.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Route pictrace.catalog.sources through the stub resolver and the loopback-trusting policy."""
    monkeypatch.setattr(sources, "RESOLVE", stub_for())
    monkeypatch.setattr(sources, "POLICY", TrustLoopback)


def kinds(taken: list) -> list[str]:
    return [type(t).__name__ for t in taken]


def test_a_request_takes_at_most_its_image_budget_and_lists_the_rest(trusted: None) -> None:
    config = Config(max_request_images=25, max_page_images=50)
    with site() as web:
        pages = [web.url(f"/gallery/{first}/10") for first in (0, 100, 200)]
        taken = sources.all_images([web.url("/img/x"), *pages], config)
    kept = [t for t in taken if isinstance(t, sources.Source)]
    skipped = [t for t in taken if isinstance(t, sources.Skipped)]
    # 1 image URL + 3 pages of 10 images and the shared logo = 32 images; 25 are taken.
    assert len(kept) == 25 and len(skipped) == 32 - 25
    assert {s.reason for s in skipped} == {"request_images"}
    # Pages are served in order: the first pages' images come first, the last page's tail is skipped.
    assert [s.url for s in skipped] == [web.url(f"/img/{n}") for n in range(203, 210)]
    # Skipped images were never fetched; the logo all three pages show was fetched once.
    fetched = [h for h in web.hits if h.startswith("/img/") or h == "/logo"]
    assert len(fetched) == 25 and web.hits.count("/logo") == 1
    assert all(web.url(f"/img/{n}")[len(web.url("")):] not in web.hits for n in range(203, 210))


def test_identical_bytes_are_taken_once_and_named_as_duplicates(trusted: None) -> None:
    with site() as web:
        urls = [web.url("/same/a"), web.url("/img/1"), web.url("/same/b"), web.url("/same/c")]
        taken = sources.all_images(urls, Config())
    assert kinds(taken) == ["Source", "Source", "Skipped", "Skipped"]
    assert [t.to_dict() for t in taken[2:]] == [
        {"url": u, "reason": "duplicate", "message": f"the same bytes as {urls[0]}", "same_as": urls[0]}
        for u in urls[2:]
    ]


def test_the_bytes_a_request_holds_are_bounded(trusted: None) -> None:
    config = Config(max_request_fetch_bytes=100 * 1024)
    with site() as web:
        urls = [web.url(f"/img/{n}?size={30 * 1024}") for n in range(5)]
        taken = sources.all_images(urls, config)
    kept = [t for t in taken if isinstance(t, sources.Source)]
    skipped = [t for t in taken if isinstance(t, sources.Skipped)]
    # Whichever arrive first, three 30 KiB bodies fit in 100 KiB and a fourth never does.
    assert len(kept) == 3 and len(skipped) == 2
    assert {s.reason for s in skipped} == {"request_bytes"}
    assert sum(len(k.data) for k in kept) <= 100 * 1024


def test_a_page_is_dropped_once_read_so_its_bytes_do_not_count(trusted: None) -> None:
    page_size = len(gallery(0, 3, '<img src="/logo">'))
    image = 2048
    # Room for the page, or for its four images, never for both at once.
    config = Config(max_request_fetch_bytes=max(page_size, 4 * image) + 100)
    assert page_size + 4 * image > config.max_request_fetch_bytes
    with site() as web:
        taken = sources.all_images([web.url("/gallery/0/3")], config)
    assert kinds(taken) == ["Source"] * 4


def test_fetches_still_running_when_the_request_time_ends_are_skipped(trusted: None) -> None:
    config = Config(max_request_fetch_seconds=0.3, fetch_read_timeout=30, fetch_total_timeout=30)
    with site() as web:
        taken = sources.all_images([web.url("/img/1"), web.url("/hang")], config)
    assert kinds(taken) == ["Source", "Skipped"]
    assert taken[1].reason == "request_time" and taken[1].url.endswith("/hang")


def test_one_image_shares_one_budget_between_the_page_and_its_image(trusted: None) -> None:
    config = Config(max_request_fetch_seconds=0.3, fetch_read_timeout=30, fetch_total_timeout=30)
    with site() as web:
        with pytest.raises(FetchError, match="longer than the request's 0.3 s") as raised:
            sources.one_image(web.url("/hang"), config)
    # A slow remote is the upstream's failure, as any timeout is.
    assert type(raised.value) is FetchError and raised.value.status == 502
