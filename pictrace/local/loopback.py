"""A threaded HTTP server on a loopback port, the base of the local endpoints.

Besides serving each request on its own thread, it does two things
``http.server`` leaves to its users:

* request bodies are framed strictly (:func:`read_body`): a malformed or
  repeated ``Content-Length``, a ``Transfer-Encoding`` other than
  ``chunked``, or both framings at once are refused, because two parties
  that frame a body differently disagree on where the next request starts;
* :meth:`LoopbackServer.stop` is graceful: it stops accepting, closes idle
  keep-alive connections, lets requests in flight finish (up to ``grace``
  seconds) and only then returns.
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY_METHODS = ("POST", "PUT", "PATCH")


class BadFraming(Exception):
    """A request whose body cannot be delimited; answered with ``status`` and the connection closed."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class TooLarge(Exception):
    """A request body above the caller's limit."""


def read_body(req: BaseHTTPRequestHandler, limit: int) -> bytes:
    """The request's body, framed by ``Content-Length`` or chunked encoding.

    Raises :class:`BadFraming` (400: malformed, repeated or conflicting
    framing; 411: a POST, PUT or PATCH with neither) and :class:`TooLarge`
    above ``limit`` bytes (after reading at most ``limit`` bytes more, so a
    client that sent its body can read the answer).
    """
    lengths = req.headers.get_all("Content-Length") or []
    codings = [c.strip().lower() for v in (req.headers.get_all("Transfer-Encoding") or []) for c in v.split(",")]
    if codings:
        if lengths:
            raise BadFraming(400, "bad_request", "a request cannot have both Content-Length and Transfer-Encoding")
        if codings != ["chunked"]:
            raise BadFraming(400, "bad_request", f"unsupported Transfer-Encoding: {', '.join(codings)}")
        return _read_chunked(req.rfile, limit)
    if len(lengths) > 1:
        raise BadFraming(400, "bad_request", "more than one Content-Length header")
    if not lengths:
        if req.command in BODY_METHODS:
            raise BadFraming(411, "length_required", f"{req.command} needs a Content-Length or a chunked body")
        return b""
    text = lengths[0].strip()
    # int() would take "+5", " 5", "5_0" and "-1"; the header is digits only.
    if not text.isascii() or not text.isdigit():
        raise BadFraming(400, "bad_request", f"Content-Length must be a non-negative integer, not {lengths[0]!r}")
    length = int(text)
    if length > limit:
        _drain(req.rfile, min(length, limit))
        raise TooLarge(length)
    return _read_exactly(req.rfile, length)


def _read_exactly(stream, length: int) -> bytes:
    data = stream.read(length) if length else b""
    if len(data) < length:
        raise BadFraming(400, "bad_request", f"the body ended after {len(data)} of {length} bytes")
    return data


def _read_chunked(stream, limit: int) -> bytes:
    parts, total = [], 0
    while True:
        line = stream.readline(1024)
        if not line.endswith(b"\n"):
            raise BadFraming(400, "bad_request", "a chunk size line is malformed or cut short")
        size_text = line.split(b";", 1)[0].strip()  # chunk extensions are ignored
        try:
            if not size_text or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
                raise ValueError
            size = int(size_text, 16)
        except ValueError:
            raise BadFraming(400, "bad_request", f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            break
        total += size
        if total > limit:
            raise TooLarge(total)
        parts.append(_read_exactly(stream, size))
        if stream.readline(3) not in (b"\r\n", b"\n"):
            raise BadFraming(400, "bad_request", "a chunk is longer than its size says")
    while True:  # trailer fields, then the empty line
        line = stream.readline(8192)
        if line in (b"\r\n", b"\n"):
            return b"".join(parts)
        if not line.endswith(b"\n"):
            raise BadFraming(400, "bad_request", "the chunked body ends without its final empty line")


def _drain(stream, length: int) -> None:
    while length > 0:
        chunk = stream.read(min(length, 1 << 20))
        if not chunk:
            return
        length -= len(chunk)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 overflows when a few dozen clients
    # connect at once, and the kernel then resets the connections it dropped.
    request_queue_size = 128
    draining = False


class LoopbackServer:
    """Serves every request with ``self._handle(request)`` on its own thread."""

    methods: tuple[str, ...] = ("GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH")
    # API Gateway gives up on a request after 29 s; a drain waits a little longer.
    grace: float = 30.0

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        owner = self
        self._conns = threading.Condition()
        self._busy = 0
        self._idle: set[socket.socket] = set()
        self._draining = False

        def setup(request: BaseHTTPRequestHandler) -> None:
            BaseHTTPRequestHandler.setup(request)
            owner._track(request.connection, idle=True)

        def finish(request: BaseHTTPRequestHandler) -> None:
            owner._track(request.connection, idle=False)
            BaseHTTPRequestHandler.finish(request)

        def dispatch(request: BaseHTTPRequestHandler) -> None:
            if not owner._begin(request.connection):
                request.close_connection = True
                return  # arrived while draining: never started, so never answered
            try:
                owner._handle(request)
            finally:
                if owner._end(request.connection):
                    request.close_connection = True

        attrs = {f"do_{m}": dispatch for m in self.methods}
        attrs.update(setup=setup, finish=finish, protocol_version="HTTP/1.1")
        attrs["log_message"] = lambda request, *args: None  # keep test and console output quiet
        handler = type("RequestHandler", (BaseHTTPRequestHandler,), attrs)
        self.server = _Server((host, port), handler)
        # A short poll keeps stop() quick; the loop wakes at once for new connections anyway.
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close idle connections, wait for requests in flight, then close."""
        if self._thread.is_alive():  # shutdown() waits for a loop that was never started
            self.server.shutdown()
        self.server.server_close()
        deadline = time.monotonic() + self.grace
        with self._conns:
            self._draining = self.server.draining = True
            for conn in list(self._idle):
                _hang_up(conn)
            while self._busy and time.monotonic() < deadline:
                self._conns.wait(timeout=max(0.0, deadline - time.monotonic()))

    @property
    def in_flight(self) -> int:
        with self._conns:
            return self._busy

    def _track(self, conn: socket.socket, *, idle: bool) -> None:
        with self._conns:
            if idle:
                self._idle.add(conn)
                if self._draining:
                    _hang_up(conn)
            else:
                self._idle.discard(conn)

    def _begin(self, conn: socket.socket) -> bool:
        with self._conns:
            if self._draining:
                return False
            self._idle.discard(conn)
            self._busy += 1
            return True

    def _end(self, conn: socket.socket) -> bool:
        """Mark a request done; True if its connection must close (the server is draining)."""
        with self._conns:
            self._busy -= 1
            self._conns.notify_all()
            if self._draining:
                return True
            self._idle.add(conn)
            return False

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError


def closing(req: BaseHTTPRequestHandler) -> bool:
    """Whether this response is the connection's last (so it should say ``Connection: close``)."""
    if getattr(req.server, "draining", False):
        req.close_connection = True
    return bool(req.close_connection)


def _hang_up(conn: socket.socket) -> None:
    """Wake a connection's thread blocked reading the next request, so it ends."""
    try:
        conn.shutdown(socket.SHUT_RD)
    except OSError:
        pass
