"""A local Lambda Invoke endpoint that dispatches to handlers in this process.

It speaks the part of the Lambda API that boto3's ``invoke`` uses
(``POST /2015-03-31/functions/<name>/invocations``), including the
``X-Amz-Function-Error`` header for handler exceptions, so the fan-out code
runs unchanged against it.  Only for the local stack and tests.

Invocations run concurrently, one thread each, the way a fan-out runs in
many execution environments at once.  They share this process, so what a
handler keeps between invocations (the scoring function's shard cache) must
be safe to share; the API function, whose router is not, sits behind the
local API Gateway instead, which calls it one request at a time.

An ``Event`` invocation (``InvocationType="Event"``, how the API starts the
duplicates job) is answered 202 at once and runs on a thread of its own, its
outcome dropped as Lambda drops it; :meth:`LambdaEndpoint.wait_async` waits
for those still running.
"""

from __future__ import annotations

import json
import threading
import traceback
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Callable
from urllib.parse import unquote

from pictrace.local.loopback import BadFraming, LoopbackServer, TooLarge, read_body

Handler = Callable[[dict, object], object]
# A hook run before each invocation; tests use it to inject faults.  It may
# raise InvokeError (an HTTP error from the service, e.g. a throttle) or any
# other exception (an "Unhandled" function error), or sleep (a timeout).
Hook = Callable[[str, dict], None]

_PATH = "/2015-03-31/functions/"
# Lambda refuses synchronous payloads above 6 MB; the fan-out sends a few KB.
MAX_PAYLOAD = 6 * 1024 * 1024


@dataclass
class LambdaContext:
    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 1769
    invoked_function_arn: str = ""
    timeout_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_ms


class InvokeError(Exception):
    """Raised by a hook to make the endpoint answer with an HTTP error status."""

    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.status = status
        self.code = code


class LambdaEndpoint(LoopbackServer):
    methods = ("POST",)

    def __init__(self, handlers: dict[str, Handler], host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.handlers = handlers
        self.hook: Hook | None = None
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()
        self._async: list[threading.Thread] = []
        self.timeouts: dict[str, float] = {}  # seconds, per function (the template's Timeout); else 30

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        try:
            body = read_body(req, MAX_PAYLOAD)
        except (BadFraming, TooLarge) as exc:
            req.close_connection = True
            status = exc.status if isinstance(exc, BadFraming) else 413
            return _send(req, status, {"message": str(exc) or "payload too large"}, {"x-amzn-ErrorType": "InvalidRequestContentException"})
        path = req.path.split("?", 1)[0]
        if not (path.startswith(_PATH) and path.endswith("/invocations")):
            return _send(req, 404, {"Type": "User", "message": f"unknown path {path}"}, {})
        name = unquote(path[len(_PATH) : -len("/invocations")]).split(":")[-1]
        handler = self.handlers.get(name)
        if handler is None:
            return _send(
                req, 404, {"Type": "User", "message": f"Function not found: {name}"},
                {"x-amzn-ErrorType": "ResourceNotFoundException"},
            )
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1
        try:
            event = json.loads(body or b"{}")
        except ValueError:
            return _send(req, 400, {"message": "payload is not JSON"}, {"x-amzn-ErrorType": "InvalidRequestContentException"})
        timeout_ms = int(self.timeouts.get(name, 30) * 1000)
        context = LambdaContext(function_name=name, aws_request_id=str(uuid.uuid4()), timeout_ms=timeout_ms)
        if req.headers.get("X-Amz-Invocation-Type", "RequestResponse") == "Event":
            return self._start_async(req, handler, event, context)
        try:
            # The hook stands for the function's runtime: an InvokeError is a
            # refusal by the Lambda service, anything else a function error.
            if self.hook is not None:
                self.hook(name, event)
            result = handler(event, context)
        except InvokeError as exc:
            return _send(req, exc.status, {"message": str(exc)}, {"x-amzn-ErrorType": exc.code})
        except Exception as exc:  # reported to the caller the way Lambda does
            err = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }
            return _send(req, 200, err, {"X-Amz-Function-Error": "Unhandled"})
        return _send(req, 200, result, {})


    def _start_async(self, req: BaseHTTPRequestHandler, handler: Handler, event: dict, context: LambdaContext) -> None:
        def work() -> None:
            try:
                handler(event, context)
            except Exception:  # Lambda would log it and retry per the function's config; locally: logged
                traceback.print_exc()

        thread = threading.Thread(target=work, name=f"lambda-event-{context.function_name}", daemon=True)
        with self._lock:
            self._async = [t for t in self._async if t.is_alive()] + [thread]
        thread.start()
        _send(req, 202, None, {})

    def wait_async(self, timeout: float = 60.0) -> bool:
        """Wait for the ``Event`` invocations still running; whether they all finished in time."""
        with self._lock:
            running = list(self._async)
        for thread in running:
            thread.join(timeout)
        return not any(t.is_alive() for t in running)


def _send(req: BaseHTTPRequestHandler, status: int, body: object, headers: dict[str, str]) -> None:
    data = b"" if body is None else json.dumps(body).encode()
    try:
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.send_header("X-Amz-Executed-Version", "$LATEST")
        for k, v in headers.items():
            req.send_header(k, v)
        req.end_headers()
        req.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        # The caller stopped waiting (its read timeout); Lambda too finishes
        # the invocation and drops the answer.
        req.close_connection = True
