"""A threaded HTTP server on a loopback port, the base of the local endpoints."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 overflows when a few dozen clients
    # connect at once, and the kernel then resets the connections it dropped.
    request_queue_size = 128


class LoopbackServer:
    """Serves every request with ``self._handle(request)`` on its own thread."""

    methods: tuple[str, ...] = ("GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH")

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        owner = self

        def dispatch(request: BaseHTTPRequestHandler) -> None:
            owner._handle(request)

        attrs = {f"do_{m}": dispatch for m in self.methods}
        attrs["protocol_version"] = "HTTP/1.1"
        attrs["log_message"] = lambda request, *args: None  # keep test and console output quiet
        handler = type("RequestHandler", (BaseHTTPRequestHandler,), attrs)
        self.server = _Server((host, port), handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for a loop that was never started
            self.server.shutdown()
        self.server.server_close()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError
